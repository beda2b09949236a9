#pragma once
// The whole-request deadlines (--request-timeout-secs) of every request in flight, on one
// timer. All requests share one timeout, so deadlines arrive in order: the list is FIFO
// and the timer only ever waits for its head. A node is a base of the request itself
// (intrusive: no allocation, O(1) removal), where a libuv timer per request would cost an
// allocation, a handle and a close callback each.
#include <chrono>
#include <optional>

#include "net/event_loop.h"
#include "roles/router/router_common.h"

namespace pdctl::router {

class DeadlineList;

class DeadlineNode {
 public:
  DeadlineNode() = default;
  DeadlineNode(const DeadlineNode&) = delete;
  DeadlineNode& operator=(const DeadlineNode&) = delete;

  bool linked() const { return list_ != nullptr; }

 protected:
  ~DeadlineNode() = default;  // the owner removes the node first
  // The deadline passed; the node is already out of the list.
  virtual void on_deadline() = 0;

 private:
  friend class DeadlineList;
  DeadlineList* list_ = nullptr;
  DeadlineNode* prev_ = nullptr;
  DeadlineNode* next_ = nullptr;
  TimePoint due_{};
};

class DeadlineList {
 public:
  explicit DeadlineList(net::EventLoop& loop) : timer_(loop) {}
  ~DeadlineList();
  DeadlineList(const DeadlineList&) = delete;
  DeadlineList& operator=(const DeadlineList&) = delete;

  // Calls node.on_deadline() once `due` has passed, unless remove() comes first. A due
  // earlier than the last one added is placed in order (walking from the back).
  void add(DeadlineNode& node, TimePoint due);
  // Idempotent.
  void remove(DeadlineNode& node);
  bool empty() const { return head_ == nullptr; }

 private:
  void arm();
  void fire();

  DeadlineNode* head_ = nullptr;
  DeadlineNode* tail_ = nullptr;
  net::Timer timer_;
  std::optional<TimePoint> armed_for_;
};

}  // namespace pdctl::router
