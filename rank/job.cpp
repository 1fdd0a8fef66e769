#include "rank/job.h"

#include <csignal>
#include <chrono>
#include <cstdio>
#include <iostream>
#include <mutex>

#include "io/output_format.h"
#include "io/video_reader.h"
#include "rank/attempts.h"
#include "rank/disk_plan.h"
#include "rank/progress.h"
#include "rank/rank_progress.h"
#include "rank/stop.h"
#include "rank/workdir.h"

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
  int rank = -1;  // the rank it is from, when messages must name it
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
    return {"stopped", s.what(), s.signal(), -1};
  } catch (const std::exception& e) {
    return {"error", e.what(), 0, -1};
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

// The one place every rank learns a phase's outcome and acts on it together:
// on a stop every rank throws Stopped, on a failure every rank throws (rank
// 0 the message, prefixed with `what`; the others ReportedElsewhere).
void act_together(const Outcome& o, const std::string& what, bool root) {
  if (o.kind == "ok") return;
  if (o.kind == "stopped") throw Stopped(o.signal);
  const std::string message = (o.rank >= 0 ? "rank " + std::to_string(o.rank) + ": " : "") +
                              (what.empty() ? "" : what + ": ") + o.message;
  if (root) throw std::runtime_error(message);
  throw ReportedElsewhere(message);
}

// Rank 0's outcome, on every rank.
Outcome root_outcome(comm::Communicator& comm, const Outcome& mine) {
  return Outcome::from_json(nlohmann::json::parse(comm::broadcast_string(comm, mine.to_json().dump(), 0)));
}

// The first rank's failure or stop (naming the rank when there are several), on every rank.
Outcome first_failure(comm::Communicator& comm, const Outcome& mine) {
  std::vector<std::string> all;
  {
    IdleScope idle;
    all = comm.all_gather(mine.to_json().dump());
  }
  for (size_t r = 0; r < all.size(); ++r) {
    Outcome o = Outcome::from_json(nlohmann::json::parse(all[r]));
    if (o.kind == "ok") continue;
    if (all.size() > 1) o.rank = static_cast<int>(r);
    return o;
  }
  return {};
}

// One render on every rank of a communicator; its phases in order.
class RenderJob {
 public:
  RenderJob(const RenderSettings& settings, const std::string& workdir, const JobOptions& options,
            comm::Communicator& comm)
      : settings_(settings), workdir_(workdir), dir_{workdir}, options_(options), comm_(comm),
        rank_(comm.rank()), root_(rank_ == 0) {}

  int run() {
    prepare();
    if (root_) {
      log((resumed_ ? "resuming in " : "work directory ") + dir_.root);
      log("output: " + settings_.output + ", " + output_.describe());
    }
    // A failure or stop from here on is recorded in attempts.jsonl for `via status`.
    // Every rank says it was stopped, so `via status` can tell a rank that
    // was killed outright (SIGKILL, out of memory) from the ones it took down.
    const auto last_words = std::make_unique<LastWords>([this](int signal) {
      write_rank_progress(dir_, rank_, Stopped(signal).what(), -1);
      if (root_) record_attempt_end(dir_, Stopped(signal).what());
    });
    try {
      load();
      adapt_and_broadcast();
      render();
      return finish();
    } catch (const Stopped& s) {
      reporter_.reset();  // its last line comes before the outcome's
      write_rank_progress(dir_, rank_, s.what(), -1);
      if (root_) {
        record_attempt_end(dir_, s.what());
        log(std::string(s.what()) + "; finished work is kept; run the same command with --resume to continue");
      }
      return s.exit_code();
    } catch (const ReportedElsewhere&) {
      reporter_.reset();
      throw;
    } catch (const std::exception& e) {
      reporter_.reset();
      if (root_) record_attempt_end(dir_, "failed", e.what());
      throw;
    }
  }

 private:
  void log(const std::string& line) { console_.log(line); }

  // 1. Rank 0 takes the work directory (lock, settings check, leftovers) and
  //    the video's facts; nobody else touches the directory before.
  void prepare() {
    Outcome checked;
    if (root_) {
      checked = attempt([&] {
        // What can be checked without compute is checked before the work
        // directory is written, so that the corrected command can use it.
        const io::VideoInfo video = io::probe_video(settings_.input);
        if (video.frame_count < 1) throw std::runtime_error(settings_.input + ": the video has no frames");
        check_model_and_output(settings_);
        // The container, its encoders and the audio's fate: a problem here
        // would otherwise surface at the final join, after every frame.
        output_ = plan_output_and_disk(settings_, video, dir_.root);  // container, codecs, audio, disk space
        check_output_replaceable(dir_, settings_.output, options_.overwrite);
        refuse_foreign_workdir(dir_);  // before the lock file is written beside the user's files
        lock_ = std::make_unique<WorkDirLock>(dir_);
        const PreparedWorkDir prepared =
            prepare_workdir(dir_, settings_, options_.resume, [this](const std::string& line) { log(line); });
        resumed_ = prepared.resumed;
        key_ = prepared.key;
        plan_ = {video.frame_count, settings_.chunk_frames};
        write_plan(dir_, plan_);
        record_attempt_start(dir_, comm_.size(), options_.resume);
      });
    }
    act_together(root_outcome(comm_, checked), "", root_);
    key_ = comm::broadcast_string(comm_, key_, 0);  // every file of this render carries it
  }

  // 2. Every rank loads the model.
  void load() {
    if (root_) log("loading the model " + settings_.model);
    const Outcome mine = attempt([&] {
      const LogFn log = [this](const std::string& line) { console_.log(line); };
      renderer_ = std::make_unique<Renderer>(settings_, workdir_, root_ ? log : LogFn{}, options_.cuda_device,
                                             options_.ranks_on_node);
      renderer_->set_render_key(key_);
      // Only rank 0 logs; a damaged file another rank moved aside is said too.
      if (!root_)
        renderer_->set_warnings(
            [this](const std::string& line) { console_.log("rank " + std::to_string(rank_) + ": " + line); });
      if (root_) {
        live_ = std::make_unique<LiveProgress>(
            options_.terminal, [this](const std::string& line, bool in_place) { console_.progress(line, in_place); });
        renderer_->set_progress([this](const std::string& stage, const std::string& line) {
          if (stage != stage_) write_rank_progress(dir_, rank_, stage, -1);  // `via status` shows the stage
          stage_ = stage;
          live_->update(stage, line);
        });
      }
    });
    act_together(first_failure(comm_, mine), "cannot start", root_);
    plan_ = renderer_->plan();
  }

  // 3. Rank 0 adapts while the others read and encode their first chunk;
  //    rank 0's outcome decides whether the broadcast happens (another
  //    rank's failure only keeps that rank from rendering: reported at the end).
  void adapt_and_broadcast() {
    Renderer& r = *renderer_;
    if (root_) {
      write_rank_progress(dir_, rank_, "adaptation", -1);
      mine_ = attempt([&] { r.adapt(); });
    } else {
      mine_ = attempt([&] {
        first_chunk_ = next_chunk(dir_, plan_, rank_, cursor_);
        write_rank_progress(dir_, rank_, "prefetch", first_chunk_);
        if (first_chunk_ >= 0) r.prefetch(first_chunk_);
      });
    }
    Outcome adapted;
    {
      StageTimer wait(r.times(), Stage::Wait);
      IdleScope idle;
      // The barrier keeps rank 0's wait for the others' prefetch out of the
      // broadcast's time (a small broadcast returns at once on its root).
      comm_.barrier();
      adapted = root_outcome(comm_, root_ ? mine_ : Outcome{});
    }
    act_together(adapted, "adaptation", root_);
    {
      StageTimer timer(r.times(), Stage::Broadcast);
      using Named = std::map<std::string, at::Tensor>;
      const auto to_device = [&](Named m) {
        for (auto& [name, t] : m) t = t.to(r.device());
        return m;
      };
      IdleScope idle;  // a stop signal here ends the process at once: nothing is in hand
      const Named adapter = comm::broadcast_named(comm_, root_ ? to_device(r.adapter_tensors()) : Named{}, 0, r.device());
      if (!root_ && mine_.kind == "ok") r.install_adaptation(adapter, {});
      // The group one step at a time (the parts are known on every rank from
      // the settings): no rank holds a second whole copy, and a device holds
      // one step of it in transit. One rank has nothing to send.
      if (comm_.size() > 1) {
        for (int64_t part : r.group_parts()) {
          const Named tensors =
              comm::broadcast_named(comm_, root_ ? to_device(r.group_part_tensors(part)) : Named{}, 0, r.device());
          if (!root_ && mine_.kind == "ok") r.install_group_part(tensors);
        }
      }
    }
    if (root_) log("adaptation broadcast to " + std::to_string(comm_.size()) + " rank" + (comm_.size() == 1 ? "" : "s"));
  }

  // 4. Every rank renders chunks until none is left.
  void render() {
    if (root_) {
      reporter_ = std::make_unique<ProgressReporter>(
          DiskProgress(dir_, plan_, key_), options_.terminal,
          [this](const std::string& line, bool in_place) { console_.progress(line, in_place); });
      reporter_->start();
    }
    if (mine_.kind != "ok") return;
    mine_ = attempt([&] {
      for (int64_t c = first_chunk_ >= 0 ? first_chunk_ : next_chunk(dir_, plan_, rank_, cursor_); c >= 0;
           c = next_chunk(dir_, plan_, rank_, cursor_)) {
        throw_if_stopped();
        write_rank_progress(dir_, rank_, "render", c);
        renderer_->render_chunk(c);
      }
      write_rank_progress(dir_, rank_, "done", -1);
    });
  }

  // 5. Rank 0 collects every rank's outcome and times, then assembles.
  int finish() {
    Renderer& r = *renderer_;
    std::vector<std::string> reports;
    {
      StageTimer wait(r.times(), Stage::Wait);
      IdleScope idle;
      reports = comm_.gather(nlohmann::json{{"outcome", mine_.to_json()}, {"times", r.times().to_json()}}.dump(), 0);
    }
    if (reporter_) reporter_->stop();
    if (!root_) {
      if (mine_.kind == "stopped") return Stopped(mine_.signal).exit_code();
      if (mine_.kind == "error") throw ReportedElsewhere(mine_.message);
      return 0;
    }

    std::vector<StageTimes> times;
    std::string errors;
    int stop_signal = 0;
    for (size_t i = 0; i < reports.size(); ++i) {
      const nlohmann::json j = nlohmann::json::parse(reports[i]);
      times.push_back(StageTimes::from_json(j["times"]));
      const Outcome o = Outcome::from_json(j["outcome"]);
      // one line per failing rank: a full disk fails several at once
      if (o.kind == "error") errors += (errors.empty() ? "" : "\n") + ("rank " + std::to_string(i) + ": " + o.message);
      if (o.kind == "stopped" && !stop_signal) stop_signal = o.signal;
    }
    const DiskProgress::Counts counts = DiskProgress(dir_, plan_, key_).scan();
    const bool complete = counts.chunks_done == plan_.chunks() && counts.segments == plan_.chunks();
    if (!complete) {
      const std::string done = std::to_string(counts.frames_done) + "/" + std::to_string(plan_.frames) +
                               " frames are done and kept; run the same command with --resume to finish";
      if (!errors.empty()) {
        record_attempt_end(dir_, "failed", errors);
        throw std::runtime_error(errors + "\n" + done);
      }
      const Stopped stopped(stop_signal ? stop_signal : SIGTERM);
      record_attempt_end(dir_, stopped.what());
      log(std::string(stopped.what()) + "; " + done);
      return stopped.exit_code();
    }
    if (!errors.empty()) log("warning: " + errors + " (the other ranks finished its chunks)");
    r.assemble();
    record_output(dir_, settings_.output);  // a later command may write it again without --overwrite
    const double wall = std::chrono::duration<double>(std::chrono::steady_clock::now() - started_).count();
    int64_t frames = 0;
    for (const StageTimes& t : times) frames += t.frames;
    report_timings(dir_, times, wall, frames, console_);
    record_attempt_end(dir_, "finished");
    return 0;
  }

  const RenderSettings& settings_;
  const std::string workdir_;
  const WorkDir dir_;
  const JobOptions options_;
  comm::Communicator& comm_;
  const int rank_;
  const bool root_;
  const std::chrono::steady_clock::time_point started_ = std::chrono::steady_clock::now();
  Console console_;
  std::unique_ptr<WorkDirLock> lock_;  // rank 0, for the whole render
  ChunkPlan plan_;
  bool resumed_ = false;  // rank 0: the directory already held this render
  std::string key_;       // the render key (rank/provenance.h), on every rank after prepare()
  io::OutputPlan output_;  // rank 0: what the output will be, decided before any compute
  std::unique_ptr<Renderer> renderer_;
  Outcome mine_;                // this rank's outcome so far
  int64_t cursor_ = 0;          // where next_chunk() looks next
  int64_t first_chunk_ = -1;    // claimed and prefetched while rank 0 adapts
  std::unique_ptr<ProgressReporter> reporter_;
  std::unique_ptr<LiveProgress> live_;  // rank 0: the adaptation's steps
  std::string stage_;                   // rank 0: the adaptation's stage now
};

}  // namespace

int run_render_job(const RenderSettings& settings, const std::string& workdir, const JobOptions& options,
                   comm::Communicator& comm) {
  return RenderJob(settings, workdir, options, comm).run();
}

}  // namespace via::rank
