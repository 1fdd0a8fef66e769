#pragma once
// What a render was made from, beyond its settings: the input video's and the
// model's content, and the edit path's version. Together with the settings
// hash they make the render key, which settings.json records and every
// checkpoint of the work directory carries (rank/workdir.h), so a file made
// from anything else is never used, even when settings.json is lost.
//
// Content is hashed in full once, at the first attempt (a few seconds for a
// multi-GiB model from the page cache): headers alone would miss weights
// fine-tuned in place, and a partial hash would miss a re-encoded video of the
// same size. A resume re-reads a file only when its size or modification time
// moved; a file copied elsewhere or touched with the same bytes is accepted.
#include <nlohmann/json.hpp>

#include <cstdint>
#include <string>

namespace via::rank {

/// Bumped whenever a change to the edit path changes the frames a render
/// makes from the same settings, input and model: a work directory of
/// another version is redone, not mixed with frames made now.
constexpr int64_t kEditPathVersion = 2;

/// A file's, or a folder's (every regular file under it, by relative path,
/// hidden entries left out), identity.
struct Fingerprint {
  std::string path;
  int64_t files = 0;     // 1 for a file
  int64_t bytes = 0;     // in all
  int64_t mtime_ns = 0;  // the newest
  std::string content;   // 16 hex digits (see fingerprint())
  nlohmann::json to_json() const;
  static Fingerprint from_json(const nlohmann::json& j);
  /// Same files, bytes and modification time: the content is taken as unchanged.
  bool same_stat(const Fingerprint& other) const {
    return files == other.files && bytes == other.bytes && mtime_ns == other.mtime_ns;
  }
};

/// The fingerprint of `path`. Content: XXH64 of each 16 MiB block, then of
/// the blocks' hashes, per file; for a folder, of the files' relative paths
/// and hashes in path order. When `known` describes the same file with the
/// same stat, its content hash is taken without reading. Throws
/// std::runtime_error naming the path when it cannot be read.
Fingerprint fingerprint(const std::string& path, const Fingerprint* known = nullptr);

struct Provenance {
  Fingerprint input, model;
  int64_t edit_path = kEditPathVersion;
  std::string via_build;  // informative: the via that started the directory
  nlohmann::json to_json() const;
  static Provenance from_json(const nlohmann::json& j);
};

/// This build of via: "VERSION (commit C)".
std::string via_build();

/// The render key: the settings hash, the input's and the model's content and
/// the edit path's version, as 16 hex digits.
std::string render_key(const std::string& settings_hash, const Provenance& provenance);

/// Why `now` is not what `then` recorded, naming the input or the model; ""
/// when their contents agree (another edit path only changes the key).
std::string provenance_change(const Provenance& then, const Provenance& now);

}  // namespace via::rank
