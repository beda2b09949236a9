// The cache_aware policy's approximate radix tree (SGLang's policies/tree.rs semantics).
#include <doctest/doctest.h>

#include <random>
#include <string>
#include <vector>

#include "roles/router/approx_tree.h"

using pdctl::router::ApproxTree;

namespace {

// Every maintained per-tenant size equals the one recomputed from the nodes.
void check_sizes(const ApproxTree& t) {
  for (const auto& [tenant, size] : t.computed_sizes()) {
    CAPTURE(tenant);
    CHECK(t.tenant_size(tenant) == size);
  }
}

}  // namespace

TEST_CASE("tree: an empty tree matches nothing") {
  ApproxTree t;
  auto m = t.prefix_match("hello");
  CHECK(m.matched_chars == 0);
  CHECK(m.text_chars == 5);
  CHECK_FALSE(m.tenant.has_value());
}

TEST_CASE("tree: exact and partial matches find the tenant that inserted the text") {
  ApproxTree t;
  t.insert("hello", "t1");
  t.insert("apple", "t2");
  t.insert("banana", "t3");
  for (auto [text, tenant] : {std::pair{"hello", "t1"}, {"apple", "t2"}, {"banana", "t3"}}) {
    auto m = t.prefix_match(text);
    CHECK(m.matched_chars == 5 + (tenant == std::string("t3")));
    CHECK(m.tenant == tenant);
  }
  // A partial match inside a node counts (SGLang: curr_idx += shared_count).
  auto m = t.prefix_match("apricot");
  CHECK(m.matched_chars == 2);
  CHECK(m.tenant == "t2");
  // A longer text than what was inserted matches the inserted part.
  m = t.prefix_match("hello world");
  CHECK(m.matched_chars == 5);
  CHECK(m.text_chars == 11);
}

TEST_CASE("tree: splitting keeps every tenant's size equal to the characters it holds") {
  ApproxTree t;
  for (const char* s : {"apple", "apricot", "banana"}) t.insert(s, "t1");
  for (const char* s : {"amplify", "application"}) t.insert(s, "t2");
  check_sizes(t);
  CHECK(t.tenant_size("t1") == 5 + 5 + 6);  // "ap" "ple" "ricot" "banana"
  for (const char* s : {"apartment", "ball"}) t.insert(s, "t1");
  for (const char* s : {"appetite", "box"}) t.insert(s, "t2");
  check_sizes(t);
  for (const char* s : {"zebra", "zero"}) {
    t.insert(s, "t1");
    t.insert(s, "t2");
  }
  check_sizes(t);
  // Inserting a prefix of an existing text splits the node; sizes are unchanged.
  size_t before = t.tenant_size("t1");
  t.insert("zeb", "t1");
  CHECK(t.tenant_size("t1") == before);
  check_sizes(t);
}

TEST_CASE("tree: characters are code points, not bytes") {
  ApproxTree t;
  t.insert("héllo wörld", "t1");
  CHECK(t.tenant_size("t1") == 11);
  auto m = t.prefix_match("héllo");
  CHECK(m.matched_chars == 5);
  CHECK(m.text_chars == 5);
  // é (C3 A9) and è (C3 A8) share their first byte but are different characters.
  m = t.prefix_match("hèllo");
  CHECK(m.matched_chars == 1);
  t.insert("hèllo", "t2");
  check_sizes(t);
  CHECK(t.prefix_match("hèl").tenant == "t2");
  CHECK(t.prefix_match("hél").tenant == "t1");
}

TEST_CASE("tree: invalid UTF-8 is repaired, not trusted") {
  ApproxTree t;
  std::string bad = "ab\xff\xfe" "cd\xe2\x82";  // two stray bytes, one truncated sequence
  t.insert(bad, "t1");
  CHECK(t.tenant_size("t1") == 2 + 2 + 2 + 2);  // each bad byte became U+FFFD
  auto m = t.prefix_match(bad);
  CHECK(m.matched_chars == m.text_chars);
  check_sizes(t);
}

TEST_CASE("tree: the match is restricted to eligible tenants; the most recent one wins a shared node") {
  ApproxTree t;
  t.insert("shared prefix one", "a");
  t.insert("shared prefix two", "b");
  std::vector<std::string> only_b{"b"};
  auto m = t.prefix_match("shared prefix one", only_b);
  CHECK(m.tenant == "b");
  CHECK(m.matched_chars == 14);  // "shared prefix " then 'o' is a's only
  // Both on the node "shared prefix ": b inserted last.
  m = t.prefix_match("shared prefix ");
  CHECK(m.tenant == "b");
  t.insert("shared prefix three", "a");
  CHECK(t.prefix_match("shared prefix ").tenant == "a");
  std::vector<std::string> unknown{"zzz"};
  CHECK_FALSE(t.prefix_match("shared", unknown).tenant.has_value());
}

TEST_CASE("tree: eviction removes the least recently used leaves first") {
  ApproxTree t;
  t.insert("aaaa", "t");
  t.insert("bbbb", "t");
  t.insert("cccc", "t");
  CHECK(t.tenant_size("t") == 12);
  t.evict(8);
  CHECK(t.tenant_size("t") == 8);
  CHECK_FALSE(t.prefix_match("aaaa").tenant.has_value());
  CHECK(t.prefix_match("bbbb").tenant == "t");
  CHECK(t.prefix_match("cccc").tenant == "t");

  // Using "bbbb" again makes "cccc" the oldest.
  t.insert("bbbb", "t");
  t.insert("dddd", "t");
  t.evict(8);
  CHECK(t.prefix_match("bbbb").matched_chars == 4);
  CHECK(t.prefix_match("dddd").matched_chars == 4);
  CHECK(t.prefix_match("cccc").matched_chars == 0);
  CHECK(t.node_count() == 2);
  check_sizes(t);
}

TEST_CASE("tree: a parent whose children were evicted becomes a leaf and can go too") {
  ApproxTree t;
  t.insert("abc", "t");
  t.insert("abd", "t");  // "ab" -> {"c", "d"}
  CHECK(t.node_count() == 3);
  CHECK(t.tenant_size("t") == 4);
  t.evict(2);  // "c" (oldest), then "d"; "ab" stays
  CHECK(t.tenant_size("t") == 2);
  CHECK(t.node_count() == 1);
  CHECK(t.prefix_match("abd").matched_chars == 2);
  t.evict(1);  // "ab" is now a leaf
  CHECK(t.tenant_size("t") == 0);
  CHECK(t.node_count() == 0);
  CHECK(t.has_tenant("t"));  // the tenant stays known, with nothing cached
}

TEST_CASE("tree: eviction of one tenant leaves shared nodes to the others") {
  ApproxTree t;
  t.insert("common system prompt", "a");
  t.insert("common system prompt", "b");
  t.insert("only a has this", "a");
  t.evict(16);  // a: 20 + 15 = 35 > 16; b: 20 is over too
  CHECK(t.tenant_size("a") <= 16);
  CHECK(t.tenant_size("b") <= 16);
  check_sizes(t);

  ApproxTree u;
  u.insert("common system prompt", "a");
  u.insert("common system prompt", "b");
  u.insert("only a has this", "a");
  u.evict(20);  // only a is over; its oldest leaf is the shared one, b keeps it
  CHECK(u.tenant_size("a") <= 20);
  CHECK(u.tenant_size("b") == 20);
  CHECK(u.prefix_match("common system prompt").tenant == "b");
  check_sizes(u);
}

TEST_CASE("tree: eviction keeps every tenant at or under the limit, randomized") {
  ApproxTree t;
  std::mt19937_64 rng(7);
  const char* tenants[] = {"w0", "w1", "w2"};
  for (int i = 0; i < 600; ++i) {
    std::string s = "prefix-" + std::to_string(rng() % 8) + "/";
    int len = static_cast<int>(rng() % 30);
    for (int k = 0; k < len; ++k) s += static_cast<char>('a' + rng() % 3);
    t.insert(s, tenants[rng() % 3]);
  }
  check_sizes(t);
  for (size_t limit : {400u, 100u, 10u, 0u}) {
    t.evict(limit);
    for (const char* w : tenants) {
      CAPTURE(w);
      CHECK(t.tenant_size(w) <= limit);
    }
    check_sizes(t);
  }
  CHECK(t.node_count() == 0);
}

TEST_CASE("tree: removing a tenant forgets it and frees the nodes only it used") {
  ApproxTree t;
  t.insert("hello world", "a");
  t.insert("hello there", "b");
  t.insert("goodbye", "a");
  CHECK(t.node_count() == 4);  // "hello " -> {"world", "there"}, "goodbye"
  t.remove_tenant("a");
  CHECK_FALSE(t.has_tenant("a"));
  CHECK(t.tenant_size("a") == 0);
  CHECK(t.node_count() == 2);
  CHECK(t.prefix_match("hello world").tenant == "b");
  CHECK(t.prefix_match("goodbye").matched_chars == 0);
  CHECK(t.tenants() == std::vector<std::string>{"b"});
  check_sizes(t);
}
