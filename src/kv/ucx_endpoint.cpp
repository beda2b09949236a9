#include "kv/ucx_endpoint.h"

#include <cstdio>
#include <cstdlib>
#include <sstream>

#include <spdlog/spdlog.h>

#include "kv/ucx_status.h"

namespace pdctl::kv {

const char* endpoint_state_name(EndpointState s) {
  switch (s) {
    case EndpointState::kConnecting: return "connecting";
    case EndpointState::kReady: return "ready";
    case EndpointState::kFailed: return "failed";
    case EndpointState::kClosed: return "closed";
  }
  return "unknown";
}

struct UcxEndpoint::State {
  ucp_ep_h ep = nullptr;
  EndpointState state = EndpointState::kConnecting;
  Status failure;
  ErrorHandler on_error;
  void* close_request = nullptr;

  static void error_callback(void* arg, ucp_ep_h /*ep*/, ucs_status_t status) {
    auto* self = static_cast<State*>(arg);
    if (self->state != EndpointState::kConnecting && self->state != EndpointState::kReady) return;
    self->state = EndpointState::kFailed;
    self->failure = ucx_status(status, "peer endpoint failed");
    if (self->on_error) self->on_error(self->failure);
  }
};

Result<UcxEndpoint> UcxEndpoint::connect(ucp_worker_h worker, std::string_view peer_address,
                                         bool peer_failure_detection, ErrorHandler on_error) {
  UcxEndpoint e;
  e.s_ = std::make_unique<State>();
  e.s_->on_error = std::move(on_error);
  ucp_ep_params_t params{};
  params.field_mask = UCP_EP_PARAM_FIELD_REMOTE_ADDRESS | UCP_EP_PARAM_FIELD_ERR_HANDLING_MODE |
                      UCP_EP_PARAM_FIELD_ERR_HANDLER;
  params.address = reinterpret_cast<const ucp_address_t*>(peer_address.data());
  // PEER mode: UCX detects a dead peer (keepalive, transport errors), fails the endpoint's
  // outstanding requests and calls the handler, instead of hanging or aborting. UCX 1.13
  // then uses only transports that support it (not posix/sysv shared memory).
  params.err_mode = peer_failure_detection ? UCP_ERR_HANDLING_MODE_PEER : UCP_ERR_HANDLING_MODE_NONE;
  params.err_handler.cb = &State::error_callback;
  params.err_handler.arg = e.s_.get();
  Status st = ucx_status(ucp_ep_create(worker, &params, &e.s_->ep), "ucp_ep_create");
  if (!st) {
    e.s_->ep = nullptr;
    e.s_->state = EndpointState::kClosed;  // nothing to close
    return st;
  }
  return e;
}

UcxEndpoint::UcxEndpoint() = default;
UcxEndpoint::UcxEndpoint(UcxEndpoint&&) noexcept = default;

UcxEndpoint& UcxEndpoint::operator=(UcxEndpoint&& o) noexcept {
  if (this != &o) {
    UcxEndpoint old(std::move(*this));  // closes the previous endpoint, if any
    s_ = std::move(o.s_);
  }
  return *this;
}

UcxEndpoint::~UcxEndpoint() {
  if (!s_) return;
  if (s_->state != EndpointState::kClosed) close(/*force=*/true);
  abandon_close();
}

EndpointState UcxEndpoint::state() const { return s_ ? s_->state : EndpointState::kClosed; }

const Status& UcxEndpoint::failure() const {
  static const Status kOk;
  return s_ ? s_->failure : kOk;
}

ucp_ep_h UcxEndpoint::get() const { return s_ ? s_->ep : nullptr; }

void UcxEndpoint::mark_ready() {
  if (s_ && s_->state == EndpointState::kConnecting) s_->state = EndpointState::kReady;
}

void UcxEndpoint::mark_failed(Status why) {
  if (!s_ || (s_->state != EndpointState::kConnecting && s_->state != EndpointState::kReady)) return;
  s_->state = EndpointState::kFailed;
  s_->failure = std::move(why);
}

bool UcxEndpoint::close(bool force) {
  if (!s_ || s_->state == EndpointState::kClosed) return !close_pending();
  // UCX: after an error the endpoint can only be released with force.
  if (s_->state == EndpointState::kFailed) force = true;
  ucp_request_param_t param{};
  param.op_attr_mask = UCP_OP_ATTR_FIELD_FLAGS;
  param.flags = force ? UCP_EP_CLOSE_FLAG_FORCE : 0;
  void* req = ucp_ep_close_nbx(s_->ep, &param);
  s_->ep = nullptr;
  s_->state = EndpointState::kClosed;
  if (UCS_PTR_IS_PTR(req)) {
    s_->close_request = req;
    return false;
  }
  ucs_status_t st = UCS_PTR_STATUS(req);
  // A close that fails has still released the endpoint's resources (UCX documents this);
  // the status only says the peer was not told.
  if (st != UCS_OK && st != UCS_ERR_CANCELED && !force) {
    spdlog::debug("{}", ucx_status(st, "ucp_ep_close_nbx").to_string());
  }
  return true;
}

bool UcxEndpoint::close_pending() {
  if (!s_ || !s_->close_request) return false;
  if (ucp_request_check_status(s_->close_request) == UCS_INPROGRESS) return true;
  ucp_request_free(s_->close_request);
  s_->close_request = nullptr;
  return false;
}

void UcxEndpoint::abandon_close() {
  if (!s_ || !s_->close_request) return;
  // ucp_request_free releases the handle whatever its state; UCX finishes the close on its
  // own, at the latest when the worker is destroyed.
  ucp_request_free(s_->close_request);
  s_->close_request = nullptr;
}

std::string UcxEndpoint::describe() const {
  if (!s_ || !s_->ep) return {};
  char* buf = nullptr;
  size_t len = 0;
  FILE* f = open_memstream(&buf, &len);
  if (!f) return {};
  ucp_ep_print_info(s_->ep, f);
  std::fclose(f);
  std::string out(buf, len);
  std::free(buf);
  return out;
}

// UCX 1.13 has no query for an endpoint's transports; ucp_ep_print_info's lane lines, e.g.
// "#   lane[1]:  1:cma/memory.0 md[1]   -> md[1]/cma/sysdev[255] rma_bw#0", are the only
// place that names them.
std::string summarize_endpoint_info(const std::string& info) {
  std::istringstream in(info);
  std::string line, out;
  while (std::getline(in, line)) {
    const auto lane = line.find("lane[");
    const auto arrow = line.find("->");
    if (lane == std::string::npos || arrow == std::string::npos) continue;
    const auto colon = line.find(':', line.find("]:", lane) + 2);
    if (colon == std::string::npos || colon > arrow) continue;
    std::istringstream left(line.substr(colon + 1, arrow - colon - 1));
    std::string tl;
    left >> tl;  // "cma/memory.0"
    if (auto dot = tl.rfind('.'); dot != std::string::npos) tl.resize(dot);
    std::istringstream right(line.substr(arrow + 2));
    std::string word, roles;
    right >> word;  // the remote md and transport
    while (right >> word) {
      if (!roles.empty()) roles.push_back(' ');
      roles.append(word, 0, word.find('#'));
    }
    if (!out.empty()) out.append(", ");
    out.append(tl);
    if (!roles.empty()) out.append(" (").append(roles).append(")");
  }
  return out;
}

}  // namespace pdctl::kv
