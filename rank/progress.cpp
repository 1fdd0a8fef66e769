#include "rank/progress.h"

#include <unistd.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "io/checkpoint.h"

namespace fs = std::filesystem;

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

bool read_json(const std::string& path, nlohmann::json* out) {
  std::ifstream in(path);
  if (!in) return false;
  try {
    *out = nlohmann::json::parse(in);
    return true;
  } catch (const std::exception&) {
    return false;
  }
}

void append_line(const WorkDir& dir, const nlohmann::json& j) {
  // Informative only: a failed append must not stop a render.
  std::ofstream out(dir.attempts(), std::ios::app);
  out << j.dump() << "\n";
}

std::string duration_text(double seconds) {
  if (!std::isfinite(seconds) || seconds < 0) return "?";
  const auto s = static_cast<int64_t>(std::llround(seconds));
  char buf[32];
  if (s >= 3600) std::snprintf(buf, sizeof(buf), "%lldh%02lldm", (long long)(s / 3600), (long long)(s % 3600 / 60));
  else if (s >= 60) std::snprintf(buf, sizeof(buf), "%lldm%02llds", (long long)(s / 60), (long long)(s % 60));
  else std::snprintf(buf, sizeof(buf), "%llds", (long long)s);
  return buf;
}

}  // namespace

void write_plan(const WorkDir& dir, const ChunkPlan& plan) {
  const nlohmann::json j = {{"frames", plan.frames}, {"chunk_frames", plan.chunk_frames}, {"chunks", plan.chunks()}};
  write_file_atomic(dir.root + "/plan.json", j.dump(2) + "\n");
}

bool read_plan(const WorkDir& dir, ChunkPlan* plan) {
  nlohmann::json j;
  if (!read_json(dir.root + "/plan.json", &j)) return false;
  plan->frames = j.value("frames", int64_t{0});
  plan->chunk_frames = std::max<int64_t>(1, j.value("chunk_frames", int64_t{1}));
  return plan->frames > 0;
}

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

DiskProgress::DiskProgress(WorkDir dir, ChunkPlan plan, std::string settings_hash)
    : dir_(std::move(dir)), plan_(plan), hash_(std::move(settings_hash)) {}

DiskProgress::Counts DiskProgress::scan() {
  Counts c;
  std::error_code ec;
  for (int64_t chunk = 0; chunk < plan_.chunks(); ++chunk) {
    if (!done_.count(chunk) && fs::exists(dir_.chunk_latents(chunk), ec) &&
        chunk_latents_done(dir_, chunk, plan_, hash_))
      done_.insert(chunk);
    if (done_.count(chunk)) {
      ++c.chunks_done;
      c.frames_done += plan_.range(chunk).second;
    } else {
      c.frames_done += frames_on_disk(dir_, chunk);
    }
    if (fs::exists(dir_.chunk_segment(chunk), ec)) ++c.segments;
  }
  return c;
}

ProgressReporter::ProgressReporter(DiskProgress progress, bool terminal, Print print, std::chrono::seconds interval)
    : progress_(std::move(progress)), terminal_(terminal), print_(std::move(print)), interval_(interval) {}

ProgressReporter::~ProgressReporter() { stop(); }

void ProgressReporter::start() {
  start_ = std::chrono::steady_clock::now();
  start_frames_ = progress_.scan().frames_done;
  thread_ = std::thread([this] { run(); });
}

void ProgressReporter::stop() {
  if (!thread_.joinable()) return;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stopping_ = true;
  }
  wake_.notify_all();
  thread_.join();
}

std::string ProgressReporter::line(const DiskProgress::Counts& c, double seconds) const {
  const int64_t total = progress_.plan().frames;
  const double fps = seconds > 0 ? static_cast<double>(c.frames_done - start_frames_) / seconds : 0.0;
  char buf[160];
  if (c.frames_done == total) {
    std::snprintf(buf, sizeof(buf), "render: %lld/%lld frames (100%%)", static_cast<long long>(total),
                  static_cast<long long>(total));
    return buf;
  }
  std::snprintf(buf, sizeof(buf), "render: %lld/%lld frames (%.1f%%), %.2f frames/s, ETA %s",
                static_cast<long long>(c.frames_done), static_cast<long long>(total),
                total ? 100.0 * static_cast<double>(c.frames_done) / static_cast<double>(total) : 100.0, fps,
                fps > 0 ? duration_text(static_cast<double>(total - c.frames_done) / fps).c_str() : "?");
  return buf;
}

void ProgressReporter::run() {
  int64_t last_printed = -1;
  auto last_time = std::chrono::steady_clock::now() - interval_;
  const auto tick = std::chrono::seconds(1);
  for (;;) {
    bool stopping;
    {
      std::unique_lock<std::mutex> lock(mutex_);
      wake_.wait_for(lock, tick, [this] { return stopping_; });
      stopping = stopping_;
    }
    const DiskProgress::Counts c = progress_.scan();
    const auto now = std::chrono::steady_clock::now();
    const double seconds = std::chrono::duration<double>(now - start_).count();
    const bool changed = c.frames_done != last_printed;
    if (terminal_ || stopping || (changed && now - last_time >= interval_)) {
      print_(line(c, seconds), terminal_ && !stopping);
      last_printed = c.frames_done;
      last_time = now;
    }
    if (stopping) return;
  }
}

nlohmann::json workdir_status(const WorkDir& dir) {
  nlohmann::json s;
  s["workdir"] = dir.root;
  std::error_code ec;
  if (!fs::is_directory(dir.root, ec)) throw WorkDirError("work directory " + dir.root + " does not exist");
  RenderSettings settings;
  if (!read_settings(dir, &settings)) throw WorkDirError(dir.root + " holds no via render (no settings.json)");
  s["input"] = settings.input;
  s["output"] = settings.output;
  s["instruction"] = settings.instruction;
  s["settings_hash"] = settings.hash();

  std::string holder;
  const bool running = WorkDirLock::held(dir, &holder);
  s["running"] = running;
  if (running) s["holder"] = holder;

  // Attempts: starts and ends, in order.
  nlohmann::json last_start, last_end;
  int64_t attempts = 0;
  {
    std::ifstream in(dir.attempts());
    std::string text;
    while (std::getline(in, text)) {
      nlohmann::json j = nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
      // Only well-formed records count (a kill can tear the last line).
      if (!j.is_object() || !j.contains("event") || !j["event"].is_string()) continue;
      if (j.contains("result") && !j["result"].is_string()) continue;
      if (j.contains("message") && !j["message"].is_string()) j.erase("message");
      if (j.value("event", "") == "start") {
        ++attempts;
        last_start = j;
        last_end = nlohmann::json();
      } else if (j.value("event", "") == "end") {
        last_end = j;
      }
    }
  }
  s["attempts"] = attempts;
  if (!last_start.is_null()) s["last_attempt"] = last_start;
  if (!last_end.is_null()) s["last_attempt"]["end"] = last_end;
  if (last_start.contains("slurm")) s["slurm"] = last_start["slurm"];

  nlohmann::json stages;
  stages["root_pair"] = settings.finetune == "off" ? "not used" : io::is_valid_checkpoint(dir.root_pair()) ? "done" : "pending";
  stages["adapter"] = settings.finetune == "off" ? "not used" : io::is_valid_checkpoint(dir.adapter()) ? "done" : "pending";
  stages["attention_group"] =
      settings.attention == "own" ? "not used" : io::is_valid_checkpoint(dir.group()) ? "done" : "pending";
  ChunkPlan plan;
  bool all_done = false;
  if (read_plan(dir, &plan)) {
    DiskProgress progress(dir, plan, settings.hash());
    const DiskProgress::Counts c = progress.scan();
    stages["render"] = {{"chunks_done", c.chunks_done}, {"chunks", plan.chunks()},
                        {"frames_done", c.frames_done}, {"frames", plan.frames}};
    stages["segments"] = {{"done", c.segments}, {"chunks", plan.chunks()}};
    all_done = c.chunks_done == plan.chunks() && c.segments == plan.chunks();
  }
  const bool output = !settings.output.empty() && fs::is_regular_file(settings.output, ec);
  stages["output"] = output ? "written" : "pending";
  s["stages"] = stages;

  std::string state;
  if (running) state = "running";
  else if (attempts == 0) state = "not started";
  else if (!last_end.is_object()) state = "stopped without a record (killed?)";
  else if (last_end.value("result", "") != "finished") state = last_end.value("result", "stopped");
  else state = all_done ? "finished" : "finished once, but chunks have since been removed";
  s["state"] = state;
  if (!last_end.is_null() && last_end.contains("message")) s["message"] = last_end["message"];

  nlohmann::json ranks = nlohmann::json::array();
  if (running) {
    for (const auto& entry : fs::directory_iterator(dir.progress_dir(), ec)) {
      nlohmann::json j;
      if (read_json(entry.path().string(), &j)) ranks.push_back(j);
    }
    std::sort(ranks.begin(), ranks.end(),
              [](const nlohmann::json& a, const nlohmann::json& b) { return a.value("rank", 0) < b.value("rank", 0); });
  }
  s["ranks"] = ranks;
  return s;
}

std::string format_status(const nlohmann::json& s) {
  std::ostringstream out;
  auto row = [&](const char* key, const std::string& value) {
    char buf[32];
    std::snprintf(buf, sizeof(buf), "%-16s", key);
    out << buf << value << "\n";
  };
  row("work directory", s.value("workdir", ""));
  std::string state = s.value("state", "?");
  if (s.value("running", false)) state += " (" + s.value("holder", "") + ")";
  if (s.contains("message")) state += ": " + s["message"].get<std::string>();
  row("state", state);
  std::string attempts = std::to_string(s.value("attempts", int64_t{0}));
  if (s.contains("slurm")) {
    const nlohmann::json& j = s["slurm"];
    attempts += "; slurm job " + j.value("job_id", "");
    if (j.contains("array_job_id")) attempts += " (array " + j.value("array_job_id", "") + "_" + j.value("array_task_id", "") + ")";
    attempts += ", restarts " + std::to_string(j.value("restart_count", int64_t{0}));
  }
  row("attempts", attempts);
  row("input", s.value("input", ""));
  row("instruction", "\"" + s.value("instruction", "") + "\"");
  const nlohmann::json& st = s["stages"];
  row("adaptation", "root pair " + st.value("root_pair", "") + ", adapter " + st.value("adapter", "") +
                        ", attention group " + st.value("attention_group", ""));
  if (st.contains("render")) {
    const nlohmann::json& r = st["render"];
    const auto done = r.value("frames_done", int64_t{0}), total = r.value("frames", int64_t{0});
    char buf[128];
    std::snprintf(buf, sizeof(buf), "chunks %lld/%lld, frames %lld/%lld (%.1f%%)",
                  (long long)r.value("chunks_done", int64_t{0}), (long long)r.value("chunks", int64_t{0}),
                  (long long)done, (long long)total, total ? 100.0 * double(done) / double(total) : 0.0);
    row("render", buf);
    row("segments", std::to_string(st["segments"].value("done", int64_t{0})) + "/" +
                        std::to_string(st["segments"].value("chunks", int64_t{0})));
  } else {
    row("render", "not started");
  }
  row("output", s.value("output", "") + " (" + st.value("output", "") + ")");
  const std::time_t now = std::time(nullptr);
  for (const auto& r : s["ranks"]) {
    std::string what = r.value("stage", "");
    if (r.value("chunk", int64_t{-1}) >= 0) what += " chunk " + std::to_string(r.value("chunk", int64_t{0}));
    what += " on " + r.value("host", "") + " (pid " + std::to_string(r.value("pid", int64_t{0})) + ", " +
            std::to_string(now - r.value("updated", int64_t{0})) + " s ago)";
    row(("rank " + std::to_string(r.value("rank", 0))).c_str(), what);
  }
  return out.str();
}

}  // namespace via::rank
