#pragma once
// Running a program and capturing what it prints, without a shell (no
// quoting involved): how via calls sbatch.
#include <string>
#include <vector>

namespace via::slurm {

/// How a program ended and what it printed.
struct ProcessResult {
  int exit_code = -1;  // its exit status, or 128 + the signal that ended it
  std::string out;
  std::string err;
};

/// Runs argv[0] (looked up on PATH when it has no '/') with `argv`, stdin
/// from /dev/null, and waits for it. Throws SlurmError naming the program
/// when it cannot be started ("... not found on PATH" when it does not exist).
ProcessResult run_process(const std::vector<std::string>& argv);

}  // namespace via::slurm
