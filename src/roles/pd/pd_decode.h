#pragma once
// The decode worker's side of PD disaggregation. For an item with bootstrap fields: the
// engine reserves KV pages for its prompt (the request waits in the engine's queue while
// the pool is full), this side connects to the prefill worker's bootstrap server (once per
// prefill; the connection hands over decode's transfer descriptor and layout), registers
// {room, pages}, and on prefill's notice (after the flush of every put) lets the engine
// join the request to its batch from the first token.
//
// A room: bootstrapping (pages, connection, registration) -> waiting for input
// (registered; prefill computes and writes) -> success | failed. A failed room's pages stay
// held until no write into them can land: prefill answered the cancel (after its writes
// drained), sent a failure notice, or is gone (heartbeat).
//
// Threads: the loop thread (HTTP client, timers), the engine thread (on_kv_reserved, the
// items' sinks) and the transfer thread (notices) meet under one mutex.
#include <chrono>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>
#include <vector>

#include "engine/engine_service.h"
#include "kv/transfer_engine.h"
#include "net/event_loop.h"
#include "net/http_client.h"
#include "roles/pd/pd_metrics.h"
#include "roles/pd/pd_prefill.h"
#include "roles/pd/pd_protocol.h"
#include "roles/worker/call_dispatcher.h"

namespace pdctl::pd {

inline constexpr int kDefaultBootstrapPort = 8998;

class DecodeSide final : public worker::ItemSubmitter, public std::enable_shared_from_this<DecodeSide> {
 public:
  DecodeSide(net::EventLoop& loop, PdSettings settings, PdMetrics* metrics);
  ~DecodeSide() override;

  engine::KvHandoffHooks hooks();
  void attach(engine::EngineService* engine, kv::TransferEngine* transfer, const KvLayout& layout);
  // Transfer thread: the engine's on_message.
  void on_message(std::string message);
  void stop();

  Status submit(engine::EngineService& engine, const worker::ItemSpec& item, engine::OutputSink sink,
                bool internal) override;

  struct Room;
  struct Prefill;

 private:
  void on_reserved(const std::string& rid, std::vector<int32_t> pages);
  void on_chunk(uint64_t room_id, engine::OutputChunk&& chunk);
  // Loop thread.
  void connect(const std::string& key);
  void on_connected(const std::string& key, Result<net::HttpResponse> r);
  void try_register(uint64_t room_id);
  void on_registered(uint64_t room_id, uint64_t epoch, Result<net::HttpResponse> r);
  void send_cancel(uint64_t room_id);
  void sweep();
  void heartbeat(const std::string& key);
  void prefill_lost(const std::string& key, const Status& why);

  // Under mu_.
  void fail_locked(Room& room, Status why, bool bootstrap);
  void release_locked(Room& room);
  void erase_if_done_locked(uint64_t room_id);
  void publish_locked();

  net::EventLoop& loop_;
  const PdSettings settings_;
  PdMetrics* metrics_;
  std::string decode_id_;
  std::unique_ptr<net::HttpClient> client_;
  std::unique_ptr<net::Timer> timer_;
  engine::EngineService* engine_ = nullptr;
  kv::TransferEngine* transfer_ = nullptr;
  KvLayout layout_;
  uint64_t epoch_seq_ = 0;  // guarded by mu_

  std::mutex mu_;
  std::unordered_map<uint64_t, std::unique_ptr<Room>> rooms_;        // guarded by mu_
  std::unordered_map<std::string, uint64_t> room_of_rid_;            // guarded by mu_
  std::unordered_map<std::string, std::unique_ptr<Prefill>> prefills_;  // loop thread: by "host:port"
};

}  // namespace pdctl::pd
