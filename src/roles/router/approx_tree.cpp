#include "roles/router/approx_tree.h"

#include <algorithm>
#include <queue>
#include <utility>

namespace pdctl::router {
namespace {

bool is_cont(unsigned char c) { return (c & 0xC0) == 0x80; }

// Length of the valid UTF-8 sequence starting at s[i], or 0 when it is not valid.
size_t valid_sequence(std::string_view s, size_t i) {
  auto at = [&](size_t k) -> unsigned char { return static_cast<unsigned char>(s[k]); };
  unsigned char c = at(i);
  size_t n = s.size() - i;
  if (c < 0x80) return 1;
  auto in = [&](size_t k, unsigned char lo, unsigned char hi) {
    return k < n && at(i + k) >= lo && at(i + k) <= hi;
  };
  if (c >= 0xC2 && c <= 0xDF) return in(1, 0x80, 0xBF) ? 2 : 0;
  if (c == 0xE0) return in(1, 0xA0, 0xBF) && in(2, 0x80, 0xBF) ? 3 : 0;
  if ((c >= 0xE1 && c <= 0xEC) || c == 0xEE || c == 0xEF) {
    return in(1, 0x80, 0xBF) && in(2, 0x80, 0xBF) ? 3 : 0;
  }
  if (c == 0xED) return in(1, 0x80, 0x9F) && in(2, 0x80, 0xBF) ? 3 : 0;
  if (c == 0xF0) return in(1, 0x90, 0xBF) && in(2, 0x80, 0xBF) && in(3, 0x80, 0xBF) ? 4 : 0;
  if (c >= 0xF1 && c <= 0xF3) {
    return in(1, 0x80, 0xBF) && in(2, 0x80, 0xBF) && in(3, 0x80, 0xBF) ? 4 : 0;
  }
  if (c == 0xF4) return in(1, 0x80, 0x8F) && in(2, 0x80, 0xBF) && in(3, 0x80, 0xBF) ? 4 : 0;
  return 0;
}

bool is_valid_utf8(std::string_view s) {
  for (size_t i = 0; i < s.size();) {
    size_t n = valid_sequence(s, i);
    if (n == 0) return false;
    i += n;
  }
  return true;
}

// The first code point of valid, non-empty UTF-8.
char32_t first_code_point(std::string_view s) {
  auto c = static_cast<unsigned char>(s[0]);
  if (c < 0x80) return c;
  size_t n = c >= 0xF0 ? 4 : c >= 0xE0 ? 3 : 2;
  char32_t cp = c & (0x7F >> n);
  for (size_t k = 1; k < n && k < s.size(); ++k) {
    cp = (cp << 6) | (static_cast<unsigned char>(s[k]) & 0x3F);
  }
  return cp;
}

// Bytes of the longest common prefix of two valid UTF-8 strings, on a code point boundary.
size_t shared_prefix_bytes(std::string_view a, std::string_view b) {
  auto [ia, ib] = std::mismatch(a.begin(), a.end(), b.begin(), b.end());
  size_t k = static_cast<size_t>(ia - a.begin());
  auto cont_at = [](std::string_view s, size_t k) {
    return k < s.size() && is_cont(static_cast<unsigned char>(s[k]));
  };
  while (k > 0 && (cont_at(a, k) || cont_at(b, k))) --k;
  return k;
}

}  // namespace

size_t utf8_length(std::string_view s) {
  size_t n = 0;
  for (char c : s) n += is_cont(static_cast<unsigned char>(c)) ? 0 : 1;
  return n;
}

std::string repair_utf8(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (size_t i = 0; i < s.size();) {
    size_t n = valid_sequence(s, i);
    if (n == 0) {
      out += "\xEF\xBF\xBD";
      ++i;
    } else {
      out.append(s.substr(i, n));
      i += n;
    }
  }
  return out;
}

struct ApproxTree::Node {
  std::string text;  // UTF-8, valid
  size_t chars = 0;  // code points of `text`
  Node* parent = nullptr;
  std::unordered_map<char32_t, std::unique_ptr<Node>> children;
  std::vector<std::pair<TenantId, uint64_t>> tenants;  // tenant, tick of last use

  uint64_t* tick_of(TenantId t) {
    for (auto& [id, tick] : tenants) {
      if (id == t) return &tick;
    }
    return nullptr;
  }
  bool has(TenantId t) const {
    return std::any_of(tenants.begin(), tenants.end(), [t](const auto& p) { return p.first == t; });
  }
  void drop(TenantId t) {
    std::erase_if(tenants, [t](const auto& p) { return p.first == t; });
  }
  // No child holds `t`: the node is one of t's leaves.
  bool leaf_for(TenantId t) const {
    return std::none_of(children.begin(), children.end(),
                        [t](const auto& c) { return c.second->has(t); });
  }
};

ApproxTree::ApproxTree() : root_(std::make_unique<Node>()) {}

ApproxTree::~ApproxTree() {
  // Iteratively, so that a deep tree cannot overflow the stack through recursive destructors.
  std::vector<std::unique_ptr<Node>> stack;
  stack.push_back(std::move(root_));
  while (!stack.empty()) {
    std::unique_ptr<Node> n = std::move(stack.back());
    stack.pop_back();
    for (auto& [c, child] : n->children) stack.push_back(std::move(child));
  }
}

std::optional<ApproxTree::TenantId> ApproxTree::id_of(std::string_view tenant) const {
  auto it = ids_.find(std::string(tenant));
  if (it == ids_.end()) return std::nullopt;
  return it->second;
}

ApproxTree::TenantId ApproxTree::intern(std::string_view tenant) {
  if (auto id = id_of(tenant)) return *id;
  TenantId id = next_id_++;
  ids_.emplace(std::string(tenant), id);
  names_.emplace(id, std::string(tenant));
  sizes_.emplace(id, 0);
  return id;
}

void ApproxTree::insert(std::string_view text, std::string_view tenant) {
  std::string repaired;
  if (!is_valid_utf8(text)) {
    repaired = repair_utf8(text);
    text = repaired;
  }
  const TenantId id = intern(tenant);
  const uint64_t tick = ++clock_;
  size_t& size = sizes_[id];

  Node* node = root_.get();
  size_t pos = 0;
  while (pos < text.size()) {
    std::string_view rest = text.substr(pos);
    char32_t key = first_code_point(rest);
    auto it = node->children.find(key);
    if (it == node->children.end()) {
      auto leaf = std::make_unique<Node>();
      leaf->text = std::string(rest);
      leaf->chars = utf8_length(rest);
      leaf->parent = node;
      leaf->tenants.emplace_back(id, tick);
      size += leaf->chars;
      node->children.emplace(key, std::move(leaf));
      ++nodes_;
      return;
    }
    Node* child = it->second.get();
    size_t shared = shared_prefix_bytes(child->text, rest);
    if (shared < child->text.size()) {
      // Split: [node] -> [child] becomes [node] -> [mid] -> [child]. The tenants of child
      // move onto mid too; their sizes do not change (mid + child = the old child).
      auto mid = std::make_unique<Node>();
      mid->text = child->text.substr(0, shared);
      mid->chars = utf8_length(mid->text);
      mid->parent = node;
      mid->tenants = child->tenants;
      child->text.erase(0, shared);
      child->chars -= mid->chars;
      child->parent = mid.get();
      char32_t child_key = first_code_point(child->text);
      mid->children.emplace(child_key, std::move(it->second));
      it->second = std::move(mid);
      ++nodes_;
      child = it->second.get();
    }
    if (uint64_t* t = child->tick_of(id)) {
      *t = tick;
    } else {
      child->tenants.emplace_back(id, tick);
      size += child->chars;
    }
    pos += shared;
    node = child;
  }
}

ApproxTree::Match ApproxTree::prefix_match(std::string_view text,
                                           std::span<const std::string> eligible) const {
  std::string repaired;
  if (!is_valid_utf8(text)) {
    repaired = repair_utf8(text);
    text = repaired;
  }
  Match m;
  m.text_chars = utf8_length(text);

  std::vector<TenantId> allowed;
  for (const auto& e : eligible) {
    if (auto id = id_of(e)) allowed.push_back(*id);
  }
  if (!eligible.empty() && allowed.empty()) return m;
  auto usable = [&](TenantId t) {
    return eligible.empty() || std::find(allowed.begin(), allowed.end(), t) != allowed.end();
  };
  auto has_usable = [&](const Node& n) {
    return std::any_of(n.tenants.begin(), n.tenants.end(), [&](const auto& p) { return usable(p.first); });
  };

  const Node* node = root_.get();
  size_t pos = 0;
  while (pos < text.size()) {
    std::string_view rest = text.substr(pos);
    auto it = node->children.find(first_code_point(rest));
    if (it == node->children.end() || !has_usable(*it->second)) break;
    const Node* child = it->second.get();
    size_t shared = shared_prefix_bytes(child->text, rest);
    pos += shared;
    node = child;
    if (shared < child->text.size()) break;
  }
  if (node == root_.get()) return m;

  const std::pair<TenantId, uint64_t>* best = nullptr;
  for (const auto& p : node->tenants) {
    if (usable(p.first) && (!best || p.second > best->second)) best = &p;
  }
  m.matched_chars = utf8_length(text.substr(0, pos));
  m.tenant = names_.at(best->first);
  return m;
}

void ApproxTree::evict(size_t max_chars) {
  if (std::none_of(sizes_.begin(), sizes_.end(), [&](const auto& s) { return s.second > max_chars; })) {
    return;
  }
  struct Entry {
    uint64_t tick;
    TenantId tenant;
    Node* node;
    bool operator>(const Entry& o) const { return tick > o.tick; }
  };
  std::priority_queue<Entry, std::vector<Entry>, std::greater<>> heap;

  std::vector<Node*> stack;
  for (auto& [c, child] : root_->children) stack.push_back(child.get());
  while (!stack.empty()) {
    Node* n = stack.back();
    stack.pop_back();
    for (auto& [c, child] : n->children) stack.push_back(child.get());
    for (const auto& [t, tick] : n->tenants) {
      if (sizes_[t] > max_chars && n->leaf_for(t)) heap.push({tick, t, n});
    }
  }

  while (!heap.empty()) {
    Entry e = heap.top();
    heap.pop();
    size_t& size = sizes_[e.tenant];
    if (size <= max_chars) continue;
    Node* n = e.node;
    Node* parent = n->parent;
    n->drop(e.tenant);
    size -= std::min(size, n->chars);
    if (n->tenants.empty() && n->children.empty()) {
      parent->children.erase(first_code_point(n->text));  // frees n
      --nodes_;
    }
    if (parent != root_.get()) {
      if (uint64_t* tick = parent->tick_of(e.tenant); tick && parent->leaf_for(e.tenant)) {
        heap.push({*tick, e.tenant, parent});
      }
    }
  }
}

void ApproxTree::remove_tenant(std::string_view tenant) {
  auto id = id_of(tenant);
  if (!id) return;
  // Pre-order list, then visit it backwards: children before their parents, so that a
  // parent emptied by its children's removal is freed too.
  std::vector<Node*> order;
  std::vector<Node*> stack{root_.get()};
  while (!stack.empty()) {
    Node* n = stack.back();
    stack.pop_back();
    order.push_back(n);
    for (auto& [c, child] : n->children) stack.push_back(child.get());
  }
  for (auto it = order.rbegin(); it != order.rend(); ++it) {
    Node* n = *it;
    if (n == root_.get()) break;
    n->drop(*id);
    if (n->tenants.empty() && n->children.empty()) {
      n->parent->children.erase(first_code_point(n->text));
      --nodes_;
    }
  }
  ids_.erase(std::string(tenant));
  names_.erase(*id);
  sizes_.erase(*id);
}

bool ApproxTree::has_tenant(std::string_view tenant) const { return id_of(tenant).has_value(); }

size_t ApproxTree::tenant_size(std::string_view tenant) const {
  auto id = id_of(tenant);
  return id ? sizes_.at(*id) : 0;
}

std::vector<std::string> ApproxTree::tenants() const {
  std::vector<std::string> out;
  for (const auto& [name, id] : ids_) out.push_back(name);
  std::sort(out.begin(), out.end());
  return out;
}

size_t ApproxTree::node_count() const { return nodes_; }

std::map<std::string, size_t> ApproxTree::computed_sizes() const {
  std::map<std::string, size_t> out;
  for (const auto& [name, id] : ids_) out[name] = 0;
  std::vector<const Node*> stack;
  for (const auto& [c, child] : root_->children) stack.push_back(child.get());
  while (!stack.empty()) {
    const Node* n = stack.back();
    stack.pop_back();
    for (const auto& [t, tick] : n->tenants) out[names_.at(t)] += n->chars;
    for (const auto& [c, child] : n->children) stack.push_back(child.get());
  }
  return out;
}

}  // namespace pdctl::router
