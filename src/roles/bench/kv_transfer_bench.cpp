// `pdctl bench --kv-transfer`: the transfer engine alone, as nixlbench measures NIXL. The
// bench forks a receiving process (a decode worker's pool, UCX-allocated), then writes
// --total-bytes into it in blocks of --block-bytes, --kv-blocks-per-write blocks per write
// (each write is puts + flush, as one layer of one request would be), --kv-inflight writes
// at a time. Then it runs `ucx_perftest -t ucp_put_bw` with the same UCX_TLS and message
// size as the baseline, in the same run.
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <chrono>
#include <condition_variable>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <fstream>
#include <mutex>
#include <optional>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>

#include "kv/transfer_engine.h"
#include "roles/bench/benches.h"

namespace pdctl::roles {

namespace {

using Clock = std::chrono::steady_clock;
using kv::Copy;
using kv::TransferEngine;
using kv::TransferOptions;
using kv::TransferResult;

// ---------------------------------------------------------------- small owners

class Fd {
 public:
  explicit Fd(int fd = -1) : fd_(fd) {}
  Fd(Fd&& o) noexcept : fd_(std::exchange(o.fd_, -1)) {}
  Fd& operator=(Fd&& o) noexcept {
    if (this != &o) {
      reset();
      fd_ = std::exchange(o.fd_, -1);
    }
    return *this;
  }
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  ~Fd() { reset(); }
  int get() const { return fd_; }
  void reset() {
    if (fd_ >= 0) ::close(fd_);
    fd_ = -1;
  }

 private:
  int fd_;
};

// A child process that is killed and reaped if still running when this goes away.
class Process {
 public:
  Process() = default;
  explicit Process(pid_t pid) : pid_(pid), pidfd_(int(syscall(SYS_pidfd_open, pid, 0))) {}
  Process(Process&& o) noexcept : pid_(std::exchange(o.pid_, -1)), pidfd_(std::move(o.pidfd_)) {}
  Process& operator=(Process&& o) noexcept {
    if (this != &o) {
      kill_and_reap();
      pid_ = std::exchange(o.pid_, -1);
      pidfd_ = std::move(o.pidfd_);
    }
    return *this;
  }
  ~Process() { kill_and_reap(); }
  // Exit code, or nullopt if it did not exit within `timeout` (then it is killed).
  std::optional<int> wait(std::chrono::milliseconds timeout) {
    if (pid_ <= 0) return std::nullopt;
    int status = 0;
    if (pidfd_.get() >= 0) {
      pollfd p{pidfd_.get(), POLLIN, 0};
      if (::poll(&p, 1, int(timeout.count())) <= 0) {
        kill_and_reap();
        return std::nullopt;
      }
      waitpid(pid_, &status, 0);
    } else {
      // No pidfd (kernel before 5.3): poll waitpid, bounded by the same timeout.
      const auto deadline = Clock::now() + timeout;
      while (waitpid(pid_, &status, WNOHANG) != pid_) {
        if (Clock::now() > deadline) {
          kill_and_reap();
          return std::nullopt;
        }
        ::poll(nullptr, 0, 10);
      }
    }
    pid_ = -1;
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  }

 private:
  void kill_and_reap() {
    if (pid_ <= 0) return;
    ::kill(pid_, SIGKILL);
    waitpid(pid_, nullptr, 0);
    pid_ = -1;
  }
  pid_t pid_ = -1;
  Fd pidfd_;
};

// Length-prefixed messages over a socketpair, with deadlines.
bool send_msg(int fd, const std::string& m) {
  uint32_t n = uint32_t(m.size());
  std::string buf(reinterpret_cast<const char*>(&n), sizeof n);
  buf += m;
  for (size_t off = 0; off < buf.size();) {
    ssize_t w = ::send(fd, buf.data() + off, buf.size() - off, MSG_NOSIGNAL);
    if (w <= 0) return false;
    off += size_t(w);
  }
  return true;
}

std::optional<std::string> recv_msg(int fd, std::chrono::milliseconds timeout) {
  const auto deadline = Clock::now() + timeout;
  auto read_n = [&](char* p, size_t n) {
    while (n > 0) {
      auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count();
      pollfd pfd{fd, POLLIN, 0};
      if (left <= 0 || ::poll(&pfd, 1, int(left)) <= 0) return false;
      ssize_t r = ::recv(fd, p, n, 0);
      if (r <= 0) return false;
      p += r;
      n -= size_t(r);
    }
    return true;
  };
  uint32_t n = 0;
  if (!read_n(reinterpret_cast<char*>(&n), sizeof n)) return std::nullopt;
  std::string m(n, '\0');
  if (!read_n(m.data(), n)) return std::nullopt;
  return m;
}

template <class T>
class Inbox {
 public:
  void push(T v) {
    {
      std::lock_guard lock(mu_);
      q_.push_back(std::move(v));
    }
    cv_.notify_one();
  }
  std::optional<T> pop(std::chrono::milliseconds timeout) {
    std::unique_lock lock(mu_);
    if (!cv_.wait_for(lock, timeout, [&] { return !q_.empty(); })) return std::nullopt;
    T v = std::move(q_.front());
    q_.pop_front();
    return v;
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<T> q_;
};

// ---------------------------------------------------------------- the run

struct Plan {
  uint64_t block = 0;
  uint64_t blocks = 0;     // to move (measured)
  uint64_t slots = 0;      // blocks in each side's region; the run wraps around them
  bool scattered = true;
  uint32_t per_write = 1;
  uint32_t inflight = 1;
  // Destination slot of source slot j: scattered sends even j to slot 2j and odd ones into the
  // second half, so that no two consecutive source blocks are adjacent at the destination.
  uint64_t dest(uint64_t j) const {
    if (!scattered) return j;
    const uint64_t twice = 2 * j;
    return twice % slots + twice / slots;
  }
};

TransferOptions engine_options(const BenchOptions& o, const char* name) {
  TransferOptions t;
  t.name = name;
  t.transports = o.kv_transports;
  t.peer_failure_detection = o.kv_error_mode == "peer";
  t.max_put_bytes = uint64_t(o.kv_max_put_bytes);
  t.operation_timeout = std::chrono::seconds(60);
  return t;
}

// The receiving process: registers its pool, hands over the descriptor, stays up until the
// sender says so (or goes away).
[[noreturn]] void run_receiver(const BenchOptions& o, const Plan& plan, int fd) {
  prctl(PR_SET_PDEATHSIG, SIGKILL);
  TransferOptions t = engine_options(o, "kv-recv");
  t.regions = {{nullptr, plan.slots * plan.block}};
  auto engine = TransferEngine::create(std::move(t));
  if (!engine) {
    spdlog::error("receiver: {}", engine.status().to_string());
    send_msg(fd, "");
    _exit(1);
  }
  // Touch every page now, as a decode worker's pool would be, so that page faults are not
  // measured.
  std::memset((*engine)->region(0).data, 0, (*engine)->region(0).size);
  send_msg(fd, (*engine)->descriptor());
  recv_msg(fd, std::chrono::hours(24));  // "done", or EOF when the sender exits
  (*engine)->shutdown();
  _exit(0);
}

struct Measured {
  double seconds = 0;
  uint64_t bytes = 0;
  uint64_t writes = 0;
  uint64_t puts = 0;
  std::vector<double> latency_us;
  std::string transports;
};

double percentile(std::vector<double> v, double p) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  size_t i = size_t(p / 100.0 * double(v.size() - 1) + 0.5);
  return v[std::min(i, v.size() - 1)];
}

Result<Measured> run_sender(const BenchOptions& o, const Plan& plan, int fd) {
  const uint64_t region_bytes = plan.slots * plan.block;
  std::vector<std::byte> src(region_bytes);
  for (uint64_t i = 0; i < region_bytes; ++i) src[i] = std::byte(i * 131 % 251);

  // Callback targets before the engine: its shutdown (or destruction) runs the last callbacks.
  Inbox<kv::PeerEvent> events;
  Inbox<TransferResult> results;
  TransferOptions t = engine_options(o, "kv-send");
  t.regions = {{src.data(), region_bytes}};
  t.on_peer_event = [&](const kv::PeerEvent& ev) { events.push(ev); };
  PDCTL_ASSIGN_OR_RETURN(auto engine, TransferEngine::create(std::move(t)));
  auto desc = recv_msg(fd, std::chrono::seconds(60));
  if (!desc || desc->empty()) return Status::unavailable("the receiving process did not start its engine");
  PDCTL_ASSIGN_OR_RETURN(kv::PeerId peer, engine->add_peer(*desc));

  auto done = [&](const TransferResult& r) { results.push(r); };
  uint64_t next_block = 0;
  auto submit = [&]() -> Status {
    kv::WriteRequest w;
    w.peer = peer;
    for (uint32_t k = 0; k < plan.per_write; ++k, ++next_block) {
      const uint64_t j = next_block % plan.slots;
      w.copies.push_back({j * plan.block, plan.dest(j) * plan.block, plan.block});
    }
    return engine->write(std::move(w), done);
  };
  // Runs `blocks` blocks through the engine with `inflight` writes outstanding.
  auto pump = [&](uint64_t writes, Measured* m) -> Status {
    uint64_t submitted = 0, completed = 0;
    for (; submitted < std::min<uint64_t>(writes, plan.inflight); ++submitted) PDCTL_RETURN_IF_ERROR(submit());
    while (completed < writes) {
      auto r = results.pop(std::chrono::seconds(120));
      if (!r) return Status::timeout("no write completed within 120 s");
      if (!r->status) return r->status;
      ++completed;
      if (m) {
        m->bytes += r->bytes;
        m->puts += r->puts;
        m->latency_us.push_back(double(r->latency.count()) / 1e3);
      }
      if (submitted < writes) {
        PDCTL_RETURN_IF_ERROR(submit());
        ++submitted;
      }
    }
    return Status::ok();
  };

  Measured m;
  // Warm-up (not measured): wire-up, and one pass over every destination block.
  PDCTL_RETURN_IF_ERROR(pump((plan.slots + plan.per_write - 1) / plan.per_write, nullptr).with_context("warm-up"));
  while (auto ev = events.pop(std::chrono::milliseconds(0))) {
    if (ev->state == kv::PeerState::kReady) m.transports = ev->transports;
  }
  if (m.transports.empty()) m.transports = engine->peer_transports(peer);

  const uint64_t writes = (plan.blocks + plan.per_write - 1) / plan.per_write;
  next_block = 0;
  const auto t0 = Clock::now();
  PDCTL_RETURN_IF_ERROR(pump(writes, &m));
  m.seconds = std::chrono::duration<double>(Clock::now() - t0).count();
  m.writes = writes;
  send_msg(fd, "done");
  engine->shutdown();
  return m;
}

// ---------------------------------------------------------------- ucx_perftest baseline

uint16_t free_port() {
  Fd s(::socket(AF_INET, SOCK_STREAM, 0));
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof a;
  if (::bind(s.get(), reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 ||
      ::getsockname(s.get(), reinterpret_cast<sockaddr*>(&a), &len) != 0) {
    return 13337;
  }
  return ntohs(a.sin_port);
}

// True once something listens on 127.0.0.1:port or 0.0.0.0:port (read from /proc/net/tcp,
// without connecting: ucx_perftest's server takes the first connection as its client).
bool listening(uint16_t port) {
  std::ifstream in("/proc/net/tcp");
  std::string line;
  char want[8];
  std::snprintf(want, sizeof want, ":%04X", port);
  std::getline(in, line);
  while (std::getline(in, line)) {
    std::istringstream f(line);
    std::string sl, local, remote, state;
    f >> sl >> local >> remote >> state;
    if (state == "0A" && local.size() >= 5 && local.compare(local.size() - 5, 5, want) == 0) return true;
  }
  return false;
}

Process spawn(const std::vector<std::string>& argv, const std::string& tls, int stdout_fd) {
  pid_t pid = fork();
  if (pid == 0) {
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (!tls.empty()) setenv("UCX_TLS", tls.c_str(), 1);
    int null = ::open("/dev/null", O_WRONLY);
    dup2(stdout_fd >= 0 ? stdout_fd : null, STDOUT_FILENO);
    dup2(null, STDERR_FILENO);
    std::vector<char*> args;
    for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
    args.push_back(nullptr);
    execvp(args[0], args.data());
    _exit(127);
  }
  return Process(pid);
}

// ucp_put_bw between two ucx_perftest processes; GB/s (10^9 bytes/s).
Result<double> run_perftest(const BenchOptions& o, const Plan& plan) {
  const uint16_t port = free_port();
  const std::string tls = o.kv_transports;
  const std::string iters = std::to_string(plan.blocks);
  const std::string warm = std::to_string(std::min<uint64_t>(plan.slots, 10000));
  Process server = spawn({o.kv_perftest, "-p", std::to_string(port)}, tls, -1);
  // ucx_perftest says nothing when it listens; look for its socket, up to 10 s. A bounded
  // retry against an external program, not a wait inside pdctl's own machinery.
  const auto deadline = Clock::now() + std::chrono::seconds(10);
  while (!listening(port)) {
    if (Clock::now() > deadline) return Status::unavailable("ucx_perftest's server did not listen within 10 s");
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  int pipefd[2];
  if (pipe(pipefd) != 0) return Status::io("pipe");
  Fd rd(pipefd[0]), wr(pipefd[1]);
  Process client = spawn({o.kv_perftest, "127.0.0.1", "-p", std::to_string(port), "-t", "ucp_put_bw", "-s",
                          std::to_string(plan.block), "-n", iters, "-w", warm, "-v"},
                         tls, wr.get());
  wr.reset();
  std::string out;
  char buf[4096];
  for (;;) {
    pollfd p{rd.get(), POLLIN, 0};
    if (::poll(&p, 1, 300'000) <= 0) return Status::timeout("ucx_perftest did not finish within 300 s");
    ssize_t n = ::read(rd.get(), buf, sizeof buf);
    if (n <= 0) break;
    out.append(buf, size_t(n));
  }
  auto rc = client.wait(std::chrono::seconds(10));
  server.wait(std::chrono::seconds(10));
  if (!rc || *rc != 0) {
    return Status::unavailable("ucx_perftest failed (exit " + (rc ? std::to_string(*rc) : std::string("timeout")) +
                               "); is it installed (ucx-utils) and does UCX_TLS allow a transport?");
  }
  // -v: CSV lines "iters,lat_typ,lat_avg,lat_overall,bw_avg,bw_overall,rate_avg,rate_overall",
  // bandwidth in MiB/s; the last such line is the final result.
  std::istringstream in(out);
  std::string line;
  double mib_s = -1;
  while (std::getline(in, line)) {
    std::vector<std::string> f;
    std::istringstream fs(line);
    for (std::string x; std::getline(fs, x, ',');) f.push_back(x);
    if (f.size() == 8 && !f[5].empty() && (std::isdigit(static_cast<unsigned char>(f[5][0])) != 0)) mib_s = std::stod(f[5]);
  }
  if (mib_s < 0) return Status::corrupt("could not read ucx_perftest's result");
  return mib_s * 1024.0 * 1024.0 / 1e9;
}

}  // namespace

int run_kv_transfer_bench(const BenchOptions& o) {
  Plan plan;
  plan.block = uint64_t(o.block_bytes);
  plan.blocks = std::max<uint64_t>(1, uint64_t(o.total_bytes) / plan.block);
  plan.scattered = o.kv_layout == "scattered";
  plan.per_write = uint32_t(o.kv_blocks_per_write);
  plan.inflight = uint32_t(o.kv_inflight);
  // Each side's region: up to --kv-region-bytes (the run wraps around it), at least one
  // write's worth of blocks, and an even number of blocks for the scattered mapping.
  plan.slots = std::min(plan.blocks, std::max<uint64_t>(uint64_t(o.kv_region_bytes) / plan.block, 1));
  plan.slots = std::max<uint64_t>(plan.slots, plan.per_write);
  plan.slots += plan.slots % 2;

  const char* env_tls = std::getenv("UCX_TLS");
  const std::string tls = !o.kv_transports.empty() ? o.kv_transports : env_tls ? env_tls : "(UCX default: all)";
  std::printf("KV transfer: %llu blocks of %llu B (%.1f MiB) %s, %u blocks/write, %u writes in flight\n",
              (unsigned long long)plan.blocks, (unsigned long long)plan.block,
              double(plan.blocks * plan.block) / (1 << 20), o.kv_layout.c_str(), plan.per_write, plan.inflight);
  std::printf("  UCX_TLS=%s, error mode %s, max put %lld B, regions of %llu blocks\n", tls.c_str(),
              o.kv_error_mode.c_str(), (long long)o.kv_max_put_bytes, (unsigned long long)plan.slots);
  std::fflush(stdout);

  int sv[2];
  if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0) {
    spdlog::error("socketpair: {}", std::strerror(errno));
    return 1;
  }
  Fd mine(sv[0]), theirs(sv[1]);
  // Fork before any UCX object exists in this process (UCX state does not survive a fork).
  pid_t pid = fork();
  if (pid == 0) {
    mine.reset();
    run_receiver(o, plan, theirs.get());
  }
  Process receiver(pid);
  theirs.reset();

  auto measured = run_sender(o, plan, mine.get());
  mine.reset();
  receiver.wait(std::chrono::seconds(10));
  if (!measured) {
    spdlog::error("kv-transfer bench: {}", measured.status().to_string());
    if (o.kv_error_mode == "peer") {
      spdlog::error("note: with --kv-error-mode peer UCX 1.13 cannot use posix/sysv shared memory "
                    "(\"no peer failure handler\"); try --kv-error-mode none or add tcp to UCX_TLS");
    }
    return 1;
  }
  const Measured& m = *measured;
  const double gbps = double(m.bytes) / m.seconds / 1e9;
  double mean = 0;
  for (double l : m.latency_us) mean += l;
  mean /= double(std::max<size_t>(1, m.latency_us.size()));
  const double p50 = percentile(m.latency_us, 50), p99 = percentile(m.latency_us, 99);
  std::printf("  UCX chose: %s\n", m.transports.c_str());
  std::printf("  pdctl:        %8.3f GB/s  (%llu writes, %llu puts, %.3f s)\n", gbps, (unsigned long long)m.writes,
              (unsigned long long)m.puts, m.seconds);
  std::printf("  latency per write of %u block(s): mean %.1f us, p50 %.1f us, p99 %.1f us\n", plan.per_write, mean,
              p50, p99);

  nlohmann::json j;
  std::optional<double> perftest;
  if (o.kv_perftest != "none") {
    auto pt = run_perftest(o, plan);
    if (pt) {
      perftest = *pt;
      std::printf("  ucx_perftest: %8.3f GB/s  (-t ucp_put_bw -s %llu -n %llu, UCX_TLS=%s)  -> pdctl at %.0f%%\n",
                  *pt, (unsigned long long)plan.block, (unsigned long long)plan.blocks, tls.c_str(), 100.0 * gbps / *pt);
    } else {
      std::printf("  ucx_perftest: not measured: %s\n", pt.status().to_string().c_str());
    }
  }
  std::fflush(stdout);

  if (!o.output_file.empty()) {
    j["benchmark"] = "kv-transfer";
    j["transfer_gb_per_s"] = gbps;
    j["block_bytes"] = plan.block;
    j["total_bytes"] = m.bytes;
    j["transport"] = m.transports;
    j["ucx_tls"] = tls;
    j["error_mode"] = o.kv_error_mode;
    j["layout"] = o.kv_layout;
    j["blocks_per_write"] = plan.per_write;
    j["inflight"] = plan.inflight;
    j["region_bytes"] = plan.slots * plan.block;
    j["writes"] = m.writes;
    j["puts"] = m.puts;
    j["duration_s"] = m.seconds;
    j["latency_us_mean"] = mean;
    j["latency_us_p50"] = p50;
    j["latency_us_p99"] = p99;
    if (perftest) {
      j["perftest_gb_per_s"] = *perftest;
      j["perftest_ratio"] = gbps / *perftest;
    }
    std::ofstream f(o.output_file, std::ios::app);
    f << j.dump() << "\n";
    if (!f) {
      spdlog::error("cannot append to {}", o.output_file);
      return 1;
    }
  }
  return 0;
}

}  // namespace pdctl::roles
