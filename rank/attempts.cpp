#include "rank/attempts.h"

#include <unistd.h>

#include <cstdlib>
#include <ctime>
#include <fstream>

namespace via::rank {
namespace {

std::string env(const char* name) {
  const char* v = std::getenv(name);
  return v ? v : "";
}

std::string now_iso() {
  const std::time_t t = std::time(nullptr);
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[32];
  std::strftime(buf, sizeof(buf), "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

// Whether `path` is empty or ends a line (a kill can tear the last line).
bool ends_a_line(const std::string& path) {
  std::ifstream in(path, std::ios::binary | std::ios::ate);
  if (!in || in.tellg() <= 0) return true;
  in.seekg(-1, std::ios::end);
  return in.get() == '\n';
}

void append_line(const WorkDir& dir, const nlohmann::json& j) {
  // Informative only: a failed append must not stop a render. A torn last
  // line is ended first, so this record stays whole.
  const bool fresh_line = ends_a_line(dir.attempts());
  std::ofstream out(dir.attempts(), std::ios::app);
  out << (fresh_line ? "" : "\n") << j.dump() << "\n";
}

}  // namespace

SlurmJob SlurmJob::from_environment() {
  SlurmJob job;
  job.job_id = env("SLURM_JOB_ID");
  job.array_job_id = env("SLURM_ARRAY_JOB_ID");
  job.array_task_id = env("SLURM_ARRAY_TASK_ID");
  const std::string restarts = env("SLURM_RESTART_COUNT");
  job.restart_count = restarts.empty() ? 0 : std::atoll(restarts.c_str());
  return job;
}

nlohmann::json SlurmJob::to_json() const {
  nlohmann::json j = {{"job_id", job_id}, {"restart_count", restart_count}};
  if (!array_job_id.empty()) {
    j["array_job_id"] = array_job_id;
    j["array_task_id"] = array_task_id;
  }
  return j;
}

void record_attempt_start(const WorkDir& dir, int ranks, bool resume) {
  nlohmann::json j = {{"event", "start"}, {"time", now_iso()}, {"ranks", ranks}, {"resume", resume},
                      {"host", host_name()}, {"pid", static_cast<int64_t>(getpid())}};
  const SlurmJob slurm = SlurmJob::from_environment();
  if (!slurm.empty()) j["slurm"] = slurm.to_json();
  append_line(dir, j);
}

void record_attempt_end(const WorkDir& dir, const std::string& result, const std::string& message) {
  nlohmann::json j = {{"event", "end"}, {"time", now_iso()}, {"result", result}};
  if (!message.empty()) j["message"] = message;
  append_line(dir, j);
}

AttemptLog read_attempts(const WorkDir& dir) {
  AttemptLog log;
  std::ifstream in(dir.attempts());
  std::string text;
  while (std::getline(in, text)) {
    nlohmann::json j = nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
    if (!j.is_object() || !j.contains("event") || !j["event"].is_string()) continue;
    if (j.contains("result") && !j["result"].is_string()) continue;
    if (j.contains("message") && !j["message"].is_string()) j.erase("message");
    if (j.value("event", "") == "start") {
      ++log.attempts;
      log.last_start = j;
      log.last_end = nlohmann::json();
    } else if (j.value("event", "") == "end") {
      log.last_end = j;
    }
  }
  return log;
}

}  // namespace via::rank
