#include "rank/job.h"

#include <unistd.h>

#include <csignal>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <iostream>
#include <mutex>

#include "io/video_reader.h"
#include "rank/progress.h"
#include "rank/stop.h"
#include "rank/workdir.h"

namespace fs = std::filesystem;

namespace via::rank {
namespace {

// Rank 0's stderr: log lines, and the progress line that a terminal shows in
// place (a log line first clears it).
class Console {
 public:
  void log(const std::string& line) {
    std::lock_guard<std::mutex> lock(mutex_);
    clear_in_place();
    std::cerr << "via: " << line << "\n" << std::flush;
  }
  void progress(const std::string& line, bool in_place) {
    std::lock_guard<std::mutex> lock(mutex_);
    clear_in_place();
    std::cerr << "via: " << line << (in_place ? "" : "\n") << std::flush;
    showing_ = in_place;
  }

 private:
  void clear_in_place() {
    if (showing_) std::cerr << "\r\033[K";
    showing_ = false;
  }
  std::mutex mutex_;
  bool showing_ = false;
};

// A rank's outcome: "ok", "stopped <signal>" or "error <message>".
struct Outcome {
  std::string kind = "ok";
  std::string message;
  int signal = 0;
  nlohmann::json to_json() const { return {{"kind", kind}, {"message", message}, {"signal", signal}}; }
  static Outcome from_json(const nlohmann::json& j) {
    return {j.value("kind", "error"), j.value("message", ""), j.value("signal", 0)};
  }
};

template <class F>
Outcome attempt(F&& work) {
  try {
    work();
    return {};
  } catch (const Stopped& s) {
    return {"stopped", s.what(), s.signal()};
  } catch (const std::exception& e) {
    return {"error", e.what(), 0};
  }
}

// Every rank learns whether any failed; the first failure is thrown (rank 0:
// with its message, naming the rank; others: ReportedElsewhere).
void agree(comm::Communicator& comm, const Outcome& mine, const std::string& what) {
  std::vector<std::string> all;
  {
    IdleScope idle;
    all = comm.all_gather(mine.to_json().dump());
  }
  for (size_t r = 0; r < all.size(); ++r) {
    const Outcome o = Outcome::from_json(nlohmann::json::parse(all[r]));
    if (o.kind == "ok") continue;
    if (o.kind == "stopped") throw Stopped(o.signal);
    const std::string message =
        (all.size() > 1 ? "rank " + std::to_string(r) + ": " : "") + what + ": " + o.message;
    if (comm.rank() == 0) throw std::runtime_error(message);
    throw ReportedElsewhere(message);
  }
}

// The next chunk for this rank, or -1: the first one it can claim that is
// not already done (claiming first makes each chunk's check happen once).
int64_t next_chunk(const WorkDir& dir, const ChunkPlan& plan, int rank, int64_t& cursor) {
  for (; cursor < plan.chunks(); ++cursor)
    if (claim_chunk(dir, cursor, rank)) return cursor++;
  return -1;
}

std::string percent(double part, double whole) {
  char buf[32];
  std::snprintf(buf, sizeof(buf), "%.1f%%", whole > 0 ? 100.0 * part / whole : 0.0);
  return buf;
}

// timings.json and the closing log line: per rank and stage, and the share
// of everything that is not model compute.
void report_timings(const WorkDir& dir, const std::vector<StageTimes>& ranks, double wall, int64_t frames,
                    Console& console) {
  StageTimes sum;
  nlohmann::json per_rank = nlohmann::json::array();
  for (const StageTimes& t : ranks) {
    per_rank.push_back(t.to_json());
    for (size_t i = 0; i < sum.seconds.size(); ++i) sum.seconds[i] += t.seconds[i];
    sum.frames += t.frames;
  }
  double compute = 0, overhead = 0;
  for (size_t i = 0; i < sum.seconds.size(); ++i) {
    const auto stage = static_cast<Stage>(i);
    if (is_compute(stage)) compute += sum.seconds[i];
    else if (stage != Stage::Startup && stage != Stage::Wait) overhead += sum.seconds[i];
  }
  const double busy = compute + overhead;
  nlohmann::json j = {{"wall_seconds", wall},
                      {"ranks", static_cast<int64_t>(ranks.size())},
                      {"frames_denoised", frames},
                      {"frames_per_second", wall > 0 ? static_cast<double>(frames) / wall : 0.0},
                      {"compute_seconds", compute},
                      {"overhead_seconds", overhead},
                      {"overhead_share", busy > 0 ? overhead / busy : 0.0},
                      {"all_ranks", sum.to_json()},
                      {"per_rank", per_rank}};
  try {
    write_file_atomic(dir.timings(), j.dump(2) + "\n");
  } catch (const std::exception& e) {
    console.log(std::string("warning: ") + e.what());
  }
  std::string stages;
  for (size_t i = 0; i < sum.seconds.size(); ++i) {
    if (sum.seconds[i] < 0.005) continue;
    char buf[64];
    std::snprintf(buf, sizeof(buf), "%s%s %.1f s", stages.empty() ? "" : ", ", stage_name(static_cast<Stage>(i)),
                  sum.seconds[i]);
    stages += buf;
  }
  if (frames == 0) {  // a resume of a render whose every frame was on disk
    console.log("every frame was already on disk: nothing was denoised");
    return;
  }
  char line[160];
  std::snprintf(line, sizeof(line), "%lld frames denoised in %.1f s (%.2f frames/s) on %zu rank%s; overhead %s",
                static_cast<long long>(frames), wall, wall > 0 ? static_cast<double>(frames) / wall : 0.0,
                ranks.size(), ranks.size() == 1 ? "" : "s", percent(overhead, busy).c_str());
  console.log(line);
  console.log("time per stage, all ranks: " + stages);
}

// The output must be a new or regular file, not the input, in a writable folder.
void check_output_path(const RenderSettings& settings) {
  const fs::path out = fs::absolute(settings.output);
  std::error_code ec;
  if (fs::exists(out, ec) && fs::equivalent(out, settings.input, ec))
    throw std::runtime_error("--output " + settings.output + " is the input video; choose another file");
  if (fs::is_directory(out, ec))
    throw std::runtime_error("--output " + settings.output + " is a directory; give a file name (e.g. edited.mp4)");
  const fs::path folder = out.parent_path();
  if (!fs::is_directory(folder, ec))
    throw std::runtime_error("cannot write the output " + settings.output + ": " + folder.string() +
                             " is not a directory");
  if (::access(folder.c_str(), W_OK) != 0)
    throw std::runtime_error("cannot write the output " + settings.output + ": " + folder.string() + " is not writable");
}

}  // namespace

int run_render_job(const RenderSettings& settings, const std::string& workdir, const JobOptions& options,
                   comm::Communicator& comm) {
  const auto started = std::chrono::steady_clock::now();
  const int rank = comm.rank();
  const bool root = rank == 0;
  const WorkDir dir{workdir};
  Console console;
  const LogFn log = [&console](const std::string& line) { console.log(line); };

  // 1. Rank 0 takes the work directory (lock, settings check, leftovers) and
  //    the video's facts; nobody else touches the directory before.
  std::unique_ptr<WorkDirLock> lock;
  ChunkPlan plan;
  bool resumed = false;  // rank 0: the directory already held this render
  {
    Outcome checked;
    if (root) {
      checked = attempt([&] {
        // What can be checked without compute is checked before the work
        // directory is written, so that the corrected command can use it.
        const io::VideoInfo video = io::probe_video(settings.input);
        if (video.frame_count < 1) throw std::runtime_error(settings.input + ": the video has no frames");
        check_output_path(settings);
        std::error_code ec;
        if (!fs::exists(settings.model, ec)) throw std::runtime_error("model " + settings.model + " does not exist");
        lock = std::make_unique<WorkDirLock>(dir);
        resumed = prepare_workdir(dir, settings, options.resume);
        plan = {video.frame_count, settings.chunk_frames};
        write_plan(dir, plan);
        record_attempt_start(dir, comm.size(), options.resume);
      });
    }
    const std::string text = comm::broadcast_string(comm, checked.to_json().dump(), 0);
    const Outcome o = Outcome::from_json(nlohmann::json::parse(text));
    if (o.kind == "error") {
      if (root) throw std::runtime_error(o.message);
      throw ReportedElsewhere(o.message);
    }
    if (o.kind == "stopped") throw Stopped(o.signal);
  }
  if (root) log((resumed ? "resuming in " : "work directory ") + dir.root);

  // A failure or stop from here on is recorded in attempts.jsonl for `via status`.
  std::unique_ptr<LastWords> last_words;
  if (root) last_words = std::make_unique<LastWords>([&](int signal) { record_attempt_end(dir, Stopped(signal).what()); });
  try {
    // 2. Every rank loads the model.
    std::unique_ptr<Renderer> renderer;
    agree(comm, attempt([&] { renderer = std::make_unique<Renderer>(settings, workdir, root ? log : LogFn{}, options.cuda_device); }),
          "cannot start");
    Renderer& r = *renderer;
    plan = r.plan();

    // 3. Rank 0 adapts while the others read and encode their first chunk.
    int64_t cursor = 0, first_chunk = -1;
    Outcome mine;
    if (root) {
      write_rank_progress(dir, rank, "adaptation", -1);
      mine = attempt([&] { r.adapt(); });
    } else {
      mine = attempt([&] {
        first_chunk = next_chunk(dir, plan, rank, cursor);
        write_rank_progress(dir, rank, "prefetch", first_chunk);
        if (first_chunk >= 0) r.prefetch(first_chunk);
      });
    }
    // Rank 0's outcome decides whether the broadcast happens; another rank's
    // failure only keeps that rank from rendering (reported at the end).
    {
      const Outcome adapted = root ? mine : Outcome{};
      std::string text;
      {
        StageTimer wait(r.times(), Stage::Wait);
        IdleScope idle;
        // The barrier keeps rank 0's wait for the others' prefetch out of the
        // broadcast's time (a small broadcast returns at once on its root).
        comm.barrier();
        text = comm::broadcast_string(comm, adapted.to_json().dump(), 0);
      }
      const Outcome o = Outcome::from_json(nlohmann::json::parse(text));
      if (o.kind == "stopped") throw Stopped(o.signal);
      if (o.kind == "error") {
        if (root) throw std::runtime_error("adaptation: " + o.message);
        throw ReportedElsewhere(o.message);
      }
    }
    {
      StageTimer timer(r.times(), Stage::Broadcast);
      const auto to_device = [&](std::map<std::string, at::Tensor> m) {
        for (auto& [name, t] : m) t = t.to(r.device());
        return m;
      };
      IdleScope idle;  // a stop signal here ends the process at once: nothing is in hand
      const auto adapter = comm::broadcast_named(comm, root ? to_device(r.adapter_tensors()) : decltype(r.adapter_tensors()){}, 0, r.device());
      const auto group = comm::broadcast_named(comm, root ? to_device(r.group_tensors()) : decltype(r.group_tensors()){}, 0, r.device());
      if (!root && mine.kind == "ok") r.install_adaptation(adapter, group);
    }
    if (root) log("adaptation broadcast to " + std::to_string(comm.size()) + " rank" + (comm.size() == 1 ? "" : "s"));

    // 4. Every rank renders chunks until none is left.
    std::unique_ptr<ProgressReporter> reporter;
    if (root) {
      reporter = std::make_unique<ProgressReporter>(
          DiskProgress(dir, plan, settings.hash()), options.terminal,
          [&console](const std::string& line, bool in_place) { console.progress(line, in_place); });
      reporter->start();
    }
    if (mine.kind == "ok") {
      mine = attempt([&] {
        for (int64_t c = first_chunk >= 0 ? first_chunk : next_chunk(dir, plan, rank, cursor); c >= 0;
             c = next_chunk(dir, plan, rank, cursor)) {
          throw_if_stopped();
          write_rank_progress(dir, rank, "render", c);
          r.render_chunk(c);
        }
        write_rank_progress(dir, rank, "done", -1);
      });
    }

    // 5. Rank 0 collects every rank's outcome and times, then assembles.
    std::vector<std::string> reports;
    {
      StageTimer wait(r.times(), Stage::Wait);
      IdleScope idle;
      reports = comm.gather(nlohmann::json{{"outcome", mine.to_json()}, {"times", r.times().to_json()}}.dump(), 0);
    }
    if (reporter) reporter->stop();
    if (!root) {
      if (mine.kind == "stopped") return Stopped(mine.signal).exit_code();
      if (mine.kind == "error") throw ReportedElsewhere(mine.message);
      return 0;
    }

    std::vector<StageTimes> times;
    std::string errors;
    int stop_signal = 0;
    for (size_t i = 0; i < reports.size(); ++i) {
      const nlohmann::json j = nlohmann::json::parse(reports[i]);
      times.push_back(StageTimes::from_json(j["times"]));
      const Outcome o = Outcome::from_json(j["outcome"]);
      if (o.kind == "error") errors += (errors.empty() ? "" : "; ") + ("rank " + std::to_string(i) + ": " + o.message);
      if (o.kind == "stopped" && !stop_signal) stop_signal = o.signal;
    }
    DiskProgress disk(dir, plan, settings.hash());
    const DiskProgress::Counts counts = disk.scan();
    const bool complete = counts.chunks_done == plan.chunks() && counts.segments == plan.chunks();
    if (!complete) {
      const std::string done = std::to_string(counts.frames_done) + "/" + std::to_string(plan.frames) +
                               " frames are done and kept; run the same command with --resume to finish";
      if (!errors.empty()) {
        record_attempt_end(dir, "failed", errors);
        throw std::runtime_error(errors + " (" + done + ")");
      }
      const Stopped stopped(stop_signal ? stop_signal : SIGTERM);
      record_attempt_end(dir, stopped.what());
      log(std::string(stopped.what()) + "; " + done);
      return stopped.exit_code();
    }
    if (!errors.empty()) log("warning: " + errors + " (the other ranks finished its chunks)");
    r.assemble();
    const double wall = std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
    int64_t frames = 0;
    for (const StageTimes& t : times) frames += t.frames;
    report_timings(dir, times, wall, frames, console);
    record_attempt_end(dir, "finished");
    return 0;
  } catch (const Stopped& s) {
    if (root) {
      record_attempt_end(dir, s.what());
      log(std::string(s.what()) + "; finished work is kept; run the same command with --resume to continue");
    }
    return s.exit_code();
  } catch (const ReportedElsewhere&) {
    throw;
  } catch (const std::exception& e) {
    if (root) record_attempt_end(dir, "failed", e.what());
    throw;
  }
}

}  // namespace via::rank
