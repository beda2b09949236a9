#include "engine/bpe.h"

#include <algorithm>
#include <cstdio>

#include "engine/unicode_text.h"

namespace pdctl::engine::tok {

Result<Vocabulary> Vocabulary::build(std::vector<std::pair<std::string, int32_t>> entries) {
  Vocabulary v;
  int32_t max_id = -1;
  for (const auto& [s, id] : entries) {
    if (id < 0) return Status::corrupt("token '" + s + "' has a negative id");
    max_id = std::max(max_id, id);
  }
  // Ids index a table: a file with a few tokens at huge ids is refused rather than allocated.
  if (static_cast<size_t>(max_id) > 2 * entries.size() + (1u << 20)) {
    return Status::corrupt("token id " + std::to_string(max_id) + " is far beyond the " +
                           std::to_string(entries.size()) + " tokens of the vocabulary");
  }
  v.tokens_.resize(static_cast<size_t>(max_id + 1));
  v.present_.assign(static_cast<size_t>(max_id + 1), false);
  v.map_.reserve(entries.size());
  for (auto& [s, id] : entries) {
    // Two strings with one id: the first names it on decode (files with this are broken anyway).
    if (!v.present_[id]) {
      v.tokens_[id] = s;
      v.present_[id] = true;
    }
    v.map_.emplace(std::move(s), id);
  }
  return v;
}

WordCache::WordCache(size_t capacity) : per_shard_(std::max<size_t>(1, capacity / kShards)) {}

bool WordCache::lookup(std::string_view word, std::vector<int32_t>& out) const {
  Shard& s = shards_[StringHash{}(word) % kShards];
  std::lock_guard<std::mutex> lock(s.mu);
  auto it = s.map.find(word);
  if (it == s.map.end()) return false;
  out.insert(out.end(), it->second.begin(), it->second.end());
  return true;
}

void WordCache::insert(std::string_view word, const int32_t* ids, size_t n) const {
  Shard& s = shards_[StringHash{}(word) % kShards];
  std::lock_guard<std::mutex> lock(s.mu);
  if (s.map.size() >= per_shard_) return;
  s.map.emplace(std::string(word), std::vector<int32_t>(ids, ids + n));
}

namespace {
uint64_t pair_key(int32_t a, int32_t b) {
  return (static_cast<uint64_t>(static_cast<uint32_t>(a)) << 32) | static_cast<uint32_t>(b);
}

std::string byte_piece(int b) {
  char buf[8];
  std::snprintf(buf, sizeof buf, "<0x%02X>", b);
  return buf;
}
}  // namespace

Result<std::unique_ptr<BpeModel>> BpeModel::build(Vocabulary vocab,
                                                  const std::vector<std::pair<std::string, std::string>>& merges,
                                                  BpeOptions options) {
  std::unique_ptr<BpeModel> m(new BpeModel(std::move(vocab)));
  m->opt_ = std::move(options);
  if (m->opt_.unk_token) m->unk_id_ = m->vocab_.find(*m->opt_.unk_token);
  m->all_bytes_ = true;
  for (int b = 0; b < 256; ++b) {
    auto id = m->vocab_.find(byte_piece(b));
    m->byte_ids_[b] = id ? *id : -1;
    if (!id) m->all_bytes_ = false;
  }
  const size_t prefix_len = m->opt_.continuing_subword_prefix.size();
  m->merges_.reserve(merges.size());
  std::string joined;
  for (size_t rank = 0; rank < merges.size(); ++rank) {
    const auto& [a, b] = merges[rank];
    auto ia = m->vocab_.find(a), ib = m->vocab_.find(b);
    if (!ia || !ib) {
      return Status::corrupt("merge " + std::to_string(rank) + " ('" + a + "' '" + b +
                             "') names a token that is not in the vocabulary");
    }
    // The merged token drops the continuing-subword prefix of the right part.
    joined.assign(a);
    joined.append(b.size() >= prefix_len ? std::string_view(b).substr(prefix_len) : std::string_view(b));
    auto inew = m->vocab_.find(joined);
    if (!inew) {
      return Status::corrupt("merge " + std::to_string(rank) + " ('" + a + "' '" + b + "') makes '" +
                             joined + "', which is not in the vocabulary");
    }
    // A pair given twice: the later rank wins, as in Hugging Face's map.
    m->merges_[pair_key(*ia, *ib)] = MergeInfo{static_cast<uint32_t>(rank), *inew};
  }
  return m;
}

void BpeModel::tokenize(std::string_view word, std::vector<int32_t>& out) const {
  if (word.empty()) return;
  if (opt_.ignore_merges) {
    if (auto id = vocab_.find(word)) {
      out.push_back(*id);
      return;
    }
  }
  const bool cacheable = word.size() < WordCache::kMaxWordBytes;
  if (cacheable && cache_.lookup(word, out)) return;
  const size_t mark = out.size();
  merge_word(word, out);
  if (cacheable) cache_.insert(word, out.data() + mark, out.size() - mark);
}

void BpeModel::merge_word(std::string_view w, std::vector<int32_t>& out) const {
  struct Symbol {
    int32_t id;
    int32_t prev, next;
    uint32_t len;  // bytes of the word it covers; 0 once merged into its left neighbour
  };
  std::vector<Symbol> syms;
  syms.reserve(w.size());
  auto add = [&](int32_t id, uint32_t len) {
    const auto n = static_cast<int32_t>(syms.size());
    if (!syms.empty()) syms.back().next = n;
    syms.push_back(Symbol{id, n - 1, -1, len});
  };

  // One symbol per character, as Hugging Face's merge_word builds them.
  int32_t unk = -1;  // a pending unknown token and the bytes it covers
  uint32_t unk_len = 0;
  std::string key;
  size_t i = 0;
  while (i < w.size()) {
    const size_t start = i;
    char32_t cp;
    unicode::next_code_point(w, i, cp);
    const auto byte_len = static_cast<uint32_t>(i - start);
    std::string_view piece = w.substr(start, byte_len);
    const bool decorate = (start != 0 && !opt_.continuing_subword_prefix.empty()) ||
                          (i == w.size() && !opt_.end_of_word_suffix.empty());
    if (decorate) {
      key.clear();
      if (start != 0) key += opt_.continuing_subword_prefix;
      key += piece;
      if (i == w.size()) key += opt_.end_of_word_suffix;
      piece = key;
    }
    if (auto id = vocab_.find(piece)) {
      if (unk >= 0) {
        add(unk, unk_len);
        unk = -1;
      }
      add(*id, byte_len);
      continue;
    }
    if (opt_.byte_fallback) {
      bool all = true;
      for (unsigned char c : piece) all = all && byte_ids_[c] >= 0;
      if (all) {
        // A pending unknown stays pending across byte tokens (Hugging Face does the same).
        for (unsigned char c : piece) add(byte_ids_[c], 1);
        continue;
      }
    }
    if (unk_id_) {
      if (unk >= 0 && opt_.fuse_unk) {
        unk_len += byte_len;
      } else {
        if (unk >= 0) add(unk, unk_len);
        unk = *unk_id_;
        unk_len = byte_len;
      }
    }
  }
  if (unk >= 0) add(unk, unk_len);

  struct Merge {
    uint32_t rank;
    int32_t pos;
    int32_t new_id;
  };
  // std heap functions keep the "largest" on top: the lowest rank, then the leftmost.
  auto lower = [](const Merge& a, const Merge& b) {
    return a.rank != b.rank ? a.rank > b.rank : a.pos > b.pos;
  };
  std::vector<Merge> heap;
  heap.reserve(syms.size());
  for (size_t k = 0; k + 1 < syms.size(); ++k) {
    auto it = merges_.find(pair_key(syms[k].id, syms[k + 1].id));
    if (it != merges_.end()) heap.push_back({it->second.rank, static_cast<int32_t>(k), it->second.new_id});
  }
  std::make_heap(heap.begin(), heap.end(), lower);
  auto push = [&](int32_t pos, int32_t left, int32_t right) {
    auto it = merges_.find(pair_key(left, right));
    if (it == merges_.end()) return;
    heap.push_back({it->second.rank, pos, it->second.new_id});
    std::push_heap(heap.begin(), heap.end(), lower);
  };
  while (!heap.empty()) {
    std::pop_heap(heap.begin(), heap.end(), lower);
    const Merge top = heap.back();
    heap.pop_back();
    Symbol& cur = syms[top.pos];
    if (cur.len == 0 || cur.next == -1) continue;
    const int32_t next_pos = cur.next;
    const Symbol right = syms[next_pos];
    // Skip entries made stale by an earlier merge.
    auto it = merges_.find(pair_key(cur.id, right.id));
    if (it == merges_.end() || it->second.new_id != top.new_id) continue;
    cur.id = top.new_id;
    cur.len += right.len;
    cur.next = right.next;
    syms[next_pos].len = 0;
    if (right.next >= 0) syms[right.next].prev = top.pos;
    if (cur.prev >= 0) push(cur.prev, syms[cur.prev].id, cur.id);
    if (cur.next >= 0) push(top.pos, cur.id, syms[cur.next].id);
  }
  for (const auto& s : syms)
    if (s.len != 0) out.push_back(s.id);
}

}  // namespace pdctl::engine::tok
