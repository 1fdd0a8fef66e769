#pragma once
// The job script of a render, or of a batch of renders (a job array), made
// from slurm/job_template.sh. See that file for what the job does at run
// time (srun, --resume, the warning signal, requeue on exit code 75).
#include <cstdint>
#include <string>
#include <vector>

namespace via::slurm {

/// What a job asks of Slurm and what it runs. Contract: validate() (called by
/// job_script()) accepts it only if sbatch can take every value as written.
struct JobSpec {
  /// The `via` executable, as the nodes see it (an absolute path).
  std::string via;
  /// `via render` arguments (without --resume, which the job always adds):
  /// one entry for a plain job; for a job array, task i runs renders[i].
  std::vector<std::vector<std::string>> renders;
  /// A job array (a manifest, even of one line) rather than a plain job.
  bool array = false;

  std::string job_name = "via";
  int nodes = 1;
  /// GPUs per node; one rank per GPU. 0: a CPU job with ntasks_per_node ranks per node.
  int gpus_per_node = 1;
  int ntasks_per_node = 1;  // only when gpus_per_node is 0
  int cpus_per_task = 0;   // CPU cores per rank; 0: Slurm's default
  /// Slurm's time limit format (minutes, M:S, H:M:S, D-H, D-H:M, D-H:M:S);
  /// "": the partition's default.
  std::string time_limit;
  /// Seconds before the time limit at which Slurm warns the job (SIGUSR1).
  int warning_seconds = 300;
  std::string partition;  // "": the default partition
  std::string account;    // "": the user's default account
  /// sbatch --dependency (e.g. "afterok:123"); "": none.
  std::string dependency;
  /// Further sbatch options, one each, as "--name=value" or "--flag".
  std::vector<std::string> sbatch_options;
  /// Requeues after which the job stops requeueing itself.
  int max_restarts = 100;
  /// Job arrays: tasks running at once (0: no cap).
  int max_running = 0;
  /// The job's log (sbatch --output); may use Slurm's %j, %A, %a. Appended to.
  std::string log;

  /// Throws JobSpecError naming the first value that cannot work.
  void validate() const;
};

/// The job script for `spec` (validated first).
std::string job_script(const JobSpec& spec);

/// A Slurm time limit in seconds. Throws JobSpecError for anything that is
/// not one of Slurm's formats (or is zero).
int64_t parse_time_limit(const std::string& limit);

/// `name` with every character that is not a letter, a digit, '.', '-' or
/// '_' replaced by '_': a job name any Slurm tool prints cleanly.
std::string job_name_of(const std::string& name);

}  // namespace via::slurm
