// The PD bootstrap protocol's pure parts: messages round-trip, the layout check names the
// field and both values, block copies address each side's own geometry.
#include <doctest/doctest.h>

#include "roles/pd/pd_protocol.h"

using namespace pdctl;
using namespace pdctl::pd;

namespace {

KvLayout layout() {
  KvLayout l;
  l.vocab_size = 512;
  l.hidden_size = 64;
  l.num_layers = 5;
  l.page_size = 16;
  l.num_kv_heads = 4;
  l.head_dim = 8;
  l.dtype = kv::KvDType::kF32;
  l.num_pages = 100;
  return l;
}

}  // namespace

TEST_CASE("base64 round-trips every length and refuses garbage") {
  std::string bytes;
  for (int i = 0; i < 300; ++i) {
    auto back = base64_decode(base64_encode(bytes));
    REQUIRE(back.has_value());
    CHECK(*back == bytes);
    bytes.push_back(static_cast<char>(i * 37));
  }
  CHECK(base64_encode("foob") == "Zm9vYg==");
  CHECK_FALSE(base64_decode("Zm9").has_value());
  CHECK_FALSE(base64_decode("Zm9*").has_value());
  CHECK_FALSE(base64_decode("Zg==Zg==").has_value());
}

TEST_CASE("connect, register, cancel and notices round-trip") {
  ConnectRequest c{"dec-1", std::string("\0\1\2binary", 9), layout()};
  auto c2 = decode_connect(encode_connect(c));
  REQUIRE(c2.has_value());
  CHECK(c2->decode_id == "dec-1");
  CHECK(c2->descriptor == c.descriptor);
  CHECK(c2->layout.num_pages == 100);
  CHECK(check_layout(c2->layout, layout()).is_ok());

  RegisterRequest r{"dec-1", (uint64_t{1} << 62) + 5, 7, 33, prompt_hash({1, 2, 3}), {4, 5, 6}};
  auto r2 = decode_register(encode_register(r));
  REQUIRE(r2.has_value());
  CHECK(r2->room == r.room);
  CHECK(r2->epoch == 7);
  CHECK(r2->prompt_len == 33);
  CHECK(r2->pages == std::vector<int32_t>{4, 5, 6});
  CHECK(r2->prompt_hash == prompt_hash({1, 2, 3}));
  CHECK(prompt_hash({1, 2, 3}) != prompt_hash({1, 2, 4}));
  CHECK_FALSE(decode_register(R"({"decode_id":"x","room":1,"epoch":1,"prompt_len":3,"prompt_hash":1,"pages":[-1]})").has_value());
  CHECK_FALSE(decode_register(R"({"decode_id":"x","room":1,"epoch":1,"prompt_len":3,"prompt_hash":1})").has_value());
  CHECK_FALSE(decode_register("[1]").has_value());

  auto x = decode_cancel(encode_cancel(CancelRequest{"d", 9, 2}));
  REQUIRE(x.has_value());
  CHECK(x->room == 9);

  Notice ok{12, 3, true, 417, -0.25f, ""};
  auto n = decode_notice(encode_notice(ok));
  REQUIRE(n.has_value());
  CHECK(n->ok);
  CHECK(n->token == 417);
  CHECK(n->logprob == doctest::Approx(-0.25));
  Notice bad{12, 3, false, 0, 0, "prefill died"};
  auto m = decode_notice(encode_notice(bad));
  REQUIRE(m.has_value());
  CHECK_FALSE(m->ok);
  CHECK(m->error == "prefill died");
  CHECK_FALSE(decode_notice("not json").has_value());
}

TEST_CASE("a layout mismatch names the field and both values") {
  KvLayout d = layout();
  d.page_size = 8;
  d.num_pages = 3;  // the pool's size may differ
  Status st = check_layout(layout(), d);
  REQUIRE_FALSE(st.is_ok());
  CHECK(st.message().find("page_size is 16 on prefill, 8 on decode") != std::string::npos);
  d = layout();
  d.dtype = kv::KvDType::kF16;
  st = check_layout(layout(), d);
  CHECK(st.message().find("dtype") != std::string::npos);
  d = layout();
  d.num_pages = 1;
  CHECK(check_layout(layout(), d).is_ok());
}

TEST_CASE("layer copies go from the sender's blocks to the receiver's") {
  const kv::KvGeometry src = geometry_of(layout());
  KvLayout dl = layout();
  dl.num_pages = 7;
  const kv::KvGeometry dst = geometry_of(dl);
  std::vector<kv::Copy> out;
  append_layer_copies(src, dst, 2, {10, 11, 40}, {0, 1, 6}, 1, 3, out);
  REQUIRE(out.size() == 4);  // pages 1 and 2, K and V
  CHECK(out[0] == kv::Copy{src.block_offset(2, kv::KvPart::kK, 11), dst.block_offset(2, kv::KvPart::kK, 1), src.block_bytes()});
  CHECK(out[1] == kv::Copy{src.block_offset(2, kv::KvPart::kK, 40), dst.block_offset(2, kv::KvPart::kK, 6), src.block_bytes()});
  CHECK(out[3] == kv::Copy{src.block_offset(2, kv::KvPart::kV, 40), dst.block_offset(2, kv::KvPart::kV, 6), src.block_bytes()});
}

TEST_CASE("which UCX_TLS values need peer-failure detection off") {
  CHECK(tls_needs_no_peer_failure("posix,cma,self"));
  CHECK(tls_needs_no_peer_failure("sm"));
  CHECK(tls_needs_no_peer_failure("sysv"));
  CHECK_FALSE(tls_needs_no_peer_failure("tcp"));
  CHECK_FALSE(tls_needs_no_peer_failure("posix,tcp"));
  CHECK_FALSE(tls_needs_no_peer_failure(""));
  CHECK_FALSE(tls_needs_no_peer_failure("^tcp"));
}
