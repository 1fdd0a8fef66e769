// slurm/: quoting, the template filler, time limits, manifests, the job
// script's text, and the job script run by bash with stand-ins for srun,
// via and scontrol (its control flow: exit codes, the warning signal,
// SIGTERM, requeue, array tasks).
#include <gtest/gtest.h>
#include <sys/stat.h>

#include <fstream>
#include <functional>

#include "slurm/errors.h"
#include "slurm/job_script.h"
#include "slurm/manifest.h"
#include "slurm/process.h"
#include "slurm/quoting.h"
#include "slurm/sbatch.h"
#include "slurm/template.h"
#include "tests/io/test_video_util.h"

using namespace via::slurm;
using via::test::TempDir;

namespace {

// Strings that break naive quoting: blanks, quotes, $, backslashes, globs, newlines, non-ASCII.
const std::vector<std::string> kNasty = {
    "plain",
    "two words",
    "it's \"quoted\"",
    "$HOME `id` $(id) \\n \\",
    "*.mp4 ? [a] ~ # ; & | < > ( ) { }",
    "line one\nline two",
    "",
    "-starts-with-dash",
    "ünïcødé ✓",
    "'",
};

void write(const std::string& path, const std::string& text, bool executable = false) {
  std::ofstream(path, std::ios::binary) << text;
  if (executable) ::chmod(path.c_str(), 0755);
}

std::vector<std::string> split_nul(const std::string& text) {
  std::vector<std::string> parts;
  size_t at = 0;
  while (at < text.size()) {
    const size_t end = text.find('\0', at);
    parts.push_back(text.substr(at, end - at));
    at = end + 1;
  }
  return parts;
}

}  // namespace

TEST(ShellQuote, EveryStringRoundTripsThroughBash) {
  TempDir dir;
  for (const std::string& word : kNasty) {
    write(dir.file("q.sh"), "printf '%s' " + shell_quote(word) + "\n");
    const auto r = via::test::run("bash " + dir.file("q.sh"), dir);
    EXPECT_EQ(r.exit_code, 0) << r.err;
    EXPECT_EQ(r.out, word) << "quoted as " << shell_quote(word);
  }
  EXPECT_EQ(shell_quote("/abs/path/in.mp4"), "/abs/path/in.mp4");  // safe words stay readable
  EXPECT_EQ(shell_quote(""), "''");
  EXPECT_EQ(shell_quote("a=b"), "'a=b'");  // not an assignment
}

TEST(SbatchValue, QuotesBlanksAndRefusesWhatSbatchCannotCarry) {
  EXPECT_EQ(sbatch_value("--partition", "gpu"), "gpu");
  EXPECT_EQ(sbatch_value("the log path", "/a b/log %j.out"), "\"/a b/log %j.out\"");
  EXPECT_THROW(sbatch_value("--partition", ""), JobSpecError);
  for (const char* bad : {"a\"b", "a\\b", "a\nb", "a\tb"}) {
    try {
      sbatch_value("--account", bad);
      ADD_FAILURE() << "accepted " << bad;
    } catch (const JobSpecError& e) {
      EXPECT_NE(std::string(e.what()).find("--account"), std::string::npos) << e.what();
    }
  }
  EXPECT_EQ(escape_slurm_pattern("/w/100%/x"), "/w/100%%/x");
}

TEST(SplitWords, ShellLikeQuotingAndComments) {
  EXPECT_EQ(split_words("a.mp4  b.mp4\t\"make it \\\"red\\\"\" --seed 7"),
            (std::vector<std::string>{"a.mp4", "b.mp4", "make it \"red\"", "--seed", "7"}));
  EXPECT_EQ(split_words("'it''s' x\\ y \"a\\b\" # comment 'unclosed"),
            (std::vector<std::string>{"its", "x y", "a\\b"}));
  EXPECT_EQ(split_words("  # only a comment"), std::vector<std::string>{});
  EXPECT_EQ(split_words("a#b ''"), (std::vector<std::string>{"a#b", ""}));
  EXPECT_THROW(split_words("'open"), std::invalid_argument);
  EXPECT_THROW(split_words("\"open"), std::invalid_argument);
  EXPECT_THROW(split_words("end\\"), std::invalid_argument);
}

TEST(FillTemplate, ReplacesPlaceholdersAndDropsEmptyLines) {
  const std::string text = "a={{a}}\n{{block}}\nb={{b}} {{ not }} {{}} {x}\n{{empty}}\nend {{empty_inline}}.\n";
  const std::string filled =
      fill_template(text, {{"a", "1"}, {"block", "x\ny"}, {"b", "{{a}}"}, {"empty", ""}, {"empty_inline", ""}});
  // Values are verbatim (never re-expanded); an empty placeholder alone on its line takes the line with it.
  EXPECT_EQ(filled, "a=1\nx\ny\nb={{a}} {{ not }} {{}} {x}\nend .\n");
}

TEST(FillTemplate, MissingOrUnusedValuesAreBugs) {
  EXPECT_THROW(fill_template("{{a}} {{b}}", {{"a", "1"}}), TemplateError);
  EXPECT_THROW(fill_template("{{a}}", {{"a", "1"}, {"c", "2"}}), TemplateError);
  // The real template: every placeholder is one job_script() fills.
  EXPECT_NE(job_template().find("#SBATCH --signal=B:USR1@{{warning_seconds}}"), std::string_view::npos);
}

TEST(TimeLimit, SlurmFormats) {
  EXPECT_EQ(parse_time_limit("30"), 1800);
  EXPECT_EQ(parse_time_limit("5:30"), 330);
  EXPECT_EQ(parse_time_limit("2:00:10"), 7210);
  EXPECT_EQ(parse_time_limit("1-2"), 93600);
  EXPECT_EQ(parse_time_limit("1-0:30"), 88200);
  EXPECT_EQ(parse_time_limit("2-00:00:05"), 172805);
  for (const char* bad : {"", "0", "x", "1:2:3:4", "-5", "1-", "1h", "1-2:3:4:5", "00:00"}) {
    try {
      parse_time_limit(bad);
      ADD_FAILURE() << "accepted '" << bad << "'";
    } catch (const JobSpecError& e) {
      EXPECT_NE(std::string(e.what()).find("time limit"), std::string::npos) << e.what();
    }
  }
}

TEST(Manifest, ParsesLinesSettingsAndComments) {
  const auto entries = parse_manifest(
      "# input output instruction [settings]\n"
      "\n"
      "a.mp4 out/a.mp4 'make it a pencil sketch'\r\n"
      "  /abs/b.mp4   b.mp4  \"turn the car \\\"green\\\"\"  --seed 7 --steps=30  # why\n",
      "m.txt");
  ASSERT_EQ(entries.size(), 2u);
  EXPECT_EQ(entries[0].line, 3);
  EXPECT_EQ(entries[0].input, "a.mp4");
  EXPECT_EQ(entries[0].output, "out/a.mp4");
  EXPECT_EQ(entries[0].instruction, "make it a pencil sketch");
  EXPECT_TRUE(entries[0].options.empty());
  EXPECT_EQ(entries[1].line, 4);
  EXPECT_EQ(entries[1].instruction, "turn the car \"green\"");
  EXPECT_EQ(entries[1].options, (std::vector<std::string>{"--seed", "7", "--steps=30"}));
  EXPECT_EQ(resolve_manifest_path("/jobs/m.txt", "a.mp4"), "/jobs/a.mp4");
  EXPECT_EQ(resolve_manifest_path("/jobs/m.txt", "../c/./a.mp4"), "/c/a.mp4");
  EXPECT_EQ(resolve_manifest_path("/jobs/m.txt", "/abs/a.mp4"), "/abs/a.mp4");
}

TEST(Manifest, ErrorsNameTheFileAndLine) {
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"a.mp4 b.mp4 'open\n", "m.txt:1: unterminated single quote"},
      {"ok.mp4 o.mp4 x\na.mp4 b.mp4\n", "m.txt:2: needs an input, an output and an instruction; the instruction is missing"},
      {"a.mp4 --seed 3 x\n", "m.txt:1: the output is missing before '--seed'"},
      {"a.mp4 b.mp4 make it red\n", "m.txt:1: unexpected 'it' after the instruction"},
      {"a.mp4 '' x\n", "m.txt:1: the output is empty"},
      {"# nothing\n\n", "manifest m.txt: no renders"},
  };
  for (const auto& [text, expected] : cases) {
    try {
      parse_manifest(text, "m.txt");
      ADD_FAILURE() << "accepted: " << text;
    } catch (const ManifestError& e) {
      EXPECT_NE(std::string(e.what()).find(expected), std::string::npos) << e.what();
    }
  }
  try {
    read_manifest("/nonexistent/m.txt");
    ADD_FAILURE() << "read a missing manifest";
  } catch (const ManifestError& e) {
    EXPECT_NE(std::string(e.what()).find("/nonexistent/m.txt"), std::string::npos) << e.what();
  }
}

namespace {

JobSpec sample_job() {
  JobSpec job;
  job.via = "/opt/via bin/via";
  job.renders = {{"--input", "/data/in.mp4", "--output", "/data/out.mp4", "--instruction", "make it a \"sketch\"",
                  "--workdir", "/scratch/w"}};
  job.job_name = "via-out";
  job.nodes = 2;
  job.gpus_per_node = 4;
  job.time_limit = "2:00:00";
  job.warning_seconds = 240;
  job.partition = "gpu";
  job.account = "proj42";
  job.log = "/scratch/w/logs/slurm-%j.out";
  return job;
}

bool has_line(const std::string& script, const std::string& line) {
  return script.find("\n" + line + "\n") != std::string::npos;
}

}  // namespace

TEST(JobScriptText, AsksSlurmForWhatTheRenderNeeds) {
  const std::string script = job_script(sample_job());
  EXPECT_EQ(script.rfind("#!/bin/bash\n", 0), 0u);
  for (const char* line : {"#SBATCH --job-name=via-out", "#SBATCH --nodes=2", "#SBATCH --ntasks-per-node=4",
                           "#SBATCH --gpus-per-node=4", "#SBATCH --time=2:00:00", "#SBATCH --partition=gpu",
                           "#SBATCH --account=proj42", "#SBATCH --signal=B:USR1@240", "#SBATCH --requeue",
                           "#SBATCH --open-mode=append", "#SBATCH --output=/scratch/w/logs/slurm-%j.out",
                           "#SBATCH --kill-on-invalid-dep=yes", "via='/opt/via bin/via'"})
    EXPECT_TRUE(has_line(script, line)) << "missing: " << line << "\n" << script;
  EXPECT_NE(script.find("srun --mpi=pmix --kill-on-bad-exit=1 \"$via\" render \"${args[@]}\" --resume &"),
            std::string::npos);
  EXPECT_EQ(script.find("{{"), std::string::npos) << "unfilled placeholder";
  EXPECT_EQ(script.find("--array"), std::string::npos);
  EXPECT_EQ(script.find("--cpus-per-task"), std::string::npos);

  // A CPU job: ranks per node from ntasks_per_node, cores per rank passed to srun too.
  JobSpec cpu = sample_job();
  cpu.gpus_per_node = 0;
  cpu.ntasks_per_node = 3;
  cpu.cpus_per_task = 2;
  cpu.time_limit.clear();
  cpu.partition.clear();
  cpu.account.clear();
  cpu.dependency = "afterok:12";
  cpu.sbatch_options = {"--qos=high", "--exclusive", "--comment=two words"};
  const std::string cpu_script = job_script(cpu);
  for (const char* line : {"#SBATCH --ntasks-per-node=3", "#SBATCH --cpus-per-task=2", "#SBATCH --dependency=afterok:12",
                           "#SBATCH --qos=high", "#SBATCH --exclusive", "#SBATCH --comment=\"two words\""})
    EXPECT_TRUE(has_line(cpu_script, line)) << "missing: " << line << "\n" << cpu_script;
  for (const char* absent : {"--gpus-per-node", "--time", "--partition", "--account"})
    EXPECT_EQ(cpu_script.find(absent), std::string::npos) << absent;
  EXPECT_NE(cpu_script.find("--kill-on-bad-exit=1 --cpus-per-task=2 \"$via\""), std::string::npos);
  EXPECT_EQ(cpu_script.find("\n\n\n"), std::string::npos) << "optional lines leave no gaps";
}

TEST(JobScriptText, ArraysCapTheirRunningTasks) {
  JobSpec job = sample_job();
  job.array = true;
  job.log = "/scratch/w/logs/slurm-%A_%a.out";
  EXPECT_TRUE(has_line(job_script(job), "#SBATCH --array=0-0")) << "a manifest of one line is still an array";
  job.renders.push_back({"--input", "/data/b.mp4"});
  job.renders.push_back({"--input", "/data/c.mp4"});
  job.max_running = 2;
  const std::string script = job_script(job);
  EXPECT_TRUE(has_line(script, "#SBATCH --array=0-2%2")) << script;
  job.max_running = 0;
  EXPECT_TRUE(has_line(job_script(job), "#SBATCH --array=0-2"));
}

TEST(JobScriptText, BadRequestsNameTheirOption) {
  const std::vector<std::pair<std::function<void(JobSpec&)>, std::string>> cases = {
      {[](JobSpec& j) { j.nodes = 0; }, "--nodes"},
      {[](JobSpec& j) { j.gpus_per_node = -1; }, "--gpus-per-node"},
      {[](JobSpec& j) { j.gpus_per_node = 0; j.ntasks_per_node = 0; }, "--ntasks-per-node"},
      {[](JobSpec& j) { j.time_limit = "5"; j.warning_seconds = 300; }, "--warning 300 s must be shorter than the time limit (5 = 300 s)"},
      {[](JobSpec& j) { j.warning_seconds = 0; }, "--warning"},
      {[](JobSpec& j) { j.time_limit = "soon"; }, "time limit 'soon'"},
      {[](JobSpec& j) { j.partition = "a\"b"; }, "--partition"},
      {[](JobSpec& j) { j.log = "/w\nx/log"; }, "the log path"},
      {[](JobSpec& j) { j.sbatch_options = {"qos=high"}; }, "sbatch option 'qos=high'"},
      {[](JobSpec& j) { j.via = "via"; }, "absolute path"},
      {[](JobSpec& j) { j.renders.clear(); }, "at least one render"},
      {[](JobSpec& j) { j.renders.push_back({"--input", "b"}); }, "not an array runs one render, not 2"},
  };
  for (const auto& [change, expected] : cases) {
    JobSpec job = sample_job();
    change(job);
    try {
      job_script(job);
      ADD_FAILURE() << "accepted a job that should fail with: " << expected;
    } catch (const JobSpecError& e) {
      EXPECT_NE(std::string(e.what()).find(expected), std::string::npos) << e.what();
    }
  }
}

// The job script run by bash, with srun, via and scontrol replaced by small
// scripts: srun drops its options and runs the rest; via records its
// arguments and does what FAKE_VIA says; scontrol records its arguments and
// exits with FAKE_SCONTROL_RC.
class JobScriptRun : public ::testing::Test {
 protected:
  void SetUp() override {
    bin_ = dir_.file("bin");
    std::filesystem::create_directories(bin_);
    write(bin_ + "/srun",
          "#!/bin/bash\nwhile [ $# -gt 0 ] && [ \"${1#--}\" != \"$1\" ]; do shift; done\nexec \"$@\"\n", true);
    write(bin_ + "/scontrol",
          "#!/bin/bash\nprintf '%s ' \"$@\" >> \"$FAKE_DIR/scontrol.calls\"\nexit ${FAKE_SCONTROL_RC:-0}\n",
          true);
    write(bin_ + "/via",
          "#!/bin/bash\n"
          "printf '%s\\0' \"$@\" > \"$FAKE_DIR/via.args\"\n"
          "case \"$FAKE_VIA\" in\n"
          "  ok) exit 0 ;;\n"
          "  stop) exit 75 ;;\n"
          "  fail) exit 1 ;;\n"
          "  wait)  # stops like via: on SIGUSR1 or SIGTERM, with FAKE_STOP_CODE (99 if never)\n"
          "    trap 'echo USR1 > \"$FAKE_DIR/via.signal\"; exit ${FAKE_STOP_CODE:-75}' USR1\n"
          "    trap 'echo TERM > \"$FAKE_DIR/via.signal\"; exit ${FAKE_STOP_CODE:-75}' TERM\n"
          "    touch \"$FAKE_DIR/via.ready\"\n"
          "    for i in $(seq 200); do sleep 0.05; done; exit 99 ;;  # never stopped\n"
          "esac\n",
          true);
  }

  JobSpec job(std::vector<std::vector<std::string>> renders) const {
    JobSpec spec;
    spec.via = bin_ + "/via";
    spec.renders = std::move(renders);
    spec.log = dir_.file("log");
    return spec;
  }

  // Runs the script as Slurm would start it (its own process group), with
  // `signal` sent to the script (USR1) or to its whole group (TERM) once via
  // is running; returns bash's result.
  via::test::RunResult run(const JobSpec& spec, const std::string& mode, const std::string& env = "",
                           const std::string& signal = "") {
    write(dir_.file("job.sh"), job_script(spec));
    std::string driver = "export PATH='" + bin_ + "':\"$PATH\" FAKE_DIR='" + dir_.path() + "' FAKE_VIA=" + mode +
                         " SLURM_JOB_ID=4242 " + env + "\n";
    if (signal.empty()) {
      driver += "exec bash '" + dir_.file("job.sh") + "'\n";
    } else {
      // Job control gives the job script its own process group, as slurmstepd does.
      driver += "set -m\nbash '" + dir_.file("job.sh") + "' &\npid=$!\n"
                "for i in $(seq 200); do [ -f '" + dir_.file("via.ready") + "' ] && break; sleep 0.05; done\n"
                "sleep 0.2\nkill -" + signal + " -- " + (signal == "TERM" ? "-$pid" : "$pid") + "\nwait $pid\n";
    }
    write(dir_.file("driver.sh"), driver);
    return via::test::run("bash '" + dir_.file("driver.sh") + "'", dir_);
  }

  std::string scontrol_calls() const { return via::test::read_file(dir_.file("scontrol.calls")); }

  TempDir dir_;
  std::string bin_;
};

TEST_F(JobScriptRun, PassesEveryArgumentExactlyAndAddsResume) {
  std::vector<std::string> args = {"--input", "/in dir/a.mp4", "--instruction"};
  args.insert(args.end(), kNasty.begin(), kNasty.end());
  const auto r = run(job({args}), "ok");
  EXPECT_EQ(r.exit_code, 0) << r.err;
  std::vector<std::string> expected = {"render"};
  expected.insert(expected.end(), args.begin(), args.end());
  expected.push_back("--resume");
  EXPECT_EQ(split_nul(via::test::read_file(dir_.file("via.args"))), expected);
  EXPECT_NE(r.err.find("render complete"), std::string::npos) << r.err;
  EXPECT_EQ(scontrol_calls(), "");
}

TEST_F(JobScriptRun, ExitCode75Requeues) {
  auto r = run(job({{"--input", "a"}}), "stop");
  EXPECT_EQ(r.exit_code, 75);
  EXPECT_EQ(scontrol_calls(), "requeue 4242 ");
  EXPECT_NE(r.err.find("stopped (exit 75); requeueing"), std::string::npos) << r.err;
  EXPECT_EQ(r.err.find("failed"), std::string::npos) << r.err;
  r = run(job({{"--input", "a"}}), "stop", "FAKE_SCONTROL_RC=1");
  EXPECT_EQ(r.exit_code, 75);
  EXPECT_NE(r.err.find("scontrol requeue failed; submit this script again to resume"), std::string::npos) << r.err;
}

TEST_F(JobScriptRun, AFailureIsNotRequeued) {
  const auto r = run(job({{"--input", "a"}}), "fail");
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_EQ(scontrol_calls(), "");
  EXPECT_NE(r.err.find("render failed (exit 1)"), std::string::npos) << r.err;
}

TEST_F(JobScriptRun, TheWarningSignalReachesTheRanksAndRequeues) {
  // The ranks may end with another code when srun kills the slower ones: the warning alone decides.
  const auto r = run(job({{"--input", "a"}}), "wait", "FAKE_STOP_CODE=143", "USR1");
  EXPECT_EQ(scontrol_calls(), "requeue 4242 ") << r.err;
  EXPECT_NE(r.err.find("time limit near (SIGUSR1)"), std::string::npos) << r.err;
  EXPECT_EQ(via::test::read_file(dir_.file("via.signal")), "USR1\n") << "the ranks never got the warning";
}

TEST_F(JobScriptRun, SigtermEndsWithoutARequeueOfItsOwn) {
  const auto r = run(job({{"--input", "a"}}), "wait", "", "TERM");
  EXPECT_EQ(r.exit_code, 75) << r.err;
  EXPECT_EQ(scontrol_calls(), "");
  EXPECT_NE(r.err.find("ended by Slurm (SIGTERM"), std::string::npos) << r.err;
  EXPECT_EQ(via::test::read_file(dir_.file("via.signal")), "TERM\n");
}

TEST_F(JobScriptRun, StopsRequeueingAfterMaxRestarts) {
  JobSpec spec = job({{"--input", "a"}});
  spec.max_restarts = 3;
  const auto r = run(spec, "stop", "SLURM_RESTART_COUNT=3");
  EXPECT_EQ(r.exit_code, 75);
  EXPECT_EQ(scontrol_calls(), "");
  EXPECT_NE(r.err.find("after 3 restarts: not requeueing"), std::string::npos) << r.err;
}

TEST_F(JobScriptRun, ArrayTasksRunTheirOwnRender) {
  JobSpec spec = job({{"--input", "zero"}, {"--input", "one two"}});
  spec.array = true;
  auto r = run(spec, "ok", "SLURM_ARRAY_TASK_ID=1");
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(split_nul(via::test::read_file(dir_.file("via.args"))),
            (std::vector<std::string>{"render", "--input", "one two", "--resume"}));
  r = run(spec, "ok", "SLURM_ARRAY_TASK_ID=2");
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("job array of tasks 0-1; task '2' has no render"), std::string::npos) << r.err;
}

TEST(Sbatch, JobIdsAndFailuresNameSbatch) {
  EXPECT_EQ(parse_job_id("1234\n"), "1234");
  EXPECT_EQ(parse_job_id("77;cluster2\n"), "77");
  EXPECT_THROW(parse_job_id("Submitted batch job 5\n"), SlurmError);
  EXPECT_THROW(parse_job_id(""), SlurmError);

  TempDir dir;
  const auto r = run_process({"bash", "-c", "printf out; printf err >&2; exit 3"});
  EXPECT_EQ(r.exit_code, 3);
  EXPECT_EQ(r.out, "out");
  EXPECT_EQ(r.err, "err");
  try {
    run_process({"via-no-such-program-here"});
    ADD_FAILURE() << "ran a missing program";
  } catch (const SlurmError& e) {
    EXPECT_NE(std::string(e.what()).find("via-no-such-program-here not found on PATH"), std::string::npos) << e.what();
  }
  // More output than a pipe holds, on both streams: no deadlock.
  const auto big = run_process({"bash", "-c", "head -c 300000 /dev/zero; head -c 300000 /dev/zero >&2"});
  EXPECT_EQ(big.out.size(), 300000u);
  EXPECT_EQ(big.err.size(), 300000u);
}
