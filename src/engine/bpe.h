#pragma once
// Tokenizer models: a word in, token ids out.
//  - BpeModel: Hugging Face's BPE over merge ranks (byte-level or SentencePiece-style with
//    byte fallback), with ignore_merges, unk fusing and a cache of words.
//  - SpmScoreModel: llama.cpp's SentencePiece BPE over token scores (GGUF "llama").
//  - ByteModel: the byte-level fallback for models without tokenizer files.
#include <array>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include "common/status.h"

namespace pdctl::engine::tok {

struct StringHash {
  using is_transparent = void;
  size_t operator()(std::string_view s) const noexcept { return std::hash<std::string_view>{}(s); }
};
using VocabMap = std::unordered_map<std::string, int32_t, StringHash, std::equal_to<>>;

class TokenModel {
 public:
  virtual ~TokenModel() = default;
  // Appends the ids of one pre-tokenized word.
  virtual void tokenize(std::string_view word, std::vector<int32_t>& out) const = 0;
  // The vocabulary string of an id (nullopt when the id is not in the model's vocabulary).
  virtual std::optional<std::string_view> id_to_token(int32_t id) const = 0;
  virtual std::optional<int32_t> token_to_id(std::string_view token) const = 0;
  // One past the largest id.
  virtual size_t vocab_size() const = 0;
};

// Id <-> string tables shared by the vocabulary-based models.
class Vocabulary {
 public:
  // Fails on a negative id or an id given twice.
  static Result<Vocabulary> build(std::vector<std::pair<std::string, int32_t>> entries);
  std::optional<int32_t> find(std::string_view s) const {
    auto it = map_.find(s);
    if (it == map_.end()) return std::nullopt;
    return it->second;
  }
  std::optional<std::string_view> token(int32_t id) const {
    if (id < 0 || static_cast<size_t>(id) >= tokens_.size() || !present_[id]) return std::nullopt;
    return std::string_view(tokens_[id]);
  }
  size_t size() const { return tokens_.size(); }

 private:
  VocabMap map_;
  std::vector<std::string> tokens_;
  std::vector<bool> present_;
};

// Memoised word -> ids for one model, shared by all threads (sharded locks; inserts stop
// when a shard is full, as Hugging Face's cache does).
class WordCache {
 public:
  explicit WordCache(size_t capacity);
  bool lookup(std::string_view word, std::vector<int32_t>& out) const;
  void insert(std::string_view word, const int32_t* ids, size_t n) const;
  static constexpr size_t kMaxWordBytes = 256;

 private:
  static constexpr size_t kShards = 16;
  struct Shard {
    mutable std::mutex mu;
    std::unordered_map<std::string, std::vector<int32_t>, StringHash, std::equal_to<>> map;
  };
  mutable std::array<Shard, kShards> shards_;
  size_t per_shard_;
};

struct BpeOptions {
  std::optional<std::string> unk_token;
  bool fuse_unk = false;
  bool byte_fallback = false;
  bool ignore_merges = false;
  std::string continuing_subword_prefix;
  std::string end_of_word_suffix;
};

class BpeModel final : public TokenModel {
 public:
  // Every merge's parts and result must be in the vocabulary (an error names the merge).
  static Result<std::unique_ptr<BpeModel>> build(Vocabulary vocab,
                                                 const std::vector<std::pair<std::string, std::string>>& merges,
                                                 BpeOptions options);
  void tokenize(std::string_view word, std::vector<int32_t>& out) const override;
  std::optional<std::string_view> id_to_token(int32_t id) const override { return vocab_.token(id); }
  std::optional<int32_t> token_to_id(std::string_view t) const override { return vocab_.find(t); }
  size_t vocab_size() const override { return vocab_.size(); }

 private:
  explicit BpeModel(Vocabulary vocab) : vocab_(std::move(vocab)), cache_(1 << 16) {}
  void merge_word(std::string_view word, std::vector<int32_t>& out) const;

  struct MergeInfo {
    uint32_t rank;
    int32_t new_id;
  };
  Vocabulary vocab_;
  std::unordered_map<uint64_t, MergeInfo> merges_;
  BpeOptions opt_;
  std::optional<int32_t> unk_id_;
  std::array<int32_t, 256> byte_ids_{};  // <0xXX> tokens for byte fallback, -1 where absent
  bool all_bytes_ = false;
  WordCache cache_;
};

// llama.cpp's SentencePiece tokenizer for GGUF "llama" vocabularies: greedy merging of the
// adjacent pair whose concatenation is the best-scoring token, then byte fallback for
// characters outside the vocabulary. Expects spaces already replaced by "▁".
class SpmScoreModel final : public TokenModel {
 public:
  static Result<std::unique_ptr<SpmScoreModel>> build(Vocabulary vocab, std::vector<float> scores,
                                                      std::optional<int32_t> unk_id);
  void tokenize(std::string_view text, std::vector<int32_t>& out) const override;
  std::optional<std::string_view> id_to_token(int32_t id) const override { return vocab_.token(id); }
  std::optional<int32_t> token_to_id(std::string_view t) const override { return vocab_.find(t); }
  size_t vocab_size() const override { return vocab_.size(); }

 private:
  explicit SpmScoreModel(Vocabulary vocab) : vocab_(std::move(vocab)) {}
  Vocabulary vocab_;
  std::vector<float> scores_;
  std::optional<int32_t> unk_id_;
  std::array<int32_t, 256> byte_ids_{};
};

// Ids 3..258 are the bytes 0x00..0xFF; 0, 1, 2 are <unk>, <s>, </s> (added tokens of the
// tokenizer around it). Any id >= 3 names byte (id - 3) mod 256, so every id decodes.
class ByteModel final : public TokenModel {
 public:
  static constexpr int32_t kFirstByteId = 3;
  static constexpr size_t kVocabSize = 259;
  ByteModel();
  void tokenize(std::string_view word, std::vector<int32_t>& out) const override;
  std::optional<std::string_view> id_to_token(int32_t id) const override;
  std::optional<int32_t> token_to_id(std::string_view t) const override;
  size_t vocab_size() const override { return kVocabSize; }

 private:
  std::array<std::string, 256> pieces_;  // "<0xXX>"
};

}  // namespace pdctl::engine::tok
