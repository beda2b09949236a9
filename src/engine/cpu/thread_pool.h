#pragma once
// A fixed pool of compute threads for the forward pass. parallel_for blocks the calling
// thread (the engine thread, which also takes a share of the work) until every chunk is
// done. Workers sleep in the kernel between calls (a futex on Linux): no spinning.
//
// Rules of use:
// - Nested: parallel_for / run_on_all called from inside a job of the same pool runs the
//   whole range on the calling thread (no deadlock, no extra parallelism).
// - parallel_chunks (dynamic): chunks are claimed from a shared counter by whichever thread is
//   free, and a worker that has not started by the time the caller has run out of chunks is
//   not waited for (it finds the job closed and goes back to sleep). On a machine shared with
//   other jobs a worker may wake late or lose its core for a time slice: with static ranges
//   the whole op waits for it, here the caller takes over its share.
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

  // Calls fn(begin, end, thread_index) for the chunks [i*chunk, min(n, (i+1)*chunk)) of
  // [0, n), each exactly once, on whichever thread claims it first; returns when all have
  // returned. thread_index identifies the running thread (0 = the caller), so per-thread
  // scratch indexed by it is never shared; a thread may run several chunks, or none.
  void parallel_chunks(int64_t n, int64_t chunk, const std::function<void(int64_t, int64_t, int)>& fn);

 private:
  void worker_main(int index);
  // Publishes fn as the current job and wakes the workers (call_mu_ held).
  void open_job(const std::function<void(int)>* fn, bool wait_for_all);
  // Closes the job to late workers, then waits for those inside it (call_mu_ held).
  void close_job();

  std::vector<std::thread> workers_;
  std::mutex call_mu_;  // one caller at a time
  const std::function<void(int)>* job_ = nullptr;
  bool wait_for_all_ = false;  // run_on_all: every worker must run the job once
  uint32_t job_generation_ = 0;  // the generation of job_
  // Futex words. Workers sleep until `generation_` changes. A worker joins the current job
  // only while `state_` has kOpen set, by incrementing its count of workers inside (a CAS, so
  // that joining and closing cannot cross); the caller closes the job, then sleeps until the
  // count is zero. For run_on_all the caller first sleeps until `pending_` (workers that have
  // not yet run their share) reaches zero.
  static constexpr uint32_t kOpen = 1u << 31;
  std::atomic<uint32_t> generation_{0};
  std::atomic<uint32_t> state_{0};
  std::atomic<uint32_t> pending_{0};
  std::atomic<bool> stop_{false};
};

}  // namespace pdctl::engine
