#include "rank/status.h"

#include <cstdio>
#include <ctime>
#include <filesystem>
#include <sstream>

#include "io/checkpoint.h"
#include "rank/attempts.h"
#include "rank/group_store.h"
#include "rank/progress.h"
#include "rank/rank_progress.h"

namespace fs = std::filesystem;

namespace via::rank {

nlohmann::json workdir_status(const WorkDir& dir) {
  nlohmann::json s;
  s["workdir"] = dir.root;
  std::error_code ec;
  if (!fs::is_directory(dir.root, ec)) throw WorkDirError("work directory " + dir.root + " does not exist");
  WorkDirRecord record;
  if (!read_record(dir, &record)) throw WorkDirError(dir.root + " holds no via render (no settings.json)");
  const RenderSettings& settings = record.settings;
  s["input"] = settings.input;
  s["output"] = settings.output;
  s["instruction"] = settings.instruction;
  s["settings_hash"] = settings.hash();
  s["render_key"] = record.key;

  std::string holder;
  const bool running = WorkDirLock::held(dir, &holder);
  s["running"] = running;
  if (running) s["holder"] = holder;

  const AttemptLog log = read_attempts(dir);
  const int64_t attempts = log.attempts;
  const nlohmann::json& last_start = log.last_start;
  const nlohmann::json& last_end = log.last_end;
  s["attempts"] = attempts;
  if (!last_start.is_null()) s["last_attempt"] = last_start;
  if (!last_end.is_null()) s["last_attempt"]["end"] = last_end;
  if (last_start.contains("slurm")) s["slurm"] = last_start["slurm"];

  nlohmann::json stages;
  // Done: a file the next attempt will use (this render's key, the current
  // group format); anything else it makes again.
  const auto stage = [&](bool used, const std::string& file) {
    if (!used) return "not used";
    if (!artifact_problem(file, record.key, io::Verify::Structure).empty()) return "pending";
    return file == dir.group() && !group_file_problem(file).empty() ? "pending" : "done";
  };
  const bool tuned = settings.finetune != adapt::FinetuneMode::Off;
  stages["root_pair"] = stage(tuned, dir.root_pair());
  stages["adapter"] = stage(tuned, dir.adapter());
  stages["attention_group"] = stage(settings.attention != adapt::AttentionMode::Own, dir.group());
  ChunkPlan plan;
  bool all_done = false;
  if (read_plan(dir, &plan)) {
    DiskProgress progress(dir, plan, record.key);
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
  // A rank that ended without a stop record while the others were stopped
  // was killed outright: its last stage is all it left.
  if (!running && state.rfind("stopped", 0) == 0) {
    std::string killed;
    for (const auto& r : read_rank_progress(dir)) {
      const std::string stage = r.value("stage", "");
      if (stage == "done" || stage.rfind("stopped", 0) == 0) continue;
      killed += (killed.empty() ? "" : ", ") + ("rank " + std::to_string(r.value("rank", 0)) + " (pid " +
                                                std::to_string(r.value("pid", int64_t{0})) + " on " +
                                                r.value("host", "?") + ", " + stage +
                                                (r.value("chunk", int64_t{-1}) >= 0
                                                     ? " chunk " + std::to_string(r.value("chunk", int64_t{0}))
                                                     : std::string()) +
                                                ")");
    }
    if (!killed.empty())
      state = "killed: " + killed + " ended without a stop record (SIGKILL or out of memory?)" +
              (state == "stopped without a record (killed?)" ? "" : "; the others were " + state);
  }
  s["state"] = state;
  if (!last_end.is_null() && last_end.contains("message")) s["message"] = last_end["message"];
  s["ranks"] = running ? read_rank_progress(dir) : nlohmann::json::array();
  // Files found damaged or foreign and moved aside (their work was redone).
  int64_t damaged = 0;
  for (auto it = fs::directory_iterator(dir.damaged_dir(), ec); !ec && it != fs::end(it); it.increment(ec)) ++damaged;
  s["damaged_files"] = damaged;
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
  if (s.value("damaged_files", int64_t{0}) > 0)
    row("moved aside", std::to_string(s.value("damaged_files", int64_t{0})) + " damaged or foreign file(s) in " +
                           s.value("workdir", "") + "/damaged (their work was redone)");
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
