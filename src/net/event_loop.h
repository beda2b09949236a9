#pragma once
// The event loop of one I/O thread: an owner of a uv_loop_t, a thread-safe post() queue,
// timers and signal watchers. Everything in src/net runs on the thread that calls run().
#include <chrono>
#include <cstdint>
#include <functional>
#include <initializer_list>
#include <memory>

#include "common/status.h"

struct uv_loop_s;

namespace pdctl::net {

class EventLoop;

// A holder of libuv handles on a loop. When the loop stops it calls on_loop_stop() on every
// live resource, which closes its handles, so uv_loop_close succeeds whatever order the
// owners are destroyed in; afterwards loop() is nullptr and the resource is inert.
class LoopResource {
 public:
  LoopResource(const LoopResource&) = delete;
  LoopResource& operator=(const LoopResource&) = delete;

 protected:
  explicit LoopResource(EventLoop& loop);
  virtual ~LoopResource();
  // Loop thread, once: close every handle (close callbacks still run before run() returns).
  virtual void on_loop_stop() = 0;
  // Leaves the loop's list early (an owner that closed its handles itself).
  void detach_from_loop();
  EventLoop* loop() const { return loop_; }

 private:
  friend class EventLoop;
  EventLoop* loop_;
  LoopResource* prev_ = nullptr;
  LoopResource* next_ = nullptr;
};

class EventLoop {
 public:
  // Throws std::runtime_error when libuv cannot create a loop (start-up only). The first
  // one sets SIGPIPE to be ignored, process-wide (socket errors come back as EPIPE).
  EventLoop();
  // close() if not done yet (an error is logged). Call it on the thread that ran the loop,
  // after run() returned (or when it never ran).
  ~EventLoop();
  EventLoop(const EventLoop&) = delete;
  EventLoop& operator=(const EventLoop&) = delete;

  uv_loop_s* uv() const;

  // Runs the loop on the calling thread until stop() has closed every handle.
  void run();

  // Any thread, idempotent. Runs the posts accepted so far, then stops every LoopResource
  // (servers, clients, timers), closes the remaining handles and lets run() return.
  void stop();

  // After run() returned (or when it never ran): stops what is left, runs the close
  // callbacks and closes the libuv loop. kInternal if a handle is still open (a bug:
  // uv_loop_close said EBUSY). Later calls return the first result.
  Status close();

  // Any thread. Queues `fn` to run on the loop thread, after every earlier post (FIFO,
  // across threads in the order post() took its lock). Returns true when `fn` will run
  // exactly once; false once stop() has begun, and then `fn` is destroyed unrun on the
  // caller's thread. The EventLoop object itself must outlive every call.
  bool post(std::function<void()> fn);

  // True on the thread inside run() (before run(), on the constructing thread).
  bool in_loop_thread() const;
  // True once stop() has begun (any thread).
  bool stopping() const;
  // Loop time in milliseconds (libuv's cached clock, updated once per iteration).
  uint64_t now_ms() const;

 private:
  friend class LoopResource;
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// A one-shot or repeating timer. Destroying it (or cancel()) guarantees its callback does
// not run again. Loop thread only. Moving keeps the schedule.
class Timer {
 public:
  Timer() = default;  // empty: start() returns false
  explicit Timer(EventLoop& loop);
  ~Timer();
  Timer(Timer&& other) noexcept;
  Timer& operator=(Timer&& other) noexcept;

  // Calls `cb` after `delay`, then every `repeat` when it is non-zero; replaces an earlier
  // schedule and callback. The callback may cancel, restart or destroy the timer. Returns
  // false when the timer is empty or its loop has stopped.
  bool start(std::chrono::milliseconds delay, std::chrono::milliseconds repeat,
             std::function<void()> cb);
  bool start(std::chrono::milliseconds delay, std::function<void()> cb) {
    return start(delay, std::chrono::milliseconds(0), std::move(cb));
  }
  void cancel();
  bool active() const;

 private:
  struct Impl;
  Impl* impl_ = nullptr;  // freed by its handle's close callback
};

// Calls `cb(signum)` on the loop thread when one of `signums` arrives (SIGINT, SIGTERM...)
// for as long as the watcher lives. The signals' default action is replaced meanwhile.
class SignalWatcher {
 public:
  SignalWatcher(EventLoop& loop, std::initializer_list<int> signums, std::function<void(int)> cb);
  ~SignalWatcher();
  SignalWatcher(const SignalWatcher&) = delete;
  SignalWatcher& operator=(const SignalWatcher&) = delete;

 private:
  struct Impl;
  Impl* impl_;
};

}  // namespace pdctl::net
