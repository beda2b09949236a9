#pragma once
// Turns a child's output, read in arbitrary pieces, into whole lines with its name in
// front ("prefill-0 | ..."), so that the lines of several children never interleave
// mid-line. Pure: the caller writes the result.
#include <cstddef>
#include <string>
#include <string_view>

namespace pdctl::roles::up {

class LinePrefixer {
 public:
  // A line longer than `max_line` bytes is cut there (memory stays bounded when a child
  // writes without newlines); the rest follows on a new prefixed line.
  explicit LinePrefixer(std::string prefix, size_t max_line = 64 * 1024)
      : prefix_(std::move(prefix)), max_line_(max_line) {}

  // Appends the complete lines of `bytes` (each prefixed, ending in '\n') to `out`; keeps
  // an unfinished line for the next call.
  void feed(std::string_view bytes, std::string& out);
  // End of stream: the unfinished line, if any, with a '\n' added.
  void finish(std::string& out);

 private:
  void emit(std::string_view line, std::string& out) const;

  std::string prefix_;
  size_t max_line_;
  std::string partial_;
};

}  // namespace pdctl::roles::up
