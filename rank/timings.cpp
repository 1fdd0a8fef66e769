#include "rank/timings.h"

namespace via::rank {

const char* stage_name(Stage stage) {
  switch (stage) {
    case Stage::Startup: return "startup";
    case Stage::Read: return "read";
    case Stage::VaeEncode: return "vae_encode";
    case Stage::Adaptation: return "adaptation";
    case Stage::Gather: return "gather";
    case Stage::Broadcast: return "broadcast";
    case Stage::Denoise: return "denoise";
    case Stage::VaeDecode: return "vae_decode";
    case Stage::Encode: return "encode";
    case Stage::Checkpoint: return "checkpoint";
    case Stage::Concat: return "concat";
    case Stage::Wait: return "wait";
    case Stage::Count: break;
  }
  return "?";
}

bool is_compute(Stage stage) {
  return stage == Stage::VaeEncode || stage == Stage::Adaptation || stage == Stage::Gather ||
         stage == Stage::Denoise || stage == Stage::VaeDecode;
}

double StageTimes::total() const {
  double t = 0;
  for (double s : seconds) t += s;
  return t;
}

nlohmann::json StageTimes::to_json() const {
  nlohmann::json j = nlohmann::json::object();
  for (size_t i = 0; i < seconds.size(); ++i) j[stage_name(static_cast<Stage>(i))] = seconds[i];
  j["frames"] = frames;
  return j;
}

StageTimes StageTimes::from_json(const nlohmann::json& j) {
  StageTimes t;
  for (size_t i = 0; i < t.seconds.size(); ++i) t.seconds[i] = j.value(stage_name(static_cast<Stage>(i)), 0.0);
  t.frames = j.value("frames", int64_t{0});
  return t;
}

}  // namespace via::rank
