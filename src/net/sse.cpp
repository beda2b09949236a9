#include "net/sse.h"

#include <cstring>

namespace pdctl::net {

namespace {

// Where the first CR or LF of `s` is. string_view::find_first_of calls memchr over the
// two-character set once per byte of `s`; a streamed response is mostly long lines, so
// find the LF with one memchr and look for a CR only before it.
size_t line_break(std::string_view s) {
  const void* lf = std::memchr(s.data(), '\n', s.size());
  const size_t limit = lf ? static_cast<size_t>(static_cast<const char*>(lf) - s.data()) : s.size();
  if (const void* cr = std::memchr(s.data(), '\r', limit)) {
    return static_cast<size_t>(static_cast<const char*>(cr) - s.data());
  }
  return lf ? limit : std::string_view::npos;
}

}  // namespace

void append_sse_event(std::string& out, std::string_view data) {
  if (data.find_first_of("\r\n") == std::string_view::npos) {
    out.reserve(out.size() + data.size() + 8);
    out += "data: ";
    out += data;
    out += "\n\n";
    return;
  }
  // A line break inside the data would end the field: one data line per line instead.
  while (true) {
    size_t nl = data.find_first_of("\r\n");
    out += "data: ";
    out += data.substr(0, nl);
    out += '\n';
    if (nl == std::string_view::npos) break;
    size_t skip = (data[nl] == '\r' && nl + 1 < data.size() && data[nl + 1] == '\n') ? 2 : 1;
    data.remove_prefix(nl + skip);
  }
  out += '\n';
}

void SseParser::process_line(std::string_view line,
                             const std::function<void(const SseEvent&)>& on_event) {
  if (line.empty()) {
    if (has_data_) {
      if (!event_.data.empty() && event_.data.back() == '\n') event_.data.pop_back();
      on_event(event_);
    }
    event_.event.clear();
    event_.data.clear();
    event_.id.clear();
    has_data_ = false;
    return;
  }
  if (line.front() == ':') return;  // a comment (keep-alive pings)
  size_t colon = line.find(':');
  std::string_view field = line.substr(0, colon);
  std::string_view value;
  if (colon != std::string_view::npos) {
    value = line.substr(colon + 1);
    if (!value.empty() && value.front() == ' ') value.remove_prefix(1);
  }
  if (field == "data") {
    event_.data.append(value);
    event_.data += '\n';
    has_data_ = true;
  } else if (field == "event") {
    event_.event.assign(value);
  } else if (field == "id") {
    if (value.find('\0') == std::string_view::npos) event_.id.assign(value);
  }
  // "retry" and unknown fields are ignored, as the spec says.
}

Status SseParser::feed(std::string_view bytes, const std::function<void(const SseEvent&)>& on_event) {
  if (!error_.is_ok()) return error_;
  if (!started_ && !bytes.empty()) {
    // A UTF-8 byte-order mark may open the stream (it can only be skipped whole here).
    if (bytes.starts_with("\xEF\xBB\xBF")) bytes.remove_prefix(3);
    started_ = true;
  }
  while (!bytes.empty()) {
    if (skip_lf_) {
      skip_lf_ = false;
      if (bytes.front() == '\n') {
        bytes.remove_prefix(1);
        continue;
      }
    }
    size_t end = line_break(bytes);
    if (end == std::string_view::npos) {
      line_.append(bytes);
      break;
    }
    if (line_.empty()) {
      process_line(bytes.substr(0, end), on_event);
    } else {
      line_.append(bytes.substr(0, end));
      process_line(line_, on_event);
      line_.clear();
    }
    skip_lf_ = bytes[end] == '\r';
    bytes.remove_prefix(end + 1);
  }
  if (line_.size() + event_.data.size() > max_event_bytes_) {
    error_ = Status::resource_exhausted("server-sent event larger than " +
                                        std::to_string(max_event_bytes_) + " bytes");
  }
  return error_;
}

}  // namespace pdctl::net
