// Contract tests of the transfer engine between real processes: a write is complete only
// when its bytes are visible at the peer; a notice arrives after the data; a dead or stuck
// peer fails operations with a status within a bound instead of hanging them.
#include <doctest/doctest.h>

#include <cstdlib>
#include <cstring>
#include <memory>
#include <vector>

#include "kv/transfer_engine.h"
#include "kv_test_util.h"

using namespace pdctl;
using namespace pdctl::kv;
using namespace pdctl::kv::test;

namespace {

constexpr std::byte kUntouched{0xEE};

// The two transports the tests run over. UCX 1.13 can detect a dead peer only on
// transports with peer-failure support, which its posix/sysv shared memory lacks (with it
// requested, "posix,cma" fails: "no active messages transport ... posix/memory - no peer
// failure handler"); so shared memory runs without it, and the engine's own same-host
// liveness check and timeouts stand in.
struct Transport {
  const char* name;
  const char* tls;
  bool ucx_peer_failure;
};
const Transport kSharedMemory{"shared memory", "posix,cma", false};
const Transport kTcp{"tcp", "tcp", true};

// The decode side's pool: for each layer a K and a V array of pages, a block per page.
struct KvLayout {
  uint32_t layers = 3;
  uint32_t pages = 16;
  uint64_t block = 4096;
  uint64_t size() const { return uint64_t(layers) * 2 * pages * block; }
  uint64_t offset(uint32_t layer, uint32_t kv, uint32_t page) const {
    return ((uint64_t(layer) * 2 + kv) * pages + page) * block;
  }
};

// The byte that a request's KV has at `offset` of the sender's pool: differs per request,
// layer, K/V, page and byte.
std::byte pattern(uint32_t request, uint64_t offset) {
  return std::byte((offset * 131 + (offset >> 8) * 7 + (offset >> 16) * 3 + request * 29) & 0xff);
}

TransferOptions test_options(const Transport& t, const char* name) {
  TransferOptions o;
  o.name = name;
  o.transports = t.tls;
  o.peer_failure_detection = t.ucx_peer_failure;
  o.keepalive_interval = Ms(100);
  o.operation_timeout = Ms(10'000);
  o.shutdown_timeout = Ms(1'000);
  return o;
}

// Caller-owned, page-aligned memory for the sender's pool (the prefill side registers its
// own memory; the decode side lets UCX allocate).
struct AlignedBuffer {
  explicit AlignedBuffer(size_t n) : size(n), data(static_cast<std::byte*>(std::aligned_alloc(4096, (n + 4095) / 4096 * 4096))) {}
  ~AlignedBuffer() { std::free(data); }
  AlignedBuffer(const AlignedBuffer&) = delete;
  AlignedBuffer& operator=(const AlignedBuffer&) = delete;
  size_t size;
  std::byte* data;
};

std::unique_ptr<TransferEngine> make_engine(TransferOptions o) {
  auto e = TransferEngine::create(std::move(o));
  if (!e) {
    std::fprintf(stderr, "[child %d] TransferEngine::create: %s\n", int(getpid()), e.status().to_string().c_str());
    return nullptr;
  }
  return std::move(*e);
}

// ---------------------------------------------------------------- receiver side

// Registers a UCX-allocated pool of `pool_bytes`, sends its descriptor over `ch`, waits for
// one notice and runs `verify(pool, notice)`; reports its verdict over `ch` and waits for
// the sender's "bye" before shutting down.
int receiver(Channel& ch, const Transport& transports, uint64_t pool_bytes,
             const std::function<bool(const std::byte*, const std::string&)>& verify) {
  Inbox<std::string> messages;
  TransferOptions o = test_options(transports, "receiver");
  o.regions = {{nullptr, pool_bytes}};
  o.on_message = [&](std::string m) { messages.push(std::move(m)); };
  auto engine = make_engine(std::move(o));
  if (!engine) return 2;
  Region pool = engine->region(0);
  std::memset(pool.data, int(kUntouched), pool.size);
  if (!ch.send(engine->descriptor())) return 3;
  auto notice = messages.pop(Ms(10'000));
  if (!expect(notice.has_value(), "a notice within 10 s")) return 4;
  const bool ok = verify(pool.data, *notice);
  ch.send(ok ? "ok" : "bad");
  ch.recv(Ms(10'000));  // "bye": the sender is done with our memory
  engine->shutdown();
  return ok ? 0 : 5;
}

// Sends its descriptor and stays up until killed (or 20 s pass).
int passive_receiver(Channel& ch, const Transport& transports, uint64_t pool_bytes) {
  TransferOptions o = test_options(transports, "receiver");
  o.regions = {{nullptr, pool_bytes}};
  auto engine = make_engine(std::move(o));
  if (!engine) return 2;
  if (!ch.send(engine->descriptor())) return 3;
  ch.recv(Ms(20'000));
  return 0;
}

// ---------------------------------------------------------------- sender side

struct Sender {
  std::unique_ptr<AlignedBuffer> pool;
  std::unique_ptr<TransferEngine> engine;
  Inbox<TransferResult> results;
  Inbox<PeerEvent> events;
  PeerId peer = 0;

  bool start(Channel& ch, TransferOptions o, uint64_t pool_bytes) {
    pool = std::make_unique<AlignedBuffer>(pool_bytes);
    o.regions = {{pool->data, pool_bytes}};
    o.on_peer_event = [this](const PeerEvent& ev) { events.push(ev); };
    engine = make_engine(std::move(o));
    if (!engine) return false;
    auto desc = ch.recv(Ms(10'000));
    if (!expect(desc.has_value(), "the receiver's descriptor")) return false;
    auto id = engine->add_peer(*desc);
    if (!expect(id.has_value(), "add_peer: " + id.status().to_string())) return false;
    peer = *id;
    return true;
  }
  Completion to_inbox() {
    return [this](const TransferResult& r) { results.push(r); };
  }
  // Submits and waits for the completion.
  std::optional<TransferResult> write(WriteRequest req, Ms timeout = Ms(10'000)) {
    req.peer = peer;
    Status st = engine->write(std::move(req), to_inbox());
    if (!expect(st.is_ok(), "write accepted: " + st.to_string())) return std::nullopt;
    auto r = results.pop(timeout);
    expect(r.has_value(), "a completion within " + std::to_string(timeout.count()) + " ms");
    return r;
  }
};

// ---------------------------------------------------------------- scattered pages + notice

// Prefill's page table (sender pages) and decode's (receiver pages) for one request: some
// runs are consecutive on both sides (they merge), some not.
const std::vector<uint32_t> kSrcPages = {0, 1, 2, 3, 4, 5, 6, 7, 8, 9};
const std::vector<uint32_t> kDstPages = {3, 4, 5, 6, 9, 11, 12, 0, 14, 15};
// Per (layer, K|V): runs {3,4,5,6} {9} {11,12} {0} {14,15} -> 5 puts.
constexpr uint32_t kPutsPerLayerKv = 5;
constexpr uint32_t kRequest = 7;
const std::string kNotice = "room 7 complete, first token 42";

bool verify_scattered(const KvLayout& kv, const std::byte* pool, const std::string& notice) {
  bool ok = expect(notice == kNotice, "the notice text");
  std::vector<int> src_of_dst(kv.pages, -1);
  for (size_t i = 0; i < kDstPages.size(); ++i) src_of_dst[kDstPages[i]] = int(kSrcPages[i]);
  for (uint32_t l = 0; l < kv.layers; ++l) {
    for (uint32_t h = 0; h < 2; ++h) {
      for (uint32_t p = 0; p < kv.pages; ++p) {
        const std::byte* blk = pool + kv.offset(l, h, p);
        for (uint64_t i = 0; i < kv.block; ++i) {
          std::byte want = src_of_dst[p] < 0 ? kUntouched : pattern(kRequest, kv.offset(l, h, uint32_t(src_of_dst[p])) + i);
          if (blk[i] != want) {
            return expect(false, "byte " + std::to_string(i) + " of block (layer " + std::to_string(l) + ", " +
                                     (h ? "V" : "K") + ", page " + std::to_string(p) + ")");
          }
        }
      }
    }
  }
  return ok;
}

int scattered_sender(Channel& ch, const Transport& transports) {
  KvLayout kv;
  Sender s;
  if (!s.start(ch, test_options(transports, "sender"), kv.size())) return 2;
  for (uint64_t i = 0; i < kv.size(); ++i) s.pool->data[i] = pattern(kRequest, i);

  WriteRequest req;
  for (uint32_t l = 0; l < kv.layers; ++l) {
    for (uint32_t h = 0; h < 2; ++h) {
      for (size_t i = 0; i < kSrcPages.size(); ++i) {
        req.copies.push_back({kv.offset(l, h, kSrcPages[i]), kv.offset(l, h, kDstPages[i]), kv.block});
      }
    }
  }
  req.notice = kNotice;
  auto r = s.write(std::move(req));
  if (!r) return 3;
  bool ok = expect(r->status.is_ok(), "write: " + r->status.to_string());
  ok &= expect(r->puts == kv.layers * 2 * kPutsPerLayerKv, "puts: " + std::to_string(r->puts));
  ok &= expect(r->bytes == kv.layers * 2 * kSrcPages.size() * kv.block, "bytes");
  auto verdict = ch.recv(Ms(10'000));
  ok &= expect(verdict == std::optional<std::string>("ok"), "the receiver found every byte in place");
  const TransferCounters c = s.engine->counters();
  ok &= expect(c.writes_completed == 1 && c.puts == r->puts && c.messages_sent == 1, "counters");
  ch.send("bye");
  return ok ? 0 : 4;
}

void run_pair(const std::function<int(Channel&)>& recv_body, const std::function<int(Channel&)>& send_body,
              Ms timeout = Ms(20'000)) {
  auto [a, b] = Channel::pair();
  Child r = Child::spawn([&] { return recv_body(a); });
  Child s = Child::spawn([&] { return send_body(b); });
  CHECK(s.wait(timeout) == 0);
  CHECK(r.wait(timeout) == 0);
}

}  // namespace

TEST_CASE("scattered KV pages land byte-exact before the notice") {
  for (const Transport& tls : {kSharedMemory, kTcp}) {
    CAPTURE(tls.name);
    KvLayout kv;
    run_pair([&](Channel& ch) { return receiver(ch, tls, kv.size(), [&](const std::byte* p, const std::string& n) {
                 return verify_scattered(kv, p, n);
               }); },
             [&](Channel& ch) { return scattered_sender(ch, tls); });
  }
}

TEST_CASE("a long contiguous run goes as puts of at most max_put_bytes") {
  // 5 MiB + 100 bytes in one run: 6 puts of <= 1 MiB over TCP.
  constexpr uint64_t kMiB = uint64_t{1} << 20;
  constexpr uint64_t kLen = 5 * kMiB + 100;
  constexpr uint64_t kSrcOff = 4096, kDstOff = 8192;
  const uint64_t pool = 6 * kMiB;
  run_pair(
      [&](Channel& ch) {
        return receiver(ch, kTcp, pool, [&](const std::byte* p, const std::string&) {
          for (uint64_t i = 0; i < pool; ++i) {
            const bool inside = i >= kDstOff && i < kDstOff + kLen;
            if (p[i] != (inside ? pattern(1, i - kDstOff + kSrcOff) : kUntouched)) {
              return expect(false, "byte " + std::to_string(i));
            }
          }
          return true;
        });
      },
      [&](Channel& ch) {
        Sender s;
        TransferOptions o = test_options(kTcp, "sender");
        o.max_put_bytes = kMiB;
        if (!s.start(ch, o, pool)) return 2;
        for (uint64_t i = 0; i < pool; ++i) s.pool->data[i] = pattern(1, i);
        WriteRequest req;
        req.copies = {{kSrcOff, kDstOff, kLen}};
        req.notice = "done";
        auto r = s.write(std::move(req));
        if (!r) return 3;
        bool ok = expect(r->status.is_ok(), r->status.to_string());
        ok &= expect(r->puts == 6, "6 puts, got " + std::to_string(r->puts));
        ok &= expect(ch.recv(Ms(10'000)) == std::optional<std::string>("ok"), "receiver verdict");
        ch.send("bye");
        return ok ? 0 : 4;
      });
}

namespace {

// Keeps two writes of 64 scattered 64 KiB blocks in flight; after three have completed it
// kills the receiver with SIGKILL, then expects a write to fail within `bound`, the peer to
// be reported failed, and any later write to fail fast.
int write_until_peer_dies(Channel& ch, const Transport& transports, pid_t victim, uint64_t pool_bytes) {
  constexpr uint64_t kBlock = 64 << 10;
  constexpr uint32_t kBlocks = 64;
  const Ms bound(5'000);
  Sender s;
  if (!s.start(ch, test_options(transports, "sender"), pool_bytes)) return 2;
  auto make = [&] {
    WriteRequest req;
    for (uint32_t i = 0; i < kBlocks; ++i) req.copies.push_back({i * kBlock, 2 * i * kBlock, kBlock});
    return req;
  };
  auto submit = [&] {
    WriteRequest req = make();
    req.peer = s.peer;
    return s.engine->write(std::move(req), s.to_inbox());
  };
  int in_flight = 0, ok_writes = 0;
  for (; in_flight < 2; ++in_flight) {
    if (!expect(submit().is_ok(), "submit")) return 3;
  }
  std::optional<std::chrono::steady_clock::time_point> killed_at;
  Status failure;
  while (failure.is_ok()) {
    auto r = s.results.pop(Ms(10'000));
    if (!expect(r.has_value(), "a completion (no hang)")) return 4;
    --in_flight;
    if (r->status.is_ok()) {
      if (++ok_writes == 3) {
        ::kill(victim, SIGKILL);
        killed_at = std::chrono::steady_clock::now();
      }
      if (killed_at && std::chrono::steady_clock::now() - *killed_at > bound) {
        expect(false, "writes still succeed long after the peer died");
        return 5;
      }
      if (!expect(submit().is_ok(), "submit")) return 3;
      ++in_flight;
    } else {
      failure = r->status;
    }
  }
  bool ok = expect(killed_at.has_value(), "failed only after the kill: " + failure.to_string());
  ok &= expect(failure.code() == Errc::kUnavailable, "kUnavailable, got " + failure.to_string());
  // The other write in flight fails as well.
  while (in_flight-- > 0) {
    auto r = s.results.pop(bound);
    ok &= expect(r.has_value() && !r->status.is_ok(), "the other in-flight write fails too");
  }
  // The peer is reported failed.
  bool saw_failed = false;
  while (auto ev = s.events.pop(Ms(1'000))) {
    if (ev->state == PeerState::kFailed) saw_failed = true;
    if (saw_failed) break;
  }
  ok &= expect(saw_failed, "a kFailed peer event");
  // Later writes fail fast.
  const auto t0 = std::chrono::steady_clock::now();
  auto r = s.write(make(), Ms(1'000));
  ok &= expect(r && r->status.code() == Errc::kUnavailable, "a later write fails fast with kUnavailable");
  ok &= expect(std::chrono::steady_clock::now() - t0 < Ms(500), "fast");
  const auto t1 = std::chrono::steady_clock::now();
  s.engine->shutdown();
  ok &= expect(std::chrono::steady_clock::now() - t1 < Ms(3'000), "shutdown within its bound");
  std::fprintf(stderr, "[%s] peer death noticed %lld ms after SIGKILL: %s\n", transports.name,
               (long long)std::chrono::duration_cast<Ms>(std::chrono::steady_clock::now() - *killed_at).count(),
               failure.to_string().c_str());
  return ok ? 0 : 6;
}

}  // namespace

TEST_CASE("a peer killed mid-stream fails pending writes within a bound, and later ones fast") {
  for (const Transport& tls : {kSharedMemory, kTcp}) {
    CAPTURE(tls.name);
    const uint64_t pool = 16 << 20;
    auto [a, b] = Channel::pair();
    Child r = Child::spawn([&] { return passive_receiver(a, tls, pool); });
    const pid_t victim = r.pid();
    Child s = Child::spawn([&] { return write_until_peer_dies(b, tls, victim, pool); });
    CHECK(s.wait(Ms(20'000)) == 0);
    CHECK(r.wait(Ms(5'000)) == 128 + SIGKILL);
  }
}
