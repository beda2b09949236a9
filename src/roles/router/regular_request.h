#pragma once
// Regular mode: one worker per attempt, chosen by --policy; the client's body goes to it
// byte for byte (it is parsed only when the policy needs its text), and the worker's
// response comes back as it arrives:
//   - a retryable status (408, 429, 5xx) while attempts are left: its body is read and
//     dropped, and the request is retried on a new pick;
//   - a body with a Content-Length (ordinary JSON replies): collected, then sent whole with
//     the worker's status and headers (one write, the framing the worker chose);
//   - anything else (SSE, chunked): streamed to the client piece by piece, with
//     backpressure both ways (a client that stops reading pauses the worker's body).
#include <memory>
#include <string>

#include "roles/router/api_request.h"

namespace pdctl::router {

class RegularRequest final : public ApiRequest {
 public:
  using ApiRequest::ApiRequest;
  ~RegularRequest() override;

 private:
  enum class Mode { kRetryable, kWhole, kStream };

  void start_attempt() override;
  void cancel_attempt() override;
  void on_client_writable() override;

  void on_head(const net::ResponseHead& head);
  void on_body(std::string_view bytes);
  void on_done(const Status& st);

  std::shared_ptr<Worker> worker_;
  LoadGuard load_;
  net::RequestHandle call_;
  Mode mode_ = Mode::kWhole;
  int status_ = 0;
  net::Headers headers_;  // the worker's, as forwarded
  std::string buffered_;
};

}  // namespace pdctl::router
