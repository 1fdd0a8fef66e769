#pragma once
// Where a render's time goes, per stage and rank: for the log line at the
// end, timings.json in the work directory and the benchmark (bench/).
#include <nlohmann/json.hpp>

#include <array>
#include <chrono>
#include <cstdint>

namespace via::rank {

enum class Stage {
  Startup,     // model load, instruction encoding
  Read,        // source frames: demux, decode, resize
  VaeEncode,   // source frames -> latents
  Adaptation,  // root candidates, tuning set, fine-tuning (rank 0)
  Gather,      // key frames' attention group (rank 0)
  Broadcast,   // adapter and group to every rank
  Denoise,     // the edit's UNet steps, per frame
  VaeDecode,   // latents -> frames
  Encode,      // H.264 segments
  Checkpoint,  // HDF5 latents written and read back
  Concat,      // segments + audio -> output (rank 0)
  Wait,        // idle: waiting for another rank
  Count
};

const char* stage_name(Stage stage);
/// Model compute (what a faster model would shrink); the rest is overhead,
/// except Startup and Wait, reported apart.
bool is_compute(Stage stage);

/// Seconds per stage of one rank.
struct StageTimes {
  std::array<double, static_cast<size_t>(Stage::Count)> seconds{};
  int64_t frames = 0;  // frames this rank denoised

  void add(Stage stage, double s) { seconds[static_cast<size_t>(stage)] += s; }
  double operator[](Stage stage) const { return seconds[static_cast<size_t>(stage)]; }
  double total() const;
  nlohmann::json to_json() const;
  static StageTimes from_json(const nlohmann::json& j);
};

/// Adds the time from construction to destruction to one stage.
class StageTimer {
 public:
  StageTimer(StageTimes& times, Stage stage) : times_(times), stage_(stage) {}
  ~StageTimer() {
    times_.add(stage_, std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count());
  }
  StageTimer(const StageTimer&) = delete;
  StageTimer& operator=(const StageTimer&) = delete;

 private:
  StageTimes& times_;
  Stage stage_;
  std::chrono::steady_clock::time_point start_ = std::chrono::steady_clock::now();
};

}  // namespace via::rank
