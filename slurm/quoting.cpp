#include "slurm/quoting.h"

#include <stdexcept>

#include "slurm/errors.h"

namespace via::slurm {
namespace {

// Characters no POSIX shell treats specially anywhere in a word ('=' is
// left out: `a=b` at the start of a command is an assignment).
bool shell_safe(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' || c == '-' ||
         c == '.' || c == '/' || c == ',' || c == ':' || c == '+' || c == '@' || c == '%';
}

bool is_blank(char c) { return c == ' ' || c == '\t'; }

}  // namespace

std::string shell_quote(std::string_view word) {
  bool safe = !word.empty();
  for (char c : word) safe = safe && shell_safe(c);
  if (safe) return std::string(word);
  std::string quoted = "'";
  for (char c : word) {
    if (c == '\'') quoted += "'\\''";
    else quoted += c;
  }
  quoted += '\'';
  return quoted;
}

std::string sbatch_value(std::string_view what, std::string_view value) {
  if (value.empty()) throw JobSpecError(std::string(what) + " is empty");
  bool blanks = false;
  for (char c : value) {
    const auto byte = static_cast<unsigned char>(c);
    if (c == '"' || c == '\\' || byte < 0x20 || byte == 0x7f)
      throw JobSpecError(std::string(what) + " '" + std::string(value) +
                         "' holds a character an #SBATCH line cannot carry (a double quote, a backslash or a "
                         "control character)");
    blanks = blanks || c == ' ';
  }
  return blanks ? "\"" + std::string(value) + "\"" : std::string(value);
}

std::string escape_slurm_pattern(std::string_view path) {
  std::string escaped;
  for (char c : path) {
    escaped += c;
    if (c == '%') escaped += '%';
  }
  return escaped;
}

std::vector<std::string> split_words(std::string_view line) {
  std::vector<std::string> words;
  size_t i = 0;
  while (i < line.size()) {
    while (i < line.size() && is_blank(line[i])) ++i;
    if (i == line.size() || line[i] == '#') break;
    std::string word;
    while (i < line.size() && !is_blank(line[i])) {
      const char c = line[i];
      if (c == '\'') {
        const size_t end = line.find('\'', i + 1);
        if (end == std::string_view::npos) throw std::invalid_argument("unterminated single quote");
        word.append(line.substr(i + 1, end - i - 1));
        i = end + 1;
      } else if (c == '"') {
        ++i;
        for (;;) {
          if (i == line.size()) throw std::invalid_argument("unterminated double quote");
          if (line[i] == '"') break;
          if (line[i] == '\\' && i + 1 < line.size() && (line[i + 1] == '"' || line[i + 1] == '\\')) ++i;
          word += line[i++];
        }
        ++i;
      } else if (c == '\\') {
        if (i + 1 == line.size()) throw std::invalid_argument("backslash at the end of the line");
        word += line[i + 1];
        i += 2;
      } else {
        word += c;
        ++i;
      }
    }
    words.push_back(std::move(word));
  }
  return words;
}

}  // namespace via::slurm
