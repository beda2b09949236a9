#pragma once
// Test helpers for src/net: an event loop on its own thread, waits with deadlines, and a
// raw blocking socket client that speaks HTTP/1.1 by hand (for byte-exact tests).
#include <doctest/doctest.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <cstring>
#include <functional>
#include <future>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <thread>

#include "net/event_loop.h"
#include "net/http_types.h"

namespace nettest {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

// Every wait in these tests is for an event, bounded by this.
inline constexpr auto kDeadline = 10s;

// A flag another thread sets; wait() returns false when the deadline passes first.
class Event {
 public:
  void set() {
    std::lock_guard lock(mu_);
    set_ = true;
    cv_.notify_all();
  }
  bool wait(std::chrono::milliseconds timeout = kDeadline) {
    std::unique_lock lock(mu_);
    return cv_.wait_for(lock, timeout, [&] { return set_; });
  }
  bool is_set() {
    std::lock_guard lock(mu_);
    return set_;
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  bool set_ = false;
};

// An EventLoop running on its own thread; call() runs a function there and waits for it.
class LoopThread {
 public:
  LoopThread() : thread_([this] { loop_.run(); }) {}
  ~LoopThread() {
    loop_.stop();
    thread_.join();
  }
  pdctl::net::EventLoop& loop() { return loop_; }

  template <class F>
  auto call(F&& fn) -> decltype(fn()) {
    using R = decltype(fn());
    std::packaged_task<R()> task(std::forward<F>(fn));
    auto fut = task.get_future();
    REQUIRE(loop_.post([&task] { task(); }));
    REQUIRE(fut.wait_for(kDeadline) == std::future_status::ready);
    return fut.get();
  }

 private:
  pdctl::net::EventLoop loop_;
  std::thread thread_;
};

struct RawResponse {
  int status = 0;
  pdctl::net::Headers headers;
  std::string body;
  bool complete = false;  // the whole message arrived
};

// A blocking TCP client with receive deadlines.
class RawClient {
 public:
  explicit RawClient(uint16_t port, const char* ip = "127.0.0.1") {
    bool v6 = std::strchr(ip, ':') != nullptr;
    fd_ = ::socket(v6 ? AF_INET6 : AF_INET, SOCK_STREAM, 0);
    REQUIRE(fd_ >= 0);
    int one = 1;
    ::setsockopt(fd_, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    int rc;
    if (v6) {
      sockaddr_in6 a{};
      a.sin6_family = AF_INET6;
      a.sin6_port = htons(port);
      ::inet_pton(AF_INET6, ip, &a.sin6_addr);
      rc = ::connect(fd_, reinterpret_cast<sockaddr*>(&a), sizeof a);
    } else {
      sockaddr_in a{};
      a.sin_family = AF_INET;
      a.sin_port = htons(port);
      ::inet_pton(AF_INET, ip, &a.sin_addr);
      rc = ::connect(fd_, reinterpret_cast<sockaddr*>(&a), sizeof a);
    }
    connected_ = rc == 0;
  }
  ~RawClient() {
    if (fd_ >= 0) ::close(fd_);
  }
  RawClient(const RawClient&) = delete;
  RawClient& operator=(const RawClient&) = delete;

  bool connected() const { return connected_; }
  int fd() const { return fd_; }

  void set_recv_buffer(int bytes) { ::setsockopt(fd_, SOL_SOCKET, SO_RCVBUF, &bytes, sizeof bytes); }

  // False when the peer has closed or reset the connection.
  bool send(std::string_view data) {
    while (!data.empty()) {
      ssize_t n = ::send(fd_, data.data(), data.size(), MSG_NOSIGNAL);
      if (n < 0) {
        if (errno == EINTR) continue;
        return false;
      }
      data.remove_prefix(static_cast<size_t>(n));
    }
    return true;
  }

  void close() {
    if (fd_ >= 0) ::close(fd_);
    fd_ = -1;
  }
  void shutdown_write() { ::shutdown(fd_, SHUT_WR); }

  // Reads what is available within `timeout`: >0 bytes appended, 0 on EOF, -1 on error or
  // reset, -2 on timeout.
  int read_some(std::string& into, std::chrono::milliseconds timeout = kDeadline) {
    pollfd p{fd_, POLLIN, 0};
    int rc = ::poll(&p, 1, static_cast<int>(timeout.count()));
    if (rc == 0) return -2;
    if (rc < 0) return -1;
    char buf[65536];
    ssize_t n = ::recv(fd_, buf, sizeof buf, 0);
    if (n < 0) return -1;
    into.append(buf, static_cast<size_t>(n));
    return n > 0 ? 1 : 0;
  }

  // True once the peer closes (EOF or reset) within the deadline; data read meanwhile is
  // kept in buffer().
  bool wait_closed(std::chrono::milliseconds timeout = kDeadline) {
    auto end = Clock::now() + timeout;
    while (Clock::now() < end) {
      auto left = std::chrono::duration_cast<std::chrono::milliseconds>(end - Clock::now());
      int r = read_some(buf_, left);
      if (r == 0 || r == -1) return true;
      if (r == -2) return false;
    }
    return false;
  }

  // Reads one response (Content-Length, chunked, or until close).
  RawResponse read_response(std::chrono::milliseconds timeout = kDeadline) {
    RawResponse r;
    auto end = Clock::now() + timeout;
    auto fill = [&]() -> int {
      auto left = std::chrono::duration_cast<std::chrono::milliseconds>(end - Clock::now());
      if (left.count() <= 0) return -2;
      return read_some(buf_, left);
    };
    size_t hdr_end;
    while ((hdr_end = buf_.find("\r\n\r\n")) == std::string::npos) {
      if (fill() <= 0) return r;
    }
    std::string head = buf_.substr(0, hdr_end);
    buf_.erase(0, hdr_end + 4);
    size_t line_end = head.find("\r\n");
    std::string status_line = head.substr(0, line_end);
    r.status = std::atoi(status_line.c_str() + 9);
    size_t pos = line_end == std::string::npos ? head.size() : line_end + 2;
    while (pos < head.size()) {
      size_t e = head.find("\r\n", pos);
      if (e == std::string::npos) e = head.size();
      std::string line = head.substr(pos, e - pos);
      size_t colon = line.find(':');
      std::string value = line.substr(colon + 1);
      while (!value.empty() && value.front() == ' ') value.erase(0, 1);
      r.headers.add(line.substr(0, colon), value);
      pos = e + 2;
    }
    if (r.status / 100 == 1 || r.status == 204 || r.status == 304) {
      r.complete = true;
      return r;
    }
    if (const std::string* cl = r.headers.find("Content-Length")) {
      size_t n = std::stoul(*cl);
      while (buf_.size() < n) {
        if (fill() <= 0) return r;
      }
      r.body = buf_.substr(0, n);
      buf_.erase(0, n);
      r.complete = true;
    } else if (r.headers.has_token("Transfer-Encoding", "chunked")) {
      while (true) {
        size_t le;
        while ((le = buf_.find("\r\n")) == std::string::npos) {
          if (fill() <= 0) return r;
        }
        size_t size = std::stoul(buf_.substr(0, le), nullptr, 16);
        while (buf_.size() < le + 2 + size + 2) {
          if (fill() <= 0) return r;
        }
        r.body.append(buf_, le + 2, size);
        buf_.erase(0, le + 2 + size + 2);
        if (size == 0) break;
      }
      r.complete = true;
    } else {
      while (true) {
        int n = fill();
        if (n == 0 || n == -1) break;
        if (n == -2) return r;
      }
      r.body = buf_;
      buf_.clear();
      r.complete = true;
    }
    return r;
  }

  std::string& buffer() { return buf_; }

 private:
  int fd_ = -1;
  bool connected_ = false;
  std::string buf_;
};

inline std::string get_request(std::string_view path, std::string_view extra = {}) {
  std::string r = "GET " + std::string(path) + " HTTP/1.1\r\nHost: t\r\n";
  r += extra;
  r += "\r\n";
  return r;
}

inline std::string post_request(std::string_view path, std::string_view body, std::string_view extra = {}) {
  std::string r = "POST " + std::string(path) + " HTTP/1.1\r\nHost: t\r\nContent-Length: " + std::to_string(body.size()) +
                  "\r\n";
  r += extra;
  r += "\r\n";
  r += body;
  return r;
}

}  // namespace nettest

namespace nettest {

// A scripted TCP server with blocking sockets, for upstreams that misbehave on purpose.
class RawServer {
 public:
  RawServer() {
    fd_ = ::socket(AF_INET, SOCK_STREAM, 0);
    int one = 1;
    ::setsockopt(fd_, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    REQUIRE(::bind(fd_, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0);
    REQUIRE(::listen(fd_, 16) == 0);
    socklen_t len = sizeof a;
    ::getsockname(fd_, reinterpret_cast<sockaddr*>(&a), &len);
    port_ = ntohs(a.sin_port);
  }
  ~RawServer() {
    if (fd_ >= 0) ::close(fd_);
  }
  uint16_t port() const { return port_; }

  // A connected socket, or -1 when none arrives in time.
  int accept(std::chrono::milliseconds timeout = kDeadline) {
    pollfd p{fd_, POLLIN, 0};
    if (::poll(&p, 1, static_cast<int>(timeout.count())) != 1) return -1;
    return ::accept(fd_, nullptr, nullptr);
  }

  // Reads one request (head and Content-Length body) from `fd`; "" on EOF or timeout.
  static std::string read_request(int fd, std::string& buf, std::chrono::milliseconds timeout = kDeadline) {
    auto end = Clock::now() + timeout;
    auto fill = [&]() {
      auto left = std::chrono::duration_cast<std::chrono::milliseconds>(end - Clock::now());
      pollfd p{fd, POLLIN, 0};
      if (left.count() <= 0 || ::poll(&p, 1, static_cast<int>(left.count())) != 1) return false;
      char tmp[65536];
      ssize_t n = ::recv(fd, tmp, sizeof tmp, 0);
      if (n <= 0) return false;
      buf.append(tmp, static_cast<size_t>(n));
      return true;
    };
    size_t he;
    while ((he = buf.find("\r\n\r\n")) == std::string::npos) {
      if (!fill()) return "";
    }
    size_t body = 0;
    std::string head = buf.substr(0, he);
    for (const char* name : {"Content-Length: ", "content-length: "}) {
      size_t pos = head.find(name);
      if (pos != std::string::npos) body = std::stoul(head.substr(pos + std::strlen(name)));
    }
    while (buf.size() < he + 4 + body) {
      if (!fill()) return "";
    }
    std::string req = buf.substr(0, he + 4 + body);
    buf.erase(0, he + 4 + body);
    return req;
  }

  static void send_all(int fd, std::string_view data) {
    while (!data.empty()) {
      ssize_t n = ::send(fd, data.data(), data.size(), MSG_NOSIGNAL);
      if (n <= 0) return;
      data.remove_prefix(static_cast<size_t>(n));
    }
  }

 private:
  int fd_ = -1;
  uint16_t port_ = 0;
};

// A port with nothing listening on it (bound then closed).
inline uint16_t closed_port() {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a);
  socklen_t len = sizeof a;
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
  ::close(fd);
  return ntohs(a.sin_port);
}

// Polls `pred` (cheap, side-effect free) until it holds or the deadline passes: for
// states that have no event to wait on (a pool noticing a close).
template <class Pred>
bool eventually(Pred pred, std::chrono::milliseconds timeout = kDeadline) {
  auto end = Clock::now() + timeout;
  while (Clock::now() < end) {
    if (pred()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
  return pred();
}

}  // namespace nettest
