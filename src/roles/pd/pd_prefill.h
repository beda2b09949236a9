#pragma once
// The prefill worker's side of PD disaggregation: the bootstrap server (decode workers
// connect and register rooms on it) and the rooms, whose KV it writes into decode's pool
// layer by layer as the engine stores it, then flushes, then notifies decode with the first
// token. The item's HTTP reply is held until that notice's write has completed (SGLang's
// max_new_tokens = 1 behaviour), or turned into an error when the transfer failed.
//
// A room: bootstrapping (no registration from decode yet) -> waiting for input (registered,
// the prompt still computing) -> transferring -> success | failed. Either of decode's
// registration and the /generate request may come first.
//
// Threads: the loop thread (HTTP, timers), the engine thread (layer hook, the items'
// sinks) and the transfer thread (completions, peer events) meet under one mutex; none of
// them waits for the network under it (TransferEngine::write only enqueues).
#include <chrono>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "engine/engine_service.h"
#include "kv/transfer_engine.h"
#include "net/event_loop.h"
#include "net/http_server.h"
#include "roles/pd/pd_metrics.h"
#include "roles/pd/pd_protocol.h"
#include "roles/worker/call_dispatcher.h"

namespace pdctl::pd {

// What both PD roles require of a generation item: one sample, the bootstrap fields (the
// error names those missing), at least one new token. `role` names the worker in the error.
Status check_pd_item(const worker::ItemSpec& item, std::string_view role);

struct PdSettings {
  std::chrono::milliseconds bootstrap_timeout{300'000};
  std::chrono::milliseconds waiting_timeout{300'000};
  std::chrono::milliseconds heartbeat_interval{5'000};
  bool layerwise = true;  // send each layer as it is stored (false: all of it after the prompt)
};

class PrefillSide final : public worker::ItemSubmitter, public std::enable_shared_from_this<PrefillSide> {
 public:
  PrefillSide(net::EventLoop& loop, PdSettings settings, PdMetrics* metrics);
  ~PrefillSide() override;

  // Before the engine starts: the engine's hooks (engine thread).
  engine::KvHandoffHooks hooks();
  // Once both exist (loop thread); they must outlive stop().
  void attach(engine::EngineService* engine, kv::TransferEngine* transfer, const KvLayout& layout);
  // Transfer thread: the engine's on_peer_event.
  void on_peer_event(const kv::PeerEvent& ev);
  // The bootstrap routes (/pd/...) on the server at --disaggregation-bootstrap-port.
  void add_routes(net::HttpServer& server);
  // Loop thread: stops the timer; rooms end with the engine's and the transfer engine's shutdown.
  void stop();

  Status submit(engine::EngineService& engine, const worker::ItemSpec& item, engine::OutputSink sink,
                bool internal) override;

  struct Room;

 private:
  using Lock = std::unique_lock<std::mutex>;
  struct Decode {
    kv::PeerId peer = 0;
    kv::KvGeometry geometry;
    bool ready = false;  // UCX wire-up finished
  };

  void on_layer(const std::string& rid, std::span<const int32_t> pages, int layer, int32_t tokens);
  void on_chunk(uint64_t room_id, engine::OutputChunk&& chunk);
  void on_write_done(uint64_t room_id, bool notice, const kv::TransferResult& r);
  void route_connect(const net::Request& req, net::Response resp);
  void route_register(const net::Request& req, net::Response resp);
  void route_cancel(const net::Request& req, net::Response resp);
  // Loop thread: answers the /pd/connect calls waiting for the peer's wire-up.
  void answer_connects(kv::PeerId peer, const Status& st);
  void sweep();

  // Under mu_.
  void pump_locked(Room& room);
  void fail_locked(Room& room, Status why, bool bootstrap);
  void settle_locked(uint64_t room_id);
  void publish_locked();

  net::EventLoop& loop_;
  const PdSettings settings_;
  PdMetrics* metrics_;
  std::unique_ptr<net::Timer> timer_;
  engine::EngineService* engine_ = nullptr;
  kv::TransferEngine* transfer_ = nullptr;
  KvLayout layout_;
  kv::KvGeometry geometry_;

  std::mutex mu_;
  std::unordered_map<uint64_t, std::unique_ptr<Room>> rooms_;  // guarded by mu_
  std::unordered_map<std::string, uint64_t> room_of_rid_;      // guarded by mu_
  std::unordered_map<std::string, Decode> decodes_;            // guarded by mu_: by decode_id
  // /pd/connect replies wait for UCX's wire-up to finish, so that no request's transfer
  // races it (UCX 1.13 over TCP can abort on a peer that dies mid-wire-up). Loop thread.
  std::unordered_map<kv::PeerId, std::vector<net::Response>> connect_waiters_;
};

}  // namespace pdctl::pd
