#pragma once
// Submitting a job script with Slurm's sbatch.
#include <string>

namespace via::slurm {

/// Submits `script` with `sbatch --parsable SCRIPT` (sbatch from PATH) and
/// returns the job id it prints. Throws SlurmError, naming sbatch, when it is
/// not installed, fails (with its own message) or prints no job id.
std::string submit_script(const std::string& script);

/// The job id in `sbatch --parsable`'s output ("1234" or "1234;cluster").
/// Throws SlurmError when there is none.
std::string parse_job_id(const std::string& sbatch_output);

}  // namespace via::slurm
