// The one-process render: range independence, masks, and the CLI end to end.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdlib>
#include <vector>
#include <filesystem>
#include <fstream>

#include "io/image.h"
#include "io/video_reader.h"
#include "rank/render.h"
#include "tests/io/test_video_util.h"
#include "tests/support/data.h"

using via::rank::Renderer;
using via::rank::RenderSettings;
using via::test::TempDir;

namespace {

std::string reference_model() { return via::test::tiny_model_dir(); }

// Small and fast: 12 frames at 64x40 (model), 2 steps, a short adaptation.
RenderSettings small_settings(const std::string& input) {
  RenderSettings s;
  s.input = input;
  s.model = reference_model();
  s.instruction = "make it a pencil sketch";
  s.long_side = 64;
  s.steps = 2;
  s.scheduler = via::model::SchedulerKind::EulerAncestral;
  s.candidates = 2;
  s.augment = 2;
  s.finetune_steps = 2;
  s.group_size = 2;
  s.chunk_frames = 5;
  s.seed = 11;
  return s;
}

class Render : public ::testing::Test {
 protected:
  void SetUp() override {
    at::set_num_threads(1);
    via::test::VideoSpec spec;
    spec.width = 96;
    spec.height = 64;
    spec.seconds = 0.48;  // 12 frames
    spec.audio = true;
    input_ = via::test::make_video(dir_, "in.mp4", spec);
  }
  TempDir dir_;
  std::string input_;
};

}  // namespace

TEST_F(Render, FramesDoNotDependOnOrderRangeOrProcess) {
  RenderSettings s = small_settings(input_);
  std::vector<at::Tensor> forward;
  {
    Renderer r(s, dir_.file("work"));
    r.adapt();
    for (int64_t f = 0; f < r.video().frame_count; ++f) forward.push_back(r.frame_latents(f));
  }
  ASSERT_EQ(forward.size(), 12u);
  // A second renderer, as another process would: it loads the adaptation the
  // first one wrote and renders the frames as two ranges, the later first.
  Renderer again(s, dir_.file("work"));
  again.load_adaptation();
  for (int64_t f = 6; f < 12; ++f) EXPECT_TRUE(at::equal(again.frame_latents(f), forward[f])) << "frame " << f;
  for (int64_t f = 0; f < 6; ++f) EXPECT_TRUE(at::equal(again.frame_latents(f), forward[f])) << "frame " << f;
  EXPECT_FALSE(at::equal(forward[0], forward[11])) << "different frames must differ";
}

TEST_F(Render, OutsideTheMaskTheLatentsAreTheSources) {
  // Left half edited, right half kept.
  via::io::RgbImage mask(96, 64);
  for (int y = 0; y < 64; ++y)
    for (int x = 0; x < 48; ++x) std::fill_n(mask.pixel(x, y), 3, uint8_t{255});
  via::io::write_png(dir_.file("mask.png"), mask);
  RenderSettings s = small_settings(input_);
  s.mask = dir_.file("mask.png");
  s.finetune = via::adapt::FinetuneMode::Off;
  s.attention = via::adapt::AttentionMode::Own;
  s.mask_feather = 0.5;
  Renderer r(s, dir_.file("work"));
  r.adapt();
  for (int64_t f : {0, 7}) {
    const at::Tensor z = r.frame_latents(f), src = r.source_latents(f);
    // Latent width 16: the mask edge falls in column 8 (the frame is letterboxed
    // by a pixel or two), and feathering (sigma 0.5, radius 2) reaches column 10.
    const int64_t w = z.size(3);
    EXPECT_TRUE(at::allclose(z.slice(3, w / 2 + 3, w), src.slice(3, w / 2 + 3, w), 1e-5, 1e-5))
        << "frame " << f << ": outside the mask the latents must be the source's; per-column max error "
        << (z - src).abs().amax({0, 1, 2});
    EXPECT_GT((z.slice(3, 0, w / 2 - 2) - src.slice(3, 0, w / 2 - 2)).abs().mean().item<double>(), 0.05)
        << "frame " << f << ": inside the mask the edit must change the latents";
  }
}

TEST_F(Render, CommandWritesTheSourcesFramesRateAndAudio) {
  const std::string out = dir_.file("out.mp4");
  const std::string cmd = std::string(std::getenv("VIA_BIN")) + " render --input '" + input_ + "' --output '" + out +
                          "' --model '" + reference_model() + "' --instruction 'turn it green' --workdir '" +
                          dir_.file("w") + "' --long-side 64 --steps 2 --candidates 2 --augment 2 " +
                          "--finetune-steps 2 --group-size 2 --chunk-frames 5 --threads 1";
  const auto r = via::test::run(cmd, dir_);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const auto in = via::io::probe_video(input_), edited = via::io::probe_video(out);
  EXPECT_EQ(edited.frame_count, in.frame_count);
  EXPECT_EQ(edited.frame_rate.num, in.frame_rate.num);
  EXPECT_EQ(edited.frame_rate.den, in.frame_rate.den);
  ASSERT_EQ(edited.audio.size(), 1u);
  EXPECT_NEAR(edited.duration, in.duration, 1.0 / 25);
  EXPECT_TRUE(std::filesystem::exists(dir_.file("w/candidates.png")));
  EXPECT_TRUE(std::filesystem::exists(dir_.file("w/adapter.h5")));
  EXPECT_TRUE(std::filesystem::exists(dir_.file("w/attention_group.h5")));
}

TEST_F(Render, BadSettingsAreOneClearError) {
  const std::string cmd = std::string(std::getenv("VIA_BIN")) + " render --input '" + input_ + "' --output '" +
                          dir_.file("o.mp4") + "' --model '" + reference_model() +
                          "' --instruction ' ' --workdir '" + dir_.file("w") + "'";
  const auto r = via::test::run(cmd, dir_);
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.err.find("--instruction"), std::string::npos) << r.err;
  const auto missing = via::test::run(std::string(std::getenv("VIA_BIN")) + " render --input '" +
                                          dir_.file("nope.mp4") + "' --output o.mp4 --model '" + reference_model() +
                                          "' --instruction x --workdir '" + dir_.file("w2") + "'",
                                      dir_);
  EXPECT_EQ(missing.exit_code, 1);
  EXPECT_NE(missing.err.find("nope.mp4"), std::string::npos) << missing.err;
}

// --scheduler auto runs the class the model folder names (model_index.json
// first), an explicit name overrides it, and a class via does not implement
// is refused when the render starts, naming it.
TEST_F(Render, SchedulerIsTheModelsOwnUnlessGiven) {
  const std::string model = dir_.file("model");
  std::filesystem::copy(reference_model(), model, std::filesystem::copy_options::recursive);
  auto name_scheduler = [&](const std::string& from, const std::string& cls) {
    const std::string path = model + "/model_index.json";
    std::string text = via::test::read_file(path);
    const size_t at = text.find(from);
    ASSERT_NE(at, std::string::npos);
    std::ofstream(path) << text.replace(at, from.size(), cls);
  };
  name_scheduler("EulerAncestralDiscreteScheduler", "DDIMScheduler");
  RenderSettings s = small_settings(input_);
  s.model = model;
  s.scheduler = std::nullopt;  // auto
  EXPECT_EQ(Renderer(s, dir_.file("w1")).scheduler(), via::model::SchedulerKind::Ddim);
  s.scheduler = via::model::SchedulerKind::Euler;
  EXPECT_EQ(Renderer(s, dir_.file("w2")).scheduler(), via::model::SchedulerKind::Euler);
  s.scheduler = std::nullopt;
  name_scheduler("DDIMScheduler", "PNDMScheduler");
  try {
    Renderer r(s, dir_.file("w3"));
    FAIL() << "a model naming PNDMScheduler must be refused";
  } catch (const std::exception& e) {
    EXPECT_NE(std::string(e.what()).find("PNDMScheduler"), std::string::npos) << e.what();
  }
}

// Mistakes found before any compute are one clear line, leave nothing that
// binds the work directory, and the corrected command then renders there.
TEST_F(Render, MistakesAreRefusedBeforeComputeAndTheCorrectedCommandRuns) {
  const std::string bin = std::getenv("VIA_BIN"), work = dir_.file("w");
  auto render = [&](const std::string& input, const std::string& output, const std::string& model,
                    const std::string& extra = "") {
    return via::test::run(bin + " render --input '" + input + "' --output '" + output + "' --model '" + model +
                              "' --instruction 'turn it green' --workdir '" + work +
                              "' --long-side 64 --steps 1 --candidates 1 --augment 1 --finetune off --group-size 2 "
                              "--chunk-frames 12 --threads 1 " + extra,
                          dir_);
  };
  const auto source_before = via::test::read_file(input_);
  struct Case {
    std::string output, model, extra, says;
  };
  const std::vector<Case> cases = {
      {input_, reference_model(), "", "is the input video"},
      {dir_.path(), reference_model(), "", "is a directory"},
      {dir_.file("no/such/folder/o.mp4"), reference_model(), "", "is not a directory"},
      {dir_.file("o.mp4"), dir_.file("no-model"), "", "no-model does not exist"},
      {dir_.file("o.mp4"), reference_model(), "--text-guidance 1e30", "at most 100"},
  };
  for (const Case& c : cases) {
    const auto r = render(input_, c.output, c.model, c.extra);
    EXPECT_NE(r.exit_code, 0) << c.says;
    EXPECT_NE(r.err.find(c.says), std::string::npos) << r.err;
    EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << "one line: " << r.err;
  }
  EXPECT_TRUE(via::test::read_file(input_) == source_before) << "the source must never be overwritten";
  // A model path that exists but holds no model fails when it loads, after the
  // work directory got its settings; nothing was computed, so the corrected
  // command (another model, with or without --resume) takes the directory.
  const auto wrong = render(input_, dir_.file("o.mp4"), dir_.path());
  ASSERT_NE(wrong.exit_code, 0);
  ASSERT_TRUE(std::filesystem::exists(work + "/settings.json"));
  const auto fixed = render(input_, dir_.file("o.mp4"), reference_model());
  EXPECT_EQ(fixed.exit_code, 0) << fixed.err;
  EXPECT_EQ(via::io::probe_video(dir_.file("o.mp4")).frame_count, via::io::probe_video(input_).frame_count);
  // Once something is computed the settings bind: another instruction is refused.
  const auto other = via::test::run(bin + " render --input '" + input_ + "' --output '" + dir_.file("o2.mp4") +
                                        "' --model '" + reference_model() + "' --instruction 'turn it red' --workdir '" +
                                        work + "' --long-side 64 --resume",
                                    dir_);
  EXPECT_NE(other.exit_code, 0);
  EXPECT_NE(other.err.find("other settings"), std::string::npos) << other.err;
}
