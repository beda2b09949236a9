#include "net/event_loop.h"

#include <atomic>
#include <csignal>
#include <mutex>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include <spdlog/spdlog.h>
#include <uv.h>

namespace pdctl::net {

// ---------------------------------------------------------------- EventLoop

struct EventLoop::Impl {
  uv_loop_t loop{};
  uv_async_t async{};

  std::mutex mu;
  std::vector<std::function<void()>> queue;  // guarded by mu
  bool accepting = true;                     // guarded by mu
  bool stop_requested = false;               // guarded by mu

  std::atomic<bool> stopping{false};
  std::atomic<std::thread::id> thread{std::this_thread::get_id()};
  bool stopped = false;               // loop thread: do_stop() ran
  bool closed = false;                // close() ran
  Status close_status;
  LoopResource* resources = nullptr;  // loop thread: live resources (intrusive list)

  void link(LoopResource* r) {
    r->next_ = resources;
    if (resources) resources->prev_ = r;
    resources = r;
  }
  void unlink(LoopResource* r) {
    if (r->prev_) {
      r->prev_->next_ = r->next_;
    } else if (resources == r) {
      resources = r->next_;
    }
    if (r->next_) r->next_->prev_ = r->prev_;
    r->prev_ = r->next_ = nullptr;
  }

  static void run_one(std::function<void()>& fn) {
    // A throwing callback is a bug; the loop and the other posts must survive it.
    try {
      fn();
    } catch (const std::exception& e) {
      spdlog::error("event loop: a posted callback threw: {}", e.what());
    }
  }

  // Runs one batch: posts made while it runs wait for the next wake-up, so that a thread
  // posting without pause cannot starve the loop's I/O.
  bool run_batch() {
    std::vector<std::function<void()>> batch;
    {
      std::lock_guard lock(mu);
      batch.swap(queue);
    }
    for (auto& fn : batch) run_one(fn);
    return !batch.empty();
  }

  static void on_async(uv_async_t* a) {
    auto* self = static_cast<Impl*>(a->data);
    self->run_batch();
    bool stop;
    {
      std::lock_guard lock(self->mu);
      stop = self->stop_requested;
    }
    if (stop) self->do_stop();
  }

  void do_stop() {
    if (stopped) return;
    stopped = true;
    {
      std::lock_guard lock(mu);
      accepting = false;
      stop_requested = true;
    }
    stopping.store(true);
    // Every accepted post runs; no new one can be accepted now.
    while (run_batch()) {
    }
    while (LoopResource* r = resources) {
      unlink(r);
      r->on_loop_stop();
      r->loop_ = nullptr;
    }
    uv_close(reinterpret_cast<uv_handle_t*>(&async), nullptr);
    // Handles made outside src/net: closed without a callback (their memory must outlive
    // the loop).
    uv_walk(
        &loop,
        [](uv_handle_t* h, void*) {
          if (!uv_is_closing(h)) uv_close(h, nullptr);
        },
        nullptr);
  }
};

EventLoop::EventLoop() : impl_(std::make_unique<Impl>()) {
  // libuv writes to sockets with write()/writev(): a peer that reset the connection would
  // kill the process with SIGPIPE. Errors come back as EPIPE instead.
  static std::once_flag sigpipe_once;
  std::call_once(sigpipe_once, [] { std::signal(SIGPIPE, SIG_IGN); });
  int rc = uv_loop_init(&impl_->loop);
  if (rc != 0) throw std::runtime_error(std::string("uv_loop_init: ") + uv_strerror(rc));
  rc = uv_async_init(&impl_->loop, &impl_->async, &Impl::on_async);
  if (rc != 0) {
    uv_loop_close(&impl_->loop);
    throw std::runtime_error(std::string("uv_async_init: ") + uv_strerror(rc));
  }
  impl_->async.data = impl_.get();
}

EventLoop::~EventLoop() {
  Status st = close();
  if (!st.is_ok()) spdlog::error("event loop: {}", st.to_string());
}

Status EventLoop::close() {
  if (impl_->closed) return impl_->close_status;
  impl_->closed = true;
  impl_->thread.store(std::this_thread::get_id());
  if (!impl_->stopped) {
    impl_->do_stop();
    uv_run(&impl_->loop, UV_RUN_DEFAULT);
  }
  int rc = uv_loop_close(&impl_->loop);
  if (rc == UV_EBUSY) {
    // Something made a handle after the stop walked the loop: close it too, but report it.
    int open = 0;
    uv_walk(
        &impl_->loop,
        [](uv_handle_t* h, void* arg) {
          if (!uv_is_closing(h)) {
            ++*static_cast<int*>(arg);
            uv_close(h, nullptr);
          }
        },
        &open);
    uv_run(&impl_->loop, UV_RUN_DEFAULT);
    rc = uv_loop_close(&impl_->loop);
    if (rc == 0) {
      impl_->close_status = Status::internal(std::to_string(open) + " handle(s) were still open after the stop");
    }
  }
  if (rc != 0) impl_->close_status = Status::internal(std::string("uv_loop_close: ") + uv_strerror(rc));
  return impl_->close_status;
}

uv_loop_s* EventLoop::uv() const { return &impl_->loop; }

void EventLoop::run() {
  impl_->thread.store(std::this_thread::get_id());
  uv_run(&impl_->loop, UV_RUN_DEFAULT);
}

void EventLoop::stop() {
  // Always through the async handle: stopping from a callback deep inside a server or
  // client must not tear them down under their own feet.
  std::lock_guard lock(impl_->mu);
  if (impl_->stop_requested) return;
  impl_->stop_requested = true;
  uv_async_send(&impl_->async);
}

bool EventLoop::post(std::function<void()> fn) {
  {
    std::lock_guard lock(impl_->mu);
    if (impl_->accepting) {
      bool wake = impl_->queue.empty();  // a non-empty queue already has a wake-up pending
      impl_->queue.push_back(std::move(fn));
      if (wake) uv_async_send(&impl_->async);
      return true;
    }
  }
  fn = nullptr;  // destroyed here, outside the lock
  return false;
}

bool EventLoop::in_loop_thread() const { return impl_->thread.load() == std::this_thread::get_id(); }

bool EventLoop::stopping() const { return impl_->stopping.load(); }

uint64_t EventLoop::now_ms() const { return uv_now(&impl_->loop); }

// ---------------------------------------------------------------- LoopResource

LoopResource::LoopResource(EventLoop& loop) : loop_(&loop) {
  if (loop.impl_->stopped) {
    loop_ = nullptr;  // born after the stop: inert from the start
    return;
  }
  loop.impl_->link(this);
}

LoopResource::~LoopResource() { detach_from_loop(); }

void LoopResource::detach_from_loop() {
  if (loop_ == nullptr) return;
  loop_->impl_->unlink(this);
  loop_ = nullptr;
}

// ---------------------------------------------------------------- Timer

struct Timer::Impl final : LoopResource {
  using LoopResource::detach_from_loop;
  uv_timer_t h{};
  std::function<void()> cb;
  uint64_t generation = 0;  // bumped by start/cancel: a running callback is not restored
  bool owner_alive = true;
  bool closing = false;
  bool closed = false;

  explicit Impl(EventLoop& loop) : LoopResource(loop) {
    if (this->loop() == nullptr) {
      closing = closed = true;  // the loop has stopped: never had a handle
      return;
    }
    uv_timer_init(loop.uv(), &h);
    h.data = this;
  }

  void close_handle() {
    if (closing) return;
    closing = true;
    uv_close(reinterpret_cast<uv_handle_t*>(&h), [](uv_handle_t* hh) {
      auto* self = static_cast<Impl*>(hh->data);
      self->closed = true;
      if (!self->owner_alive) delete self;
    });
  }
  void on_loop_stop() override {
    cb = nullptr;
    close_handle();
  }

  static void on_fire(uv_timer_t* t) {
    auto* self = static_cast<Impl*>(t->data);
    uint64_t gen = self->generation;
    // Moved out so that the callback may restart or destroy the timer safely; the memory
    // of `self` lives until the close callback, which cannot run before we return.
    std::function<void()> fn = std::move(self->cb);
    if (fn) fn();
    if (self->generation == gen && !self->closing &&
        uv_is_active(reinterpret_cast<uv_handle_t*>(&self->h))) {
      self->cb = std::move(fn);
    }
  }
};

Timer::Timer(EventLoop& loop) : impl_(new Impl(loop)) {}

Timer::~Timer() {
  if (impl_ == nullptr) return;
  impl_->owner_alive = false;
  impl_->cb = nullptr;
  impl_->generation++;
  if (impl_->closed) {
    delete impl_;
    return;
  }
  impl_->detach_from_loop();
  impl_->close_handle();
}

Timer::Timer(Timer&& other) noexcept : impl_(other.impl_) { other.impl_ = nullptr; }

Timer& Timer::operator=(Timer&& other) noexcept {
  if (this != &other) {
    Timer tmp(std::move(*this));
    impl_ = other.impl_;
    other.impl_ = nullptr;
  }
  return *this;
}

bool Timer::start(std::chrono::milliseconds delay, std::chrono::milliseconds repeat,
                  std::function<void()> cb) {
  if (impl_ == nullptr || impl_->closing) return false;
  impl_->generation++;
  impl_->cb = std::move(cb);
  uint64_t d = delay.count() < 0 ? 0 : static_cast<uint64_t>(delay.count());
  uint64_t r = repeat.count() < 0 ? 0 : static_cast<uint64_t>(repeat.count());
  return uv_timer_start(&impl_->h, &Impl::on_fire, d, r) == 0;
}

void Timer::cancel() {
  if (impl_ == nullptr || impl_->closing) return;
  impl_->generation++;
  uv_timer_stop(&impl_->h);
  impl_->cb = nullptr;
}

bool Timer::active() const {
  return impl_ != nullptr && !impl_->closing &&
         uv_is_active(reinterpret_cast<const uv_handle_t*>(&impl_->h));
}

// ---------------------------------------------------------------- SignalWatcher

struct SignalWatcher::Impl final : LoopResource {
  using LoopResource::detach_from_loop;
  std::unique_ptr<uv_signal_t[]> handles;
  size_t count = 0;
  size_t open = 0;  // handles not yet through their close callback
  std::function<void(int)> cb;
  bool owner_alive = true;
  bool closing = false;

  Impl(EventLoop& loop, std::initializer_list<int> signums, std::function<void(int)> fn)
      : LoopResource(loop), handles(new uv_signal_t[signums.size()]), cb(std::move(fn)) {
    if (this->loop() == nullptr) {
      closing = true;
      return;
    }
    for (int signum : signums) {
      uv_signal_t* h = &handles[count++];
      uv_signal_init(loop.uv(), h);
      h->data = this;
      open++;
      int rc = uv_signal_start(
          h,
          [](uv_signal_t* s, int num) {
            auto* self = static_cast<Impl*>(s->data);
            if (!self->cb || self->closing) return;
            auto fn = self->cb;  // a copy: the callback may destroy the watcher
            fn(num);
          },
          signum);
      if (rc != 0) spdlog::warn("cannot watch signal {}: {}", signum, uv_strerror(rc));
    }
  }

  void close_handles() {
    if (closing) return;
    closing = true;
    for (size_t i = 0; i < count; ++i) {
      uv_close(reinterpret_cast<uv_handle_t*>(&handles[i]), [](uv_handle_t* h) {
        auto* self = static_cast<Impl*>(h->data);
        if (--self->open == 0 && !self->owner_alive) delete self;
      });
    }
  }
  void on_loop_stop() override { close_handles(); }
};

SignalWatcher::SignalWatcher(EventLoop& loop, std::initializer_list<int> signums,
                             std::function<void(int)> cb)
    : impl_(new Impl(loop, signums, std::move(cb))) {}

SignalWatcher::~SignalWatcher() {
  impl_->owner_alive = false;
  impl_->cb = nullptr;
  impl_->detach_from_loop();
  impl_->close_handles();
  if (impl_->open == 0) delete impl_;
}

}  // namespace pdctl::net
