#pragma once
// CLIP's byte-level BPE tokenizer, read from a diffusers `tokenizer/` folder:
// vocab.json + merges.txt (as transformers 4 saves it) or tokenizer.json (as
// transformers 5 saves it), plus tokenizer_config.json and
// special_tokens_map.json when present.
#include <ATen/core/Tensor.h>
#include <nlohmann/json_fwd.hpp>

#include <cstdint>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

namespace via::model {

/// One text as the pipeline feeds it to the text encoder.
struct TokenizedText {
  std::vector<int64_t> ids;    // exactly max_length(): BOS, tokens, EOS, then padding
  int64_t untruncated_length;  // tokens incl. BOS and EOS before truncation
  bool truncated;              // untruncated_length > max_length(): the text was cut
};

/// The tokenizer of transformers' `CLIPTokenizer` (transformers 5, backed by
/// the `tokenizers` library), reproduced step by step:
///   1. special tokens written literally in the text (`<|startoftext|>`,
///      `<|endoftext|>`) become their ids;
///   2. the rest is normalized: NFC, every whitespace run -> one space,
///      Unicode lower-casing;
///   3. split into words by `<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+`
///      (whitespace dropped);
///   4. each word's UTF-8 bytes mapped to GPT-2's printable byte alphabet,
///      `</w>` appended to the last symbol, BPE merges applied by rank;
///      symbols not in the vocabulary become the unknown token.
/// The Unicode data (tokenizer_unicode.inc) was derived from the reference
/// itself: letters/numbers as its regex engine classifies them, its
/// lower-casing, and canonical composition as its NFC applies it; a fuzz
/// comparison over random text from all planes matched it exactly.
/// Known differences: CJK compatibility ideographs (U+F900-FAFF,
/// U+2F800-2FA1F) are not mapped to their unified forms by NFC; a special
/// token written in another case (`<|STARTOFTEXT|>`) is tokenized as text
/// (the reference matches the start token case-insensitively). Invalid UTF-8
/// bytes read as U+FFFD.
/// Immutable after construction; safe to use from several threads.
class ClipTokenizer {
 public:
  /// Reads the files of `tokenizer_dir` (vocab.json + merges.txt when
  /// vocab.json exists, else tokenizer.json); a missing or malformed file
  /// throws ModelError naming it (and the line or entry of a bad merge).
  explicit ClipTokenizer(const std::string& tokenizer_dir);

  /// BOS, the text's tokens, EOS: no truncation, no padding.
  std::vector<int64_t> encode(const std::string& text) const;
  /// As StableDiffusionInstructPix2PixPipeline calls the reference
  /// (padding="max_length", truncation=True): tokens cut to max_length() - 2,
  /// BOS and EOS added, padded with pad_id() to max_length().
  TokenizedText encode_padded(const std::string& text) const;
  /// encode_padded of each text stacked: int64 [texts.size(), max_length()] on CPU.
  at::Tensor input_ids(const std::vector<std::string>& texts) const;

  /// The vocabulary string of each id (e.g. "make</w>"); for messages and tests.
  std::vector<std::string> tokens(const std::vector<int64_t>& ids) const;

  int64_t bos_id() const { return bos_id_; }
  int64_t eos_id() const { return eos_id_; }
  int64_t pad_id() const { return pad_id_; }
  int64_t unk_id() const { return unk_id_; }
  /// model_max_length of tokenizer_config.json (77 for every SD-1.x model).
  int64_t max_length() const { return max_length_; }
  int64_t vocab_size() const { return static_cast<int64_t>(vocab_.size()); }

 private:
  void read_vocab(const nlohmann::json& vocab, const std::string& where);
  void add_merge(const std::string& a, const std::string& b, const std::string& where, const char* vocab_name);
  void read_merges_txt(const std::string& merges_path);
  /// Vocabulary and merges from a tokenizers file; returns its model's unk_token ("" if none).
  std::string read_tokenizer_json(const std::string& path);
  void bpe(const std::string& word, std::vector<int64_t>& out) const;
  void encode_text(const std::u32string& text, std::vector<int64_t>& out) const;

  std::unordered_map<std::string, int64_t> vocab_;
  std::vector<std::string> id_to_token_;
  std::unordered_map<std::string, int64_t> merge_rank_;  // "a b" -> rank
  std::vector<std::pair<std::string, int64_t>> special_;  // literal special tokens and their ids
  int64_t bos_id_ = 0, eos_id_ = 0, pad_id_ = 0, unk_id_ = 0, max_length_ = 77;
};

}  // namespace via::model
