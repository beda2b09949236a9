#pragma once
// The PD bootstrap protocol between a decode worker and a prefill worker (README, "PD
// disaggregation"). Pure functions: message bodies to and from JSON, the layout check,
// which (layer, page) blocks go where. No I/O.
//
// HTTP on the prefill worker's --disaggregation-bootstrap-port (decode is the client):
//   POST /pd/connect   {decode_id, descriptor (base64 of the transfer engine's), layout}
//                      -> 200 {layout} (prefill added decode as a UCX peer), or 400 naming
//                      the first layout field that differs, with both values
//   POST /pd/register  {decode_id, room, epoch, prompt_len, prompt_hash, pages} -> 200, 404 unknown
//                      decode (connect again), 409 the room is taken by another request
//   POST /pd/cancel    {decode_id, room, epoch} -> 200 once no write of the room can land
//                      any more in decode's pages
//   GET  /pd/health    -> 200 {pid} (decode's heartbeat)
// Over UCX, prefill -> decode, after the flush of the room's last put: the notice
//   {room, epoch, ok, token, logprob} or {room, epoch, ok: false, error}.
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "common/status.h"
#include "kv/kv_pool.h"
#include "kv/transfer_plan.h"

namespace pdctl::pd {

// What both sides must agree on for prefill's blocks to mean the same in decode's pool.
struct KvLayout {
  int64_t vocab_size = 0;   // with hidden_size and num_layers: "the same model"
  int64_t hidden_size = 0;
  int num_layers = 0;
  int page_size = 0;
  int num_kv_heads = 0;
  int head_dim = 0;
  kv::KvDType dtype = kv::KvDType::kF32;
  int num_pages = 0;        // the sender's pool (not compared: addresses decode's blocks)
};

nlohmann::json layout_to_json(const KvLayout& l);
Result<KvLayout> layout_from_json(const nlohmann::json& j);
// kInvalidArgument naming the first field that differs and both values, e.g.
// "KV layout mismatch: page_size is 16 on prefill, 8 on decode".
Status check_layout(const KvLayout& prefill, const KvLayout& decode);
kv::KvGeometry geometry_of(const KvLayout& l);

struct ConnectRequest {
  std::string decode_id;
  std::string descriptor;  // binary (base64 on the wire)
  KvLayout layout;
};
std::string encode_connect(const ConnectRequest& r);
Result<ConnectRequest> decode_connect(std::string_view body);

struct RegisterRequest {
  std::string decode_id;
  uint64_t room = 0;
  uint64_t epoch = 0;       // decode's attempt number: a notice names it, stale ones are ignored
  int64_t prompt_len = 0;
  uint64_t prompt_hash = 0;  // prompt_hash(): a room reused by another prompt is refused
  std::vector<int32_t> pages;
};
std::string encode_register(const RegisterRequest& r);
Result<RegisterRequest> decode_register(std::string_view body);

struct CancelRequest {
  std::string decode_id;
  uint64_t room = 0;
  uint64_t epoch = 0;
};
std::string encode_cancel(const CancelRequest& r);
Result<CancelRequest> decode_cancel(std::string_view body);

struct Notice {
  uint64_t room = 0;
  uint64_t epoch = 0;
  bool ok = false;
  int32_t token = 0;
  float logprob = 0;
  std::string error;
};
std::string encode_notice(const Notice& n);
Result<Notice> decode_notice(std::string_view body);

// FNV-1a over the prompt's token ids: both sides must be serving the same prompt in a room.
uint64_t prompt_hash(const std::vector<int32_t>& ids);

std::string base64_encode(std::string_view bytes);
Result<std::string> base64_decode(std::string_view text);

// The copies of layer `layer` for pages [first, last) of a request's table: K and V of
// src_pages[i] (in the sender's geometry) to dst_pages[i] (in the receiver's).
void append_layer_copies(const kv::KvGeometry& src, const kv::KvGeometry& dst, int layer,
                         const std::vector<int32_t>& src_pages, const std::vector<int32_t>& dst_pages, size_t first,
                         size_t last, std::vector<kv::Copy>& out);

// Whether the UCX_TLS value names a shared-memory transport that UCX 1.13 cannot run with
// peer-failure detection (posix, sysv, sm, or everything when it is empty or "all").
bool tls_needs_no_peer_failure(std::string_view tls);

}  // namespace pdctl::pd
