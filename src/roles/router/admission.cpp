#include "roles/router/admission.h"

#include <algorithm>
#include <utility>

#include <fmt/format.h>

namespace pdctl::router {

bool AdmissionController::try_acquire() {
  if (!slot_free() || !queue_.empty()) return false;
  ++in_flight_;
  return true;
}

Result<AdmissionController::Ticket> AdmissionController::enqueue(TimePoint now, Callback on_done) {
  if (config_.queue_size == 0) {
    return Status::resource_exhausted(
        fmt::format("too many requests: {} in flight and no queue", in_flight_));
  }
  if (queue_.size() >= config_.queue_size) {
    return Status::resource_exhausted(
        fmt::format("too many requests: {} in flight, {} queued", in_flight_, queue_.size()));
  }
  Ticket t = next_ticket_++;
  queue_.push_back({t, now, std::move(on_done)});
  return t;
}

bool AdmissionController::cancel(Ticket ticket) {
  auto it = std::find_if(queue_.begin(), queue_.end(), [&](const Waiter& w) { return w.ticket == ticket; });
  if (it == queue_.end()) return false;
  queue_.erase(it);
  return true;
}

void AdmissionController::release(TimePoint now) {
  if (in_flight_ > 0) --in_flight_;
  grant(now);
}

void AdmissionController::grant(TimePoint now) {
  // Each waiter leaves the queue before its callback runs: the callback may call release()
  // or enqueue() again.
  while (!queue_.empty() && slot_free()) {
    Waiter w = std::move(queue_.front());
    queue_.pop_front();
    if (now - w.since >= config_.queue_timeout) {
      w.on_done(Status::timeout("waited too long in the router's queue"));
      continue;
    }
    ++in_flight_;
    w.on_done(Status::ok());
  }
}

size_t AdmissionController::expire(TimePoint now) {
  size_t n = 0;
  while (!queue_.empty() && now - queue_.front().since >= config_.queue_timeout) {
    Waiter w = std::move(queue_.front());
    queue_.pop_front();
    ++n;
    w.on_done(Status::timeout("waited too long in the router's queue"));
  }
  return n;
}

std::optional<TimePoint> AdmissionController::next_deadline() const {
  if (queue_.empty()) return std::nullopt;
  return queue_.front().since + config_.queue_timeout;
}

}  // namespace pdctl::router
