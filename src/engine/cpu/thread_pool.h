#pragma once
// A fixed pool of compute threads for the forward pass. parallel_for blocks the calling
// thread (the engine thread, which also takes a share of the work) until every chunk is
// done. Workers sleep in the kernel between calls (a futex on Linux): no spinning.
//
// Rules of use:
// - Nested: parallel_for / run_on_all called from inside a job of the same pool runs the
//   whole range on the calling thread (no deadlock, no extra parallelism).
// - Concurrent: calls from several outside threads are safe; they take turns (a mutex held
//   for the duration of one call), so one pool serves one caller at a time.
// - Destruction joins every worker; it must not race with a call in progress.
#include <atomic>
#include <cstdint>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace pdctl::engine {

struct ThreadPoolOptions {
  // Pin worker i to the i-th CPU of the process's affinity mask (the caller, which runs
  // share 0, is left where it is). Off by default: it helps only when nothing else competes
  // for those CPUs.
  bool pin_workers = false;
};

class ThreadPool {
 public:
  // `threads` counts the caller too: ThreadPool(1) runs everything on the caller.
  // 0 means one per online CPU.
  explicit ThreadPool(int threads, ThreadPoolOptions options = {});
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;
  ~ThreadPool();

  int size() const { return static_cast<int>(workers_.size()) + 1; }

  // Calls fn(begin, end, thread_index) over [0, n) split into min(size(), n) contiguous
  // ranges of near-equal length (thread_index in [0, size())); returns when all have returned.
  void parallel_for(int64_t n, const std::function<void(int64_t, int64_t, int)>& fn);

  // Calls fn(thread_index) once on each thread.
  void run_on_all(const std::function<void(int)>& fn);

 private:
  void worker_main(int index);

  std::vector<std::thread> workers_;
  std::mutex call_mu_;  // one caller at a time
  const std::function<void(int)>* job_ = nullptr;
  // Futex words. Workers sleep until `generation_` changes; the caller sleeps until
  // `pending_` (workers still running the current job) reaches zero.
  std::atomic<uint32_t> generation_{0};
  std::atomic<uint32_t> pending_{0};
  std::atomic<bool> stop_{false};
};

}  // namespace pdctl::engine
