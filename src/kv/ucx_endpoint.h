#pragma once
// A UCX endpoint to a peer worker, with an explicit state machine:
//
//   Connecting --mark_ready--> Ready
//   Connecting|Ready --(UCX error callback | mark_failed)--> Failed
//   any but Closed --close--> Closed
//
// Connecting: created from the peer's worker address; operations may already be posted
// (UCX queues them until wire-up is done). Ready: a flush completed, so wire-up is done.
// Failed: UCX reported the peer unreachable (UCP_ERR_HANDLING_MODE_PEER) or the owner gave
// up on it; the handle stays valid only to be closed (with force, as UCX requires).
// Closed: ucp_ep_close_nbx was called; the handle is gone, a close request may still be
// finishing and is progressed by the owner of the worker.
//
// Every member must be called on the worker's thread.
#include <functional>
#include <memory>
#include <string>
#include <string_view>

#include <ucp/api/ucp.h>

#include "common/status.h"

namespace pdctl::kv {

enum class EndpointState { kConnecting, kReady, kFailed, kClosed };
const char* endpoint_state_name(EndpointState s);

class UcxEndpoint {
 public:
  // Runs once, inside ucp_worker_progress, when the endpoint moves to Failed because UCX
  // reported an error. It must not call into UCX (progress or close); record and return.
  using ErrorHandler = std::function<void(const Status&)>;

  // peer_failure_detection: UCP_ERR_HANDLING_MODE_PEER (else NONE: UCX never reports a
  // dead peer, the owner's timeouts must).
  static Result<UcxEndpoint> connect(ucp_worker_h worker, std::string_view peer_address,
                                     bool peer_failure_detection, ErrorHandler on_error);
  UcxEndpoint();
  UcxEndpoint(UcxEndpoint&&) noexcept;
  UcxEndpoint& operator=(UcxEndpoint&& o) noexcept;
  UcxEndpoint(const UcxEndpoint&) = delete;
  UcxEndpoint& operator=(const UcxEndpoint&) = delete;
  // Closes with force if still open, and releases an unfinished close request to UCX (which
  // completes it when the worker is destroyed).
  ~UcxEndpoint();

  EndpointState state() const;
  // Why the endpoint failed; ok unless it is (or was, before closing) Failed.
  const Status& failure() const;
  // The handle for posting operations; nullptr once closed.
  ucp_ep_h get() const;

  void mark_ready();                     // Connecting -> Ready; ignored in other states
  void mark_failed(Status why);          // Connecting|Ready -> Failed; ignored in other states

  // -> Closed. Graceful (flush) closes wait for outstanding operations; a Failed endpoint is
  // always closed with force. Returns true when the close finished at once.
  bool close(bool force);
  // True while the close request is still in progress (progress the worker and ask again).
  bool close_pending();
  // Gives up on an unfinished close (after the owner's deadline): frees the request.
  void abandon_close();

  // ucp_ep_print_info's text: the lanes and the transport of each.
  std::string describe() const;

 private:
  struct State;
  std::unique_ptr<State> s_;  // heap-pinned: UCX's error callback holds its address
};

// "posix/memory (am am_bw), cma/memory (rma_bw)": each lane's transport and what UCX uses
// it for, read from UcxEndpoint::describe()'s text.
std::string summarize_endpoint_info(const std::string& print_info);

}  // namespace pdctl::kv
