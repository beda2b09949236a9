#pragma once
// Runs ApiCalls on an EngineService: submits their items, brings the engine's output back
// to the loop thread, hands it to the calls (which write their replies) and to the
// metrics, and aborts the engine's work when a client goes away. The serve, prefill and
// decode roles all answer their generation routes through it.
//
// Threads: the engine calls each item's sink on the engine thread; the sink only appends
// the chunk to an inbox under a mutex, and the first append after a drain posts one drain
// to the loop (EventLoop::post). A step of the engine that emits chunks for 64 requests
// thus wakes the loop once, not 64 times. Everything else here runs on the loop thread.
//
// Samples of one prompt (n > 1) share its prefix cache: sample 0 is submitted first and the
// others when its first output arrives, by which time the prompt's KV is in the cache.
//
// A request without a seed is given one made from its rid and --random-seed: otherwise the
// engine's single default seed would make every unseeded request, and the n samples of
// one, draw the same tokens. From the rid, so that the two halves of a PD request (which
// share the rid) draw alike, and a client that reuses a rid gets the same samples.
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "engine/engine_service.h"
#include "net/event_loop.h"
#include "roles/worker/api_call.h"
#include "roles/worker/worker_metrics.h"

namespace pdctl::worker {

class ChunkInbox;

class CallDispatcher : public std::enable_shared_from_this<CallDispatcher> {
 public:
  // `metrics` may be null (no metrics). Both must outlive the dispatcher. `seed_base`:
  // --random-seed, mixed into the seeds of unseeded requests.
  static std::shared_ptr<CallDispatcher> create(net::EventLoop& loop, WorkerMetrics* metrics,
                                                uint64_t seed_base = 0);

  // The seed an unseeded request with this rid samples with.
  uint64_t seed_for_rid(const std::string& rid) const;
  ~CallDispatcher();
  CallDispatcher(const CallDispatcher&) = delete;
  CallDispatcher& operator=(const CallDispatcher&) = delete;

  // The engine to run calls on (null: none yet, or gone). It must outlive its use here:
  // set it to null before shutting it down and destroying it.
  void set_engine(engine::EngineService* engine) { engine_ = engine; }
  engine::EngineService* engine() const { return engine_; }

  uint64_t next_call_id() { return ++last_call_id_; }

  // Submits the call's items. On error nothing of the call remains with the engine (the
  // items already submitted are aborted) and the caller answers with the error; on success
  // the call answers itself. `record_metrics`: false for internal calls (health checks).
  Status start(const std::shared_ptr<ApiCall>& call, bool record_metrics = true);

  // POST /abort_request: the items whose rid is `rid` or `rid`-N (the samples and prompts
  // of a call given that rid), and `rid` itself at the engine.
  void abort_rid(const std::string& rid);
  void abort_all();

  // GET /health_generate: one greedy token; `done(true)` when the engine produced it
  // within `timeout`, `done(false)` on an error or the timeout.
  void health_generate(std::chrono::milliseconds timeout, std::function<void(bool)> done);

  size_t live_calls() const { return calls_.size(); }

 private:
  friend class ChunkInbox;
  struct Delivery;
  struct Live {
    std::shared_ptr<ApiCall> call;
    bool record_metrics = true;
    bool abandoned = false;  // the client is gone and the items were aborted
  };
  CallDispatcher(net::EventLoop& loop, WorkerMetrics* metrics, uint64_t seed_base);
  Status submit_item(Live& live, size_t i);
  void submit_followers(Live& live, size_t leader);
  void on_deliveries(std::vector<Delivery>& batch);
  void on_client_gone(uint64_t call_id);
  // The client is gone: aborts the call's unfinished items (once).
  void abandon(Live& live);
  void observe(const Live& live, size_t i, const engine::OutputChunk& chunk, double now);
  void retire_if_done(uint64_t call_id);

  net::EventLoop& loop_;
  WorkerMetrics* metrics_;
  uint64_t seed_base_;
  engine::EngineService* engine_ = nullptr;
  std::shared_ptr<ChunkInbox> inbox_;
  std::unordered_map<uint64_t, Live> calls_;
  uint64_t last_call_id_ = 0;
  uint64_t health_seq_ = 0;
};

}  // namespace pdctl::worker
