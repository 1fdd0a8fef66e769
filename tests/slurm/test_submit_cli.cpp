// `via submit` through the real binary (env VIA_BIN), without a cluster:
// --dry-run scripts for a render and a manifest, one clear error line for
// each kind of bad request, and sbatch missing, failing or answering (a
// stand-in sbatch on PATH).
#include <gtest/gtest.h>
#include <sys/stat.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <vector>

#include "rank/settings.h"
#include "rank/workdir.h"
#include "tests/io/test_video_util.h"

namespace via::test {
namespace {

namespace fs = std::filesystem;

std::string via_bin() {
  const char* bin = std::getenv("VIA_BIN");
  if (bin == nullptr || *bin == '\0') throw std::runtime_error("VIA_BIN is not set (run through ctest)");
  return bin;
}

void write(const std::string& path, const std::string& text, bool executable = false) {
  std::ofstream(path, std::ios::binary) << text;
  if (executable) ::chmod(path.c_str(), 0755);
}

bool has_line(const std::string& text, const std::string& line) {
  return text.find("\n" + line + "\n") != std::string::npos;
}

// Inputs that exist (submit checks them): a file for the video, a folder for the model.
class SubmitCli : public ::testing::Test {
 protected:
  void SetUp() override {
    fs::create_directories(dir_.file("model"));
    fs::create_directories(dir_.file("out"));
    write(dir_.file("in.mp4"), "not decoded by submit");
  }

  RunResult submit(const std::string& args, const std::string& env = "") {
    return run("cd '" + dir_.path() + "' && " + env + " '" + via_bin() + "' submit " + args, dir_);
  }

  std::string render_args() const {
    return "--input in.mp4 --output out/o.mp4 --model model --instruction \"it's a 'sketch'\" --workdir w";
  }

  // Exit code `code`, nothing on stdout, one line on stderr holding `detail`.
  void expect_one_line_error(const RunResult& r, int code, const std::string& detail) {
    EXPECT_EQ(r.exit_code, code) << r.err;
    EXPECT_EQ(r.out, "");
    EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;
    EXPECT_EQ(r.err.rfind("via submit: ", 0), 0u) << r.err;
    EXPECT_NE(r.err.find(detail), std::string::npos) << r.err;
  }

  TempDir dir_;
};

TEST_F(SubmitCli, DryRunPrintsTheScriptAndWritesNothing) {
  const RunResult r = submit(render_args() +
                             " --steps 7 --seed 3 --nodes 2 --gpus-per-node 4 --time 1:00:00 --warning 120"
                             " --partition gpu --account proj --dependency afterok:9 --dry-run"
                             " --sbatch-option=--qos=high");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.err, "");
  for (const char* line : {"#SBATCH --job-name=via-o", "#SBATCH --nodes=2", "#SBATCH --ntasks-per-node=4",
                           "#SBATCH --gpus-per-node=4", "#SBATCH --time=1:00:00", "#SBATCH --partition=gpu",
                           "#SBATCH --account=proj", "#SBATCH --signal=B:USR1@120", "#SBATCH --requeue",
                           "#SBATCH --open-mode=append", "#SBATCH --dependency=afterok:9", "#SBATCH --qos=high",
                           "#SBATCH --kill-on-invalid-dep=yes"})
    EXPECT_TRUE(has_line(r.out, line)) << "missing " << line << " in\n" << r.out;
  const std::string root = fs::canonical(dir_.path()).string();
  EXPECT_TRUE(has_line(r.out, "#SBATCH --output=" + root + "/w/logs/slurm-%j.out")) << r.out;
  // The render's settings, with absolute paths, quoted for bash.
  for (const std::string& line : std::vector<std::string>{"  --input " + root + "/in.mp4", "  --instruction 'it'\\''s a '\\''sketch'\\'''",
                                 "  --model " + root + "/model", "  --output " + root + "/out/o.mp4", "  --seed 3",
                                 "  --steps 7", "  --workdir " + root + "/w"})
    EXPECT_TRUE(has_line(r.out, line)) << "missing " << line << " in\n" << r.out;
  EXPECT_NE(r.out.find("via=" + fs::canonical(via_bin()).string() + "\n"), std::string::npos) << r.out;
  EXPECT_FALSE(fs::exists(dir_.file("w"))) << "--dry-run wrote the work directory";

  // bash accepts it.
  write(dir_.file("job.sh"), r.out);
  const RunResult syntax = run("bash -n '" + dir_.file("job.sh") + "'", dir_);
  EXPECT_EQ(syntax.exit_code, 0) << syntax.err;

  // A CPU job: ranks per node, cores per rank (and the render's threads from them).
  const RunResult cpu = submit(render_args() + " --gpus-per-node 0 --ntasks-per-node 2 --cpus-per-task 3 --dry-run");
  ASSERT_EQ(cpu.exit_code, 0) << cpu.err;
  for (const char* line : {"#SBATCH --ntasks-per-node=2", "#SBATCH --cpus-per-task=3", "  --threads 3"})
    EXPECT_TRUE(has_line(cpu.out, line)) << "missing " << line << " in\n" << cpu.out;
  EXPECT_EQ(cpu.out.find("--gpus-per-node"), std::string::npos);
  EXPECT_NE(cpu.out.find("--kill-on-bad-exit=1 --cpus-per-task=3 \"$via\" render"), std::string::npos);
}

TEST_F(SubmitCli, AManifestBecomesAJobArray) {
  fs::create_directories(dir_.file("batch/clips"));
  write(dir_.file("batch/clips/a.mp4"), "a");
  write(dir_.file("b.mp4"), "b");
  write(dir_.file("batch/m.txt"),
        "# input output instruction [settings]\n"
        "clips/a.mp4 a_out.mp4 'make it a pencil sketch'\n"
        "../b.mp4 /tmp/b_out.mp4 \"turn it blue\" --seed 5 --steps=9\n");
  const RunResult r =
      submit("--manifest batch/m.txt --model model --workdir w --steps 4 --max-running 1 --gpus-per-node 2 --dry-run");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const std::string root = fs::canonical(dir_.path()).string();
  for (const std::string& line : std::vector<std::string>{
           "#SBATCH --array=0-1%1", "#SBATCH --output=" + root + "/w/logs/slurm-%A_%a.out", "#SBATCH --job-name=via-w",
           "case \"${SLURM_ARRAY_TASK_ID:-}\" in",
           // Relative paths are the manifest's; each task has its own work directory.
           "      --input " + root + "/batch/clips/a.mp4", "      --output " + root + "/batch/a_out.mp4",
           "      --workdir " + root + "/w/task-0", "      --input " + root + "/b.mp4", "      --output /tmp/b_out.mp4",
           "      --workdir " + root + "/w/task-1", "      --instruction 'turn it blue'", "      --seed 5"})
    EXPECT_TRUE(has_line(r.out, line)) << "missing " << line << " in\n" << r.out;
  // The command line's --steps 4 for line 1, the line's own 9 for line 2.
  const size_t task1 = r.out.find("  1)\n");
  ASSERT_NE(task1, std::string::npos);
  EXPECT_NE(r.out.find("      --steps 4\n"), std::string::npos);
  EXPECT_LT(r.out.find("      --steps 4\n"), task1);
  EXPECT_GT(r.out.find("      --steps 9\n"), task1);
}

TEST_F(SubmitCli, BadRequestsGetOneClearLine) {
  expect_one_line_error(submit("--output o.mp4 --model model --instruction x --workdir w --dry-run"), 2,
                        "'--input' is required but missing (or give --manifest FILE)");
  write(dir_.file("m.txt"), "in.mp4 o.mp4 x\n");
  expect_one_line_error(submit("--manifest m.txt --input in.mp4 --model model --workdir w --dry-run"), 2,
                        "--input comes from the manifest's lines");
  expect_one_line_error(submit(render_args() + " --max-running 3 --dry-run"), 2, "--max-running needs --manifest");
  expect_one_line_error(submit(render_args() + " --time 4 --dry-run"), 2,
                        "--warning 300 s must be shorter than the time limit (4 = 240 s)");
  expect_one_line_error(submit(render_args() + " --steps 0 --dry-run"), 2, "steps");
  expect_one_line_error(submit(render_args() + " --partition 'a\"b' --dry-run"), 2, "--partition 'a\"b'");
  expect_one_line_error(
      submit("--input missing.mp4 --output o.mp4 --model model --instruction x --workdir w --dry-run"), 2,
      "input " + fs::canonical(dir_.path()).string() + "/missing.mp4 does not exist");
  expect_one_line_error(submit("--input in.mp4 --output nowhere/o.mp4 --model model --instruction x --workdir w --dry-run"),
                        2, "the output's directory");

  write(dir_.file("bad1.txt"), "in.mp4 o.mp4 'open\n");
  expect_one_line_error(submit("--manifest bad1.txt --model model --workdir w --dry-run"), 1,
                        "manifest bad1.txt:1: unterminated single quote");
  write(dir_.file("bad2.txt"), "in.mp4 o1.mp4 x\n\nin.mp4 o2.mp4 y --stepz 3\n");
  expect_one_line_error(submit("--manifest bad2.txt --model model --workdir w --dry-run"), 2,
                        "manifest bad2.txt:3: unrecognised option '--stepz'");
  write(dir_.file("bad3.txt"), "in.mp4 o.mp4 x\nin.mp4 ./o.mp4 y\n");
  expect_one_line_error(submit("--manifest bad3.txt --model model --workdir w --dry-run"), 2,
                        "manifest bad3.txt:2: writes the same output as line 1");
  write(dir_.file("bad5.txt"), "nothere.mp4 o.mp4 x\n");
  expect_one_line_error(submit("--manifest bad5.txt --model model --workdir w --dry-run"), 2,
                        "manifest bad5.txt:1: input");
}

TEST_F(SubmitCli, AWorkDirectoryOfOtherSettingsIsRefused) {
  rank::RenderSettings s;
  s.input = fs::canonical(dir_.file("in.mp4")).string();
  s.model = fs::canonical(dir_.file("model")).string();
  s.instruction = "it's a 'sketch'";
  s.output = fs::canonical(dir_.path()).string() + "/out/o.mp4";
  s.steps = 5;
  rank::prepare_workdir(rank::WorkDir{dir_.file("w")}, s, false);
  expect_one_line_error(submit(render_args() + " --steps 6 --dry-run"), 2,
                        "was made with other settings: --steps is 5 there, 6 here");
  const RunResult same = submit(render_args() + " --steps 5 --dry-run");
  EXPECT_EQ(same.exit_code, 0) << same.err;
}

TEST_F(SubmitCli, SbatchMissingFailingOrAnswering) {
  expect_one_line_error(submit(render_args(), "PATH=/nonexistent"), 1, "sbatch not found on PATH");

  fs::create_directories(dir_.file("bin"));
  write(dir_.file("bin/sbatch"),
        "#!/bin/sh\necho 'sbatch: error: Batch job submission failed: Invalid account or account/partition "
        "combination specified' >&2\nexit 1\n",
        true);
  const std::string path = "PATH='" + dir_.file("bin") + "':\"$PATH\"";
  expect_one_line_error(submit(render_args(), path), 1,
                        "sbatch failed (exit 1) for " + fs::canonical(dir_.path()).string() +
                            "/w/job.sh: sbatch: error: Batch job submission failed: Invalid account");

  write(dir_.file("bin/sbatch"), "#!/bin/sh\nprintf '%s\\n' \"$@\" > \"$(dirname \"$0\")/args\"\necho '4242;cluster'\n",
        true);
  const RunResult ok = submit(render_args(), path);
  ASSERT_EQ(ok.exit_code, 0) << ok.err;
  EXPECT_EQ(ok.out, "4242\n");
  EXPECT_NE(ok.err.find("submitted job 4242"), std::string::npos) << ok.err;
  const std::string script = fs::canonical(dir_.path()).string() + "/w/job.sh";
  EXPECT_EQ(read_file(dir_.file("bin/args")), "--parsable\n" + script + "\n");
  EXPECT_TRUE(fs::is_directory(dir_.file("w/logs"))) << "Slurm needs the log's directory to exist";
  EXPECT_NE(read_file(script).find("#SBATCH --requeue"), std::string::npos);
  EXPECT_NE(fs::status(script).permissions() & fs::perms::owner_exec, fs::perms::none);
}

}  // namespace
}  // namespace via::test
