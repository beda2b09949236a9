#pragma once
// A fixed pool of compute threads for the forward pass. parallel_for blocks the calling
// thread (the engine thread, which also takes a share of the work) until every chunk is
// done. Workers sleep on a condition variable between calls: no spinning.
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace pdctl::engine {

class ThreadPool {
 public:
  // `threads` counts the caller too: ThreadPool(1) runs everything on the caller.
  // 0 means one per online CPU.
  explicit ThreadPool(int threads);
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;
  ~ThreadPool();

  int size() const { return static_cast<int>(workers_.size()) + 1; }

  // Calls fn(begin, end, thread_index) over [0, n) split into size() contiguous ranges
  // (thread_index in [0, size())); returns when all have returned.
  void parallel_for(int64_t n, const std::function<void(int64_t, int64_t, int)>& fn);

  // Calls fn(thread_index) once on each thread.
  void run_on_all(const std::function<void(int)>& fn);

 private:
  void worker_main(int index);

  std::vector<std::thread> workers_;
  std::mutex mu_;
  std::condition_variable wake_;
  std::condition_variable done_;
  const std::function<void(int)>* job_ = nullptr;
  uint64_t generation_ = 0;
  int pending_ = 0;
  bool stop_ = false;
};

}  // namespace pdctl::engine
