#pragma once
// The attempts log, attempts.jsonl in the work directory: one JSON line when
// an attempt starts (time, ranks, resume, host, pid, Slurm job) and one when
// it ends (result, message), appended by rank 0 and read by `via status`.
#include <nlohmann/json.hpp>

#include <cstdint>
#include <string>

#include "rank/workdir.h"

namespace via::rank {

/// The Slurm job this process runs in, from the environment ("" outside).
struct SlurmJob {
  std::string job_id;         // SLURM_JOB_ID
  std::string array_job_id;   // SLURM_ARRAY_JOB_ID
  std::string array_task_id;  // SLURM_ARRAY_TASK_ID
  int64_t restart_count = 0;  // SLURM_RESTART_COUNT
  static SlurmJob from_environment();
  bool empty() const { return job_id.empty(); }
  nlohmann::json to_json() const;
};

/// Appends one line to attempts.jsonl (rank 0): when an attempt starts and
/// how it ended. Informative only: a failed append does not stop a render.
void record_attempt_start(const WorkDir& dir, int ranks, bool resume);
void record_attempt_end(const WorkDir& dir, const std::string& result, const std::string& message = "");

/// What attempts.jsonl says. Only well-formed records count: a kill can tear
/// the last line, and a foreign or torn line is skipped.
struct AttemptLog {
  int64_t attempts = 0;         ///< starts recorded
  nlohmann::json last_start;    ///< the last start's record; null when none
  nlohmann::json last_end;      ///< the end of that attempt; null when it has none
};
AttemptLog read_attempts(const WorkDir& dir);

}  // namespace via::rank
