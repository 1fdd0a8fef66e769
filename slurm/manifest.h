#pragma once
// Manifests for `via submit --manifest FILE`: one render a line.
//
//   # input        output           instruction                 [settings]
//   clips/a.mp4    edited/a.mp4     "make it a pencil sketch"
//   clips/b.mp4    edited/b.mp4     'turn the car green'        --seed 7 --steps 30
//
// Words are split like a shell's (slurm/quoting.h split_words: '...' and
// "..." quote, a backslash escapes, '#' starts a comment); blank and comment
// lines are skipped. The first three words are the input, the output and the
// instruction; the rest are `via render` settings for this line only
// (they override the ones given to `via submit`). Relative paths are
// relative to the manifest's directory.
#include <string>
#include <string_view>
#include <vector>

namespace via::slurm {

/// One render of a manifest.
struct ManifestEntry {
  int line = 0;                      // 1-based line number, for messages
  std::string input;                 // as written (relative paths not resolved)
  std::string output;
  std::string instruction;
  std::vector<std::string> options;  // the line's settings: "--seed", "7", ...
};

/// Parses a manifest's text; `source` names it in messages. Throws
/// ManifestError ("manifest SOURCE:LINE: ...") for an unterminated quote,
/// a line with fewer than three words, a missing field that looks like an
/// option, settings that do not start with an option name, or no render at all.
std::vector<ManifestEntry> parse_manifest(std::string_view text, const std::string& source);

/// Reads and parses the manifest file at `path` (ManifestError when it cannot be read).
std::vector<ManifestEntry> read_manifest(const std::string& path);

/// `path` taken relative to the manifest's directory (absolute paths and ""
/// stay as they are).
std::string resolve_manifest_path(const std::string& manifest_path, const std::string& path);

}  // namespace via::slurm
