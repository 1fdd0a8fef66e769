#include "model/pipeline_text.h"

#include <cstdint>
#include <unordered_map>

namespace via::model {
namespace {

std::string utf8(uint32_t cp) {
  std::string s;
  if (cp < 0x80) {
    s += static_cast<char>(cp);
  } else if (cp < 0x800) {
    s += static_cast<char>(0xC0 | (cp >> 6));
    s += static_cast<char>(0x80 | (cp & 0x3F));
  } else {
    s += static_cast<char>(0xE0 | (cp >> 12));
    s += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    s += static_cast<char>(0x80 | (cp & 0x3F));
  }
  return s;
}

}  // namespace

const std::vector<std::string>& clip_byte_alphabet() {
  // Printable Latin-1 bytes stand for themselves; the others (controls,
  // space, 0x7F-0xA0, 0xAD) take code points 256, 257, ... in byte order.
  static const std::vector<std::string> alphabet = [] {
    std::vector<std::string> a(256);
    uint32_t next = 256;
    for (uint32_t b = 0; b < 256; ++b) {
      const bool printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
      a[b] = utf8(printable ? b : next++);
    }
    return a;
  }();
  return alphabet;
}

std::string decode_clip_tokens(const std::vector<std::string>& tokens) {
  static const std::unordered_map<std::string, char> byte_of = [] {
    std::unordered_map<std::string, char> m;
    const auto& a = clip_byte_alphabet();
    for (size_t b = 0; b < a.size(); ++b) m.emplace(a[b], static_cast<char>(b));
    return m;
  }();
  static const std::string kEndOfWord = "</w>";
  std::string text;
  for (const std::string& token : tokens) {
    std::string body = token;
    const bool word_end = body.size() >= kEndOfWord.size() &&
                          body.compare(body.size() - kEndOfWord.size(), kEndOfWord.size(), kEndOfWord) == 0;
    if (word_end) body.resize(body.size() - kEndOfWord.size());
    // Walk UTF-8 characters; each alphabet character is one byte of text.
    for (size_t i = 0; i < body.size();) {
      const auto lead = static_cast<unsigned char>(body[i]);
      const size_t len = lead < 0x80 ? 1 : lead < 0xE0 ? 2 : lead < 0xF0 ? 3 : 4;
      const std::string ch = body.substr(i, len);
      auto it = byte_of.find(ch);
      text += it != byte_of.end() ? std::string(1, it->second) : ch;
      i += len;
    }
    if (word_end) text += ' ';
  }
  while (!text.empty() && text.back() == ' ') text.pop_back();
  return text;
}

}  // namespace via::model
