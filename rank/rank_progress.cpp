#include "rank/rank_progress.h"

#include <unistd.h>

#include <algorithm>
#include <ctime>
#include <filesystem>
#include <fstream>

namespace fs = std::filesystem;

namespace via::rank {

void write_rank_progress(const WorkDir& dir, int rank, const std::string& stage, int64_t chunk) {
  nlohmann::json j = {{"rank", rank},   {"stage", stage}, {"chunk", chunk},
                      {"host", host_name()}, {"pid", static_cast<int64_t>(getpid())},
                      {"updated", static_cast<int64_t>(std::time(nullptr))}};
  try {
    write_file_atomic(dir.progress(rank), j.dump() + "\n");
  } catch (const std::exception&) {
    // Informative only; a full disk shows up where it matters (checkpoints).
  }
}

nlohmann::json read_rank_progress(const WorkDir& dir) {
  nlohmann::json ranks = nlohmann::json::array();
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator(dir.progress_dir(), ec)) {
    std::ifstream in(entry.path());
    nlohmann::json j = nlohmann::json::parse(in, nullptr, /*allow_exceptions=*/false);
    if (!j.is_discarded()) ranks.push_back(j);
  }
  std::sort(ranks.begin(), ranks.end(),
            [](const nlohmann::json& a, const nlohmann::json& b) { return a.value("rank", 0) < b.value("rank", 0); });
  return ranks;
}

}  // namespace via::rank
