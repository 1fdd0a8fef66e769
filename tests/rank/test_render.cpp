// The one-process render: range independence, masks, and the CLI end to end.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <vector>
#include <filesystem>
#include <fstream>

#include "io/checkpoint.h"
#include "io/image.h"
#include "io/video_reader.h"
#include "rank/group_store.h"
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

namespace {

// The chunk latents a renderer wrote, frame by frame.
std::vector<at::Tensor> chunk_latents(const Renderer& r, int64_t chunk) {
  const via::io::CheckpointReader file(r.workdir().chunk_latents(chunk));
  std::vector<at::Tensor> out;
  const auto [first, count] = r.chunk_frames(chunk);
  for (int64_t f = first; f < first + count; ++f) out.push_back(file.read("frame_" + std::to_string(f)));
  return out;
}

}  // namespace

// --batch-frames changes how many frames go through one UNet call, never a
// frame: a chunk rendered 3 frames at a time, with a mask (its noise is per
// frame too), equals the same chunk rendered one frame at a time, bit for
// bit. The second render reads the adaptation, group included, from the
// files the first wrote (the per-step store): a render with the stored group
// equals one with the group it gathered.
TEST_F(Render, BatchedFramesAndTheStoredGroupChangeNoFrame) {
  via::io::RgbImage mask(96, 64);
  for (int y = 0; y < 64; ++y)
    for (int x = 0; x < 60; ++x) std::fill_n(mask.pixel(x, y), 3, uint8_t{255});
  via::io::write_png(dir_.file("mask.png"), mask);
  RenderSettings s = small_settings(input_);
  s.mask = dir_.file("mask.png");
  s.batch_frames = 1;
  Renderer one(s, dir_.file("one"));
  EXPECT_EQ(one.batch_frames(), 1);
  one.adapt();
  one.render_chunk(0);
  std::filesystem::create_directories(dir_.file("three"));
  for (const char* file : {"root_pair.h5", "adapter.h5", "attention_group.h5"})
    if (std::filesystem::exists(dir_.file(std::string("one/") + file)))
      std::filesystem::copy_file(dir_.file(std::string("one/") + file), dir_.file(std::string("three/") + file));
  s.batch_frames = 3;
  std::vector<std::string> lines;
  Renderer three(s, dir_.file("three"), [&](const std::string& line) { lines.push_back(line); });
  EXPECT_EQ(three.batch_frames(), 3);
  three.adapt();
  EXPECT_NE(std::find(lines.begin(), lines.end(), "gather: loaded the attention group of an earlier attempt"),
            lines.end());
  const auto named = one.group().to_named(), loaded = three.group().to_named();
  ASSERT_EQ(named.size(), loaded.size());
  for (const auto& [name, t] : named) EXPECT_TRUE(at::equal(loaded.at(name), t)) << name;
  EXPECT_EQ(three.render_chunk(0), 5);  // frames 0-4: batches of 3 and 2
  const auto a = chunk_latents(one, 0), b = chunk_latents(three, 0);
  ASSERT_EQ(a.size(), b.size());
  for (size_t i = 0; i < a.size(); ++i)
    EXPECT_TRUE(at::equal(a[i], b[i])) << "frame " << i << ": max " << (a[i] - b[i]).abs().max().item<double>();
}

// The memory plan's group is the group the gather makes, to the byte: per
// step, for cross-attention (stored once), in all; and the swap holds one
// step's group (with cross-attention's) at a time, as the plan says.
TEST_F(Render, MemoryPlanFiguresAreTheGroupsMeasuredSizes) {
  for (const auto& [layers, swap_steps] : {std::pair{via::adapt::LayerSet::Both, int64_t{-1}},
                                           std::pair{via::adapt::LayerSet::Self, int64_t{1}}}) {
    RenderSettings s = small_settings(input_);
    s.finetune = via::adapt::FinetuneMode::Off;
    s.swap_layers = layers;
    s.swap_steps = swap_steps;
    s.group_size = 3;
    const std::string work = dir_.file("w" + std::to_string(swap_steps));
    Renderer r(s, work);
    r.adapt();
    const via::rank::MemoryPlan& plan = r.memory_plan();
    const via::adapt::AttentionGroup& group = r.group();
    EXPECT_EQ(plan.key_frames, 3);
    EXPECT_EQ(plan.steps, s.resolved_swap_steps());
    EXPECT_EQ(plan.group_bytes(), group.bytes());
    for (int64_t step = 0; step < plan.steps; ++step) EXPECT_EQ(plan.step_bytes, group.step_bytes(step)) << step;
    EXPECT_EQ(plan.cross_bytes, group.step_bytes(via::adapt::AttentionGroup::kCrossStep));
    EXPECT_EQ(plan.cross_bytes > 0, layers == via::adapt::LayerSet::Both);
    EXPECT_GT(plan.step_bytes, 0);
    r.frame_latents(4);
    EXPECT_EQ(group.peak_device_bytes(), plan.device_group_bytes());
    EXPECT_EQ(plan.device_group_bytes(), plan.step_bytes + plan.cross_bytes);
    EXPECT_EQ(plan.host_bytes(), plan.group_bytes() + plan.step_bytes);
    EXPECT_EQ(plan.batch_frames, 1) << "auto on the CPU";
  }
}

// A group that cannot fit the memory given is refused when the model is
// loaded, before anything is denoised: one line naming the need, the limit
// and the settings that would fit; the corrected command then renders.
TEST_F(Render, AGroupThatCannotFitIsRefusedBeforeAnyDenoising) {
  RenderSettings s = small_settings(input_);
  s.steps = 3;
  const via::rank::MemoryPlan plan = Renderer(s, dir_.file("probe")).memory_plan();
  // Just too little for the group and a step in transit; one step fewer fits.
  const double mib = static_cast<double>(plan.host_bytes() - 1) / (1024.0 * 1024.0);
  s.host_memory = mib;
  try {
    Renderer r(s, dir_.file("direct"));
    FAIL() << "a group larger than --host-memory must be refused";
  } catch (const via::rank::SettingsError& e) {
    EXPECT_NE(std::string(e.what()).find("--swap-steps 2"), std::string::npos) << e.what();
  }
  const std::string bin = std::getenv("VIA_BIN"), work = dir_.file("w");
  char limit[32];
  std::snprintf(limit, sizeof(limit), "%.9f", mib);
  const std::string cmd = bin + " render --input '" + input_ + "' --output '" + dir_.file("o.mp4") + "' --model '" +
                          reference_model() + "' --instruction 'make it a pencil sketch' --workdir '" + work +
                          "' --long-side 64 --steps 3 --candidates 2 --augment 2 --finetune-steps 2 --group-size 2 "
                          "--chunk-frames 5 --seed 11 --threads 1 --host-memory " + limit;
  const auto refused = via::test::run(cmd, dir_);
  EXPECT_EQ(refused.exit_code, 1) << refused.err;
  size_t needs = 0;
  for (size_t at = refused.err.find("needs"); at != std::string::npos; at = refused.err.find("needs", at + 1)) ++needs;
  EXPECT_EQ(needs, 1u) << "one line: " << refused.err;
  for (const char* says : {"error", "attention group needs", "of host memory per rank", "--host-memory",
                           "--swap-steps 2", "--swap-layers cross"})
    EXPECT_NE(refused.err.find(says), std::string::npos) << says << " in: " << refused.err;
  for (const char* file : {"candidates.png", "root_pair.h5", "adapter.h5", "attention_group.h5"})
    EXPECT_FALSE(std::filesystem::exists(work + "/" + file)) << file << ": nothing may be computed";
  const auto fixed = via::test::run(cmd + " --swap-steps 2", dir_);
  EXPECT_EQ(fixed.exit_code, 0) << fixed.err;
  EXPECT_NE(fixed.err.find("memory plan: attention group"), std::string::npos) << fixed.err;
}

// A work directory whose group is in the earlier format (cross-attention per
// step and key frame, no group_format) is not trusted: a resume gathers it
// again (the same group: the gather is deterministic), and a process that
// only loads the adaptation says what to do.
TEST_F(Render, AGroupInTheEarlierFormatIsGatheredAgain) {
  RenderSettings s = small_settings(input_);
  s.finetune = via::adapt::FinetuneMode::Off;
  const std::string work = dir_.file("work");
  std::map<std::string, at::Tensor> gathered;
  {
    Renderer r(s, work);
    r.adapt();
    gathered = r.group().to_named();
    // The earlier format's file: the same entries, without group_format.
    via::io::save_checkpoint(r.workdir().group(), gathered, {{"key_frames", std::string("2, 8")}});
  }
  try {
    Renderer r(s, work);
    r.load_adaptation();
    FAIL() << "an earlier format's group must not be used";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("format 1"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("--resume"), std::string::npos) << e.what();
  }
  std::vector<std::string> lines;
  Renderer again(s, work, [&](const std::string& line) { lines.push_back(line); });
  again.adapt();
  EXPECT_NE(std::find_if(lines.begin(), lines.end(),
                         [](const std::string& l) { return l.find("gathering it again") != std::string::npos; }),
            lines.end());
  const auto regathered = again.group().to_named();
  ASSERT_EQ(regathered.size(), gathered.size());
  for (const auto& [name, t] : gathered) EXPECT_TRUE(at::equal(regathered.at(name), t)) << name;
  EXPECT_EQ(via::rank::group_file_problem(again.workdir().group()), "");
}
