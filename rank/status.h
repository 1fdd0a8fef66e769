#pragma once
// `via status WORKDIR`: how far a render got, from its work directory's
// files alone (settings.json, plan.json, attempts.jsonl, progress/, the
// checkpoints), while it runs, after it stopped, or after it finished.
#include <nlohmann/json.hpp>

#include <string>

#include "rank/workdir.h"

namespace via::rank {

/// Everything `via status` shows. Throws WorkDirError when `dir` holds no render.
nlohmann::json workdir_status(const WorkDir& dir);
/// The human form of workdir_status().
std::string format_status(const nlohmann::json& status);

}  // namespace via::rank
