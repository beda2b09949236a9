#include "roles/bench/bench_driver.h"

#include <sys/resource.h>

#include <algorithm>
#include <cmath>
#include <csignal>
#include <cstdio>
#include <limits>
#include <memory>

#include <spdlog/spdlog.h>
#include <uv.h>

#include "net/event_loop.h"
#include "net/http_client.h"
#include "net/sse.h"
#include "roles/bench/bench_schedule.h"
#include "roles/bench/bench_stream.h"

namespace pdctl::roles {
namespace {

// The monotonic clock of every record, in seconds (only differences are used).
double now_s() { return static_cast<double>(uv_hrtime()) * 1e-9; }

// sglang's AIOHTTP_TIMEOUT: a request may take six hours (long outputs on a queued server).
constexpr std::chrono::milliseconds kRequestTimeout = std::chrono::hours(6);
// Connects can wait behind a full listen backlog when thousands start at once.
constexpr std::chrono::milliseconds kConnectTimeout = std::chrono::seconds(60);
// What is kept of an error answer's body for the record's error text.
constexpr size_t kMaxErrorBody = 16 * 1024;
// File descriptors kept for everything that is not a connection to the server.
constexpr rlim_t kSpareFds = 64;
// Connections without --max-concurrency. sglang opens one per request, which for a large
// --num-prompts at rate inf runs out of ephemeral ports (about 28,000) and passes any
// server's connection limit (pdctl serve's --max-connections is 4096); the requests beyond
// it wait for a connection in the client, and that wait counts in their latency, as a wait
// in the server's queue would.
constexpr size_t kDefaultMaxConnections = 4096;

// Raises the soft limit on open files to the hard one and returns how many connections
// fit under it: the default soft limit (1024) would cap a run without --max-concurrency.
size_t connection_budget() {
  rlimit lim{};
  if (getrlimit(RLIMIT_NOFILE, &lim) != 0) return 1024 - kSpareFds;
  if (lim.rlim_cur < lim.rlim_max) {
    rlimit raised = lim;
    raised.rlim_cur = lim.rlim_max == RLIM_INFINITY ? rlim_t{1} << 20 : lim.rlim_max;
    if (setrlimit(RLIMIT_NOFILE, &raised) == 0) lim = raised;
  }
  return lim.rlim_cur > 2 * kSpareFds ? static_cast<size_t>(lim.rlim_cur - kSpareFds) : 1;
}

class Driver;

// A request in flight. Slots are reused, so their buffers keep their capacity.
struct Slot {
  Driver* driver = nullptr;
  RequestRecord* rec = nullptr;
  bool warmup = false;
  bool active = false;
  int status = 0;            // of the response head; 0 until it came
  bool whole = false;        // read the answer as one body (not streamed, or not SSE)
  double now = 0;            // when the body piece being parsed was read
  net::RequestHandle handle;
  net::SseParser sse;
  std::string body;          // a non-streamed answer, or an error answer
};

class Driver {
 public:
  Driver(const DriverConfig& cfg, std::vector<PreparedRequest> requests, std::vector<double> arrivals_s)
      : cfg_(cfg),
        requests_(std::move(requests)),
        dispatcher_(std::move(arrivals_s), cfg.max_concurrency),
        records_(requests_.size()) {
    headers_ = cfg_.target.headers;
    headers_.add("Content-Type", "application/json");
    target_ = cfg_.target.prefix + cfg_.path;
  }

  DriverRun run(const PreparedRequest& warmup, int warmup_count) {
    net::EventLoop loop;
    loop_ = &loop;
    net::HttpClient client(loop, client_options(warmup_count));
    client_ = &client;
    net::Timer wake(loop);
    wake_ = &wake;
    net::SignalWatcher signals(loop, {SIGINT, SIGTERM}, [this](int sig) { interrupt(sig); });
    loop.post([&] { start_warmup(warmup, warmup_count); });
    loop.run();
    Status closed = loop.close();
    if (!closed) spdlog::warn("bench: closing the event loop: {}", closed.message());
    client_ = nullptr;
    wake_ = nullptr;
    loop_ = nullptr;

    DriverRun out;
    out.warmup = warmup_status_;
    out.finished = finished_;
    out.start_s = start_s_;
    out.duration_s = phase_ == Phase::kWarmup ? 0.0 : end_s_ - start_s_;
    out.interrupted = signal_ != 0;
    out.signal = signal_;
    out.records = std::move(records_);
    return out;
  }

  void on_head(Slot* s, const net::ResponseHead& head);
  void on_body(Slot* s, std::string_view bytes);
  void on_done(Slot* s, const Status& st);
  void feed_stream(Slot* s, std::string_view bytes);

 private:
  enum class Phase { kWarmup, kTimed, kDone };

  net::ClientOptions client_options(int warmup_count) const {
    net::ClientOptions o;
    size_t want = cfg_.max_concurrency ? static_cast<size_t>(*cfg_.max_concurrency)
                                       : std::min(requests_.size(), kDefaultMaxConnections);
    want = std::max({want, static_cast<size_t>(std::max(warmup_count, 0)), size_t{1}});
    const size_t budget = connection_budget();
    if (want > budget) {
      spdlog::warn("bench: {} connections would exceed the open-file limit; using {} (raise `ulimit -n`)",
                   want, budget);
      want = budget;
    }
    o.max_connections_per_upstream = want;
    // The dispatcher bounds what is in flight; what the pool cannot take at once waits in
    // its queue for as long as a request may take, and that wait counts in its latency.
    o.max_queued_per_upstream = std::numeric_limits<size_t>::max();
    o.queue_timeout = std::chrono::milliseconds(0);
    o.connect_timeout = kConnectTimeout;
    o.response_header_timeout = kRequestTimeout;
    o.idle_read_timeout = kRequestTimeout;
    return o;
  }

  Slot* take_slot() {
    if (free_.empty()) {
      slots_.push_back(std::make_unique<Slot>());
      slots_.back()->driver = this;
      return slots_.back().get();
    }
    Slot* s = free_.back();
    free_.pop_back();
    return s;
  }

  // Sends `body` for the record the slot points at (begin() already called).
  void issue(Slot* s, std::string body) {
    net::ClientRequest req;
    req.method = "POST";
    req.target = target_;
    req.headers = headers_;
    req.body = std::move(body);
    // A keep-alive connection the server closed while idle fails before any byte comes
    // back: the server never saw the request, so it is sent again on a new connection.
    req.retry_if_stale = true;
    s->status = 0;
    s->whole = !cfg_.stream;
    s->body.clear();
    s->sse = net::SseParser();
    s->active = true;
    net::ResponseHandlers h;
    // Each captures only the slot pointer: small enough for std::function's inline buffer.
    h.on_head = [s](const net::ResponseHead& head) { s->driver->on_head(s, head); };
    h.on_body = [s](std::string_view bytes) { s->driver->on_body(s, bytes); };
    h.on_done = [s](const Status& st) { s->driver->on_done(s, st); };
    s->handle = client_->request(cfg_.target.endpoint, std::move(req), std::move(h));
  }

  void start_warmup(const PreparedRequest& warmup, int count) {
    if (count <= 0) {
      start_timed();
      return;
    }
    spdlog::info("Starting warmup with {} sequences...", count);
    warmup_records_.resize(static_cast<size_t>(count));
    warmup_left_ = static_cast<size_t>(count);
    for (auto& rec : warmup_records_) {
      Slot* s = take_slot();
      s->rec = &rec;
      s->warmup = true;
      rec.begin(warmup.prompt_len, warmup.output_len, now_s(), cfg_.keep_text);
      issue(s, warmup.body);
    }
  }

  void after_warmup() {
    warmup_status_ = warmup_status(warmup_records_);
    if (!warmup_status_) {
      finish();
      return;
    }
    spdlog::info("Warmup completed with {} sequences. Starting main benchmark run...",
                 warmup_records_.size());
    start_timed();
  }

  void start_timed() {
    phase_ = Phase::kTimed;
    start_s_ = end_s_ = now_s();
    progress_.emplace(cfg_.progress, requests_.size(), start_s_);
    if (dispatcher_.done()) {
      finish();
      return;
    }
    pump();
  }

  // Sends every request the schedule allows now, then sets the timer for the next arrival
  // (none is needed while the next one waits for a free slot: a completion calls pump).
  void pump() {
    if (phase_ != Phase::kTimed) return;
    while (auto i = dispatcher_.next(now_s() - start_s_)) {
      Slot* s = take_slot();
      s->rec = &records_[*i];
      s->warmup = false;
      PreparedRequest& p = requests_[*i];
      s->rec->begin(p.prompt_len, p.output_len, now_s(), cfg_.keep_text);
      // One ITL per token (sglang's backend) at most: reserved once, not grown per token.
      if (cfg_.stream && p.output_len > 1) s->rec->itl_s.reserve(static_cast<size_t>(p.output_len - 1));
      issue(s, std::move(p.body));
    }
    auto at = dispatcher_.wake_at_s();
    if (!at) return;
    if (wake_->active() && wake_for_ == dispatcher_.sent()) return;
    // Timers count whole milliseconds from the loop's cached clock, so one may fire a
    // little early; pump then finds nothing due and sets it again (at least 1 ms later).
    const double wait_ms = (*at - (now_s() - start_s_)) * 1e3;
    const auto delay = std::chrono::milliseconds(std::max<int64_t>(1, static_cast<int64_t>(std::ceil(wait_ms))));
    wake_for_ = dispatcher_.sent();
    wake_->start(delay, [this] { pump(); });
  }

  void complete(Slot* s) {
    const double t = now_s();
    s->active = false;
    s->handle = net::RequestHandle();
    const bool warm = s->warmup;
    free_.push_back(s);
    if (warm) {
      if (--warmup_left_ == 0) after_warmup();
      return;
    }
    ++finished_;
    end_s_ = t;
    dispatcher_.on_finished();
    write_stderr(progress_->update(finished_, t));
    if (dispatcher_.done()) {
      finish();
      return;
    }
    pump();
  }

  void finish() {
    if (phase_ == Phase::kTimed) write_stderr(progress_->finish(finished_, now_s()));
    if (phase_ != Phase::kWarmup) phase_ = Phase::kDone;
    wake_->cancel();
    loop_->stop();
  }

  void interrupt(int sig) {
    if (signal_ != 0) return;
    signal_ = sig;
    if (phase_ == Phase::kTimed) end_s_ = now_s();
    if (phase_ == Phase::kWarmup) warmup_status_ = Status::cancelled("interrupted during the warmup");
    for (auto& s : slots_) {
      if (!s->active) continue;
      s->handle.cancel();  // its callbacks never run; the record stays unfinished
      s->active = false;
    }
    finish();
  }

  static void write_stderr(const std::string& text) {
    if (!text.empty()) std::fwrite(text.data(), 1, text.size(), stderr);
  }

  const DriverConfig& cfg_;
  std::vector<PreparedRequest> requests_;
  RequestDispatcher dispatcher_;
  std::vector<RequestRecord> records_;
  std::vector<RequestRecord> warmup_records_;
  net::Headers headers_;
  std::string target_;

  net::EventLoop* loop_ = nullptr;
  net::HttpClient* client_ = nullptr;
  net::Timer* wake_ = nullptr;
  size_t wake_for_ = 0;  // the arrival (dispatcher_.sent()) the timer is set for

  std::vector<std::unique_ptr<Slot>> slots_;
  std::vector<Slot*> free_;
  Phase phase_ = Phase::kWarmup;
  size_t warmup_left_ = 0;
  Status warmup_status_;
  std::optional<ProgressDisplay> progress_;
  size_t finished_ = 0;
  double start_s_ = 0;
  double end_s_ = 0;
  int signal_ = 0;
};

// Feeds streamed bytes to the slot's SSE parser and each event to the record.
void Driver::feed_stream(Slot* s, std::string_view bytes) {
  s->now = now_s();
  Status st = s->sse.feed(bytes, [s](const net::SseEvent& e) {
    on_stream_payload(s->driver->cfg_.backend, e.data, s->now, *s->rec);
  });
  if (!st) fail_request(*s->rec, st.message());
}

void Driver::on_head(Slot* s, const net::ResponseHead& head) {
  s->status = head.status;
  // A server that answers a streaming request with a plain JSON body (it ignored
  // "stream") is read as a whole answer rather than as an empty stream.
  std::string_view type = head.headers.get("Content-Type");
  s->whole = !cfg_.stream || type.substr(0, type.find(';')).find("event-stream") == std::string_view::npos;
}

void Driver::on_body(Slot* s, std::string_view bytes) {
  RequestRecord& rec = *s->rec;
  if (rec.finished) return;
  if (s->status != 200) {
    s->body.append(bytes.substr(0, kMaxErrorBody - std::min(kMaxErrorBody, s->body.size())));
    return;
  }
  if (s->whole) {
    s->body.append(bytes);
    return;
  }
  feed_stream(s, bytes);
  if (rec.finished) {
    // An error event, a malformed chunk or an oversized event: stop reading this answer.
    s->handle.cancel();
    complete(s);
  }
}

void Driver::on_done(Slot* s, const Status& st) {
  const double t = now_s();
  RequestRecord& rec = *s->rec;
  if (!rec.finished) {
    if (!st) {
      fail_request(rec, st.message());
    } else if (s->status != 200) {
      fail_http(rec, s->status, net::status_reason(s->status), s->body);
    } else if (!s->whole) {
      if (s->sse.has_partial()) feed_stream(s, "\n\n");  // a last event without its blank line
      finish_stream(rec);
    } else {
      on_full_response(cfg_.backend, s->body, t, rec);
    }
  }
  complete(s);
}

}  // namespace

DriverRun drive_requests(const DriverConfig& cfg, const PreparedRequest& warmup, int warmup_count,
                         std::vector<PreparedRequest> requests, std::vector<double> arrivals_s) {
  Driver driver(cfg, std::move(requests), std::move(arrivals_s));
  return driver.run(warmup, warmup_count);
}

}  // namespace pdctl::roles
