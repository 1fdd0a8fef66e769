// A render's frames do not depend on the CPU threads per rank: --threads 1
// and 2 in one process, and `mpirun -np 1`, `-np 2` and `-np 3` with the
// default threads (the cores shared out among the node's ranks), give the
// same bits.
// 96x64 frames and 4 steps: at the smaller sizes of test_job the thread
// count happened not to matter even before the model's CPU path was made
// independent of it (docs/ARCHITECTURE.md §7).
#include <gtest/gtest.h>

#include "tests/io/test_video_util.h"
#include "tests/support/data.h"
#include "tests/support/render_util.h"

using via::test::env;
using via::test::TempDir;

namespace {

TEST(ThreadCount, FramesAreTheSameForAnyThreadsAndRanks) {
  TempDir dir;
  via::test::VideoSpec spec;
  spec.width = 96;
  spec.height = 64;
  spec.rate = "24";
  spec.seconds = 1.0;
  const std::string input = via::test::make_video(dir, "in.mp4", spec);
  const auto render = [&](const std::string& name, const std::string& launcher, const std::string& threads) {
    const std::string out = dir.file(name + ".mp4");
    const auto r = via::test::run(
        (launcher.empty() ? "" : launcher + " ") + env("VIA_BIN") + " render --input '" + input + "' --output '" +
            out + "' --model '" + via::test::tiny_model_dir() + "' --instruction 'make it a pencil sketch'" +
            " --workdir '" + dir.file(name) + "' --long-side 96 --steps 4 --candidates 2 --augment 2" +
            " --finetune-steps 4 --group-size 3 --chunk-frames 4 --seed 5" + threads,
        dir);
    EXPECT_EQ(r.exit_code, 0) << name << ": " << r.err;
    return via::test::decoded_frames(out);
  };
  const auto reference = render("threads1", "", " --threads 1");
  ASSERT_EQ(reference.size(), 24u);
  const std::string mpirun = env("VIA_MPIRUN");
  for (const auto& [name, launcher, threads] :
       std::vector<std::tuple<std::string, std::string, std::string>>{{"threads2", "", " --threads 2"},
                                                                      {"np1", mpirun + " -np 1", ""},
                                                                      {"np2", mpirun + " -np 2", ""},
                                                                      {"np3", mpirun + " -np 3", ""}}) {
    const auto frames = render(name, launcher, threads);
    ASSERT_EQ(frames.size(), reference.size()) << name;
    for (size_t i = 0; i < frames.size(); ++i) EXPECT_EQ(frames[i], reference[i]) << name << ": frame " << i;
  }
}

}  // namespace
