#include "roles/pd/pd_role.h"

#include <cstdlib>
#include <cstring>

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "kv/transfer_engine.h"
#include "net/http_server.h"
#include "roles/pd/pd_decode.h"
#include "roles/pd/pd_metrics.h"
#include "roles/pd/pd_prefill.h"
#include "roles/worker/worker_server.h"

namespace pdctl::pd {

namespace {

using std::chrono::milliseconds;

milliseconds seconds_to_ms(double s) { return milliseconds(static_cast<int64_t>(s * 1000.0)); }

// The KV pool's memory, registered with the transfer engine: UCX-allocated on decode (so
// that peers on this host write into it directly), anonymous memory on prefill.
class RegisteredKvMemory final : public kv::KvMemory {
 public:
  RegisteredKvMemory(std::unique_ptr<kv::KvMemory> own, std::shared_ptr<kv::TransferEngine> engine)
      : own_(std::move(own)), engine_(std::move(engine)) {}
  uint8_t* data() override {
    return own_ ? own_->data() : reinterpret_cast<uint8_t*>(engine_->region(0).data);
  }
  size_t size() const override { return own_ ? own_->size() : engine_->region(0).size; }
  bool host_accessible() const override { return true; }

 private:
  std::unique_ptr<kv::KvMemory> own_;               // destroyed after the engine (declared first)
  std::shared_ptr<kv::TransferEngine> engine_;
};

class PdRole final : public worker::RoleExtension {
 public:
  explicit PdRole(const roles::WorkerOptions& o) : opts_(o), prefill_(o.role == roles::WorkerRole::kPrefill) {
    settings_.bootstrap_timeout = seconds_to_ms(o.disaggregation_bootstrap_timeout);
    settings_.waiting_timeout = seconds_to_ms(o.disaggregation_waiting_timeout);
    settings_.heartbeat_interval = seconds_to_ms(o.disaggregation_heartbeat_interval);
    settings_.layerwise = !o.disaggregation_disable_layerwise_transfer;
  }

  Status on_listen(net::EventLoop& loop, worker::WorkerApi& api) override {
    metrics_ = std::make_unique<PdMetrics>(*api.metrics().registry(), api.metrics().labels());
    if (prefill_) {
      prefill_side_ = std::make_shared<PrefillSide>(loop, settings_, metrics_.get());
      net::ServerOptions so;
      so.host = opts_.host;
      so.port = opts_.disaggregation_bootstrap_port;
      bootstrap_ = std::make_unique<net::HttpServer>(loop, so);
      prefill_side_->add_routes(*bootstrap_);
      if (Status st = bootstrap_->listen(); !st.is_ok()) {
        return st.with_context(fmt::format("the bootstrap server on {}:{}", so.host, so.port));
      }
      spdlog::info("PD bootstrap server on {}:{}", so.host, bootstrap_->port());
      api.dispatcher().set_submitter(prefill_side_);
    } else {
      decode_side_ = std::make_shared<DecodeSide>(loop, settings_, metrics_.get());
      api.dispatcher().set_submitter(decode_side_);
    }
    return Status::ok();
  }

  kv::KvMemoryProvider kv_memory() override {
    return [this](size_t bytes) -> Result<std::unique_ptr<kv::KvMemory>> {
      kv::TransferOptions t;
      t.name = prefill_ ? "kv-prefill" : "kv-decode";
      const char* tls = std::getenv("UCX_TLS");
      // UCX 1.13's shared-memory transports cannot detect dead peers: the bootstrap's
      // heartbeat and the pid check do it then.
      t.peer_failure_detection = !tls_needs_no_peer_failure(tls ? tls : "");
      if (!opts_.disaggregation_ib_device.empty()) t.ucx_settings.push_back({"NET_DEVICES", opts_.disaggregation_ib_device});
      t.operation_timeout = settings_.waiting_timeout;
      std::unique_ptr<kv::KvMemory> own;
      if (prefill_) {
        PDCTL_ASSIGN_OR_RETURN(own, kv::allocate_anonymous_kv_memory(bytes));
        t.regions = {{own->data(), own->size()}};
        t.on_peer_event = [side = prefill_side_](const kv::PeerEvent& ev) { side->on_peer_event(ev); };
      } else {
        t.regions = {{nullptr, bytes}};
        t.on_message = [side = decode_side_](std::string m) { side->on_message(std::move(m)); };
      }
      auto engine = kv::TransferEngine::create(std::move(t));
      if (!engine) return std::move(engine).status().with_context("starting the UCX transfer engine");
      transfer_ = std::shared_ptr<kv::TransferEngine>(std::move(*engine));
      if (!prefill_) {
        // Touch every page of decode's pool now: otherwise the first write into each page
        // takes a page fault inside the transfer (measured: 0.17 GB/s instead of GB/s for
        // a 2k-token prompt over posix/cma), and the pool's memory is committed up front,
        // as a GPU pool would be.
        const kv::Region r = transfer_->region(0);
        std::memset(r.data, 0, r.size);
      }
      spdlog::info("KV transfer engine up (UCX_TLS={}, peer failure detection {})", tls ? tls : "(all)",
                   !tls_needs_no_peer_failure(tls ? tls : "") ? "on" : "off");
      return std::unique_ptr<kv::KvMemory>(std::make_unique<RegisteredKvMemory>(std::move(own), transfer_));
    };
  }

  Status on_model(const engine::ModelConfig& c, const kv::KvGeometry& g) override {
    layout_.vocab_size = c.vocab_size;
    layout_.hidden_size = c.hidden_size;
    layout_.num_layers = g.num_layers;
    layout_.page_size = g.page_size;
    layout_.num_kv_heads = g.num_kv_heads;
    layout_.head_dim = g.head_dim;
    layout_.dtype = g.dtype;
    layout_.num_pages = g.num_pages;
    if (!transfer_) return Status::internal("the KV pool was not allocated through the transfer engine");
    return Status::ok();
  }

  engine::KvHandoffHooks engine_hooks() override {
    return prefill_ ? prefill_side_->hooks() : decode_side_->hooks();
  }

  void on_ready(engine::EngineService* engine) override {
    if (prefill_) {
      prefill_side_->attach(engine, transfer_.get(), layout_);
    } else {
      decode_side_->attach(engine, transfer_.get(), layout_);
    }
  }

  void on_stop() override {
    if (prefill_side_) prefill_side_->stop();
    if (decode_side_) decode_side_->stop();
    if (bootstrap_) bootstrap_->shutdown(milliseconds(0), [] {});
  }

  void after_engine_shutdown() override {
    if (transfer_) transfer_->shutdown();
  }

 private:
  roles::WorkerOptions opts_;
  bool prefill_;
  PdSettings settings_;
  KvLayout layout_;
  std::unique_ptr<PdMetrics> metrics_;
  std::shared_ptr<kv::TransferEngine> transfer_;
  std::shared_ptr<PrefillSide> prefill_side_;
  std::shared_ptr<DecodeSide> decode_side_;
  std::unique_ptr<net::HttpServer> bootstrap_;
};

}  // namespace

Result<std::unique_ptr<worker::RoleExtension>> make_pd_role(const roles::WorkerOptions& opts) {
  if (opts.disaggregation_transfer_backend != "ucx") {
    return Status::unsupported("--disaggregation-transfer-backend " + opts.disaggregation_transfer_backend);
  }
  return std::unique_ptr<worker::RoleExtension>(std::make_unique<PdRole>(opts));
}

}  // namespace pdctl::pd
