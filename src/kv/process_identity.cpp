#include "kv/process_identity.h"

#include <unistd.h>

#include <cerrno>
#include <fstream>
#include <sstream>
#include <system_error>

namespace pdctl::kv {

namespace {

std::string read_first_line(const std::string& path) {
  std::ifstream in(path);
  std::string line;
  std::getline(in, line);
  return line;
}

// State letter and start time from /proc/PID/stat; false when the file cannot be read.
bool read_stat(uint32_t pid, char& state, uint64_t& start_time, bool& missing) {
  const std::string path = "/proc/" + std::to_string(pid) + "/stat";
  std::ifstream in(path);
  missing = false;
  if (!in) {
    missing = errno == ENOENT;
    return false;
  }
  std::string all((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  // The command name (field 2) is in parentheses and may hold spaces: parse after the last ')'.
  auto close = all.rfind(')');
  if (close == std::string::npos) return false;
  std::istringstream rest(all.substr(close + 1));
  std::string field;
  rest >> state;  // field 3
  for (int i = 4; i < 22; ++i) rest >> field;
  rest >> start_time;  // field 22
  return bool(rest);
}

}  // namespace

ProcessIdentity self_identity() {
  ProcessIdentity id;
  id.pid = uint32_t(getpid());
  const std::string boot = read_first_line("/proc/sys/kernel/random/boot_id");
  char ns[128] = {};
  const ssize_t n = readlink("/proc/self/ns/pid", ns, sizeof ns - 1);
  char state = 0;
  bool missing = false;
  if (boot.empty() || n <= 0 || !read_stat(id.pid, state, id.start_time, missing)) return id;
  id.host = boot + "/" + std::string(ns, size_t(n));
  return id;
}

Liveness check_liveness(const ProcessIdentity& peer, const ProcessIdentity& self) {
  if (peer.host.empty() || peer.host != self.host || peer.pid == 0) return Liveness::kUnknown;
  char state = 0;
  uint64_t start = 0;
  bool missing = false;
  if (!read_stat(peer.pid, state, start, missing)) return missing ? Liveness::kGone : Liveness::kUnknown;
  if (state == 'Z' || state == 'X' || start != peer.start_time) return Liveness::kGone;
  return Liveness::kAlive;
}

}  // namespace pdctl::kv
