// The score-based SentencePiece model of GGUF "llama" vocabularies, and the byte model of the
// fallback tokenizer.
#include <cstdio>
#include <queue>

#include "engine/bpe.h"

namespace pdctl::engine::tok {
namespace {
std::string byte_piece(int b) {
  char buf[8];
  std::snprintf(buf, sizeof buf, "<0x%02X>", b);
  return buf;
}

// Bytes of the UTF-8 character that starts with `lead` (llama.cpp's unicode_len_utf8).
size_t utf8_len(unsigned char lead) {
  static constexpr size_t kLen[16] = {1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 3, 4};
  return kLen[lead >> 4];
}
}  // namespace

Result<std::unique_ptr<SpmScoreModel>> SpmScoreModel::build(Vocabulary vocab, std::vector<float> scores,
                                                             std::optional<int32_t> unk_id) {
  if (scores.size() < vocab.size()) {
    return Status::corrupt("there are " + std::to_string(scores.size()) + " scores for " +
                           std::to_string(vocab.size()) + " tokens");
  }
  std::unique_ptr<SpmScoreModel> m(new SpmScoreModel(std::move(vocab)));
  m->scores_ = std::move(scores);
  m->unk_id_ = unk_id;
  for (int b = 0; b < 256; ++b) {
    // Byte tokens are <0xXX>; vocabularies without one use the single character.
    auto id = m->vocab_.find(byte_piece(b));
    if (!id) id = m->vocab_.find(std::string(1, static_cast<char>(b)));
    m->byte_ids_[b] = id ? *id : (unk_id ? *unk_id : -1);
  }
  return m;
}

void SpmScoreModel::tokenize(std::string_view text, std::vector<int32_t>& out) const {
  struct Symbol {
    int32_t prev, next;
    size_t off, n;  // bytes of `text`; n == 0 once merged into the left neighbour
  };
  std::vector<Symbol> syms;
  for (size_t off = 0; off < text.size();) {
    const size_t n = std::min(utf8_len(static_cast<unsigned char>(text[off])), text.size() - off);
    const auto idx = static_cast<int32_t>(syms.size());
    syms.push_back(Symbol{idx - 1, off + n == text.size() ? -1 : idx + 1, off, n});
    off += n;
  }
  struct Bigram {
    int32_t left, right;
    float score;
    size_t size;
  };
  // Highest score first; among equal scores the leftmost.
  auto lower = [](const Bigram& l, const Bigram& r) {
    return l.score < r.score || (l.score == r.score && l.left > r.left);
  };
  std::priority_queue<Bigram, std::vector<Bigram>, decltype(lower)> queue(lower);
  auto try_add = [&](int32_t left, int32_t right) {
    if (left == -1 || right == -1) return;
    const std::string_view piece = text.substr(syms[left].off, syms[left].n + syms[right].n);
    auto id = vocab_.find(piece);
    if (!id) return;
    queue.push(Bigram{left, right, scores_[*id], piece.size()});
  };
  for (int32_t k = 1; k < static_cast<int32_t>(syms.size()); ++k) try_add(k - 1, k);
  while (!queue.empty()) {
    const Bigram b = queue.top();
    queue.pop();
    Symbol& l = syms[b.left];
    Symbol& r = syms[b.right];
    if (l.n == 0 || r.n == 0 || l.n + r.n != b.size) continue;  // stale
    l.n += r.n;
    r.n = 0;
    l.next = r.next;
    if (r.next >= 0) syms[r.next].prev = b.left;
    try_add(l.prev, b.left);
    try_add(b.left, l.next);
  }
  for (int32_t k = syms.empty() ? -1 : 0; k != -1; k = syms[k].next) {
    const std::string_view piece = text.substr(syms[k].off, syms[k].n);
    if (auto id = vocab_.find(piece)) {
      out.push_back(*id);
      continue;
    }
    // Merged symbols are always tokens, so this is a single character outside the vocabulary.
    for (unsigned char c : piece)
      if (byte_ids_[c] >= 0) out.push_back(byte_ids_[c]);
  }
}

ByteModel::ByteModel() {
  for (int b = 0; b < 256; ++b) pieces_[b] = byte_piece(b);
}

void ByteModel::tokenize(std::string_view word, std::vector<int32_t>& out) const {
  for (unsigned char c : word) out.push_back(kFirstByteId + c);
}

std::optional<std::string_view> ByteModel::id_to_token(int32_t id) const {
  if (id < kFirstByteId) return std::nullopt;
  return std::string_view(pieces_[static_cast<size_t>(id - kFirstByteId) % 256]);
}

std::optional<int32_t> ByteModel::token_to_id(std::string_view t) const {
  for (int b = 0; b < 256; ++b)
    if (pieces_[b] == t) return kFirstByteId + b;
  return std::nullopt;
}

}  // namespace pdctl::engine::tok
