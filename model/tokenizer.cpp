#include "model/tokenizer.h"

#include "model/json_file.h"
#include "model/safetensors.h"  // ModelError

#include <ATen/ops/empty.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <limits>

namespace via::model {
namespace {

// ---------------------------------------------------------------------------
// Unicode: UTF-8 coding and the character data the reference's normalizer
// and pre-tokenizer use (tables generated into tokenizer_unicode.inc).
// ---------------------------------------------------------------------------

struct CodeRange {
  uint32_t first, last;
};
struct LowerRun {
  uint32_t first, last, stride;
  int32_t delta;
};
struct Composition {
  uint32_t first, second, composed;
};
struct Decomposition {
  uint32_t code, first, second;  // second == 0: a singleton
};
struct CombiningRange {
  uint32_t first, last, ccc;
};

#include "model/tokenizer_unicode.inc"

constexpr char32_t kReplacement = 0xFFFD;

// Decodes UTF-8; each byte of an invalid or truncated sequence reads as U+FFFD.
std::u32string utf8_decode(const std::string& s) {
  std::u32string out;
  out.reserve(s.size());
  const auto* p = reinterpret_cast<const unsigned char*>(s.data());
  const size_t n = s.size();
  for (size_t i = 0; i < n;) {
    const unsigned char b = p[i];
    int len = 0;
    char32_t c = 0;
    char32_t min = 0;
    if (b < 0x80) {
      out.push_back(b);
      ++i;
      continue;
    } else if ((b & 0xE0) == 0xC0) {
      len = 2, c = b & 0x1F, min = 0x80;
    } else if ((b & 0xF0) == 0xE0) {
      len = 3, c = b & 0x0F, min = 0x800;
    } else if ((b & 0xF8) == 0xF0) {
      len = 4, c = b & 0x07, min = 0x10000;
    }
    bool ok = len != 0 && i + len <= n;
    for (int k = 1; ok && k < len; ++k) {
      if ((p[i + k] & 0xC0) != 0x80) ok = false;
      c = (c << 6) | (p[i + k] & 0x3F);
    }
    if (ok && (c < min || c > 0x10FFFF || (c >= 0xD800 && c <= 0xDFFF))) ok = false;
    if (ok) {
      out.push_back(c);
      i += len;
    } else {
      out.push_back(kReplacement);
      ++i;
    }
  }
  return out;
}

void utf8_append(char32_t c, std::string& out) {
  if (c < 0x80) {
    out.push_back(static_cast<char>(c));
  } else if (c < 0x800) {
    out.push_back(static_cast<char>(0xC0 | (c >> 6)));
    out.push_back(static_cast<char>(0x80 | (c & 0x3F)));
  } else if (c < 0x10000) {
    out.push_back(static_cast<char>(0xE0 | (c >> 12)));
    out.push_back(static_cast<char>(0x80 | ((c >> 6) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | (c & 0x3F)));
  } else {
    out.push_back(static_cast<char>(0xF0 | (c >> 18)));
    out.push_back(static_cast<char>(0x80 | ((c >> 12) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | ((c >> 6) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | (c & 0x3F)));
  }
}

std::string utf8_encode(const std::u32string& s) {
  std::string out;
  for (char32_t c : s) utf8_append(c, out);
  return out;
}

template <size_t N>
bool in_ranges(char32_t c, const CodeRange (&table)[N]) {
  auto it = std::upper_bound(std::begin(table), std::end(table), static_cast<uint32_t>(c),
                             [](uint32_t v, const CodeRange& r) { return v < r.first; });
  return it != std::begin(table) && c <= std::prev(it)->last;
}

bool is_letter(char32_t c) {
  if (c < 0x80) return (c | 0x20) >= 'a' && (c | 0x20) <= 'z';
  return in_ranges(c, kLetterRanges);
}

bool is_number(char32_t c) {
  if (c < 0x80) return c >= '0' && c <= '9';
  return in_ranges(c, kNumberRanges);
}

// Unicode White_Space, which the reference's regex engine (Oniguruma) uses for \s.
bool is_space(char32_t c) {
  return (c >= 0x09 && c <= 0x0D) || c == 0x20 || c == 0x85 || c == 0xA0 || c == 0x1680 ||
         (c >= 0x2000 && c <= 0x200A) || c == 0x2028 || c == 0x2029 || c == 0x202F || c == 0x205F || c == 0x3000;
}

// Rust's char::to_lowercase (the reference normalizer's per-character
// lower-casing): the simple mapping, plus U+0130's two-character lowercase.
void append_lower(char32_t c, std::u32string& out) {
  if (c < 0x80) {
    out.push_back(c >= 'A' && c <= 'Z' ? c + 0x20 : c);
    return;
  }
  if (c == 0x130) {
    out.push_back(U'i');
    out.push_back(0x307);
    return;
  }
  for (const LowerRun& run : kLowerRuns) {
    if (c < run.first) break;
    if (c <= run.last && (c - run.first) % run.stride == 0) {
      out.push_back(static_cast<char32_t>(static_cast<int64_t>(c) + run.delta));
      return;
    }
  }
  out.push_back(c);
}

uint32_t combining_class(char32_t c) {
  if (c < 0x300) return 0;
  auto it = std::upper_bound(std::begin(kCombiningClasses), std::end(kCombiningClasses), static_cast<uint32_t>(c),
                             [](uint32_t v, const CombiningRange& r) { return v < r.first; });
  if (it == std::begin(kCombiningClasses)) return 0;
  --it;
  return c <= it->last ? it->ccc : 0;
}

// The primary composite of (a, b), or 0. Hangul syllables are composed
// arithmetically (Unicode 14, section 3.12).
char32_t compose(char32_t a, char32_t b) {
  constexpr char32_t kSBase = 0xAC00, kLBase = 0x1100, kVBase = 0x1161, kTBase = 0x11A7;
  constexpr char32_t kLCount = 19, kVCount = 21, kTCount = 28, kNCount = kVCount * kTCount, kSCount = kLCount * kNCount;
  if (a >= kLBase && a < kLBase + kLCount && b >= kVBase && b < kVBase + kVCount)
    return kSBase + ((a - kLBase) * kVCount + (b - kVBase)) * kTCount;
  if (a >= kSBase && a < kSBase + kSCount && (a - kSBase) % kTCount == 0 && b > kTBase && b < kTBase + kTCount)
    return a + (b - kTBase);
  auto it = std::lower_bound(std::begin(kCompositions), std::end(kCompositions), std::make_pair(a, b),
                             [](const Composition& c, const std::pair<char32_t, char32_t>& key) {
                               return c.first != key.first ? c.first < key.first : c.second < key.second;
                             });
  if (it != std::end(kCompositions) && it->first == a && it->second == b) return it->composed;
  return 0;
}

// Canonical decomposition, appended to `out`: the composition table read
// backwards, the other decompositions, Hangul arithmetic.
void decompose(char32_t c, std::u32string& out) {
  constexpr char32_t kSBase = 0xAC00, kLBase = 0x1100, kVBase = 0x1161, kTBase = 0x11A7;
  constexpr char32_t kVCount = 21, kTCount = 28, kNCount = kVCount * kTCount, kSCount = 19 * kNCount;
  if (c < 0xC0) {
    out.push_back(c);
    return;
  }
  if (c >= kSBase && c < kSBase + kSCount) {
    const char32_t index = c - kSBase;
    out.push_back(kLBase + index / kNCount);
    out.push_back(kVBase + (index % kNCount) / kTCount);
    if (index % kTCount != 0) out.push_back(kTBase + index % kTCount);
    return;
  }
  static const std::vector<Composition> by_composed = [] {
    std::vector<Composition> v(std::begin(kCompositions), std::end(kCompositions));
    std::sort(v.begin(), v.end(), [](const Composition& a, const Composition& b) { return a.composed < b.composed; });
    return v;
  }();
  auto it = std::lower_bound(by_composed.begin(), by_composed.end(), static_cast<uint32_t>(c),
                             [](const Composition& x, uint32_t v) { return x.composed < v; });
  if (it != by_composed.end() && it->composed == c) {
    decompose(it->first, out);
    out.push_back(it->second);
    return;
  }
  auto other = std::lower_bound(std::begin(kDecompositionsOnly), std::end(kDecompositionsOnly), static_cast<uint32_t>(c),
                                [](const Decomposition& x, uint32_t v) { return x.code < v; });
  if (other != std::end(kDecompositionsOnly) && other->code == c) {
    decompose(other->first, out);
    if (other->second != 0) out.push_back(other->second);
    return;
  }
  out.push_back(c);
}

// NFC (UAX #15): canonical decomposition, canonical ordering of
// combining marks, canonical composition. See the class comment for the
// decompositions the tables leave out.
std::u32string nfc(const std::u32string& s) {
  std::u32string d;
  d.reserve(s.size());
  for (char32_t c : s) decompose(c, d);
  // Canonical ordering: each run of non-starters stably sorted by class.
  for (size_t i = 0; i < d.size();) {
    if (combining_class(d[i]) == 0) {
      ++i;
      continue;
    }
    size_t j = i;
    while (j < d.size() && combining_class(d[j]) != 0) ++j;
    std::stable_sort(d.begin() + i, d.begin() + j,
                     [](char32_t a, char32_t b) { return combining_class(a) < combining_class(b); });
    i = j;
  }
  std::u32string out;
  out.reserve(d.size());
  size_t starter = std::u32string::npos;
  uint32_t last_class = 0;
  for (char32_t c : d) {
    const uint32_t cls = combining_class(c);
    if (starter != std::u32string::npos && (last_class < cls || last_class == 0)) {
      // Not blocked: nothing between the starter and c has a class >= c's.
      if (const char32_t composite = compose(out[starter], c)) {
        out[starter] = composite;
        continue;
      }
    }
    if (cls == 0) {
      starter = out.size();
      last_class = 0;
    } else {
      last_class = cls;
    }
    out.push_back(c);
  }
  return out;
}

// The reference normalizer: NFC, every \s+ run -> " ", lower-case.
std::u32string normalize(const std::u32string& text) {
  const std::u32string composed = nfc(text);
  std::u32string out;
  out.reserve(composed.size());
  for (size_t i = 0; i < composed.size(); ++i) {
    if (is_space(composed[i])) {
      out.push_back(U' ');
      while (i + 1 < composed.size() && is_space(composed[i + 1])) ++i;
    } else {
      append_lower(composed[i], out);
    }
  }
  return out;
}

// GPT-2 / CLIP `bytes_to_unicode`: byte -> printable code point, as UTF-8.
const std::vector<std::string>& byte_alphabet() {
  static const std::vector<std::string> table = [] {
    std::vector<std::string> t(256);
    int extra = 0;
    for (int b = 0; b < 256; ++b) {
      const bool printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
      utf8_append(static_cast<char32_t>(printable ? b : 256 + extra++), t[b]);
    }
    return t;
  }();
  return table;
}

bool starts_with(const std::u32string& s, size_t pos, const char32_t* lit) {
  for (size_t k = 0; lit[k] != 0; ++k)
    if (pos + k >= s.size() || s[pos + k] != lit[k]) return false;
  return true;
}

// The reference's pre-tokenizer: Split(pattern, behavior=Removed, invert=True)
// keeps the regex matches and drops the rest (whitespace); ByteLevel's own
// GPT-2 split then only changes a special-token match, cutting it into "<|",
// the name and "|>". Alternatives are tried in pattern order at each position.
std::vector<std::u32string> pre_tokenize(const std::u32string& s) {
  static const char32_t* const kSpecials[] = {U"<|startoftext|>", U"<|endoftext|>"};
  static const char32_t* const kContractions[] = {U"'s", U"'t", U"'re", U"'ve", U"'m", U"'ll", U"'d"};
  std::vector<std::u32string> words;
  size_t i = 0;
  const size_t n = s.size();
  while (i < n) {
    const char32_t c = s[i];
    if (is_space(c)) {
      ++i;
      continue;
    }
    bool matched = false;
    for (const char32_t* special : kSpecials) {
      if (starts_with(s, i, special)) {
        const size_t len = std::char_traits<char32_t>::length(special);
        words.push_back(s.substr(i, 2));
        words.push_back(s.substr(i + 2, len - 4));
        words.push_back(s.substr(i + len - 2, 2));
        i += len;
        matched = true;
        break;
      }
    }
    if (matched) continue;
    for (const char32_t* contraction : kContractions) {
      if (starts_with(s, i, contraction)) {
        const size_t len = std::char_traits<char32_t>::length(contraction);
        words.push_back(s.substr(i, len));
        i += len;
        matched = true;
        break;
      }
    }
    if (matched) continue;
    size_t j = i + 1;
    if (is_letter(c)) {
      while (j < n && is_letter(s[j])) ++j;
    } else if (!is_number(c)) {
      while (j < n && !is_space(s[j]) && !is_letter(s[j]) && !is_number(s[j])) ++j;
    }
    words.push_back(s.substr(i, j - i));
    i = j;
  }
  return words;
}

// "a b" -> (a, b): exactly two non-empty symbols separated by one space.
bool split_merge(const std::string& line, std::string* a, std::string* b) {
  const size_t space = line.find(' ');
  if (space == std::string::npos || space == 0 || space + 1 == line.size() ||
      line.find(' ', space + 1) != std::string::npos)
    return false;
  *a = line.substr(0, space);
  *b = line.substr(space + 1);
  return true;
}

// A special token value in tokenizer_config.json / special_tokens_map.json:
// a string or an AddedToken object {"content": ...}.
bool special_token(const nlohmann::json& config, const char* key, const std::string& where, std::string* out) {
  auto it = config.find(key);
  if (it == config.end() || it->is_null()) return false;
  if (it->is_string()) {
    *out = it->get<std::string>();
    return true;
  }
  if (it->is_object() && it->contains("content") && (*it)["content"].is_string()) {
    *out = (*it)["content"].get<std::string>();
    return true;
  }
  throw ModelError(where + ": '" + key + "' is neither a string nor a token object with 'content'");
}

}  // namespace

void ClipTokenizer::read_vocab(const nlohmann::json& vocab, const std::string& where) {
  if (!vocab.is_object() || vocab.empty()) throw ModelError(where + ": expected a non-empty {token: id} vocabulary");
  int64_t max_id = -1;
  for (const auto& [token, id] : vocab.items()) {
    if (!id.is_number_integer() || id.get<int64_t>() < 0)
      throw ModelError(where + ": id of '" + token + "' is not a non-negative integer");
    vocab_.emplace(token, id.get<int64_t>());
    max_id = std::max(max_id, id.get<int64_t>());
  }
  id_to_token_.resize(static_cast<size_t>(max_id) + 1);
  for (const auto& [token, id] : vocab_) id_to_token_[static_cast<size_t>(id)] = token;
}

// As the reference's BPE builder: both parts and their concatenation must be
// in the vocabulary; rank = order of appearance.
void ClipTokenizer::add_merge(const std::string& a, const std::string& b, const std::string& where,
                              const char* vocab_name) {
  for (const std::string& sym : {a, b, a + b})
    if (vocab_.count(sym) == 0) throw ModelError(where + ": '" + sym + "' is not in " + vocab_name);
  merge_rank_.emplace(a + " " + b, static_cast<int64_t>(merge_rank_.size()));
}

void ClipTokenizer::read_merges_txt(const std::string& merges_path) {
  // An optional "#version" line, then "a b" per line in rank order.
  std::ifstream merges(merges_path);
  if (!merges) throw ModelError(merges_path + ": cannot open (missing or unreadable)");
  std::string line;
  int64_t line_no = 0;
  while (std::getline(merges, line)) {
    ++line_no;
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (line.rfind("#version", 0) == 0 || line.empty()) continue;
    const std::string where = merges_path + ": line " + std::to_string(line_no);
    std::string a, b;
    if (!split_merge(line, &a, &b)) throw ModelError(where + " is not two space-separated symbols");
    add_merge(a, b, where, "vocab.json");
  }
  if (merges.bad()) throw ModelError(merges_path + ": read error");
}

std::string ClipTokenizer::read_tokenizer_json(const std::string& path) {
  const nlohmann::json j = read_json_file(path);
  const auto model = j.find("model");
  if (!j.is_object() || model == j.end() || !model->is_object())
    throw ModelError(path + ": no 'model' object (not a tokenizers file)");
  const std::string type = json_value<std::string>(*model, "type", "", path);
  const std::string suffix = json_value<std::string>(*model, "end_of_word_suffix", "", path);
  // CLIP's BPE marks word ends with "</w>"; another model type or suffix is a
  // different tokenizer whose ids this code would get wrong.
  if (type != "BPE" || suffix != "</w>")
    throw ModelError(path + ": model type '" + type + "' with end_of_word_suffix '" + suffix +
                     "' is not CLIP's byte-level BPE (expected BPE with '</w>')");
  read_vocab(model->contains("vocab") ? (*model)["vocab"] : nlohmann::json(), path + " (model.vocab)");
  const auto merges = model->find("merges");
  if (merges == model->end() || !merges->is_array()) throw ModelError(path + ": model.merges is not a list");
  // tokenizers < 0.20 wrote merges as "a b" strings, later versions as [a, b] pairs.
  for (size_t i = 0; i < merges->size(); ++i) {
    const nlohmann::json& m = (*merges)[i];
    const std::string where = path + ": model.merges[" + std::to_string(i) + "]";
    if (m.is_array() && m.size() == 2 && m[0].is_string() && m[1].is_string()) {
      add_merge(m[0].get<std::string>(), m[1].get<std::string>(), where, "model.vocab");
    } else if (m.is_string()) {
      std::string a, b;
      if (!split_merge(m.get<std::string>(), &a, &b)) throw ModelError(where + " is not two space-separated symbols");
      add_merge(a, b, where, "model.vocab");
    } else {
      throw ModelError(where + " is neither a pair of symbols nor an \"a b\" string");
    }
  }
  // The special tokens it declares must have the ids the vocabulary gives them.
  if (const auto added = j.find("added_tokens"); added != j.end() && added->is_array()) {
    for (const auto& t : *added) {
      if (!t.is_object() || !t.contains("content") || !t["content"].is_string() || !t.contains("id")) continue;
      const auto it = vocab_.find(t["content"].get<std::string>());
      if (it == vocab_.end() || !t["id"].is_number_integer() || it->second != t["id"].get<int64_t>())
        throw ModelError(path + ": added token '" + t["content"].get<std::string>() +
                         "' is not in model.vocab under the same id");
    }
  }
  return json_value<std::string>(*model, "unk_token", "", path);
}

ClipTokenizer::ClipTokenizer(const std::string& tokenizer_dir) {
  namespace fs = std::filesystem;
  const fs::path dir(tokenizer_dir);
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) throw ModelError(tokenizer_dir + ": tokenizer folder not found");

  // transformers 4 wrote vocab.json + merges.txt; transformers 5 writes only
  // tokenizer.json (the `tokenizers` library's file, BPE model inside).
  std::string vocab_path = (dir / "vocab.json").string();
  std::string json_unk;
  if (fs::exists(vocab_path, ec) || !fs::exists(dir / "tokenizer.json", ec)) {
    read_vocab(read_json_file(vocab_path), vocab_path);
    read_merges_txt((dir / "merges.txt").string());
  } else {
    vocab_path = (dir / "tokenizer.json").string();
    json_unk = read_tokenizer_json(vocab_path);
  }

  // Special tokens: CLIPTokenizer's defaults, overridden by tokenizer_config.json,
  // then by special_tokens_map.json (the reference's precedence).
  std::string bos = "<|startoftext|>", eos = "<|endoftext|>", pad = "<|endoftext|>", unk = "<|endoftext|>";
  if (!json_unk.empty()) unk = json_unk;
  for (const char* name : {"tokenizer_config.json", "special_tokens_map.json"}) {
    const fs::path path = dir / name;
    if (!fs::exists(path, ec)) continue;
    const nlohmann::json config = read_json_file(path.string());
    special_token(config, "bos_token", path.string(), &bos);
    special_token(config, "eos_token", path.string(), &eos);
    special_token(config, "pad_token", path.string(), &pad);
    special_token(config, "unk_token", path.string(), &unk);
    if (std::string(name) == "tokenizer_config.json") {
      max_length_ = json_value<int64_t>(config, "model_max_length", max_length_, path.string());
      if (max_length_ < 2 || max_length_ > 4096)
        throw ModelError(path.string() + ": model_max_length " + std::to_string(max_length_) + " is out of range");
    }
  }
  auto id_of = [&](const std::string& token, const char* role) {
    auto it = vocab_.find(token);
    if (it == vocab_.end())
      throw ModelError(vocab_path + ": the " + std::string(role) + " token '" + token + "' is not in the vocabulary");
    return it->second;
  };
  bos_id_ = id_of(bos, "start");
  eos_id_ = id_of(eos, "end");
  pad_id_ = id_of(pad, "padding");
  unk_id_ = id_of(unk, "unknown");
  for (const std::string& token : {bos, eos}) special_.emplace_back(token, vocab_.at(token));
  // Longest first, so that a token that is a prefix of another never shadows it.
  std::sort(special_.begin(), special_.end(),
            [](const auto& a, const auto& b) { return a.first.size() > b.first.size(); });
}

void ClipTokenizer::bpe(const std::string& word, std::vector<int64_t>& out) const {
  // Symbols: one per byte (each mapped to its printable character), "</w>" on the last.
  const auto& alphabet = byte_alphabet();
  std::vector<std::string> symbols;
  symbols.reserve(word.size());
  for (unsigned char b : word) symbols.push_back(alphabet[b]);
  if (symbols.empty()) return;
  symbols.back() += "</w>";

  // Repeatedly merge every occurrence of the lowest-ranked adjacent pair.
  std::string key;
  while (symbols.size() > 1) {
    int64_t best = std::numeric_limits<int64_t>::max();
    for (size_t k = 0; k + 1 < symbols.size(); ++k) {
      key = symbols[k] + ' ' + symbols[k + 1];
      auto it = merge_rank_.find(key);
      if (it != merge_rank_.end() && it->second < best) best = it->second;
    }
    if (best == std::numeric_limits<int64_t>::max()) break;
    std::vector<std::string> merged;
    merged.reserve(symbols.size());
    for (size_t k = 0; k < symbols.size(); ++k) {
      if (k + 1 < symbols.size()) {
        key = symbols[k] + ' ' + symbols[k + 1];
        auto it = merge_rank_.find(key);
        if (it != merge_rank_.end() && it->second == best) {
          merged.push_back(symbols[k] + symbols[k + 1]);
          ++k;
          continue;
        }
      }
      merged.push_back(std::move(symbols[k]));
    }
    symbols = std::move(merged);
  }
  for (const std::string& sym : symbols) {
    auto it = vocab_.find(sym);
    out.push_back(it == vocab_.end() ? unk_id_ : it->second);
  }
}

void ClipTokenizer::encode_text(const std::u32string& text, std::vector<int64_t>& out) const {
  for (const std::u32string& word : pre_tokenize(normalize(text))) bpe(utf8_encode(word), out);
}

std::vector<int64_t> ClipTokenizer::encode(const std::string& text) const {
  std::vector<int64_t> ids{bos_id_};
  // Special tokens written literally are split off before normalization.
  size_t pos = 0;
  while (pos <= text.size()) {
    size_t best = std::string::npos;
    const std::pair<std::string, int64_t>* found = nullptr;
    for (const auto& special : special_) {
      const size_t at = text.find(special.first, pos);
      if (at < best) best = at, found = &special;
    }
    encode_text(utf8_decode(text.substr(pos, best == std::string::npos ? std::string::npos : best - pos)), ids);
    if (found == nullptr) break;
    ids.push_back(found->second);
    pos = best + found->first.size();
  }
  ids.push_back(eos_id_);
  return ids;
}

TokenizedText ClipTokenizer::encode_padded(const std::string& text) const {
  std::vector<int64_t> ids = encode(text);
  TokenizedText out;
  out.untruncated_length = static_cast<int64_t>(ids.size());
  out.truncated = out.untruncated_length > max_length_;
  if (out.truncated) {
    ids.resize(static_cast<size_t>(max_length_));
    ids.back() = eos_id_;  // truncation cuts the tokens, the end token is added after
  }
  ids.resize(static_cast<size_t>(max_length_), pad_id_);
  out.ids = std::move(ids);
  return out;
}

at::Tensor ClipTokenizer::input_ids(const std::vector<std::string>& texts) const {
  at::Tensor out = at::empty({static_cast<int64_t>(texts.size()), max_length_}, at::kLong);
  int64_t* data = out.data_ptr<int64_t>();
  for (size_t i = 0; i < texts.size(); ++i) {
    const TokenizedText t = encode_padded(texts[i]);
    std::copy(t.ids.begin(), t.ids.end(), data + i * static_cast<size_t>(max_length_));
  }
  return out;
}

std::vector<std::string> ClipTokenizer::tokens(const std::vector<int64_t>& ids) const {
  std::vector<std::string> out;
  out.reserve(ids.size());
  for (int64_t id : ids) {
    if (id < 0 || id >= static_cast<int64_t>(id_to_token_.size()) || id_to_token_[id].empty())
      throw ModelError("token id " + std::to_string(id) + " is not in the vocabulary");
    out.push_back(id_to_token_[id]);
  }
  return out;
}

}  // namespace via::model
