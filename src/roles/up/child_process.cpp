#include "roles/up/child_process.h"

#include <fcntl.h>
#include <poll.h>
#include <sched.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <csignal>
#include <cstring>
#include <vector>

#include <fmt/format.h>
#include <spdlog/spdlog.h>
#include <uv.h>

#include "roles/up/line_prefixer.h"

namespace pdctl::roles::up {

namespace {

// Writes all of `data` to `fd` (our stdout or stderr). Waits at most 1 s for a full pipe
// per attempt, then drops the rest: a stuck reader of our output must not stop `up` from
// supervising.
void write_all(int fd, std::string_view data) {
  while (!data.empty()) {
    ssize_t n = ::write(fd, data.data(), data.size());
    if (n > 0) {
      data.remove_prefix(static_cast<size_t>(n));
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      pollfd p{fd, POLLOUT, 0};
      if (::poll(&p, 1, 1000) > 0) continue;
    }
    return;
  }
}

struct Fd {
  int fd = -1;
  Fd() = default;
  explicit Fd(int f) : fd(f) {}
  Fd(Fd&& o) noexcept : fd(std::exchange(o.fd, -1)) {}
  Fd& operator=(Fd&& o) noexcept {
    if (this != &o) {
      reset();
      fd = std::exchange(o.fd, -1);
    }
    return *this;
  }
  ~Fd() { reset(); }
  void reset() {
    if (fd >= 0) ::close(fd);
    fd = -1;
  }
  int release() { return std::exchange(fd, -1); }
};

Status make_pipe(Fd& read_end, Fd& write_end) {
  int fds[2];
  if (::pipe2(fds, O_CLOEXEC) != 0) return Status::io(fmt::format("pipe2: {}", std::strerror(errno)));
  read_end = Fd(fds[0]);
  write_end = Fd(fds[1]);
  return Status::ok();
}

// Blocks every signal for the duration of fork(): the child must not run the parent's
// libuv signal handler (it would write into the parent's signal pipe) before it has reset
// the dispositions.
class BlockAllSignals {
 public:
  BlockAllSignals() {
    sigset_t all;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &saved_);
  }
  ~BlockAllSignals() { pthread_sigmask(SIG_SETMASK, &saved_, nullptr); }
  BlockAllSignals(const BlockAllSignals&) = delete;
  BlockAllSignals& operator=(const BlockAllSignals&) = delete;

 private:
  sigset_t saved_;
};

// In the child between fork and exec: async-signal-safe calls only. Reports a failure's
// errno on `err_fd` and exits 127.
[[noreturn]] void exec_child(pid_t parent, const cpu_set_t* cpus, int out_fd, int err_fd, int report_fd,
                             char* const* argv) {
  auto fail = [report_fd](int stage) {
    int info[2] = {stage, errno};
    ssize_t ignored = ::write(report_fd, info, sizeof info);
    (void)ignored;
    ::_exit(127);
  };
  // Its own process group: a terminal's Ctrl-C reaches `up` only, which then stops the
  // children in order; and `up` can signal a child together with what it starts.
  if (::setpgid(0, 0) != 0) fail(1);
  // Killed by the kernel when `up` dies, even by SIGKILL. If `up` died before this line,
  // the parent already changed: give up.
  if (::prctl(PR_SET_PDEATHSIG, SIGKILL) != 0) fail(2);
  if (::getppid() != parent) ::_exit(127);
  if (cpus != nullptr && ::sched_setaffinity(0, sizeof(cpu_set_t), cpus) != 0) fail(3);
  // Default dispositions (SIGPIPE is ignored in `up`; ignored signals survive exec), then
  // the signal mask the parent blocked around fork().
  struct sigaction dfl {};
  dfl.sa_handler = SIG_DFL;
  sigemptyset(&dfl.sa_mask);
  for (int sig = 1; sig < NSIG; ++sig) {
    if (sig != SIGKILL && sig != SIGSTOP) ::sigaction(sig, &dfl, nullptr);
  }
  int devnull = ::open("/dev/null", O_RDONLY);
  if (devnull < 0 || ::dup2(devnull, STDIN_FILENO) < 0) fail(4);
  if (::dup2(out_fd, STDOUT_FILENO) < 0 || ::dup2(err_fd, STDERR_FILENO) < 0) fail(4);
  sigset_t none;
  sigemptyset(&none);
  ::sigprocmask(SIG_SETMASK, &none, nullptr);
  ::execv("/proc/self/exe", argv);
  fail(5);
  ::_exit(127);
}

const char* spawn_stage_name(int stage) {
  switch (stage) {
    case 1: return "setpgid";
    case 2: return "prctl(PR_SET_PDEATHSIG)";
    case 3: return "sched_setaffinity";
    case 4: return "redirecting stdin/stdout/stderr";
    case 5: return "exec /proc/self/exe";
    default: return "starting";
  }
}

}  // namespace

// Reads one output pipe of a child on the loop and writes its lines, prefixed, to `out_fd`.
class PipeReader final : public net::LoopResource {
 public:
  PipeReader(net::EventLoop& loop, int fd, std::string prefix, int out_fd, std::function<void()> on_eof)
      : LoopResource(loop), prefixer_(std::move(prefix)), out_fd_(out_fd), on_eof_(std::move(on_eof)) {
    if (this->loop() == nullptr) {
      ::close(fd);
      eof_ = true;
      return;
    }
    handle_ = new uv_pipe_t;
    uv_pipe_init(loop.uv(), handle_, 0);
    handle_->data = this;
    int rc = uv_pipe_open(handle_, fd);
    if (rc == 0) {
      rc = uv_read_start(reinterpret_cast<uv_stream_t*>(handle_), &PipeReader::on_alloc, &PipeReader::on_read);
    }
    if (rc != 0) {
      spdlog::error("reading a child's output: {}", uv_strerror(rc));
      ::close(fd);
      close_handle();
      eof_ = true;
    }
  }
  ~PipeReader() override {
    detach_from_loop();
    close_handle();
  }

  bool eof() const { return eof_; }
  void close_now() {
    if (eof_) return;
    flush_partial();
    eof_ = true;
    close_handle();
  }

 private:
  void on_loop_stop() override { close_now(); }

  void close_handle() {
    if (handle_ == nullptr) return;
    handle_->data = nullptr;
    uv_close(reinterpret_cast<uv_handle_t*>(handle_), [](uv_handle_t* h) { delete reinterpret_cast<uv_pipe_t*>(h); });
    handle_ = nullptr;
  }

  void flush_partial() {
    std::string out;
    prefixer_.finish(out);
    write_all(out_fd_, out);
  }

  static void on_alloc(uv_handle_t* h, size_t, uv_buf_t* buf) {
    auto* self = static_cast<PipeReader*>(h->data);
    *buf = uv_buf_init(self->buf_, sizeof self->buf_);
  }

  static void on_read(uv_stream_t* s, ssize_t n, const uv_buf_t*) {
    auto* self = static_cast<PipeReader*>(s->data);
    if (self == nullptr || n == 0) return;
    if (n < 0) {
      // UV_EOF: the child and everything it started closed this end.
      self->close_now();
      if (self->on_eof_) {
        auto cb = self->on_eof_;  // may destroy this reader's owner's state
        cb();
      }
      return;
    }
    std::string out;
    self->prefixer_.feed(std::string_view(self->buf_, static_cast<size_t>(n)), out);
    write_all(self->out_fd_, out);
  }

  LinePrefixer prefixer_;
  int out_fd_;
  std::function<void()> on_eof_;
  uv_pipe_t* handle_ = nullptr;  // freed by its close callback
  bool eof_ = false;
  char buf_[16 * 1024];
};

Result<std::unique_ptr<ChildProcess>> ChildProcess::spawn(net::EventLoop& loop, const ChildSpec& spec,
                                                          std::function<void()> on_output_closed) {
  Fd out_r, out_w, err_r, err_w, rep_r, rep_w;
  PDCTL_RETURN_IF_ERROR(make_pipe(out_r, out_w));
  PDCTL_RETURN_IF_ERROR(make_pipe(err_r, err_w));
  PDCTL_RETURN_IF_ERROR(make_pipe(rep_r, rep_w));

  // Everything the child needs is prepared before fork (no allocation after it).
  std::vector<std::string> args;
  args.push_back("pdctl");
  args.insert(args.end(), spec.args.begin(), spec.args.end());
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  cpu_set_t cpus;
  CPU_ZERO(&cpus);
  for (int c : spec.cpus) CPU_SET(c, &cpus);
  const pid_t parent = ::getpid();

  pid_t pid;
  {
    BlockAllSignals blocked;
    pid = ::fork();
    if (pid == 0) {
      exec_child(parent, spec.cpus.empty() ? nullptr : &cpus, out_w.fd, err_w.fd, rep_w.fd, argv.data());
    }
  }
  if (pid < 0) return Status::io(fmt::format("fork: {}", std::strerror(errno)));
  // Also here, so that the group exists whichever of the two runs first.
  ::setpgid(pid, pid);
  out_w.reset();
  err_w.reset();
  rep_w.reset();

  // The report pipe closes on exec (success) or carries the failing stage and errno. The
  // child reaches exec or _exit without waiting on anything, so this read is short.
  int info[2] = {0, 0};
  ssize_t n;
  do {
    n = ::read(rep_r.fd, info, sizeof info);
  } while (n < 0 && errno == EINTR);
  if (n > 0) {
    int st = 0;
    ::waitpid(pid, &st, 0);
    return Status::io(fmt::format("{}: {}", spawn_stage_name(info[0]), std::strerror(info[1])));
  }

  std::unique_ptr<ChildProcess> child(new ChildProcess(spec, pid));
  ChildProcess* raw = child.get();
  auto eof = [raw, cb = std::move(on_output_closed)] {
    if (raw->output_closed() && cb) cb();
  };
  const std::string prefix = spec.name + " | ";
  child->out_ = std::make_unique<PipeReader>(loop, out_r.release(), prefix, STDOUT_FILENO, eof);
  child->err_ = std::make_unique<PipeReader>(loop, err_r.release(), prefix, STDERR_FILENO, eof);
  return child;
}

ChildProcess::ChildProcess(ChildSpec spec, pid_t pid) : spec_(std::move(spec)), pid_(pid) {}

ChildProcess::~ChildProcess() {
  if (!exited_) {
    // SIGKILL cannot be caught, so the wait below ends as soon as the kernel has taken
    // the process down.
    ::kill(-pid_, SIGKILL);
    ::kill(pid_, SIGKILL);
    int st = 0;
    while (::waitpid(pid_, &st, 0) < 0 && errno == EINTR) {
    }
    exited_ = true;
  }
  // (Once reaped, its pid and group id may belong to someone else: nothing is sent.)
}

void ChildProcess::signal(int sig) {
  if (exited_) return;
  if (::kill(-pid_, sig) != 0) ::kill(pid_, sig);
}

bool ChildProcess::poll_exit() {
  if (exited_) return true;
  int st = 0;
  pid_t r;
  do {
    r = ::waitpid(pid_, &st, WNOHANG);
  } while (r < 0 && errno == EINTR);
  if (r == pid_) {
    exited_ = true;
    wait_status_ = st;
  }
  return exited_;
}

bool ChildProcess::exited_cleanly() const {
  return exited_ && WIFEXITED(wait_status_) && WEXITSTATUS(wait_status_) == 0;
}

std::string ChildProcess::describe_exit() const {
  if (!exited_) return "running";
  if (WIFEXITED(wait_status_)) return fmt::format("exited with status {}", WEXITSTATUS(wait_status_));
  if (WIFSIGNALED(wait_status_)) {
    const int sig = WTERMSIG(wait_status_);
    return fmt::format("killed by signal {} ({})", sig, ::strsignal(sig));
  }
  return fmt::format("ended (wait status {:#x})", wait_status_);
}

bool ChildProcess::output_closed() const { return (!out_ || out_->eof()) && (!err_ || err_->eof()); }

void ChildProcess::close_output() {
  if (out_) out_->close_now();
  if (err_) err_->close_now();
}

}  // namespace pdctl::roles::up
