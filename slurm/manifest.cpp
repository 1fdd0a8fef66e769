#include "slurm/manifest.h"

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <stdexcept>

#include "slurm/errors.h"
#include "slurm/quoting.h"

namespace via::slurm {
namespace {

bool looks_like_option(const std::string& word) { return word.size() > 1 && word[0] == '-' && word[1] == '-'; }

}  // namespace

std::vector<ManifestEntry> parse_manifest(std::string_view text, const std::string& source) {
  std::vector<ManifestEntry> entries;
  int number = 0;
  size_t at = 0;
  while (at < text.size()) {
    size_t end = text.find('\n', at);
    if (end == std::string_view::npos) end = text.size();
    std::string_view line = text.substr(at, end - at);
    at = end + 1;
    ++number;
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);  // files written on Windows
    const std::string where = "manifest " + source + ":" + std::to_string(number) + ": ";
    std::vector<std::string> words;
    try {
      words = split_words(line);
    } catch (const std::invalid_argument& e) {
      throw ManifestError(where + e.what());
    }
    if (words.empty()) continue;
    static const char* const kFields[] = {"input", "output", "instruction"};
    for (size_t i = 0; i < 3; ++i) {
      if (i >= words.size())
        throw ManifestError(where + "needs an input, an output and an instruction; the " + kFields[i] +
                            " is missing");
      if (looks_like_option(words[i]))
        throw ManifestError(where + "the " + std::string(kFields[i]) + " is missing before '" + words[i] +
                            "' (a line is: input output instruction [--setting value ...])");
      if (words[i].empty()) throw ManifestError(where + "the " + std::string(kFields[i]) + " is empty");
    }
    if (words.size() > 3 && !looks_like_option(words[3]))
      throw ManifestError(where + "unexpected '" + words[3] +
                          "' after the instruction (quote an instruction of several words; settings are "
                          "--name value)");
    ManifestEntry entry;
    entry.line = number;
    entry.input = words[0];
    entry.output = words[1];
    entry.instruction = words[2];
    entry.options.assign(words.begin() + 3, words.end());
    entries.push_back(std::move(entry));
  }
  if (entries.empty())
    throw ManifestError("manifest " + source + ": no renders in it (one a line: input output instruction)");
  return entries;
}

std::vector<ManifestEntry> read_manifest(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw ManifestError("manifest " + path + ": cannot read it: " + std::strerror(errno));
  std::ostringstream text;
  text << in.rdbuf();
  if (in.bad()) throw ManifestError("manifest " + path + ": read failed");
  return parse_manifest(text.str(), path);
}

std::string resolve_manifest_path(const std::string& manifest_path, const std::string& path) {
  if (path.empty() || std::filesystem::path(path).is_absolute()) return path;
  return (std::filesystem::path(manifest_path).parent_path() / path).lexically_normal().string();
}

}  // namespace via::slurm
