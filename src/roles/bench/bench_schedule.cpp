#include "roles/bench/bench_schedule.h"

#include <algorithm>
#include <cctype>
#include <charconv>
#include <cmath>
#include <limits>
#include <string>

namespace pdctl::roles {

Result<double> parse_request_rate(std::string_view text) {
  const std::string original(text);
  auto bad = [&] {
    return Status::invalid_argument("--request-rate '" + original +
                                    "': expected a positive number of requests per second, or inf");
  };
  // Python's float(): surrounding whitespace allowed, case-insensitive inf.
  while (!text.empty() && std::isspace(static_cast<unsigned char>(text.front()))) text.remove_prefix(1);
  while (!text.empty() && std::isspace(static_cast<unsigned char>(text.back()))) text.remove_suffix(1);
  std::string s;
  for (char c : text) s.push_back(static_cast<char>(std::tolower(static_cast<unsigned char>(c))));
  if (!s.empty() && s.front() == '+') s.erase(0, 1);
  if (s == "inf" || s == "infinity") return std::numeric_limits<double>::infinity();
  double rate = 0;
  auto r = std::from_chars(s.data(), s.data() + s.size(), rate);
  if (s.empty() || r.ec != std::errc() || r.ptr != s.data() + s.size()) return bad();
  if (!std::isfinite(rate) || rate <= 0) return bad();
  return rate;
}

std::vector<double> arrival_offsets(size_t n, double rate, NumpyRandom& rng) {
  std::vector<double> at(n, 0.0);
  if (std::isinf(rate)) return at;
  double t = 0;
  for (size_t i = 0; i < n; ++i) {
    at[i] = t;
    t += rng.exponential(1.0 / rate);
  }
  return at;
}

RequestDispatcher::RequestDispatcher(std::vector<double> arrivals_s,
                                     std::optional<int> max_concurrency)
    : arrivals_(std::move(arrivals_s)), limit_(max_concurrency) {
  if (limit_ && *limit_ < 1) limit_ = 1;
}

std::optional<size_t> RequestDispatcher::next(double now_s) {
  if (all_sent() || !slot_free() || arrivals_[sent_] > now_s) return std::nullopt;
  ++in_flight_;
  return sent_++;
}

std::optional<double> RequestDispatcher::wake_at_s() const {
  if (all_sent() || !slot_free()) return std::nullopt;
  return arrivals_[sent_];
}

void RequestDispatcher::on_finished() {
  if (in_flight_ > 0) --in_flight_;
}

}  // namespace pdctl::roles
