#pragma once
// The request driver of the serving benchmark: sends the prepared requests to the server
// and turns the answers into RequestRecords, as sglang.bench_serving's benchmark() does
// (warmup, then the timed run), on one thread.
//
// Design: one libuv loop and one HttpClient (keep-alive connections to the server, as
// many as --max-concurrency, else as many as requests up to 4096). The RequestDispatcher says which
// request may go now (Poisson arrivals, the concurrency limit); the driver calls it at the
// start, after every completion and from one timer set for the next arrival, so nothing
// polls. Each request in flight has a Slot, reused across requests, that holds its SSE
// parser and buffers, so that a request costs no allocation of the driver's own beyond its
// record (bodies are built before the run and moved into the request). Times come from
// uv_hrtime() at the moment each piece of a response is read.
//
// SIGINT or SIGTERM stops the run: requests in flight are cancelled (their records stay
// unfinished) and the results so far come back, marked interrupted.
#include <cstddef>
#include <optional>
#include <string>
#include <vector>

#include "common/status.h"
#include "roles/bench/bench_progress.h"
#include "roles/bench/bench_record.h"
#include "roles/bench/bench_server_query.h"

namespace pdctl::roles {

// One request, ready to send.
struct PreparedRequest {
  std::string body;     // JSON (build_request_body); moved into the HTTP request
  int prompt_len = 0;   // tokens, for the record
  int output_len = 0;   // max new tokens asked for
};

struct DriverConfig {
  ServerTarget target;               // where (and the Authorization header)
  std::string path;                  // the backend's endpoint, e.g. "/generate"
  Backend backend = Backend::kSglang;
  bool stream = true;                // --disable-stream turns it off
  std::optional<int> max_concurrency;
  ProgressDisplay::Mode progress = ProgressDisplay::Mode::kOff;
  bool keep_text = true;             // generated text, for the retokenized count and details
};

struct DriverRun {
  Status warmup;                        // not ok: no warmup request succeeded (nothing measured)
  std::vector<RequestRecord> records;   // the measured requests, in dataset order
  size_t finished = 0;                  // records that are final (succeeded or failed)
  double start_s = 0;                   // when the timed run began (the records' clock)
  double duration_s = 0;                // first send to last completion (or to the interrupt)
  bool interrupted = false;             // a signal stopped the run early
  int signal = 0;                       // which
};

// Sends `warmup_count` copies of `warmup` at once and waits for them; when one succeeded
// (or there were none), runs `requests` at `arrivals_s` (seconds from the start,
// ascending). Returns when every request has finished or a signal came.
DriverRun drive_requests(const DriverConfig& cfg, const PreparedRequest& warmup, int warmup_count,
                         std::vector<PreparedRequest> requests, std::vector<double> arrivals_s);

}  // namespace pdctl::roles
