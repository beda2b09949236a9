#pragma once
// What `pdctl up -c FILE` will start, worked out (and checked) before anything starts:
// one ChildSpec per [router] / [[prefill]] / [[decode]] / [[serve]] entry, with the exact
// command line of the child. Pure: no process, no socket.
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <toml++/toml.h>

#include "common/status.h"

namespace pdctl::roles::up {

// Children stop in this order (router first, so no new request reaches a worker that is
// going away; decode before prefill, so no decode waits on a prefill that is gone).
enum class StopStage { kRouter = 0, kDecode = 1, kPrefillAndServe = 2 };

struct ChildSpec {
  std::string name;               // "router", "prefill-0"... or the entry's `name` key
  std::string role;               // router | prefill | decode | serve
  std::string where;              // "file:line" of its table, for messages
  std::vector<std::string> args;  // argv[1..]: [--log-level L] ROLE --key=value...
  std::vector<int> cpus;          // CPU affinity (`cpus = "0,2-3"`); empty: inherited
  std::string health_url;         // "http://127.0.0.1:30001/health"
  std::string url;                // "http://127.0.0.1:30001": where to send requests
  StopStage stop_stage = StopStage::kPrefillAndServe;
};

struct UpPlan {
  // Start order: every worker first, the router last (it would otherwise mark workers
  // that are still loading as unhealthy).
  std::vector<ChildSpec> children;
  std::optional<std::string> entry_url;  // the router's URL (or the only worker's)
};

// Keys of an entry that belong to `up`, not to the role: they are not passed on.
inline constexpr std::string_view kNameKey = "name";
inline constexpr std::string_view kCpusKey = "cpus";
inline constexpr std::string_view kLogLevelKey = "log-level";

// Builds the plan from a parsed config file. Refuses, naming entries and file:line: an
// unknown section or key, a wrong type, an empty deployment, and two entries that would
// listen on the same port (HTTP or bootstrap). The router gets --prefill/--decode (PD,
// when there are prefill or decode entries) or --worker-urls (serve entries) unless its
// table names workers itself.
Result<UpPlan> make_up_plan(const toml::table& root, std::string_view file);

// "0,2-3" -> {0, 2, 3}. Refuses empty items, reversed ranges and CPUs beyond 1023.
Result<std::vector<int>> parse_cpu_list(std::string_view text);

}  // namespace pdctl::roles::up
