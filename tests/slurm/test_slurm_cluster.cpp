// Renders on a real one-node Slurm cluster (slurm/testing/cluster-up.sh,
// started by CTest as a fixture; SLURM_CONF points at it): `via submit`
// end to end, a time limit that stops and requeues the render, a
// preemption-like `scontrol requeue`, a manifest as a job array, and a
// dependency on a failed job. Outputs are compared with `mpirun` renders of
// the same settings by their decoded frames (ffmpeg's framemd5).
//
// Inputs.* makes the shared inputs and references (CTest fixture
// slurm_inputs) in VIA_SLURM_DATA; each other test is its own CTest test.
#include <gtest/gtest.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <regex>
#include <set>
#include <sstream>
#include <thread>

#include "tests/io/test_video_util.h"

namespace via::test {
namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

std::string env(const char* name) {
  const char* value = std::getenv(name);
  if (value == nullptr || *value == '\0') throw std::runtime_error(std::string(name) + " is not set (run through ctest)");
  return value;
}

std::string data(const std::string& name) { return env("VIA_SLURM_DATA") + "/" + name; }

// The renders' settings: tiny model, tiny frames, few steps (fast on 2 cores).
const std::string kSettings =
    "--long-side 64 --candidates 2 --augment 2 --finetune-steps 2 --group-size 2 --chunk-frames 4 --threads 1 "
    "--instruction 'make it a pencil sketch'";
const std::string kShort = kSettings + " --steps 3";
// Long enough (about a minute on one core of the 2-core CI machine) that a
// one-minute time limit stops it at least once: Slurm checks limits every
// 30 s and warns at the first check that finds the limit less than
// --warning + 30 s away, so with --warning 20 each run is warned 10 to 40 s
// after it starts (measured here), and each run makes progress.
const std::string kLong = kSettings + " --steps 100";

std::string quoted(const std::string& path) { return "'" + path + "'"; }

// Runs `command` (sh) and returns its stdout; fails the test with its stderr otherwise.
std::string must_run(const std::string& command, const TempDir& dir) {
  const RunResult r = run(command, dir);
  if (r.exit_code != 0)
    throw std::runtime_error("`" + command + "` failed (exit " + std::to_string(r.exit_code) + "): " + r.err + r.out);
  return r.out;
}

// The MD5 of each decoded frame.
std::vector<std::string> frame_md5s(const std::string& video, const TempDir& dir) {
  std::istringstream lines(must_run("ffmpeg -nostdin -v error -i " + quoted(video) + " -map 0:v -f framemd5 -", dir));
  std::vector<std::string> md5s;
  for (std::string line; std::getline(lines, line);)
    if (!line.empty() && line[0] != '#') md5s.push_back(line.substr(line.rfind(',') + 2));
  return md5s;
}

// `scontrol show job -o ID`: one record per job (per array task), fields by name.
using Job = std::map<std::string, std::string>;
std::vector<Job> show_job(const std::string& id, const TempDir& dir) {
  const RunResult r = run("scontrol show job -o " + id, dir);
  if (r.exit_code != 0) throw std::runtime_error("scontrol show job " + id + " failed: " + r.err);
  std::vector<Job> jobs;
  std::istringstream lines(r.out);
  static const std::regex field(R"((\w+)=(\S*))");
  for (std::string line; std::getline(lines, line);) {
    if (line.empty()) continue;
    Job job;
    for (std::sregex_iterator it(line.begin(), line.end(), field), end; it != end; ++it) job[(*it)[1]] = (*it)[2];
    jobs.push_back(std::move(job));
  }
  return jobs;
}

bool finished(const Job& job) {
  static const std::set<std::string> kEnd = {"COMPLETED", "FAILED",      "CANCELLED", "TIMEOUT",
                                             "NODE_FAIL", "OUT_OF_MEMORY", "BOOT_FAIL", "DEADLINE"};
  return kEnd.count(job.at("JobState")) > 0;
}

// Waits until every record of job `id` has ended; on timeout cancels it and throws.
std::vector<Job> wait_for(const std::string& id, int seconds, const TempDir& dir,
                          const std::function<void()>& while_waiting = {}) {
  const auto deadline = Clock::now() + std::chrono::seconds(seconds);
  for (;;) {
    const std::vector<Job> jobs = show_job(id, dir);
    bool done = !jobs.empty();
    for (const Job& job : jobs) done = done && finished(job);
    if (done) return jobs;
    if (Clock::now() > deadline) {
      run("scancel " + id, dir);
      throw std::runtime_error("job " + id + " did not end within " + std::to_string(seconds) +
                               " s; state " + jobs.front().at("JobState"));
    }
    if (while_waiting) while_waiting();
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
  }
}

// `via submit ...` from `dir`; returns the job id it prints.
std::string submit(const std::string& args, const TempDir& dir) {
  const std::string out = must_run("cd " + quoted(dir.path()) + " && " + quoted(env("VIA_BIN")) + " submit " + args, dir);
  const std::string id = out.substr(0, out.find('\n'));
  if (id.empty() || id.find_first_not_of("0123456789") != std::string::npos)
    throw std::runtime_error("via submit printed no job id: " + out);
  return id;
}

// Seconds from each "requeueing"/"ended by Slurm" line of the job's log to the next start, from its timestamps.
std::vector<int> requeue_latencies(const std::string& log) {
  static const std::regex stamp(R"(\((\d{4}-\d\d-\d\d) (\d\d):(\d\d):(\d\d)\): (.*))");
  std::vector<int> latencies;
  int stopped_at = -1;
  std::istringstream lines(log);
  for (std::string line; std::getline(lines, line);) {
    std::smatch m;
    if (!std::regex_search(line, m, stamp)) continue;
    const int t = std::stoi(m[2]) * 3600 + std::stoi(m[3]) * 60 + std::stoi(m[4]);
    const std::string what = m[5];
    if (what.rfind("stopped (exit", 0) == 0 || what.rfind("ended by Slurm", 0) == 0) stopped_at = t;
    if (what.rfind("render starts", 0) == 0 && stopped_at >= 0) {
      latencies.push_back((t - stopped_at + 86400) % 86400);
      stopped_at = -1;
    }
  }
  return latencies;
}

std::string log_of(const std::string& workdir, const std::string& name) { return read_file(workdir + "/logs/" + name); }

int starts_in(const std::string& workdir) {
  std::istringstream lines(read_file(workdir + "/attempts.jsonl"));
  int starts = 0;
  for (std::string line; std::getline(lines, line);) starts += line.find("\"event\":\"start\"") != std::string::npos;
  return starts;
}

// The `via submit` options of every test job: CPU ranks, the tiny model.
std::string cpu_job() { return "--gpus-per-node 0 --model " + quoted(data("tiny")); }

}  // namespace

// The fixture's setup: the model, the videos and the mpirun references.
TEST(Inputs, ModelVideosAndReferences) {
  TempDir dir;
  fs::create_directories(env("VIA_SLURM_DATA"));
  const std::string via = quoted(env("VIA_BIN"));
  fs::remove_all(data("tiny"));
  must_run(via + " make-tiny-model --out " + quoted(data("tiny")), dir);
  VideoSpec spec;
  spec.width = 96;
  spec.height = 64;
  spec.seconds = 2.0;  // 50 frames
  fs::copy_file(make_video(dir, "clip.mp4", spec), data("clip.mp4"), fs::copy_options::overwrite_existing);
  spec.seconds = 0.48;  // 12 frames
  fs::copy_file(make_video(dir, "a.mp4", spec), data("a.mp4"), fs::copy_options::overwrite_existing);
  spec.width = 64;
  spec.height = 96;
  spec.audio = true;
  fs::copy_file(make_video(dir, "b.mp4", spec), data("b.mp4"), fs::copy_options::overwrite_existing);
  for (const auto& [name, settings] : {std::pair{"short", kShort}, std::pair{"long", kLong}}) {
    const auto start = Clock::now();
    // a rerun starts afresh: the old work directory and its output (which a
    // new work directory would refuse to replace without --overwrite)
    fs::remove_all(data(std::string("ref_") + name));
    fs::remove(data(std::string("ref_") + name + ".mp4"));
    must_run(env("VIA_MPIRUN") + " -np 2 " + via + " render --input " + quoted(data("clip.mp4")) + " --output " +
                 quoted(data(std::string("ref_") + name + ".mp4")) + " --model " + quoted(data("tiny")) +
                 " --workdir " + quoted(data(std::string("ref_") + name)) + " " + settings,
             dir);
    std::cout << "reference " << name << ": "
              << std::chrono::duration<double>(Clock::now() - start).count() << " s with mpirun -np 2\n";
    EXPECT_EQ(frame_md5s(data(std::string("ref_") + name + ".mp4"), dir).size(), 50u);
  }
}

TEST(SlurmCluster, ASubmittedRenderMatchesMpirun) {
  TempDir dir;
  const std::string out = dir.file("out.mp4"), work = dir.file("work");
  const std::string id = submit(cpu_job() + " --ntasks-per-node 2 --input " + quoted(data("clip.mp4")) + " --output " +
                                    quoted(out) + " --workdir " + quoted(work) + " " + kShort,
                                dir);
  const Job job = wait_for(id, 120, dir).front();
  const std::string log = log_of(work, "slurm-" + id + ".out");
  ASSERT_EQ(job.at("JobState"), "COMPLETED") << log;
  EXPECT_EQ(job.at("ExitCode"), "0:0");
  EXPECT_EQ(job.at("NumTasks"), "2") << "one rank per task";
  EXPECT_EQ(frame_md5s(out, dir), frame_md5s(data("ref_short.mp4"), dir));
  EXPECT_NE(log.find("render complete"), std::string::npos) << log;
  // The job always passes --resume; a first run still says it starts afresh.
  EXPECT_NE(log.find("work directory " + work), std::string::npos) << log;
  EXPECT_EQ(log.find("resuming in"), std::string::npos) << log;
  EXPECT_TRUE(fs::exists(work + "/job.sh"));
  // `via status` reports the Slurm job.
  const std::string status = must_run(quoted(env("VIA_BIN")) + " status " + quoted(work), dir);
  EXPECT_NE(status.find(id), std::string::npos) << status;
}

TEST(SlurmCluster, ATimeLimitStopsRequeuesAndResumes) {
  TempDir dir;
  const std::string out = dir.file("out.mp4"), work = dir.file("work");
  const std::string id = submit(cpu_job() + " --ntasks-per-node 1 --time 1 --warning 20 --input " +
                                    quoted(data("clip.mp4")) + " --output " + quoted(out) + " --workdir " +
                                    quoted(work) + " " + kLong,
                                dir);
  const Job job = wait_for(id, 400, dir).front();
  const std::string log = log_of(work, "slurm-" + id + ".out");
  ASSERT_EQ(job.at("JobState"), "COMPLETED") << log;
  EXPECT_GE(std::stoi(job.at("Restarts")), 1) << "never stopped by the time limit\n" << log;
  EXPECT_NE(log.find("time limit near (SIGUSR1)"), std::string::npos) << log;
  EXPECT_NE(log.find("requeueing to resume"), std::string::npos) << log;
  EXPECT_GE(starts_in(work), 2);
  EXPECT_EQ(frame_md5s(out, dir), frame_md5s(data("ref_long.mp4"), dir));
  std::cout << "restarts: " << job.at("Restarts") << "; requeue latency (s):";
  for (int s : requeue_latencies(log)) std::cout << " " << s;
  std::cout << "\n";
}

TEST(SlurmCluster, APreemptingRequeueResumes) {
  TempDir dir;
  const std::string out = dir.file("out.mp4"), work = dir.file("work");
  const std::string id = submit(cpu_job() + " --ntasks-per-node 2 --input " + quoted(data("clip.mp4")) + " --output " +
                                    quoted(out) + " --workdir " + quoted(work) + " " + kShort,
                                dir);
  // As a preemption would: requeue it once some chunks are done.
  bool requeued = false;
  const Job job = wait_for(id, 180, dir, [&] {
                    if (requeued || !fs::is_directory(work + "/chunks") || fs::is_empty(work + "/chunks")) return;
                    must_run("scontrol requeue " + id, dir);
                    requeued = true;
                  }).front();
  const std::string log = log_of(work, "slurm-" + id + ".out");
  ASSERT_TRUE(requeued) << "the render ended before it could be requeued\n" << log;
  ASSERT_EQ(job.at("JobState"), "COMPLETED") << log;
  EXPECT_EQ(job.at("Restarts"), "1");
  EXPECT_NE(log.find("ended by Slurm (SIGTERM"), std::string::npos) << log;
  EXPECT_EQ(starts_in(work), 2);
  EXPECT_EQ(frame_md5s(out, dir), frame_md5s(data("ref_short.mp4"), dir));
  std::cout << "requeue latency (s):";
  for (int s : requeue_latencies(log)) std::cout << " " << s;
  std::cout << "\n";
}

TEST(SlurmCluster, AManifestRunsAsATwoTaskArray) {
  TempDir dir;
  std::ofstream(dir.file("renders.txt")) << "# input output instruction [settings]\n"
                                         << quoted(data("a.mp4")) << " out/a.mp4 'make it a pencil sketch'\n"
                                         << quoted(data("b.mp4")) << " out/b.mp4 \"turn it blue\" --seed 5\n";
  fs::create_directories(dir.file("out"));
  const std::string work = dir.file("work");
  const std::string id = submit(cpu_job() + " --ntasks-per-node 1 --max-running 2 --manifest renders.txt --workdir " +
                                    quoted(work) + " --long-side 64 --steps 2 --candidates 2 --augment 2 "
                                    "--finetune-steps 2 --group-size 2 --chunk-frames 4 --threads 1",
                                dir);
  const std::vector<Job> tasks = wait_for(id, 180, dir);
  ASSERT_EQ(tasks.size(), 2u);
  std::set<std::string> indices;
  for (const Job& task : tasks) {
    indices.insert(task.at("ArrayTaskId"));
    EXPECT_EQ(task.at("ArrayJobId"), id);
    EXPECT_EQ(task.at("JobState"), "COMPLETED")
        << log_of(work, "slurm-" + id + "_" + task.at("ArrayTaskId") + ".out");
  }
  EXPECT_EQ(indices, (std::set<std::string>{"0", "1"}));
  EXPECT_EQ(frame_md5s(dir.file("out/a.mp4"), dir).size(), 12u);
  EXPECT_EQ(frame_md5s(dir.file("out/b.mp4"), dir).size(), 12u);
  EXPECT_NE(read_file(work + "/task-1/settings.json").find("\"seed\": 5"), std::string::npos);
  EXPECT_NE(read_file(work + "/task-0/settings.json").find("\"seed\": 0"), std::string::npos);
}

TEST(SlurmCluster, ADependencyOnAFailedJobDoesNotHang) {
  TempDir dir;
  std::ofstream(dir.file("broken.mp4")) << "not a video";
  // Held, so that the dependent job is queued before this one fails.
  const std::string failing = submit(cpu_job() + " --sbatch-option=--hold --input " + quoted(dir.file("broken.mp4")) +
                                         " --output " + quoted(dir.file("x.mp4")) + " --workdir " +
                                         quoted(dir.file("w1")) + " " + kShort,
                                     dir);
  const std::string waiting = submit(cpu_job() + " --dependency afterok:" + failing + " --input " +
                                         quoted(data("a.mp4")) + " --output " + quoted(dir.file("y.mp4")) +
                                         " --workdir " + quoted(dir.file("w2")) + " " + kShort,
                                     dir);
  EXPECT_EQ(show_job(waiting, dir).front().at("JobState"), "PENDING");
  must_run("scontrol release " + failing, dir);
  const Job failed = wait_for(failing, 120, dir).front();
  EXPECT_EQ(failed.at("JobState"), "FAILED") << log_of(dir.file("w1"), "slurm-" + failing + ".out");
  EXPECT_EQ(failed.at("ExitCode"), "1:0");
  const Job cancelled = wait_for(waiting, 60, dir).front();
  EXPECT_EQ(cancelled.at("JobState"), "CANCELLED");
  EXPECT_EQ(cancelled.at("Reason"), "DependencyNeverSatisfied");
  EXPECT_FALSE(fs::exists(dir.file("y.mp4")));
}

}  // namespace via::test
