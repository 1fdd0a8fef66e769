#pragma once
// Progress of a render, in its work directory: the attempts (attempts.jsonl)
// and what each rank does (progress/), written as the render goes, and the
// aggregated progress line rank 0 prints while ranks render, read from the
// files alone (every rank's finished frames are files). `via status` reads
// the same files (rank/status.h).
#include <nlohmann/json.hpp>

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <mutex>
#include <set>
#include <string>
#include <thread>

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
/// how it ended.
void record_attempt_start(const WorkDir& dir, int ranks, bool resume);
void record_attempt_end(const WorkDir& dir, const std::string& result, const std::string& message = "");

/// What rank `rank` is doing, for status (progress/rank_R.json).
void write_rank_progress(const WorkDir& dir, int rank, const std::string& stage, int64_t chunk);

/// Finished chunks and frames on disk. Chunks found done are remembered
/// (a finished chunk stays finished), so polling costs little.
class DiskProgress {
 public:
  DiskProgress(WorkDir dir, ChunkPlan plan, std::string settings_hash);
  struct Counts {
    int64_t chunks_done = 0, frames_done = 0;  // frames: of finished chunks, plus frame files
    int64_t segments = 0;
  };
  Counts scan();
  const ChunkPlan& plan() const { return plan_; }

 private:
  WorkDir dir_;
  ChunkPlan plan_;
  std::string hash_;
  std::set<int64_t> done_;
};

/// Rank 0's progress line: frames done / total, frames per second (of this
/// attempt), ETA. On a terminal one line updated in place every second;
/// otherwise a plain line when progress was made, at most every `interval`.
/// Runs on its own thread from start() to stop() (or destruction).
class ProgressReporter {
 public:
  using Print = std::function<void(const std::string& text, bool in_place)>;
  ProgressReporter(DiskProgress progress, bool terminal, Print print,
                   std::chrono::seconds interval = std::chrono::seconds(10));
  ~ProgressReporter();
  ProgressReporter(const ProgressReporter&) = delete;
  ProgressReporter& operator=(const ProgressReporter&) = delete;

  void start();
  /// Prints the last line (and ends the in-place line) and joins the thread.
  void stop();

 private:
  void run();
  std::string line(const DiskProgress::Counts& c, double seconds) const;

  DiskProgress progress_;
  bool terminal_;
  Print print_;
  std::chrono::seconds interval_;
  std::thread thread_;
  std::mutex mutex_;
  std::condition_variable wake_;
  bool stopping_ = false;
  int64_t start_frames_ = 0;
  std::chrono::steady_clock::time_point start_;
};

/// Rank 0's progress inside the adaptation's stages (candidates, fine-tuning
/// steps, gather), as they go, so a long adaptation is never silent: on a
/// terminal each update replaces the line in place (at most ten a second);
/// otherwise the first update of each stage is printed at once and then a
/// plain line at most every `interval`.
class LiveProgress {
 public:
  using Print = ProgressReporter::Print;
  LiveProgress(bool terminal, Print print, std::chrono::milliseconds interval = std::chrono::seconds(5));
  /// Shows `line`, the progress of `stage`, when it is due; true when shown.
  bool update(const std::string& stage, const std::string& line);

 private:
  bool terminal_;
  Print print_;
  std::chrono::milliseconds interval_;
  std::string stage_;
  std::chrono::steady_clock::time_point last_{};
};

/// "42s", "3m05s", "1h02m"; "?" when not finite.
std::string duration_text(double seconds);

}  // namespace via::rank
