#include "roles/router/deadline_list.h"

#include <algorithm>

namespace pdctl::router {

DeadlineList::~DeadlineList() {
  while (head_ != nullptr) remove(*head_);
}

void DeadlineList::add(DeadlineNode& node, TimePoint due) {
  remove(node);
  node.list_ = this;
  node.due_ = due;
  DeadlineNode* after = tail_;
  while (after != nullptr && after->due_ > due) after = after->prev_;
  node.prev_ = after;
  node.next_ = after != nullptr ? after->next_ : head_;
  if (node.next_ != nullptr) {
    node.next_->prev_ = &node;
  } else {
    tail_ = &node;
  }
  if (after != nullptr) {
    after->next_ = &node;
  } else {
    head_ = &node;
  }
  if (head_ == &node) arm();
}

void DeadlineList::remove(DeadlineNode& node) {
  if (node.list_ != this) return;
  if (node.prev_ != nullptr) {
    node.prev_->next_ = node.next_;
  } else {
    head_ = node.next_;
  }
  if (node.next_ != nullptr) {
    node.next_->prev_ = node.prev_;
  } else {
    tail_ = node.prev_;
  }
  node.list_ = nullptr;
  node.prev_ = node.next_ = nullptr;
  // The timer stays armed for the old head: it fires early at worst and re-arms.
  if (head_ == nullptr) {
    timer_.cancel();
    armed_for_.reset();
  }
}

void DeadlineList::arm() {
  if (head_ == nullptr) return;
  if (armed_for_ && *armed_for_ <= head_->due_ && timer_.active()) return;
  auto wait = std::chrono::ceil<std::chrono::milliseconds>(head_->due_ - Clock::now());
  armed_for_ = head_->due_;
  timer_.start(std::max(wait, std::chrono::milliseconds(0)), [this] { fire(); });
}

void DeadlineList::fire() {
  armed_for_.reset();
  TimePoint now = Clock::now();
  // Each callback may add or remove nodes (its own and others): the head is read anew.
  while (head_ != nullptr && head_->due_ <= now) {
    DeadlineNode* n = head_;
    remove(*n);
    n->on_deadline();
  }
  arm();
}

}  // namespace pdctl::router
