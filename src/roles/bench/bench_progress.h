#pragma once
// Progress of a benchmark run: a tqdm-like bar redrawn in place when stderr is a terminal,
// a plain line every few seconds otherwise (logs, CI), nothing with --disable-tqdm. It only
// renders text; the driver writes it to stderr, so it is cheap to call on every completion.
#include <cstddef>
#include <string>

namespace pdctl::roles {

class ProgressDisplay {
 public:
  enum class Mode { kOff, kBar, kLines };
  static Mode choose(bool disable_tqdm, bool stderr_is_terminal);
  static bool stderr_is_terminal();

  // `total` requests, counted from `start_s` (monotonic seconds).
  ProgressDisplay(Mode mode, size_t total, double start_s, double line_interval_s = 10.0);

  // The text to write now for `completed` of total (failures included) at `now_s`; empty
  // between redraws (a bar at most every 0.1 s, a line every line_interval_s) so that
  // calling it per completion costs a comparison.
  std::string update(size_t completed, double now_s);
  // The last state, then a newline for the bar; empty when off or already shown.
  std::string finish(size_t completed, double now_s);

 private:
  std::string render(size_t completed, double now_s) const;

  Mode mode_;
  size_t total_;
  double start_s_;
  double interval_s_;
  double next_s_;
  size_t shown_ = static_cast<size_t>(-1);
};

// tqdm's time format: MM:SS, or H:MM:SS from an hour; "?" for unknown (negative or NaN).
std::string format_duration(double seconds);

}  // namespace pdctl::roles
