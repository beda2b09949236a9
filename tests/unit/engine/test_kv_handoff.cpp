// The engine's PD hooks (KvHandoffHooks) without a network: a "prefill" engine (kSend) and a
// "decode" engine (kReceive) in one process, the KV copied between their pools by memcpy
// in place of UCX. Greedy outputs must equal the goldens; pages are held exactly as long as
// the hooks' owner says, and come back (load zero) once released.
#include <cstring>
#include <thread>

#include "test_engine_service_util.h"

using namespace pdctl;
using namespace pdctl::engine;
using namespace pdctl::engine::test;

namespace {

struct PoolTap {
  std::atomic<uint8_t*> base{nullptr};
  kv::KvMemoryProvider provider() {
    return [this](size_t bytes) -> Result<std::unique_ptr<kv::KvMemory>> {
      auto m = kv::allocate_anonymous_kv_memory(bytes);
      if (m.has_value()) base = (*m)->data();
      return m;
    };
  }
};

std::unique_ptr<EngineService> start(PoolTap& tap, KvHandoffHooks hooks, int page_size, kv::KvGeometry& geo) {
  EngineOptions o;
  o.model_path = shared_path("models/stories260K.gguf");
  o.threads = 1;
  o.page_size = page_size;
  o.max_total_tokens = 2048;
  auto runner = ModelRunner::create(o, tap.provider());
  REQUIRE_MESSAGE(runner.has_value(), runner.status().to_string());
  geo = (*runner)->kv_pool().geometry();
  auto tok = Tokenizer::load(shared_path("models/stories260K.gguf"));
  REQUIRE(tok.has_value());
  SchedulerOptions so;
  so.chunked_prefill_size = 5;  // several chunks per prompt: layers are reported per chunk
  auto e = EngineService::start(std::move(runner).value(), std::move(tok).value(), so, std::move(hooks));
  REQUIRE_MESSAGE(e.has_value(), e.status().to_string());
  return std::move(e).value();
}

// What the fake transfer side knows, guarded by its mutex.
struct Handoff {
  std::mutex mu;
  std::map<std::string, std::vector<int32_t>> decode_pages;  // rid -> reserved pages (held)
  std::map<std::string, int32_t> layers_seen;                // rid -> layer hook calls (prefill)
};

}  // namespace

TEST_CASE("kv handoff: prefill -> decode by memcpy reproduces the goldens and frees every page") {
  if (!have_stories()) return;
  const auto& rows = golden_rows();
  Handoff h;
  PoolTap ptap, dtap;
  kv::KvGeometry pgeo, dgeo;

  KvHandoffHooks ph;
  ph.on_layer_stored = [&](const std::string& rid, std::span<const int32_t>, int, int32_t) {
    std::lock_guard lk(h.mu);
    ++h.layers_seen[rid];
  };
  KvHandoffHooks dh;
  dh.on_kv_reserved = [&](const std::string& rid, std::vector<int32_t> pages) {
    std::lock_guard lk(h.mu);
    h.decode_pages[rid] = std::move(pages);
  };
  auto prefill = start(ptap, ph, 4, pgeo);
  auto decode = start(dtap, dh, 4, dgeo);

  Collector pcol, dcol;
  std::vector<std::string> rids;
  for (size_t i = 0; i < rows.size(); ++i) {
    const std::string rid = rid_of("pd", static_cast<int>(i));
    rids.push_back(rid);
    GenerateRequest d = greedy_request(rid, rows[i].prompt_tokens, static_cast<int>(rows[i].completion.size()));
    d.kv_handoff = GenerateRequest::KvHandoff::kReceive;
    submit_ok(*decode, d, dcol.sink(rid));
    GenerateRequest p = greedy_request(rid, rows[i].prompt_tokens, 1);
    p.kv_handoff = GenerateRequest::KvHandoff::kSend;
    // On prefill's final chunk (engine thread): copy every layer's blocks into decode's
    // pages, hand the first token over, and give both sides' held pages back.
    submit_ok(*prefill, p, pcol.sink(rid, [&, rid](const OutputChunk& c) {
      REQUIRE(c.finished);
      REQUIRE(c.token_ids.size() == 1);
      std::vector<int32_t> dst;
      for (int tries = 0; dst.empty() && tries < 10000; ++tries) {  // decode reserves on its own thread
        {
          std::lock_guard lk(h.mu);
          auto it = h.decode_pages.find(rid);
          if (it != h.decode_pages.end()) dst = it->second;
        }
        if (dst.empty()) std::this_thread::sleep_for(std::chrono::milliseconds(1));
      }
      REQUIRE(dst.size() == c.held_pages.size());
      for (int l = 0; l < pgeo.num_layers; ++l) {
        for (kv::KvPart part : {kv::KvPart::kK, kv::KvPart::kV}) {
          for (size_t i = 0; i < dst.size(); ++i) {
            std::memcpy(dtap.base.load() + dgeo.block_offset(l, part, dst[i]),
                        ptap.base.load() + pgeo.block_offset(l, part, c.held_pages[i]), pgeo.block_bytes());
          }
        }
      }
      decode->kv_arrived(rid, c.token_ids[0], 0);
      decode->release_pages(dst);
      prefill->release_pages(c.held_pages);
    }));
  }
  REQUIRE(dcol.wait(rids));
  for (size_t i = 0; i < rows.size(); ++i) {
    INFO("row " << i);
    CHECK(dcol.get(rids[i]).tokens == rows[i].completion);
    CHECK(dcol.get(rids[i]).text == rows[i].text);
    std::lock_guard lk(h.mu);
    // One call per layer per chunk of 5 tokens.
    const int chunks = static_cast<int>((rows[i].prompt_tokens.size() + 4) / 5);
    CHECK(h.layers_seen[rids[i]] == chunks * pgeo.num_layers);
  }
  // Finished requests' pages sit in the prefix caches (evictable), none in use.
  CHECK(decode->load().tokens_in_use == 0);
  CHECK(prefill->load().tokens_in_use == 0);
  CHECK(decode->load().transfer_requests == 0);
}

TEST_CASE("kv handoff: an aborted receiver's pages stay held until released") {
  if (!have_stories()) return;
  PoolTap tap;
  kv::KvGeometry geo;
  std::mutex mu;
  std::vector<int32_t> held;
  KvHandoffHooks dh;
  dh.on_kv_reserved = [&](const std::string&, std::vector<int32_t> pages) {
    std::lock_guard lk(mu);
    held = std::move(pages);
  };
  auto decode = start(tap, dh, 4, geo);
  Collector col;
  GenerateRequest d = greedy_request("r", golden_rows()[0].prompt_tokens, 8);
  d.kv_handoff = GenerateRequest::KvHandoff::kReceive;
  submit_ok(*decode, d, col.sink("r"));
  for (int i = 0; i < 10000 && decode->load().transfer_requests == 0; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  REQUIRE(decode->load().transfer_requests == 1);
  decode->abort("r", "test");
  REQUIRE(col.wait("r"));
  CHECK(col.get("r").finish.type == FinishInfo::Type::kAbort);
  // The request is gone, its pages are not: a write could still land in them.
  CHECK(decode->load().tokens_in_use == 8);  // 5 prompt tokens in 2 pages of 4
  std::vector<int32_t> pages;
  {
    std::lock_guard lk(mu);
    pages = held;
  }
  decode->release_pages(pages);
  for (int i = 0; i < 10000 && decode->load().tokens_in_use != 0; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  CHECK(decode->load().tokens_in_use == 0);
  // A late arrival for the gone request is ignored.
  decode->kv_arrived("r", 5, 0);
  CHECK(decode->load().running_requests == 0);
}
