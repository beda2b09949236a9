#pragma once
// Owner of a libuv loop for the transfer thread: closes every handle still open and runs the
// loop until their close callbacks ran, then uv_loop_close. The handles (plain members of
// the owner) must still exist then: declare them before the UvLoop, or call reset() first.
#include <string>

#include <uv.h>

#include "common/status.h"

namespace pdctl::kv {

class UvLoop {
 public:
  UvLoop() = default;
  UvLoop(const UvLoop&) = delete;
  UvLoop& operator=(const UvLoop&) = delete;
  ~UvLoop() { reset(); }

  Status init() {
    int rc = uv_loop_init(&loop_);
    if (rc != 0) return Status::io(std::string("uv_loop_init: ") + uv_strerror(rc));
    initialized_ = true;
    return Status::ok();
  }
  uv_loop_t* get() { return &loop_; }

  // Closes every handle that is not closing yet, without running the loop (from inside a
  // loop callback, to let uv_run return once the close callbacks have run).
  void close_all_handles() {
    if (!initialized_) return;
    uv_walk(
        &loop_, [](uv_handle_t* h, void*) {
          if (!uv_is_closing(h)) uv_close(h, nullptr);
        },
        nullptr);
  }

  void reset() {
    if (!initialized_) return;
    close_all_handles();
    uv_run(&loop_, UV_RUN_DEFAULT);  // runs only the close callbacks: nothing else is active
    uv_loop_close(&loop_);
    initialized_ = false;
  }

 private:
  uv_loop_t loop_{};
  bool initialized_ = false;
};

}  // namespace pdctl::kv
