// The distributed, resumable render through the command line: bit-identical
// output for any number of ranks and across kills and resumes, refusals, the
// lock, and `via status`. The video and the settings are as small as keeps
// every case meaningful: 24 frames in 12 chunks of 2 (enough to be
// interrupted mid-way), 48x32 frames, 8 steps (a kill must land while
// work is left: mpirun takes about a second to stop the other ranks).
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>

#include "io/video_reader.h"
#include "rank/workdir.h"
#include "tests/io/test_video_util.h"
#include "tests/support/render_util.h"

namespace fs = std::filesystem;
using via::test::decoded_frames;
using via::test::env;
using via::test::TempDir;

namespace {

std::string replaced(std::string s, const std::string& from, const std::string& to) {
  const size_t at = s.find(from);
  if (at == std::string::npos) throw std::logic_error("no " + from + " in " + s);
  return s.replace(at, from.size(), to);
}
std::string tiny_model() { return env("VIA_SOURCE_DIR") + "/tests/reference/data/tiny_ip2p"; }

constexpr int64_t kFrames = 24;  // of the input
constexpr int64_t kChunks = 12;  // of 2 frames

class Job : public ::testing::Test {
 protected:
  // One input and its uninterrupted one-process render, shared by the tests.
  static void SetUpTestSuite() {
    shared_ = new TempDir;
    via::test::VideoSpec spec;
    spec.width = 96;
    spec.height = 64;
    spec.rate = "24";
    spec.seconds = 1.0;  // kFrames
    spec.audio = true;
    input_ = via::test::make_video(*shared_, "in.mp4", spec);
    reference_video_ = shared_->file("one.mp4");
    const auto r = via::test::run(render_command(reference_video_, shared_->file("w1")), *shared_);
    if (r.exit_code != 0) throw std::runtime_error("the reference render failed: " + r.err);
    reference_ = decoded_frames(reference_video_);
  }
  static void TearDownTestSuite() { delete shared_; }

  static std::string render_command(const std::string& out, const std::string& work) {
    return env("VIA_BIN") + " render --input '" + input_ + "' --output '" + out + "' --model '" + tiny_model() +
           "' --instruction 'make it a pencil sketch' --workdir '" + work +
           "' --long-side 48 --steps 8 --candidates 2 --augment 2 --finetune-steps 2 --group-size 3" +
           " --chunk-frames 2 --threads 1 --seed 5 ";
  }

  // `via render` with small settings, under `launcher` ("" = one process).
  std::string render(const std::string& launcher, const std::string& out, const std::string& work,
                     const std::string& extra = "") const {
    return (launcher.empty() ? "" : launcher + " ") + render_command(dir_.file(out), dir_.file(work)) + extra;
  }
  std::string mpirun(int np) const { return env("VIA_MPIRUN") + " -np " + std::to_string(np); }
  nlohmann::json status(const std::string& work) const {
    const auto r = via::test::run(env("VIA_BIN") + " status --json '" + dir_.file(work) + "'", dir_);
    EXPECT_EQ(r.exit_code, 0) << r.err;
    return nlohmann::json::parse(r.out);
  }

  TempDir dir_;
  static inline TempDir* shared_ = nullptr;
  static inline std::string input_, reference_video_;
  static inline std::vector<std::vector<uint8_t>> reference_;
};

TEST_F(Job, OutputIsTheSameForAnyNumberOfRanks) {
  const auto& reference = reference_;
  ASSERT_EQ(reference.size(), static_cast<size_t>(kFrames));
  const auto out = via::io::probe_video(reference_video_);
  EXPECT_EQ(out.audio.size(), 1u);
  EXPECT_EQ(out.frame_rate.num, 24);

  for (int np : {2, 3}) {
    const std::string name = "np" + std::to_string(np);
    const auto r = via::test::run(render(mpirun(np), name + ".mp4", name), dir_);
    ASSERT_EQ(r.exit_code, 0) << r.err;
    const auto frames = decoded_frames(dir_.file(name + ".mp4"));
    ASSERT_EQ(frames.size(), reference.size()) << name;
    for (size_t i = 0; i < frames.size(); ++i) EXPECT_EQ(frames[i], reference[i]) << name << " frame " << i;
    EXPECT_EQ(via::io::probe_video(dir_.file(name + ".mp4")).audio.size(), 1u);
    // Every rank rendered: the chunks were shared out.
    const auto timings = nlohmann::json::parse(via::test::read_file(dir_.file(name + "/timings.json")));
    ASSERT_EQ(timings["per_rank"].size(), static_cast<size_t>(np));
    int64_t frames_denoised = 0;
    for (const auto& t : timings["per_rank"]) frames_denoised += t["frames"].get<int64_t>();
    EXPECT_EQ(frames_denoised, kFrames) << name;
    // One progress line source: only rank 0 speaks.
    EXPECT_EQ(r.err.find("rank 1"), std::string::npos) << r.err;
  }
}

TEST_F(Job, KilledRankThenStoppedJobResumeToTheSameOutput) {
  const auto& reference = reference_;

  // 1. Two ranks; once two chunks are done (in either order: chunks are
  //    claimed dynamically), rank 1 is killed outright.
  const std::string work = dir_.file("w");
  const std::string chunks_done = "$(ls '" + work + "/chunks' 2>/dev/null | grep -c '^chunk_[0-9]*[.]h5$')";
  const std::string kill_rank1 =
      "(" + render(mpirun(2), "out.mp4", "w") + ") 2>'" + dir_.file("killed.err") + "' & job=$!; " +
      "while [ " + chunks_done + " -lt 2 ] && kill -0 $job 2>/dev/null; do sleep 0.01; done; " +
      "pid=$(sed -n 's/.*\"pid\":\\([0-9]*\\).*/\\1/p' '" + work + "/progress/rank_000001.json'); " +
      "kill -9 $pid; wait $job";
  auto r = via::test::run(kill_rank1, dir_);
  EXPECT_NE(r.exit_code, 0) << "the job must end when a rank dies";
  EXPECT_FALSE(fs::exists(dir_.file("out.mp4")));

  // 2. Status from the files alone: some chunks done, not finished.
  r = via::test::run(env("VIA_BIN") + " status --json '" + work + "'", dir_);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const auto status = nlohmann::json::parse(r.out);
  const int64_t done = status["stages"]["render"]["chunks_done"];
  EXPECT_GE(done, 2);
  EXPECT_LT(done, kChunks);
  EXPECT_NE(status["state"], "finished");
  // the rank killed outright is named, not taken for one stopped by a signal
  const std::string state = status["state"];
  EXPECT_NE(state.find("killed: "), std::string::npos) << state;
  EXPECT_NE(state.find("rank 1 (pid"), std::string::npos) << state;
  EXPECT_EQ(status["stages"]["adapter"], "done");
  r = via::test::run(env("VIA_BIN") + " status '" + work + "'", dir_);
  EXPECT_NE(r.out.find("chunks " + std::to_string(done) + "/" + std::to_string(kChunks)), std::string::npos) << r.out;

  // 3. Three ranks resume; SIGUSR1 (Slurm's warning) to every rank stops them
  //    with the requeue code once more chunks are done.
  const std::string stop_all =
      "(" + render(mpirun(3), "out.mp4", "w", "--resume") + ") 2>'" + dir_.file("stopped.err") + "' & job=$!; " +
      "while [ " + chunks_done + " -lt " + std::to_string(done + 2) +
      " ] && kill -0 $job 2>/dev/null; do sleep 0.01; done; " +
      "for f in '" + work + "'/progress/rank_*.json; do kill -USR1 $(sed -n 's/.*\"pid\":\\([0-9]*\\).*/\\1/p' \"$f\"); done; " +
      "wait $job";
  r = via::test::run(stop_all, dir_);
  EXPECT_EQ(r.exit_code, 75) << via::test::read_file(dir_.file("stopped.err"));
  EXPECT_NE(via::test::read_file(dir_.file("stopped.err")).find("--resume"), std::string::npos);
  r = via::test::run(env("VIA_BIN") + " status --json '" + work + "'", dir_);
  const auto stopped = nlohmann::json::parse(r.out);
  EXPECT_GT(stopped["stages"]["render"]["chunks_done"].get<int64_t>(), done);
  EXPECT_EQ(stopped["attempts"], 2);

  // 4. One process finishes it: the output equals the uninterrupted one.
  r = via::test::run(render("", "out.mp4", "w", "--resume"), dir_);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.err.find("loaded the adapter"), std::string::npos) << "adaptation must not be redone: " << r.err;
  EXPECT_NE(r.err.find("resuming in " + work), std::string::npos) << r.err;
  const auto frames = decoded_frames(dir_.file("out.mp4"));
  ASSERT_EQ(frames.size(), reference.size());
  for (size_t i = 0; i < frames.size(); ++i) EXPECT_EQ(frames[i], reference[i]) << "frame " << i;
  EXPECT_EQ(via::io::probe_video(dir_.file("out.mp4")).audio.size(), 1u);
  r = via::test::run(env("VIA_BIN") + " status --json '" + work + "'", dir_);
  EXPECT_EQ(nlohmann::json::parse(r.out)["state"], "finished") << r.out;
}

TEST_F(Job, RefusesAWorkDirectoryOfOtherSettingsOrInUse) {
  auto r = via::test::run(render("", "one.mp4", "w"), dir_);
  ASSERT_EQ(r.exit_code, 0) << r.err;

  r = via::test::run(render("", "two.mp4", "w"), dir_);
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("--resume"), std::string::npos) << r.err;

  r = via::test::run(render(mpirun(2), "two.mp4", "w", "--resume --crf 20"), dir_);
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.err.find("--crf is 18 there, 20 here"), std::string::npos) << r.err;
  EXPECT_FALSE(fs::exists(dir_.file("two.mp4")));

  {
    via::rank::WorkDirLock held(via::rank::WorkDir{dir_.file("w")});
    r = via::test::run(render("", "two.mp4", "w", "--resume"), dir_);
    EXPECT_EQ(r.exit_code, 1);
    EXPECT_NE(r.err.find("in use by another render (pid"), std::string::npos) << r.err;
  }
  // Everything was finished: a resume only writes the output again.
  r = via::test::run(render("", "two.mp4", "w", "--resume"), dir_);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.err.find("every frame was already on disk"), std::string::npos) << r.err;
  EXPECT_EQ(decoded_frames(dir_.file("one.mp4")), reference_);
  EXPECT_EQ(decoded_frames(dir_.file("two.mp4")), reference_);

  // An unwritable work directory (a path through a file): one clear line.
  std::ofstream(dir_.file("a_file")) << "x";
  r = via::test::run(render("", "three.mp4", "a_file/work"), dir_);
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("a_file/work"), std::string::npos) << r.err;
}

// A rank that throws mid-render (here: its chunk's segment cannot be written,
// a directory is in the way) stops taking chunks; the other rank renders the
// rest; the job ends with one error naming the rank and the file, keeps every
// finished frame, and a resume only redoes what failed.
TEST_F(Job, ARankThatFailsMidRenderIsNamedAndTheRestIsKept) {
  const std::string blocked = dir_.file("w/segments/chunk_000005.mp4");
  fs::create_directories(blocked);
  auto r = via::test::run(render(mpirun(2), "out.mp4", "w"), dir_);
  EXPECT_EQ(r.exit_code, 1) << r.err;
  EXPECT_NE(r.err.find("via render: error: rank "), std::string::npos) << r.err;
  EXPECT_NE(r.err.find(blocked), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("--resume"), std::string::npos) << r.err;
  EXPECT_FALSE(fs::exists(dir_.file("out.mp4")));
  const auto failed = status("w");
  EXPECT_EQ(failed["state"], "failed");
  EXPECT_EQ(failed["stages"]["render"]["chunks_done"], kChunks - 1) << failed.dump();
  EXPECT_EQ(failed["stages"]["render"]["frames_done"], kFrames) << "chunk 5's frames are kept: " << failed.dump();

  fs::remove(blocked);
  r = via::test::run(render(mpirun(2), "out.mp4", "w", "--resume"), dir_);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(decoded_frames(dir_.file("out.mp4")), reference_);
  const auto timings = nlohmann::json::parse(via::test::read_file(dir_.file("w/timings.json")));
  int64_t frames_denoised = 0;
  for (const auto& t : timings["per_rank"]) frames_denoised += t["frames"].get<int64_t>();
  EXPECT_EQ(frames_denoised, 0) << "the resume only encodes chunk 5's segment";
}

// A work directory on a small file system that fills up mid-render: one
// error naming the disk's message, every finished frame kept, and a resume
// on a larger disk ends in the same output. It mounts a tmpfs, so it needs
// root: CTest runs it as test_job_full_disk, labelled `root` (as CI runs;
// `ctest -LE root` leaves it out). Without root it fails, saying so.
TEST_F(Job, AFullDiskEndsTheRenderAndLosesNothingFinished) {
  const char* needs = "test_job_full_disk mounts a small tmpfs: it needs root and permission to mount "
                      "(CAP_SYS_ADMIN; in a container, --privileged); run the tests as root, or leave it out "
                      "with `ctest -LE root`";
  ASSERT_EQ(::geteuid(), 0u) << needs;
  // Room for the adaptation's files (as big as the reference's) and a little more.
  uintmax_t room = 128 * 1024;
  for (const char* name : {"root_pair.h5", "adapter.h5", "attention_group.h5", "candidates.png"})
    room += (fs::file_size(shared_->file("w1/" + std::string(name))) + 4095) / 4096 * 4096;
  const std::string disk = dir_.file("disk");
  fs::create_directories(disk);
  struct Mount {
    std::string path;
    ~Mount() { std::system(("umount -l '" + path + "' 2>/dev/null").c_str()); }
  } mounted{disk};
  auto r = via::test::run("mount -t tmpfs -o size=" + std::to_string(room / 1024) + "k tmpfs '" + disk + "'", dir_);
  ASSERT_EQ(r.exit_code, 0) << "cannot mount a small tmpfs (" << r.err << "): " << needs;

  // The disk estimate would refuse this render before it starts (rank/disk_plan.h,
  // test_disk_plan); this is a disk that fills up while the render runs.
  r = via::test::run(render(mpirun(2), "out.mp4", "disk/w", "--disk-check off"), dir_);
  EXPECT_EQ(r.exit_code, 1) << r.err;
  EXPECT_NE(r.err.find("No space left on device"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find(disk + "/w/"), std::string::npos) << r.err;
  EXPECT_EQ(r.err.find("errno"), std::string::npos) << "HDF5's internals stay out of the message: " << r.err;
  EXPECT_FALSE(fs::exists(dir_.file("out.mp4")));
  const auto failed = status("disk/w");
  EXPECT_EQ(failed["state"], "failed");
  EXPECT_EQ(failed["stages"]["adapter"], "done");
  const int64_t kept = failed["stages"]["render"]["frames_done"];
  EXPECT_GT(kept, 0);
  EXPECT_LT(kept, kFrames);

  r = via::test::run("mount -o remount,size=64m '" + disk + "'", dir_);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  r = via::test::run(render(mpirun(2), "out.mp4", "disk/w", "--resume"), dir_);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.err.find("loaded the adapter"), std::string::npos) << r.err;
  EXPECT_EQ(decoded_frames(dir_.file("out.mp4")), reference_);
  const auto timings = nlohmann::json::parse(via::test::read_file(disk + "/w/timings.json"));
  int64_t frames_denoised = 0;
  for (const auto& t : timings["per_rank"]) frames_denoised += t["frames"].get<int64_t>();
  EXPECT_EQ(frames_denoised, kFrames - kept) << "kept frames are not denoised again";
}

// A stop signal during adaptation ends it at the next fine-tuning step: the
// stages done so far stay (root pair), the one in hand is abandoned (no
// adapter), and the exit code asks for a requeue.
TEST_F(Job, AStopDuringFineTuningKeepsTheRootPair) {
  const std::string work = dir_.file("w");
  // 5000 fine-tuning steps take minutes here: the signal comes in the middle.
  const std::string stop =
      "(" + replaced(render("", "out.mp4", "w"), "--finetune-steps 2", "--finetune-steps 5000") + ") 2>'" + dir_.file("err") + "' & job=$!; " +
      "while [ ! -e '" + work + "/root_pair.h5' ] && kill -0 $job 2>/dev/null; do sleep 0.05; done; sleep 1; " +
      "kill -USR1 $job; wait $job";
  const auto r = via::test::run(stop, dir_);
  const std::string err = via::test::read_file(dir_.file("err"));
  EXPECT_EQ(r.exit_code, 75) << err;
  EXPECT_TRUE(fs::exists(work + "/root_pair.h5"));
  EXPECT_FALSE(fs::exists(work + "/adapter.h5")) << "fine-tuning ran to its end: " << err;
  EXPECT_EQ(err.find("fine-tuned"), std::string::npos) << err;
  EXPECT_NE(err.find("--resume"), std::string::npos) << err;
  EXPECT_EQ(status("w")["stages"]["root_pair"], "done");
}

}  // namespace
