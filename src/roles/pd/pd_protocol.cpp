#include "roles/pd/pd_protocol.h"

#include <array>

#include <fmt/format.h>

namespace pdctl::pd {

using nlohmann::json;

namespace {

Result<json> parse_object(std::string_view body, const char* what) {
  json j = json::parse(body, nullptr, /*allow_exceptions=*/false);
  if (!j.is_object()) return Status::invalid_argument(fmt::format("{}: the body is not a JSON object", what));
  return j;
}

// Reads a field with the right JSON type, or records why not.
template <class T>
bool get(const json& j, const char* key, T& out, Status& err) {
  if (!err.is_ok()) return false;
  auto it = j.find(key);
  if (it == j.end()) {
    err = Status::invalid_argument(fmt::format("'{}' is missing", key));
    return false;
  }
  bool ok = false;
  if constexpr (std::is_same_v<T, std::string>) {
    ok = it->is_string();
  } else if constexpr (std::is_same_v<T, bool>) {
    ok = it->is_boolean();
  } else if constexpr (std::is_floating_point_v<T>) {
    ok = it->is_number();
  } else if constexpr (std::is_unsigned_v<T>) {
    ok = it->is_number_unsigned() || (it->is_number_integer() && it->template get<int64_t>() >= 0);
  } else {
    ok = it->is_number_integer();
  }
  if (!ok) {
    err = Status::invalid_argument(fmt::format("'{}' has the wrong type", key));
    return false;
  }
  out = it->template get<T>();
  return true;
}

Result<kv::KvDType> dtype_from_name(const std::string& s) {
  for (kv::KvDType t : {kv::KvDType::kF32, kv::KvDType::kF16, kv::KvDType::kBF16}) {
    if (s == kv::kv_dtype_name(t)) return t;
  }
  return Status::invalid_argument(fmt::format("unknown KV dtype '{}'", s));
}

}  // namespace

json layout_to_json(const KvLayout& l) {
  return json{{"vocab_size", l.vocab_size},     {"hidden_size", l.hidden_size}, {"num_layers", l.num_layers},
              {"page_size", l.page_size},       {"num_kv_heads", l.num_kv_heads}, {"head_dim", l.head_dim},
              {"dtype", kv::kv_dtype_name(l.dtype)}, {"num_pages", l.num_pages}};
}

Result<KvLayout> layout_from_json(const json& j) {
  if (!j.is_object()) return Status::invalid_argument("'layout' is not an object");
  KvLayout l;
  Status err;
  std::string dtype;
  get(j, "vocab_size", l.vocab_size, err);
  get(j, "hidden_size", l.hidden_size, err);
  get(j, "num_layers", l.num_layers, err);
  get(j, "page_size", l.page_size, err);
  get(j, "num_kv_heads", l.num_kv_heads, err);
  get(j, "head_dim", l.head_dim, err);
  get(j, "dtype", dtype, err);
  get(j, "num_pages", l.num_pages, err);
  PDCTL_RETURN_IF_ERROR(err.with_context("layout"));
  PDCTL_ASSIGN_OR_RETURN(l.dtype, dtype_from_name(dtype));
  PDCTL_RETURN_IF_ERROR(geometry_of(l).validate().with_context("layout"));
  return l;
}

Status check_layout(const KvLayout& p, const KvLayout& d) {
  auto differ = [](const char* name, const auto& a, const auto& b) {
    return Status::invalid_argument(
        fmt::format("KV layout mismatch: {} is {} on prefill, {} on decode (run the same model with the same "
                    "--page-size and --kv-cache-dtype on both)",
                    name, a, b));
  };
  if (p.vocab_size != d.vocab_size) return differ("vocab_size", p.vocab_size, d.vocab_size);
  if (p.hidden_size != d.hidden_size) return differ("hidden_size", p.hidden_size, d.hidden_size);
  if (p.num_layers != d.num_layers) return differ("num_layers", p.num_layers, d.num_layers);
  if (p.page_size != d.page_size) return differ("page_size", p.page_size, d.page_size);
  if (p.num_kv_heads != d.num_kv_heads) return differ("num_kv_heads", p.num_kv_heads, d.num_kv_heads);
  if (p.head_dim != d.head_dim) return differ("head_dim", p.head_dim, d.head_dim);
  if (p.dtype != d.dtype) return differ("dtype", kv::kv_dtype_name(p.dtype), kv::kv_dtype_name(d.dtype));
  return Status::ok();
}

kv::KvGeometry geometry_of(const KvLayout& l) {
  kv::KvGeometry g;
  g.num_layers = l.num_layers;
  g.num_pages = l.num_pages;
  g.page_size = l.page_size;
  g.num_kv_heads = l.num_kv_heads;
  g.head_dim = l.head_dim;
  g.dtype = l.dtype;
  return g;
}

std::string encode_connect(const ConnectRequest& r) {
  return json{{"decode_id", r.decode_id}, {"descriptor", base64_encode(r.descriptor)}, {"layout", layout_to_json(r.layout)}}
      .dump();
}

Result<ConnectRequest> decode_connect(std::string_view body) {
  PDCTL_ASSIGN_OR_RETURN(json j, parse_object(body, "connect"));
  ConnectRequest r;
  Status err;
  std::string desc;
  get(j, "decode_id", r.decode_id, err);
  get(j, "descriptor", desc, err);
  PDCTL_RETURN_IF_ERROR(err);
  if (!j.contains("layout")) return Status::invalid_argument("'layout' is missing");
  PDCTL_ASSIGN_OR_RETURN(r.layout, layout_from_json(j["layout"]));
  PDCTL_ASSIGN_OR_RETURN(r.descriptor, base64_decode(desc));
  return r;
}

std::string encode_register(const RegisterRequest& r) {
  return json{{"decode_id", r.decode_id}, {"room", r.room},   {"epoch", r.epoch},
              {"prompt_len", r.prompt_len}, {"prompt_hash", r.prompt_hash}, {"pages", r.pages}}
      .dump();
}

Result<RegisterRequest> decode_register(std::string_view body) {
  PDCTL_ASSIGN_OR_RETURN(json j, parse_object(body, "register"));
  RegisterRequest r;
  Status err;
  get(j, "decode_id", r.decode_id, err);
  get(j, "room", r.room, err);
  get(j, "epoch", r.epoch, err);
  get(j, "prompt_len", r.prompt_len, err);
  get(j, "prompt_hash", r.prompt_hash, err);
  PDCTL_RETURN_IF_ERROR(err);
  auto it = j.find("pages");
  if (it == j.end() || !it->is_array()) return Status::invalid_argument("'pages' is missing or not a list");
  r.pages.reserve(it->size());
  for (const json& p : *it) {
    if (!p.is_number_integer() || p.get<int64_t>() < 0 || p.get<int64_t>() > INT32_MAX) {
      return Status::invalid_argument("'pages' holds something that is not a page id");
    }
    r.pages.push_back(p.get<int32_t>());
  }
  return r;
}

std::string encode_cancel(const CancelRequest& r) {
  return json{{"decode_id", r.decode_id}, {"room", r.room}, {"epoch", r.epoch}}.dump();
}

Result<CancelRequest> decode_cancel(std::string_view body) {
  PDCTL_ASSIGN_OR_RETURN(json j, parse_object(body, "cancel"));
  CancelRequest r;
  Status err;
  get(j, "decode_id", r.decode_id, err);
  get(j, "room", r.room, err);
  get(j, "epoch", r.epoch, err);
  PDCTL_RETURN_IF_ERROR(err);
  return r;
}

std::string encode_notice(const Notice& n) {
  json j{{"room", n.room}, {"epoch", n.epoch}, {"ok", n.ok}};
  if (n.ok) {
    j["token"] = n.token;
    j["logprob"] = n.logprob;
  } else {
    j["error"] = n.error;
  }
  return j.dump(-1, ' ', false, json::error_handler_t::replace);
}

Result<Notice> decode_notice(std::string_view body) {
  PDCTL_ASSIGN_OR_RETURN(json j, parse_object(body, "notice"));
  Notice n;
  Status err;
  get(j, "room", n.room, err);
  get(j, "epoch", n.epoch, err);
  get(j, "ok", n.ok, err);
  if (n.ok) {
    get(j, "token", n.token, err);
    get(j, "logprob", n.logprob, err);
  } else {
    get(j, "error", n.error, err);
  }
  PDCTL_RETURN_IF_ERROR(err);
  return n;
}

uint64_t prompt_hash(const std::vector<int32_t>& ids) {
  uint64_t h = 1469598103934665603ull;
  for (int32_t id : ids) {
    auto v = static_cast<uint32_t>(id);
    for (int k = 0; k < 4; ++k) {
      h ^= (v >> (8 * k)) & 0xffu;
      h *= 1099511628211ull;
    }
  }
  return h;
}

namespace {
constexpr char kB64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
}

std::string base64_encode(std::string_view in) {
  std::string out;
  out.reserve((in.size() + 2) / 3 * 4);
  size_t i = 0;
  for (; i + 3 <= in.size(); i += 3) {
    const uint32_t v = (uint32_t(uint8_t(in[i])) << 16) | (uint32_t(uint8_t(in[i + 1])) << 8) | uint8_t(in[i + 2]);
    out += kB64[v >> 18];
    out += kB64[(v >> 12) & 63];
    out += kB64[(v >> 6) & 63];
    out += kB64[v & 63];
  }
  if (const size_t rest = in.size() - i; rest > 0) {
    uint32_t v = uint32_t(uint8_t(in[i])) << 16;
    if (rest == 2) v |= uint32_t(uint8_t(in[i + 1])) << 8;
    out += kB64[v >> 18];
    out += kB64[(v >> 12) & 63];
    out += rest == 2 ? kB64[(v >> 6) & 63] : '=';
    out += '=';
  }
  return out;
}

Result<std::string> base64_decode(std::string_view in) {
  std::array<int, 256> map;
  map.fill(-1);
  for (int i = 0; i < 64; ++i) map[static_cast<uint8_t>(kB64[i])] = i;
  if (in.size() % 4 != 0) return Status::corrupt("base64: the length is not a multiple of 4");
  std::string out;
  out.reserve(in.size() / 4 * 3);
  for (size_t i = 0; i < in.size(); i += 4) {
    int v[4];
    int pad = 0;
    for (int k = 0; k < 4; ++k) {
      const char c = in[i + k];
      if (c == '=' && i + 4 == in.size() && k >= 2) {
        v[k] = 0;
        ++pad;
        continue;
      }
      if (pad > 0 || (v[k] = map[static_cast<uint8_t>(c)]) < 0) return Status::corrupt("base64: a bad character");
    }
    const uint32_t w = (uint32_t(v[0]) << 18) | (uint32_t(v[1]) << 12) | (uint32_t(v[2]) << 6) | uint32_t(v[3]);
    out += static_cast<char>(w >> 16);
    if (pad < 2) out += static_cast<char>((w >> 8) & 255);
    if (pad < 1) out += static_cast<char>(w & 255);
  }
  return out;
}

void append_layer_copies(const kv::KvGeometry& src, const kv::KvGeometry& dst, int layer,
                         const std::vector<int32_t>& src_pages, const std::vector<int32_t>& dst_pages, size_t first,
                         size_t last, std::vector<kv::Copy>& out) {
  const uint64_t len = src.block_bytes();
  for (kv::KvPart part : {kv::KvPart::kK, kv::KvPart::kV}) {
    for (size_t i = first; i < last; ++i) {
      out.push_back(kv::Copy{src.block_offset(layer, part, src_pages[i]), dst.block_offset(layer, part, dst_pages[i]),
                             len});
    }
  }
}

bool tls_needs_no_peer_failure(std::string_view tls) {
  auto has = [&](std::string_view name) {
    size_t pos = 0;
    while (pos <= tls.size()) {
      size_t end = tls.find(',', pos);
      if (end == std::string_view::npos) end = tls.size();
      std::string_view item = tls.substr(pos, end - pos);
      if (!item.empty() && item.front() == '^') return false;  // an exclusion list: UCX picks
      if (item == name || item.substr(0, name.size() + 1) == std::string(name) + ":") return true;
      pos = end + 1;
    }
    return false;
  };
  const bool shm = has("sm") || has("shm") || has("posix") || has("sysv");
  const bool am_with_errors = has("tcp") || has("rc") || has("rc_x") || has("rc_v") || has("ud") || has("ud_x") ||
                              has("dc") || has("dc_x") || has("ib") || has("all");
  return shm && !am_with_errors;
}

}  // namespace pdctl::pd
