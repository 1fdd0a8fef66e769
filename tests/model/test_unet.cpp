// UNet2DConditionModel: parity with the reference (diffusers) on the tiny
// InstructPix2Pix model in fp32 and bf16, the full-size parameter names and
// shapes, config handling and input forms.
#include "model/unet.h"

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <cmath>
#include <filesystem>
#include <string>

#include "model/json_file.h"
#include "test_unet_support.h"

namespace via::model::testing {
namespace {

std::string tiny_unet_dir() { return reference_data() + "/tiny_ip2p/unet"; }

class UNetParity : public ::testing::Test {
 protected:
  at::Tensor sample_ = golden("unet.safetensors", "sample");                  // [3, 8, 8, 12]
  at::Tensor timestep_ = golden("unet.safetensors", "timestep");              // [1] fp32, 946.42...
  at::Tensor timestep_1_ = golden("unet.safetensors", "timestep_1");          // [1] int64, 1
  at::Tensor context_ = golden("unet.safetensors", "encoder_hidden_states");  // [3, 77, 32]
  at::Tensor expected_ = golden("unet.safetensors", "output");
  at::Tensor expected_t1_ = golden("unet.safetensors", "output_t1");
};

// fp32: the same arithmetic as the reference up to summation order; the
// tolerance is 2e-5 of the output's scale, max |output| ~ 2 (measured: 6e-7).
TEST_F(UNetParity, Fp32MatchesReference) {
  auto unet = load_component<UNet2DConditionModel>(tiny_unet_dir(), at::kFloat, at::kCPU);
  at::NoGradGuard no_grad;
  const at::Tensor out = unet->forward(sample_, timestep_, context_);
  ASSERT_EQ(out.sizes(), expected_.sizes());
  EXPECT_EQ(out.scalar_type(), at::kFloat);
  const double tol = 2e-5 * max_abs(expected_);
  EXPECT_LE(max_abs_error(out, expected_), tol);

  const at::Tensor out_t1 = unet->forward(sample_, timestep_1_, context_);
  EXPECT_LE(max_abs_error(out_t1, expected_t1_), 2e-5 * max_abs(expected_t1_));
  // The timestep matters, so the comparison above could fail.
  EXPECT_GT(max_abs_error(out, out_t1), 100 * tol);
}

// bf16 weights and activations (8-bit mantissa): within 4% of the output
// scale at the worst element and 0.8% on average (measured: 0.9% / 0.2%).
TEST_F(UNetParity, Bf16CloseToReference) {
  auto unet = load_component<UNet2DConditionModel>(tiny_unet_dir(), at::kBFloat16, at::kCPU);
  EXPECT_EQ(unet->dtype(), at::kBFloat16);
  at::NoGradGuard no_grad;
  const at::Tensor out = unet->forward(sample_, timestep_, context_);
  EXPECT_EQ(out.scalar_type(), at::kBFloat16);
  const double scale = max_abs(expected_);
  const at::Tensor err = (out.to(at::kFloat) - expected_).abs();
  EXPECT_LE(err.max().item<double>(), 0.04 * scale);
  EXPECT_LE(err.mean().item<double>(), 0.008 * scale);
}

// A scalar timestep, a [1] tensor broadcast over the batch and a per-item [B]
// tensor all mean the same thing; a double overload too.
TEST_F(UNetParity, TimestepForms) {
  auto unet = load_component<UNet2DConditionModel>(tiny_unet_dir(), at::kFloat, at::kCPU);
  at::NoGradGuard no_grad;
  const at::Tensor ref = unet->forward(sample_, timestep_, context_);
  const double t = timestep_.item<double>();
  EXPECT_TRUE(at::equal(unet->forward(sample_, timestep_.reshape({}), context_), ref));
  EXPECT_TRUE(at::equal(unet->forward(sample_, timestep_.expand({3}).contiguous(), context_), ref));
  EXPECT_LE(max_abs_error(unet->forward(sample_, t, context_), ref), 1e-6);
  // Per-item timesteps: item 1 at t=1 equals the t=1 golden's item 1.
  const at::Tensor mixed = at::tensor({t, 1.0, t}, at::kDouble);
  const at::Tensor out = unet->forward(sample_, mixed, context_);
  EXPECT_LE(max_abs_error(out[1], expected_t1_[1]), 2e-5 * max_abs(expected_t1_));
  EXPECT_LE(max_abs_error(out[0], expected_[0]), 2e-5 * max_abs(expected_));
  EXPECT_THROW(unet->forward(sample_, at::zeros({2}), context_), c10::Error);
}

// Sizes not divisible by the upsampling factor: each upsampler targets its
// skip connection's size (diffusers' forward_upsample_size).
TEST_F(UNetParity, OddLatentSize) {
  auto unet = load_component<UNet2DConditionModel>(tiny_unet_dir(), at::kFloat, at::kCPU);
  at::NoGradGuard no_grad;
  const at::Tensor sample = sample_.narrow(2, 0, 7).narrow(3, 0, 11);
  const at::Tensor out = unet->forward(sample, timestep_, context_);
  EXPECT_EQ(out.sizes(), (at::IntArrayRef{3, 4, 7, 11}));
  EXPECT_TRUE(at::isfinite(out).all().item<bool>());
}

// Fine-tuning backpropagates through the whole UNet, attention included.
TEST_F(UNetParity, GradientsReachEveryParameter) {
  auto unet = load_component<UNet2DConditionModel>(tiny_unet_dir(), at::kFloat, at::kCPU);
  unet->train();
  unet->forward(sample_, timestep_, context_).square().mean().backward();
  for (const auto& item : unet->named_parameters()) {
    ASSERT_TRUE(item.value().grad().defined()) << item.key();
    EXPECT_GT(item.value().grad().abs().sum().item<double>(), 0.0) << item.key();
  }
}

TEST(UNetConfig, ParsesTheFullSizeConfig) {
  const UNetConfig c = UNetConfig::from_file(reference_data() + "/full_size/unet_config.json");
  EXPECT_EQ(c.in_channels, 8);
  EXPECT_EQ(c.block_out_channels, (std::vector<int64_t>{320, 640, 1280, 1280}));
  EXPECT_EQ(c.heads, (std::vector<int64_t>{8, 8, 8, 8}));
  EXPECT_EQ(c.cross_attention_dim, (std::vector<int64_t>{768, 768, 768, 768}));
  EXPECT_EQ(c.layers_per_block, (std::vector<int64_t>{2, 2, 2, 2}));
  EXPECT_EQ(c.mid_block_type, "UNetMidBlock2DCrossAttn");
  EXPECT_TRUE(c.flip_sin_to_cos);
}

// The full-size InstructPix2Pix UNet built from its published config has
// exactly the parameters (names and shapes) the reference creates from it.
// Built shape-only (meta tensors): no memory (bench/model_bench.cpp times it).
TEST(UNetFullSize, NamesAndShapesMatchReference) {
  const UNetConfig c = UNetConfig::from_file(reference_data() + "/full_size/unet_config.json");
  UNet2DConditionModel unet(c, ParamInit{ParamInit::Fill::ShapeOnly});
  const auto ours = param_lines(*unet);
  const auto reference = read_param_lines(reference_data() + "/full_size/unet_params.txt");
  ASSERT_GT(reference.size(), 600u);
  expect_same_lines(ours, reference);
  int64_t numel = 0;
  for (const auto& p : unet->parameters()) numel += p.numel();
  EXPECT_NEAR(static_cast<double>(numel), 859.5e6, 1e6);  // the published ~860M
  EXPECT_EQ(unet->attention_layers().size(), 32u);        // 16 transformer blocks x (attn1, attn2)
}

// Unsupported settings are one ModelError that names the setting and value.
TEST(UNetConfig, UnsupportedSettingsAreNamed) {
  const nlohmann::json base = read_json_file(tiny_unet_dir() + "/config.json");
  auto expect_error = [&](const std::string& key, const nlohmann::json& value, const std::string& needle) {
    expect_config_error<UNetConfig>(base, "unet/config.json", key, value, needle);
  };
  expect_error("class_embed_type", "timestep", "class_embed_type = \"timestep\"");
  expect_error("time_embedding_type", "fourier", "time_embedding_type = \"fourier\"");
  expect_error("resnet_time_scale_shift", "scale_shift", "scale_shift");
  expect_error("addition_embed_type", "text", "addition_embed_type");
  expect_error("act_fn", "tanh", "tanh");
  expect_error("up_block_types", nlohmann::json::array({"UpBlock2D", "AttnUpBlock2D"}), "AttnUpBlock2D");
  expect_error("mid_block_type", "UNetMidBlock2DSimpleCrossAttn", "UNetMidBlock2DSimpleCrossAttn");
  expect_error("transformer_layers_per_block", nlohmann::json::array({1, 2, 3}), "transformer_layers_per_block");
  expect_error("norm_num_groups", nullptr, "norm_num_groups");
  expect_error("in_channels", "eight", "in_channels");
}

// Per-block lists and num_attention_heads are honoured; channel counts that
// do not divide into groups or heads are errors.
TEST(UNetConfig, PerBlockSettings) {
  nlohmann::json config = read_json_file(tiny_unet_dir() + "/config.json");
  config["attention_head_dim"] = nlohmann::json::array({4, 2});
  config["layers_per_block"] = nlohmann::json::array({1, 2});
  config["transformer_layers_per_block"] = nlohmann::json::array({2, 1});
  config["use_linear_projection"] = true;
  const UNetConfig c = UNetConfig::from_json(config, "config");
  EXPECT_EQ(c.heads, (std::vector<int64_t>{4, 2}));
  UNet2DConditionModel unet(c, ParamInit{ParamInit::Fill::ShapeOnly});
  const auto names = unet->named_parameters();
  EXPECT_NE(names.find("down_blocks.0.attentions.0.transformer_blocks.1.attn1.to_q.weight"), nullptr);
  EXPECT_EQ(names.find("down_blocks.0.resnets.1.conv1.weight"), nullptr);  // 1 layer in block 0
  EXPECT_EQ(names["down_blocks.0.attentions.0.proj_in.weight"].sizes(), (at::IntArrayRef{32, 32}));  // linear
  EXPECT_EQ(names["up_blocks.1.attentions.1.proj_in.weight"].dim(), 2);
  EXPECT_EQ(names.find("up_blocks.1.attentions.2.proj_in.weight"), nullptr);
  // up_blocks.1 mirrors down block 0 (one layer + 1 = two resnets)
  EXPECT_EQ(names.find("up_blocks.1.resnets.2.conv1.weight"), nullptr);

  config["num_attention_heads"] = 3;  // 32 channels do not split into 3 heads
  EXPECT_THROW(UNet2DConditionModel(UNetConfig::from_json(config, "config"), ParamInit{ParamInit::Fill::ShapeOnly}),
               ModelError);
}

// A folder with only the fp16 checkpoint loads (converted to fp32) and stays
// within fp16 weight rounding of the reference.
TEST_F(UNetParity, LoadsFp16Checkpoint) {
  const std::string tmp = ::testing::TempDir() + "via_unet_fp16";
  std::filesystem::create_directories(tmp);
  for (const char* file : {"config.json", "diffusion_pytorch_model.fp16.safetensors"})
    std::filesystem::copy_file(tiny_unet_dir() + "/" + file, tmp + "/" + file,
                               std::filesystem::copy_options::overwrite_existing);
  auto unet = load_component<UNet2DConditionModel>(tmp, at::kFloat, at::kCPU);
  std::filesystem::remove_all(tmp);
  EXPECT_EQ(unet->dtype(), at::kFloat);
  at::NoGradGuard no_grad;
  const at::Tensor out = unet->forward(sample_, timestep_, context_);
  EXPECT_LE(max_abs_error(out, expected_), 2.5e-3 * max_abs(expected_));  // measured 8e-4 (reference: same)
}

// Bad model folders: missing config, weights that do not fit the config.
TEST(UNetLoad, BadFoldersAreModelErrors) {
  EXPECT_THROW(load_component<UNet2DConditionModel>(reference_data() + "/no_such_dir", at::kFloat, at::kCPU),
               ModelError);
  // The VAE's weights do not fit the UNet config.
  const std::string tmp = ::testing::TempDir() + "via_unet_mismatch";
  std::filesystem::create_directories(tmp);
  std::filesystem::copy_file(tiny_unet_dir() + "/config.json", tmp + "/config.json",
                             std::filesystem::copy_options::overwrite_existing);
  std::filesystem::copy_file(reference_data() + "/tiny_ip2p/vae/diffusion_pytorch_model.safetensors",
                             tmp + "/diffusion_pytorch_model.safetensors",
                             std::filesystem::copy_options::overwrite_existing);
  try {
    load_component<UNet2DConditionModel>(tmp, at::kFloat, at::kCPU);
    ADD_FAILURE() << "mismatched weights were accepted";
  } catch (const ModelError& e) {
    EXPECT_NE(std::string(e.what()).find("conv_in.weight"), std::string::npos) << e.what();
  }
  std::filesystem::remove_all(tmp);
}

// Random initialisation is seeded by the global generator and reproducible.
TEST(UNetInit, RandomInitIsSeeded) {
  const UNetConfig c = UNetConfig::from_file(tiny_unet_dir() + "/config.json");
  at::manual_seed(5);
  UNet2DConditionModel a(c);
  at::manual_seed(5);
  UNet2DConditionModel b(c);
  const auto pa = a->named_parameters();
  const auto pb = b->named_parameters();
  ASSERT_EQ(pa.size(), pb.size());
  for (const auto& item : pa) EXPECT_TRUE(at::equal(item.value(), pb[item.key()])) << item.key();
  EXPECT_TRUE(at::equal(pa["down_blocks.0.attentions.0.norm.weight"], at::ones({32})));
  EXPECT_LE(max_abs(pa["conv_in.weight"]), 1.0 / std::sqrt(8.0 * 9.0) + 1e-7);
}

}  // namespace
}  // namespace via::model::testing
