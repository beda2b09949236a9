#include "roles/bench/bench_progress.h"

#include <algorithm>
#include <cmath>
#include <fmt/format.h>
#include <unistd.h>

namespace pdctl::roles {

ProgressDisplay::Mode ProgressDisplay::choose(bool disable_tqdm, bool terminal) {
  if (disable_tqdm) return Mode::kOff;
  return terminal ? Mode::kBar : Mode::kLines;
}

bool ProgressDisplay::stderr_is_terminal() { return isatty(STDERR_FILENO) == 1; }

ProgressDisplay::ProgressDisplay(Mode mode, size_t total, double start_s, double line_interval_s)
    : mode_(mode),
      total_(total),
      start_s_(start_s),
      interval_s_(mode == Mode::kBar ? 0.1 : line_interval_s),
      next_s_(start_s) {}

std::string format_duration(double seconds) {
  if (!(seconds >= 0) || std::isinf(seconds)) return "?";
  auto s = static_cast<long long>(seconds);
  if (s >= 3600) return fmt::format("{}:{:02d}:{:02d}", s / 3600, (s / 60) % 60, s % 60);
  return fmt::format("{:02d}:{:02d}", s / 60, s % 60);
}

std::string ProgressDisplay::update(size_t completed, double now_s) {
  if (mode_ == Mode::kOff) return {};
  const bool last = completed >= total_;
  if (!last && now_s < next_s_) return {};
  if (completed == shown_) return {};
  next_s_ = now_s + interval_s_;
  shown_ = completed;
  return render(completed, now_s);
}

std::string ProgressDisplay::finish(size_t completed, double now_s) {
  if (mode_ == Mode::kOff) return {};
  std::string out = completed == shown_ ? std::string() : render(completed, now_s);
  shown_ = completed;
  if (mode_ == Mode::kBar) out += "\n";
  return out;
}

std::string ProgressDisplay::render(size_t completed, double now_s) const {
  const double elapsed = now_s - start_s_;
  const double rate = elapsed > 0 ? static_cast<double>(completed) / elapsed : 0;
  const double eta = rate > 0 ? static_cast<double>(total_ - std::min(completed, total_)) / rate : NAN;
  const double frac = total_ ? static_cast<double>(completed) / static_cast<double>(total_) : 1.0;
  const std::string rate_text = rate > 0 ? fmt::format("{:.2f}", rate) : "?";
  if (mode_ == Mode::kLines) {
    return fmt::format("{}/{} requests ({:.0f}%), elapsed {}, ETA {}, {} req/s\n", completed,
                       total_, frac * 100, format_duration(elapsed), format_duration(eta),
                       rate_text);
  }
  // " 45%|█████████▍          | 450/1000 [00:12<00:15, 36.51it/s]", as tqdm draws it.
  static constexpr const char* kParts[] = {"", "▏", "▎", "▍", "▌", "▋", "▊", "▉"};
  constexpr int kWidth = 30;
  const double cells = std::min(frac, 1.0) * kWidth;
  const int full = static_cast<int>(cells);
  const int part = static_cast<int>((cells - full) * 8);
  std::string bar;
  for (int i = 0; i < full; ++i) bar += "█";
  int used = full;
  if (full < kWidth && part > 0) {
    bar += kParts[part];
    ++used;
  }
  bar += std::string(static_cast<size_t>(kWidth - used), ' ');
  return fmt::format("\r{:3.0f}%|{}| {}/{} [{}<{}, {}it/s]", std::floor(frac * 100), bar,
                     completed, total_, format_duration(elapsed), format_duration(eta),
                     rate_text);
}

}  // namespace pdctl::roles
