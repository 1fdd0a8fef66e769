#pragma once
// CLIP's byte-level alphabet (GPT-2's bytes_to_unicode, as in OpenAI CLIP's
// simple_tokenizer.py): every byte maps to one printable character, so BPE
// vocabularies and merges are plain text. Used to turn dropped tokens back
// into text for the truncation warning, and to write tokenizer files.
#include <string>
#include <vector>

namespace via::model {

/// The 256 characters (UTF-8) standing for bytes 0..255, indexed by byte.
const std::vector<std::string>& clip_byte_alphabet();

/// Vocabulary strings (e.g. "make</w>", "sun", "set</w>") back to the text
/// they came from: "</w>" ends a word, byte characters become their bytes.
/// Symbols outside the alphabet are kept as they are.
std::string decode_clip_tokens(const std::vector<std::string>& tokens);

}  // namespace via::model
