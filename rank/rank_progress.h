#pragma once
// What each rank is doing now, progress/rank_R.json in the work directory:
// written by every rank as it moves between stages and chunks, read by `via
// status` while a render runs.
#include <nlohmann/json.hpp>

#include <cstdint>
#include <string>

#include "rank/workdir.h"

namespace via::rank {

/// Writes what rank `rank` is doing (`stage`, `chunk` or -1) with its host,
/// pid and the time. Informative only: a failed write is ignored.
void write_rank_progress(const WorkDir& dir, int rank, const std::string& stage, int64_t chunk);

/// Every readable progress/rank_R.json, in rank order (a JSON array).
nlohmann::json read_rank_progress(const WorkDir& dir);

}  // namespace via::rank
