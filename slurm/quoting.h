#pragma once
// Quoting for the two languages a job script speaks: the shell (bash reads
// the render's arguments) and sbatch's own `#SBATCH` lines (read by sbatch,
// never by the shell). And the reverse for manifests: shell-like words.
#include <string>
#include <string_view>
#include <vector>

namespace via::slurm {

/// `word` as one shell word that bash (or any POSIX sh) reads back exactly:
/// unchanged when made only of safe characters, otherwise in single quotes
/// with each ' written as '\''. Any byte sequence round-trips, newlines too;
/// "" becomes ''.
std::string shell_quote(std::string_view word);

/// `value` for an `#SBATCH --option=VALUE` line: unchanged, or in double
/// quotes when it holds blanks. Throws JobSpecError naming `what` when sbatch
/// cannot carry it (empty, a double quote, a backslash, a control character
/// such as a newline).
std::string sbatch_value(std::string_view what, std::string_view value);

/// `path` with each '%' doubled, so that Slurm's --output patterns (%j, %A,
/// %a) do not apply to it.
std::string escape_slurm_pattern(std::string_view path);

/// Splits one line into words like a shell without expansions: blanks
/// separate words; '...' keeps everything literally; "..." keeps everything
/// but \" and \\ (a backslash before anything else stays); outside quotes a
/// backslash keeps the next character; an unquoted '#' at the start of a word
/// begins a comment. Throws std::invalid_argument for an unterminated quote
/// or a backslash at the end of the line.
std::vector<std::string> split_words(std::string_view line);

}  // namespace via::slurm
