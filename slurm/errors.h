#pragma once
// The errors of slurm/: each message is one line that names what it is about
// (the option, the manifest line, the program that failed).
#include <stdexcept>
#include <string>

namespace via::slurm {

/// A job request that cannot work (a bad time limit, a path Slurm cannot
/// carry): user input; the message names the option or value.
class JobSpecError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

/// A manifest that cannot be read or parsed: "manifest FILE:LINE: ...".
class ManifestError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

/// A Slurm command (sbatch) that is missing, fails or answers something
/// unexpected; the message names the command and carries its stderr.
class SlurmError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

/// A job template whose placeholders do not match the values given: a bug
/// in via, never user input.
class TemplateError : public std::logic_error {
 public:
  using std::logic_error::logic_error;
};

}  // namespace via::slurm
