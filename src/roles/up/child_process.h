#pragma once
// One child of `pdctl up`: the same binary (/proc/self/exe) started with a role's flags,
// in its own process group, killed by the kernel if `up` dies (PR_SET_PDEATHSIG), pinned
// to its CPUs, with stdout and stderr read on the event loop and written out line by line
// behind its name.
//
// Threading: loop thread only. The owner reaps it: call poll_exit() on SIGCHLD.
#include <sys/types.h>

#include <functional>
#include <memory>
#include <string>

#include "common/status.h"
#include "net/event_loop.h"
#include "roles/up/up_plan.h"

namespace pdctl::roles::up {

class PipeReader;

class ChildProcess {
 public:
  // Forks and execs. Fails (kIo) when fork, pipe or exec fails; an exec failure is known
  // here, before returning, through a close-on-exec pipe. `on_output_closed` runs when both
  // of its output pipes reached end of file.
  static Result<std::unique_ptr<ChildProcess>> spawn(net::EventLoop& loop, const ChildSpec& spec,
                                                     std::function<void()> on_output_closed);

  // A child still running is killed (SIGKILL to its process group) and reaped: whatever
  // happens to `up`, it leaves no process behind.
  ~ChildProcess();
  ChildProcess(const ChildProcess&) = delete;
  ChildProcess& operator=(const ChildProcess&) = delete;

  const ChildSpec& spec() const { return spec_; }
  const std::string& name() const { return spec_.name; }
  pid_t pid() const { return pid_; }

  // Sends `sig` to the child's process group (what it started goes too). No-op once reaped.
  void signal(int sig);
  // Reaps the child if it has exited (never blocks). True when it has (now or before).
  bool poll_exit();
  bool exited() const { return exited_; }
  // Did it exit with status 0?
  bool exited_cleanly() const;
  // "exited with status 1", "killed by signal 9 (Killed)".
  std::string describe_exit() const;
  // Both output pipes reached end of file (or were closed).
  bool output_closed() const;
  // Stops reading its output (after it exited, when a grandchild keeps a pipe open).
  void close_output();

 private:
  ChildProcess(ChildSpec spec, pid_t pid);

  ChildSpec spec_;
  pid_t pid_;
  bool exited_ = false;
  int wait_status_ = 0;
  std::unique_ptr<PipeReader> out_, err_;
};

}  // namespace pdctl::roles::up
