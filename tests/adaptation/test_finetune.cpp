// Test-time fine-tuning on the tiny reference model: the tuning set keeps
// pairs aligned and is reproducible; LoRA training lowers the objective on a
// fixed evaluation batch, leaves the base weights bit-identical and is
// deterministic; full mode changes the base weights; settings are checked.
#include "adaptation/finetune.h"

#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <chrono>
#include <cmath>
#include <cstdlib>
#include <iostream>
#include <map>
#include <numeric>
#include <string>

#include "model/pipeline.h"
#include "tests/support/tiny_model.h"

using namespace via;
using via::adapt::FinetuneMode;
using via::adapt::FinetuneOptions;
using via::adapt::LoraAdapter;
using via::adapt::LoraOptions;

namespace {

using test::tiny_model;
using test::tiny_model_dir;

// 32x48 source with structure in every channel, and an "edit" that is a
// pixelwise function of it (so alignment can be checked after warping).
at::Tensor source_image() {
  const at::Tensor y = at::linspace(0, 1, 32).view({1, 1, 32, 1}).expand({1, 1, 32, 48});
  const at::Tensor x = at::linspace(0, 1, 48).view({1, 1, 1, 48}).expand({1, 1, 32, 48});
  return at::cat({(x * 6.0).sin() * 0.4 + 0.5, y, (x * y * 9.0).cos() * 0.5 + 0.5}, 1).contiguous();
}
at::Tensor edit_of(const at::Tensor& source) { return 1.0 - source; }

const adapt::TuningLatents& tuning_latents() {
  static const adapt::TuningLatents data = [] {
    const auto& m = tiny_model();
    const at::Tensor src = source_image();
    const auto pairs = adapt::make_tuning_set(src, edit_of(src), /*count=*/4, /*seed=*/21);
    return adapt::encode_tuning_set(m, pairs, m.encode_instruction("invert the colours"));
  }();
  return data;
}

std::map<std::string, at::Tensor> snapshot(const model::UNet2DConditionModelImpl& unet) {
  std::map<std::string, at::Tensor> out;
  for (const auto& item : unet.named_parameters()) out.emplace(item.key(), item.value().detach().clone());
  return out;
}

double mean(const std::vector<double>& v, size_t from, size_t count) {
  return std::accumulate(v.begin() + static_cast<long>(from), v.begin() + static_cast<long>(from + count), 0.0) /
         static_cast<double>(count);
}

constexpr uint64_t kEvalSeed = 9001;  // the fixed evaluation batch, apart from the training draws
constexpr int64_t kEvalDraws = 12;

}  // namespace

TEST(TuningSet, PairsStayAlignedAndAreReproducible) {
  const at::Tensor src = source_image();
  const auto a = adapt::make_tuning_set(src, edit_of(src), 5, 3);
  const auto b = adapt::make_tuning_set(src, edit_of(src), 5, 3);
  const auto c = adapt::make_tuning_set(src, edit_of(src), 5, 4);
  ASSERT_EQ(a.size(), 5u);
  for (size_t i = 0; i < a.size(); ++i) {
    EXPECT_EQ(a[i].source.sizes(), src.sizes());
    EXPECT_EQ(a[i].edit.sizes(), src.sizes());
    // Same transform on both: bilinear warping is linear, so warp(1 - s) = 1 - warp(s).
    EXPECT_LT((a[i].edit - edit_of(a[i].source)).abs().max().item<double>(), 1e-5) << i;
    EXPECT_TRUE(at::equal(a[i].source, b[i].source) && at::equal(a[i].edit, b[i].edit)) << i;
    EXPECT_FALSE(at::equal(a[i].source, c[i].source)) << i;
    const adapt::AffineParams p = adapt::sample_affine(3, static_cast<int64_t>(i));
    EXPECT_EQ(a[i].transform.rotation_deg, p.rotation_deg);
    EXPECT_EQ(a[i].transform.crop, p.crop);
    EXPECT_GT((a[i].source - src).abs().mean().item<double>(), 1e-3) << "pair " << i << " is not transformed";
  }
  // A longer set starts with the same pairs.
  const auto longer = adapt::make_tuning_set(src, edit_of(src), 7, 3);
  EXPECT_TRUE(at::equal(longer[4].source, a[4].source));

  EXPECT_THROW(adapt::make_tuning_set(src, edit_of(src), -1, 3), std::invalid_argument);
  // None: the root pair alone, as it is.
  const auto alone = adapt::make_tuning_set(src, edit_of(src), 0, 3);
  ASSERT_EQ(alone.size(), 1u);
  EXPECT_TRUE(at::equal(alone[0].source, src) && at::equal(alone[0].edit, edit_of(src)));
  EXPECT_EQ(alone[0].transform.crop, 1.0);
  EXPECT_EQ(alone[0].transform.rotation_deg, 0.0);
  EXPECT_THROW(adapt::make_tuning_set(src, src.narrow(3, 0, 40), 2, 3), std::invalid_argument);
}

TEST(TuningSet, EncodesLatentsAsThePipelineDoes) {
  const auto& m = tiny_model();
  const auto& data = tuning_latents();
  ASSERT_EQ(data.size(), 4);
  EXPECT_EQ(data.source.sizes(), (at::IntArrayRef{4, 4, 8, 12}));
  EXPECT_EQ(data.edit_mean.sizes(), data.source.sizes());
  EXPECT_GT(data.edit_std.min().item<double>(), 0.0);
  EXPECT_DOUBLE_EQ(data.scaling_factor, m.vae()->config().scaling_factor);
  // Conditioning latents are the pipeline's: encode_image (mode, unscaled).
  const at::Tensor src = source_image();
  const auto pairs = adapt::make_tuning_set(src, edit_of(src), 4, 21);
  EXPECT_TRUE(at::equal(data.source.narrow(0, 2, 1), m.encode_image(pairs[2].source)));
}

TEST(TuningSet, LearnsTheEditsOwnLatentWarpedLikeTheImages) {
  const auto& m = tiny_model();
  const at::Tensor src = source_image();
  const at::Tensor latent = m.encode_image(edit_of(src)) * m.vae()->config().scaling_factor + 0.25;
  const auto pairs = adapt::make_tuning_set(src, edit_of(src), 3, 21, latent);
  const auto plain = adapt::make_tuning_set(src, edit_of(src), 3, 21);
  ASSERT_EQ(pairs.size(), 3u);
  for (size_t i = 0; i < pairs.size(); ++i) {
    EXPECT_TRUE(at::equal(pairs[i].source, plain[i].source) && at::equal(pairs[i].edit, plain[i].edit)) << i;
    ASSERT_TRUE(pairs[i].edit_latent.defined()) << i;
    EXPECT_TRUE(at::equal(pairs[i].edit_latent, adapt::apply_affine(latent, pairs[i].transform))) << i;
    EXPECT_GT((pairs[i].edit_latent - latent).abs().mean().item<double>(), 1e-3) << "latent " << i << " not warped";
  }
  const adapt::TuningLatents data = adapt::encode_tuning_set(m, pairs, m.encode_instruction("invert the colours"));
  const at::Tensor want = at::cat({pairs[0].edit_latent, pairs[1].edit_latent, pairs[2].edit_latent}, 0) /
                          m.vae()->config().scaling_factor;
  EXPECT_TRUE(at::allclose(data.edit_mean, want, 1e-6, 1e-6)) << "the latent, not a re-encoding of the image";
  EXPECT_EQ(data.edit_std.abs().max().item<double>(), 0.0);
  EXPECT_THROW(adapt::make_tuning_set(src, edit_of(src), 2, 21, latent.squeeze(0)), std::invalid_argument);
  const auto wrong = adapt::make_tuning_set(src, edit_of(src), 1, 21, latent.narrow(3, 0, 8));
  EXPECT_THROW(adapt::encode_tuning_set(m, wrong, m.encode_instruction("x")), std::invalid_argument);
}

TEST(FinetuneMode, Names) {
  for (auto mode : {FinetuneMode::Lora, FinetuneMode::Full, FinetuneMode::Off})
    EXPECT_EQ(adapt::finetune_mode_from_name(adapt::finetune_mode_name(mode)), mode);
  EXPECT_THROW(adapt::finetune_mode_from_name("partial"), std::invalid_argument);
}

TEST(Finetune, LoraLowersTheLossAndLeavesBaseWeightsBitIdentical) {
  const auto& m = tiny_model();
  auto& unet = *m.unet();
  const auto& data = tuning_latents();
  const auto base = snapshot(unet);
  std::map<std::string, bool> requires_grad_before;
  for (const auto& item : unet.named_parameters()) requires_grad_before[item.key()] = item.value().requires_grad();

  LoraAdapter adapter(unet, LoraOptions{});
  adapt::ScopedLora scoped(adapter, unet);
  FinetuneOptions o;
  o.steps = 60;
  o.learning_rate = 1e-2;  // the tiny model needs a large step to move in few iterations
  o.seed = 5;
  const double before = adapt::evaluate_loss(m, data, kEvalSeed, kEvalDraws);
  std::vector<int64_t> reported;
  const auto t0 = std::chrono::steady_clock::now();
  const adapt::FinetuneResult r =
      adapt::finetune(m, data, o, &adapter, [&](const adapt::StepReport& s) { reported.push_back(s.step); });
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  const double after = adapt::evaluate_loss(m, data, kEvalSeed, kEvalDraws);
  std::cout << "[lora] eval loss " << before << " -> " << after << "; training loss first 10 " << mean(r.losses, 0, 10)
            << ", last 10 " << mean(r.losses, 50, 10) << "; " << o.steps << " steps in " << seconds << " s, "
            << adapter.numel() << " adapter scalars\n";

  EXPECT_LT(after, 0.9 * before) << "fine-tuning must lower the objective on the fixed evaluation batch";
  ASSERT_EQ(r.losses.size(), 60u);
  EXPECT_EQ(reported.size(), 60u);
  EXPECT_EQ(reported.back(), 59);
  EXPECT_EQ(r.weights.size(), adapter.named_tensors().size());
  for (const auto& [name, t] : adapter.named_tensors()) EXPECT_TRUE(at::equal(r.weights.at(name), t)) << name;

  // Base weights: bit-identical, requires_grad as it was.
  for (const auto& item : unet.named_parameters()) {
    EXPECT_TRUE(at::equal(item.value(), base.at(item.key()))) << item.key();
    EXPECT_EQ(item.value().requires_grad(), requires_grad_before.at(item.key())) << item.key();
    EXPECT_FALSE(item.value().grad().defined()) << item.key();
  }
  EXPECT_FALSE(unet.is_training());
}

TEST(Finetune, IsDeterministic) {
  const auto& m = tiny_model();
  auto& unet = *m.unet();
  FinetuneOptions o;
  o.steps = 4;
  o.batch_size = 2;
  o.learning_rate = 1e-3;
  o.seed = 77;
  std::vector<adapt::FinetuneResult> runs;
  for (int i = 0; i < 2; ++i) {
    LoraAdapter adapter(unet, LoraOptions{});
    adapt::ScopedLora scoped(adapter, unet);
    runs.push_back(adapt::finetune(m, tuning_latents(), o, &adapter));
  }
  EXPECT_EQ(runs[0].losses, runs[1].losses);
  for (const auto& [name, t] : runs[0].weights) EXPECT_TRUE(at::equal(t, runs[1].weights.at(name))) << name;
  EXPECT_EQ(adapt::evaluate_loss(m, tuning_latents(), kEvalSeed, 3),
            adapt::evaluate_loss(m, tuning_latents(), kEvalSeed, 3));
}

TEST(Finetune, FullModeChangesBaseWeights) {
  // Its own model instance: full mode writes the weights.
  const model::InstructPix2Pix m(tiny_model_dir());
  auto& unet = *m.unet();
  const auto base = snapshot(unet);
  FinetuneOptions o;
  o.mode = FinetuneMode::Full;
  o.steps = 5;
  o.learning_rate = 1e-3;
  const double before = adapt::evaluate_loss(m, tuning_latents(), kEvalSeed, kEvalDraws);
  const adapt::FinetuneResult r = adapt::finetune(m, tuning_latents(), o, nullptr);
  const double after = adapt::evaluate_loss(m, tuning_latents(), kEvalSeed, kEvalDraws);
  std::cout << "[full] eval loss " << before << " -> " << after << " in " << r.seconds << " s\n";
  int changed = 0;
  for (const auto& item : unet.named_parameters()) changed += at::equal(item.value(), base.at(item.key())) ? 0 : 1;
  EXPECT_GT(changed, static_cast<int>(base.size()) / 2);
  EXPECT_EQ(r.weights.size(), base.size());
  EXPECT_TRUE(at::equal(r.weights.at("conv_in.weight"), unet.named_parameters()["conv_in.weight"]));

  // The state applies to another instance and reproduces its output.
  const model::InstructPix2Pix fresh(tiny_model_dir());
  adapt::load_unet_state(*fresh.unet(), r.weights);
  EXPECT_EQ(adapt::evaluate_loss(fresh, tuning_latents(), kEvalSeed, 3),
            adapt::evaluate_loss(m, tuning_latents(), kEvalSeed, 3));
  auto bad = r.weights;
  bad.erase("conv_in.weight");
  EXPECT_THROW(adapt::load_unet_state(*fresh.unet(), bad), std::invalid_argument);
}

TEST(Finetune, RefusesInconsistentSettings) {
  const auto& m = tiny_model();
  auto& unet = *m.unet();
  FinetuneOptions o;
  o.steps = 1;
  EXPECT_THROW(adapt::finetune(m, tuning_latents(), o, nullptr), std::invalid_argument);  // lora without adapter
  LoraAdapter detached(unet, LoraOptions{});
  EXPECT_THROW(adapt::finetune(m, tuning_latents(), o, &detached), std::invalid_argument);
  o.mode = FinetuneMode::Full;
  EXPECT_THROW(adapt::finetune(m, tuning_latents(), o, &detached), std::invalid_argument);
  o.mode = FinetuneMode::Lora;
  o.conditioning_dropout = 0.5;
  {
    adapt::ScopedLora scoped(detached, unet);
    EXPECT_THROW(adapt::finetune(m, tuning_latents(), o, &detached), std::invalid_argument);
  }
  o.mode = FinetuneMode::Off;
  const adapt::FinetuneResult r = adapt::finetune(m, tuning_latents(), o, nullptr);
  EXPECT_TRUE(r.losses.empty());
  EXPECT_TRUE(r.weights.empty());
}

TEST(Finetune, LoraTrainsABfloat16Model) {
  // The renderer's reduced-precision path: bf16 activations, fp32 adapter and loss.
  const model::InstructPix2Pix m(tiny_model_dir(), model::ModelOptions{at::kBFloat16, c10::Device(c10::kCPU)});
  auto& unet = *m.unet();
  const at::Tensor src = source_image();
  const auto data = adapt::encode_tuning_set(m, adapt::make_tuning_set(src, edit_of(src), 2, 1),
                                             m.encode_instruction("invert the colours"));
  LoraAdapter adapter(unet, LoraOptions{});
  adapt::ScopedLora scoped(adapter, unet);
  FinetuneOptions o;
  o.steps = 3;
  o.learning_rate = 1e-3;
  const adapt::FinetuneResult r = adapt::finetune(m, data, o, &adapter);
  ASSERT_EQ(r.losses.size(), 3u);
  for (double l : r.losses) EXPECT_TRUE(std::isfinite(l));
  for (const auto& [name, t] : adapter.named_tensors()) EXPECT_EQ(t.scalar_type(), at::kFloat) << name;
  double moved = 0.0;
  for (const auto& [name, t] : adapter.named_tensors())
    if (name.find("lora_B") != std::string::npos) moved += t.abs().sum().item<double>();
  EXPECT_GT(moved, 0.0);
}
