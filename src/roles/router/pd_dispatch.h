#pragma once
// PD mode: per attempt a prefill worker (--prefill-policy) and a decode worker
// (--decode-policy), one body for both with bootstrap_host / bootstrap_port and a fresh
// bootstrap_room (one per item of a batch), sent to both at once.
//
// The client's response is decode's:
//   - streamed: decode's bytes go to the client as they arrive, whatever prefill is doing
//     (prefill's reply is awaited only for its status). The stream ends once both have
//     answered; a prefill that fails first turns it into an SSE error event. With
//     logprobs, each event is rewritten with prefill's input logprobs in front, so decode's
//     events wait for prefill's reply (decode's body is paused meanwhile: it cannot run
//     ahead in memory).
//   - whole: decode's body once both have answered; with logprobs, prefill's merged in.
// A failure of either side before anything reached the client cancels the other and
// retries with a new pair and a new room (408, 429, 5xx and transport errors), or answers
// with the failing side's response. Each worker's breaker records its own outcome.
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "net/sse.h"
#include "roles/router/api_request.h"

namespace pdctl::router {

class PdRequest final : public ApiRequest {
 public:
  using ApiRequest::ApiRequest;
  ~PdRequest() override;

 private:
  // One worker's half of an attempt.
  struct Side {
    std::shared_ptr<Worker> worker;
    LoadGuard load;
    net::RequestHandle call;
    int status = 0;
    net::Headers headers;
    std::string body;       // kept when needed (errors, logprobs, a whole response)
    bool keep_body = false;
    bool done = false;

    void reset();
    bool ok() const { return status >= 200 && status < 300; }
  };

  void start_attempt() override;
  void cancel_attempt() override;
  void on_client_writable() override;

  void on_prefill_head(const net::ResponseHead& head);
  void on_prefill_done(const Status& st);
  void on_decode_head(const net::ResponseHead& head);
  void on_decode_body(std::string_view bytes);
  void on_decode_done(const Status& st);

  // A side failed: cancel the other, then retry or answer (or end a begun stream).
  void side_failed(Side& failed, Side& other, const AttemptResult& result, const Status& st);
  // Both sides answered 2xx (or decode streamed and prefill answered): finish.
  void complete();
  // Streamed decode bytes toward the client (begins the stream on the first call).
  void emit(std::string_view bytes);
  void emit_event(const std::string& data);
  void flush_pending();
  void update_decode_flow();

  bool merging() const { return decode_stream_ && in_.logprobs; }

  Side prefill_;
  Side decode_;
  bool decode_stream_ = false;   // decode answered 2xx and its body goes out as a stream
  bool client_paused_ = false;   // the client's queue is full
  // Streams with logprobs: prefill's input logprobs, and decode's events until they come.
  std::optional<nlohmann::json> prefill_logprobs_;
  bool prefill_logprobs_ready_ = false;
  net::SseParser decode_events_;
  std::vector<std::string> pending_;
};

// Prefill's input logprobs from its reply: a JSON body's meta_info.input_token_logprobs,
// or the first SSE event that carries them (a streamed reply). nullopt when absent.
std::optional<nlohmann::json> prefill_logprobs_from_body(std::string_view body, bool sse);

}  // namespace pdctl::router
