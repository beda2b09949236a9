#pragma once
// Server-Sent Events: formatting ("data: {...}\n\n") for the server, and an incremental
// parser (WHATWG event-stream rules) for a client reading a streamed body.
#include <cstddef>
#include <functional>
#include <string>
#include <string_view>

#include "common/status.h"

namespace pdctl::net {

// The stream's end marker of OpenAI-compatible APIs.
inline constexpr std::string_view kSseDone = "data: [DONE]\n\n";

// Appends one event carrying `data`: a "data: " line per line of `data`, then a blank line.
void append_sse_event(std::string& out, std::string_view data);
inline std::string sse_event(std::string_view data) {
  std::string out;
  append_sse_event(out, data);
  return out;
}

struct SseEvent {
  std::string event;  // "event:" field ("" means "message")
  std::string data;   // "data:" lines joined with '\n'
  std::string id;     // "id:" field, "" when none was given in this event
};

class SseParser {
 public:
  // `max_event_bytes` bounds what one event (or one line) may buffer.
  explicit SseParser(size_t max_event_bytes = 16u << 20) : max_event_bytes_(max_event_bytes) {}

  // Feeds the next bytes of the stream (split anywhere: mid-line, between CR and LF...)
  // and calls `on_event` for each event completed by them. Comments (":...") are skipped,
  // an event with no data line is not dispatched. An error (event too large) is final.
  Status feed(std::string_view bytes, const std::function<void(const SseEvent&)>& on_event);

  // True when bytes of an unfinished event are pending (a stream that ended mid-event).
  bool has_partial() const { return !line_.empty() || has_data_; }

 private:
  void process_line(std::string_view line, const std::function<void(const SseEvent&)>& on_event);

  size_t max_event_bytes_;
  std::string line_;  // the unfinished line
  SseEvent event_;    // the event being built
  bool has_data_ = false;
  bool skip_lf_ = false;  // the last byte was CR: a following LF ends the same line
  bool started_ = false;  // past a leading byte-order mark
  Status error_;
};

}  // namespace pdctl::net
