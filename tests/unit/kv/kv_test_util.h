#pragma once
// Helpers for the transfer-engine tests: forked children, a socketpair channel to swap
// descriptors, and an inbox that hands engine callbacks to the test's thread.
//
// The doctest process itself never creates a UCX object: UCX keeps process-wide state
// (and may start an async thread) that a fork cannot copy safely. Every test that uses UCX
// forks its processes first and runs the engine only in them. A child cannot report doctest
// assertions to the parent, so it prints what went wrong to stderr and returns an exit code
// that the parent checks.
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <cstdio>
#include <deque>
#include <functional>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <utility>

#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/lsan_interface.h>
#endif

namespace pdctl::kv::test {

using namespace std::chrono_literals;
using Ms = std::chrono::milliseconds;

// One end of a socketpair; messages are length-prefixed.
class Channel {
 public:
  Channel() = default;
  explicit Channel(int fd) : fd_(fd) {}
  Channel(Channel&& o) noexcept : fd_(std::exchange(o.fd_, -1)) {}
  Channel& operator=(Channel&& o) noexcept {
    if (this != &o) {
      close();
      fd_ = std::exchange(o.fd_, -1);
    }
    return *this;
  }
  Channel(const Channel&) = delete;
  Channel& operator=(const Channel&) = delete;
  ~Channel() { close(); }

  static std::pair<Channel, Channel> pair() {
    int fds[2] = {-1, -1};
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds) != 0) std::perror("socketpair");
    return {Channel(fds[0]), Channel(fds[1])};
  }

  void close() {
    if (fd_ >= 0) ::close(fd_);
    fd_ = -1;
  }

  bool send(std::string_view msg) {
    uint32_t n = uint32_t(msg.size());
    return write_all(&n, sizeof n) && write_all(msg.data(), msg.size());
  }

  // The next message, or nullopt on timeout, EOF or error.
  std::optional<std::string> recv(Ms timeout) {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    uint32_t n = 0;
    if (!read_all(&n, sizeof n, deadline)) return std::nullopt;
    std::string out(n, '\0');
    if (!read_all(out.data(), n, deadline)) return std::nullopt;
    return out;
  }

 private:
  bool write_all(const void* p, size_t n) {
    auto* c = static_cast<const char*>(p);
    while (n > 0) {
      ssize_t w = ::send(fd_, c, n, MSG_NOSIGNAL);
      if (w <= 0) return false;
      c += w;
      n -= size_t(w);
    }
    return true;
  }
  bool read_all(void* p, size_t n, std::chrono::steady_clock::time_point deadline) {
    auto* c = static_cast<char*>(p);
    while (n > 0) {
      auto left = std::chrono::duration_cast<Ms>(deadline - std::chrono::steady_clock::now()).count();
      if (left <= 0) return false;
      pollfd pfd{fd_, POLLIN, 0};
      if (::poll(&pfd, 1, int(left)) <= 0) return false;
      ssize_t r = ::recv(fd_, c, n, 0);
      if (r <= 0) return false;
      c += r;
      n -= size_t(r);
    }
    return true;
  }
  int fd_ = -1;
};

// A forked child running `body`; its return value is the exit status.
class Child {
 public:
  static Child spawn(const std::function<int()>& body) {
    std::fflush(nullptr);
    pid_t pid = fork();
    if (pid == 0) {
      int code = body();
      std::fflush(nullptr);
#if defined(__SANITIZE_ADDRESS__)
      // _exit skips LSan's exit-time check; run it here so that children are checked too.
      if (__lsan_do_recoverable_leak_check() != 0 && code == 0) code = 98;
#endif
      _exit(code);
    }
    Child c;
    c.pid_ = pid;
    c.pidfd_ = int(syscall(SYS_pidfd_open, pid, 0));
    return c;
  }
  Child() = default;
  Child(Child&& o) noexcept : pid_(std::exchange(o.pid_, -1)), pidfd_(std::exchange(o.pidfd_, -1)) {}
  Child(const Child&) = delete;
  Child& operator=(const Child&) = delete;
  ~Child() {
    if (pid_ > 0) {
      ::kill(pid_, SIGKILL);
      waitpid(pid_, nullptr, 0);
    }
    if (pidfd_ >= 0) ::close(pidfd_);
  }

  pid_t pid() const { return pid_; }

  // The exit code; -1 (after killing it) if it did not exit within `timeout`; 128+signal
  // when a signal ended it.
  int wait(Ms timeout) {
    if (pid_ <= 0) return -1;
    int status = 0;
    bool exited = false;
    if (pidfd_ >= 0) {
      pollfd pfd{pidfd_, POLLIN, 0};
      exited = ::poll(&pfd, 1, int(timeout.count())) > 0;
    } else {
      // No pidfd (kernel before 5.3): poll waitpid instead.
      const auto deadline = std::chrono::steady_clock::now() + timeout;
      while (!exited && std::chrono::steady_clock::now() < deadline) {
        exited = waitpid(pid_, &status, WNOHANG) == pid_;
        if (!exited) ::poll(nullptr, 0, 10);
      }
      if (exited) {
        pid_ = -1;
        return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
      }
    }
    if (!exited) {
      std::fprintf(stderr, "child %d did not exit within %lld ms; killing it\n", pid_, (long long)timeout.count());
      ::kill(pid_, SIGKILL);
    }
    waitpid(pid_, &status, 0);
    pid_ = -1;
    if (WIFEXITED(status)) return WEXITSTATUS(status);
    if (WIFSIGNALED(status)) return 128 + WTERMSIG(status);
    return -1;
  }

 private:
  pid_t pid_ = -1;
  int pidfd_ = -1;
};

// Hands values from the transfer thread to the test's thread.
template <class T>
class Inbox {
 public:
  void push(T v) {
    {
      std::lock_guard lock(mu_);
      q_.push_back(std::move(v));
    }
    cv_.notify_all();
  }
  std::optional<T> pop(Ms timeout) {
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

// Prints and returns false when `ok` is false: the children's CHECK.
inline bool expect(bool ok, const std::string& what) {
  if (!ok) std::fprintf(stderr, "[child %d] FAILED: %s\n", int(getpid()), what.c_str());
  return ok;
}

}  // namespace pdctl::kv::test
