#pragma once
// The cache_aware policy's approximate radix tree (SGLang's sgl-router/src/policies/tree.rs):
// one character-level radix tree shared by all tenants (workers), each node remembering which
// tenants have routed a text through it and when. It guesses which worker's prefix cache
// holds the longest prefix of a text without asking the workers.
//
// Characters are Unicode code points, as Rust's chars(): a match rate is code points matched
// over code points in the text. Text is stored as UTF-8; invalid UTF-8 is first repaired
// (each bad byte becomes U+FFFD) so that counting stays well defined.
//
// Invariant: a tenant present on a node is present on all its ancestors (an insert walks
// the whole path), and a tenant's size is the sum of the code points of the nodes it is on.
// LRU order uses a logical clock (one tick per insert) instead of wall time: deterministic,
// and ties between unrelated inserts cannot happen.
#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace pdctl::router {

class ApproxTree {
 public:
  ApproxTree();
  ~ApproxTree();
  ApproxTree(const ApproxTree&) = delete;
  ApproxTree& operator=(const ApproxTree&) = delete;

  // Records that `tenant` has seen `text` (registers the tenant even for an empty text).
  void insert(std::string_view text, std::string_view tenant);

  struct Match {
    size_t matched_chars = 0;  // code points of `text` matched
    size_t text_chars = 0;     // code points of `text`
    std::optional<std::string> tenant;  // nullopt when nothing matched
  };
  // The longest prefix of `text` held by one of `eligible` tenants (all tenants when
  // `eligible` is empty), and that tenant; among several tenants on the deepest node, the
  // most recently used one. A partial match inside a node counts, as in SGLang.
  Match prefix_match(std::string_view text, std::span<const std::string> eligible = {}) const;

  // Removes the least recently used leaves of every tenant larger than `max_chars` until it
  // is not (SGLang's evict_tenant_by_size); nodes left without tenants are freed.
  void evict(size_t max_chars);

  // Forgets a tenant entirely (a removed worker).
  void remove_tenant(std::string_view tenant);

  bool has_tenant(std::string_view tenant) const;
  // Code points held for a tenant; 0 for an unknown one.
  size_t tenant_size(std::string_view tenant) const;
  std::vector<std::string> tenants() const;
  size_t node_count() const;  // nodes besides the root

  // Sizes recomputed by walking the tree, for tests of the maintained counts.
  std::map<std::string, size_t> computed_sizes() const;

 private:
  struct Node;
  using TenantId = uint32_t;

  std::optional<TenantId> id_of(std::string_view tenant) const;
  TenantId intern(std::string_view tenant);

  std::unique_ptr<Node> root_;
  std::unordered_map<std::string, TenantId> ids_;
  std::unordered_map<TenantId, std::string> names_;
  std::unordered_map<TenantId, size_t> sizes_;
  TenantId next_id_ = 0;
  uint64_t clock_ = 0;
  size_t nodes_ = 0;
};

// Counts code points of valid UTF-8 (continuation bytes are not counted).
size_t utf8_length(std::string_view s);
// Returns `s` with every byte that is not part of a valid UTF-8 sequence replaced by U+FFFD.
std::string repair_utf8(std::string_view s);

}  // namespace pdctl::router
