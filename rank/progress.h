#pragma once
// What rank 0 prints while a render runs: the adaptation's steps as they go
// (LiveProgress), then the aggregated progress line of every rank's frames
// (ProgressReporter), read from the work directory's files alone
// (DiskProgress: every rank's finished frames are files), which `via status`
// counts too (rank/status.h). The attempts log is rank/attempts.h; what each
// rank does, rank/rank_progress.h.
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

/// Finished chunks and frames on disk. Chunks found done are remembered
/// (a finished chunk stays finished), so polling costs little.
class DiskProgress {
 public:
  DiskProgress(WorkDir dir, ChunkPlan plan, std::string render_key);
  struct Counts {
    int64_t chunks_done = 0, frames_done = 0;  // frames: of finished chunks, plus frame files
    int64_t segments = 0;
  };
  Counts scan();
  const ChunkPlan& plan() const { return plan_; }

 private:
  WorkDir dir_;
  ChunkPlan plan_;
  std::string key_;  // the render key chunk files must carry
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
