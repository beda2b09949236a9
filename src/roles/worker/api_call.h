#pragma once
// One generation request of the API while it runs: its items (prompts and samples), what
// the engine has produced for each, and its HTTP reply: the whole body once every item
// has finished, or Server-Sent Events as the output arrives.
//
// Loop thread only. The engine's output reaches it through the CallDispatcher.
//
// Streaming with backpressure: an item's output accumulates in ItemOutput (the text and
// ids are needed whole anyway: SGLang's /generate events are cumulative and the reply of
// a non-streamed call is the whole text); cursors say how much the client has been sent.
// flush() turns everything new into events and writes it in one write(). When the
// connection's queue is full (kPaused) nothing more is formatted until on_writable: the
// output of the meantime is then sent as one event per item, so a slow reader costs one
// event's worth of memory beyond the output itself, never a queue of events.
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "engine/engine_service.h"
#include "net/http_server.h"
#include "roles/worker/api_parsing.h"

namespace pdctl::worker {

// What the engine produced for one item so far.
struct ItemOutput {
  std::vector<int32_t> ids;
  std::string text;
  std::vector<engine::TokenLogprobInfo> logprobs;
  std::vector<engine::TokenLogprobInfo> input_logprobs;
  int prompt_tokens = 0;
  int cached_tokens = 0;
  int completion_tokens = 0;
  bool finished = false;
  engine::FinishInfo finish;
  double e2e_latency = 0;      // seconds from arrival to the final chunk
  double first_token_at = 0;   // steady-clock seconds; 0 until the first token
  double last_token_at = 0;
  bool submitted = false;      // handed to the engine (samples wait for their prompt's first)
  // Streaming cursors: what the client has been sent.
  size_t sent_ids = 0;
  size_t sent_text = 0;
  size_t sent_logprobs = 0;
  bool sent_first = false;     // an event of this item went out (chat: the role chunk)
  bool sent_finish = false;
};

class ApiCall;

// How a protocol (SGLang /generate, OpenAI completions, OpenAI chat) renders a call.
class ReplyFormat {
 public:
  virtual ~ReplyFormat() = default;
  // Streaming: appends the SSE events for what the items gained since the last call and
  // advances their cursors.
  virtual void stream_events(ApiCall& call, std::string& out) = 0;
  // Streaming, after every item finished: the closing events (usage), before [DONE].
  virtual void stream_close(ApiCall& call, std::string& out) = 0;
  // Non-streaming, once every item finished: the body of the 200 reply.
  virtual std::string whole(const ApiCall& call) = 0;
};

class ApiCall : public std::enable_shared_from_this<ApiCall> {
 public:
  ApiCall(uint64_t id, net::Response response, std::vector<ItemSpec> items, std::unique_ptr<ReplyFormat> format,
          bool stream);
  ApiCall(const ApiCall&) = delete;
  ApiCall& operator=(const ApiCall&) = delete;

  uint64_t id() const { return id_; }
  bool stream() const { return stream_; }
  size_t size() const { return items_.size(); }
  const ItemSpec& spec(size_t i) const { return items_[i]; }
  ItemSpec& spec(size_t i) { return items_[i]; }
  const ItemOutput& out(size_t i) const { return outputs_[i]; }
  ItemOutput& out(size_t i) { return outputs_[i]; }
  net::Response& response() { return response_; }

  // Folds one engine chunk into item `i` (at steady-clock time `now`).
  void add_chunk(size_t i, engine::OutputChunk&& chunk, double now);
  // Ends item `i` without the engine (it was never submitted, or submit failed).
  void fail_item(size_t i, Status why);

  // Writes what is new: events when streaming (unless paused), the whole reply or the
  // error once every item finished. Idempotent.
  void flush();

  bool all_finished() const;
  // The error that replaces the reply: the first item that ended by an engine error (an
  // abort other than a cancellation), or ok.
  Status first_error() const;
  // Non-streaming calls without a client (health checks): `fn` runs once every item has
  // finished, in place of the reply.
  void set_on_complete(std::function<void(ApiCall&)> fn) { on_complete_ = std::move(fn); }

  // Nothing more will be written: the reply is complete or the client is gone.
  bool reply_done() const { return reply_done_; }
  // The client went away (or the server dropped the connection).
  bool client_gone() const { return client_gone_; }
  void mark_client_gone() { client_gone_ = true; reply_done_ = true; }

 private:
  void write_stream();

  uint64_t id_;
  net::Response response_;
  std::vector<ItemSpec> items_;
  std::vector<ItemOutput> outputs_;
  std::unique_ptr<ReplyFormat> format_;
  bool stream_;
  bool started_ = false;     // SSE headers sent
  bool paused_ = false;      // the last write said kPaused
  bool reply_done_ = false;
  bool client_gone_ = false;
  std::function<void(ApiCall&)> on_complete_;
};

// The status and body of an error reply: OpenAI's error object,
// {"error": {"message", "type", "param", "code"}}.
struct ApiError {
  int status = 400;
  std::string message;
  std::string param;  // "" gives null
  std::string code;   // "" gives the status number
};
std::string error_body(const ApiError& e);
ApiError api_error(const Status& st);
void send_api_error(net::Response& r, const ApiError& e);
inline void send_api_error(net::Response& r, const Status& st) { send_api_error(r, api_error(st)); }

}  // namespace pdctl::worker
