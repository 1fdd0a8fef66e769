// AutoencoderKL: parity with the reference (diffusers) on the tiny model's
// VAE (encoder mean/logvar, sampling, decoder) in fp32 and bf16, the
// full-size parameter names and shapes, and config handling.
#include "model/vae.h"

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <string>

#include "model/json_file.h"
#include "test_unet_support.h"

namespace via::model::testing {
namespace {

std::string tiny_vae_dir() { return reference_data() + "/tiny_ip2p/vae"; }

class VaeParity : public ::testing::Test {
 protected:
  at::Tensor x_ = golden("vae.safetensors", "x");  // [1, 3, 32, 48] in [-1, 1]
  at::Tensor mean_ = golden("vae.safetensors", "latent_mean");
  at::Tensor logvar_ = golden("vae.safetensors", "latent_logvar");
  at::Tensor std_ = golden("vae.safetensors", "latent_std");
  at::Tensor noise_ = golden("vae.safetensors", "sample_noise");
  at::Tensor sample_ = golden("vae.safetensors", "latent_sample");
  at::Tensor z_ = golden("vae.safetensors", "z");
  at::Tensor decoded_ = golden("vae.safetensors", "decoded");
};

// fp32: within 2e-5 of each output's scale (measured: about 1e-6).
TEST_F(VaeParity, Fp32MatchesReference) {
  auto vae = load_component<AutoencoderKL>(tiny_vae_dir(), at::kFloat, at::kCPU);
  at::NoGradGuard no_grad;
  const LatentDistribution dist = vae->encode(x_);
  ASSERT_EQ(dist.mean.sizes(), mean_.sizes());
  EXPECT_LE(max_abs_error(dist.mean, mean_), 2e-5 * max_abs(mean_));
  EXPECT_LE(max_abs_error(dist.logvar, logvar_), 2e-5 * max_abs(logvar_));
  EXPECT_LE(max_abs_error(dist.std(), std_), 2e-5 * max_abs(std_));
  EXPECT_LE(max_abs_error(dist.sample(noise_), sample_), 2e-5 * max_abs(sample_));

  const at::Tensor decoded = vae->decode(z_);
  ASSERT_EQ(decoded.sizes(), decoded_.sizes());
  EXPECT_LE(max_abs_error(decoded, decoded_), 2e-5 * max_abs(decoded_));
  EXPECT_DOUBLE_EQ(vae->config().scaling_factor, 0.18215);
  EXPECT_EQ(vae->downsampling_factor(), 4);
}

// bf16: within 4% of the output scale at the worst element, 0.8% on average
// (measured: 1.8% / 0.4%).
TEST_F(VaeParity, Bf16CloseToReference) {
  auto vae = load_component<AutoencoderKL>(tiny_vae_dir(), at::kBFloat16, at::kCPU);
  at::NoGradGuard no_grad;
  const LatentDistribution dist = vae->encode(x_);
  EXPECT_EQ(dist.mean.scalar_type(), at::kBFloat16);
  auto check = [](const at::Tensor& ours, const at::Tensor& ref, const char* what) {
    const at::Tensor err = (ours.to(at::kFloat) - ref).abs();
    EXPECT_LE(err.max().item<double>(), 0.04 * max_abs(ref)) << what;
    EXPECT_LE(err.mean().item<double>(), 0.008 * max_abs(ref)) << what;
  };
  check(dist.mean, mean_, "mean");
  check(dist.logvar, logvar_, "logvar");
  check(vae->decode(z_), decoded_, "decoded");
}

TEST_F(VaeParity, RejectsBadInputShapes) {
  auto vae = load_component<AutoencoderKL>(tiny_vae_dir(), at::kFloat, at::kCPU);
  at::NoGradGuard no_grad;
  EXPECT_THROW(vae->encode(x_.narrow(3, 0, 46)), c10::Error);  // not a multiple of 4
  EXPECT_THROW(vae->encode(x_.narrow(1, 0, 2)), c10::Error);   // 2 channels
  EXPECT_THROW(vae->decode(z_.narrow(1, 0, 3)), c10::Error);
  EXPECT_THROW(vae->encode(x_).sample(noise_.narrow(3, 0, 4)), c10::Error);
}

// The full-size SD VAE built from its published config has exactly the
// reference's parameter names and shapes (built shape-only: no memory).
TEST(VaeFullSize, NamesAndShapesMatchReference) {
  const VaeConfig c = VaeConfig::from_file(reference_data() + "/full_size/vae_config.json");
  EXPECT_EQ(c.block_out_channels, (std::vector<int64_t>{128, 256, 512, 512}));
  AutoencoderKL vae(c, ParamInit{ParamInit::Fill::ShapeOnly});
  const auto reference = read_param_lines(reference_data() + "/full_size/vae_params.txt");
  ASSERT_GT(reference.size(), 200u);
  expect_same_lines(param_lines(*vae), reference);
  EXPECT_EQ(vae->downsampling_factor(), 8);
}

TEST(VaeConfig, UnsupportedSettingsAreNamed) {
  const nlohmann::json base = read_json_file(tiny_vae_dir() + "/config.json");
  auto expect_error = [&](const std::string& key, const nlohmann::json& value, const std::string& needle) {
    expect_config_error<VaeConfig>(base, "vae/config.json", key, value, needle);
  };
  expect_error("down_block_types", nlohmann::json::array({"DownEncoderBlock2D", "AttnDownEncoderBlock2D", "DownEncoderBlock2D"}),
               "AttnDownEncoderBlock2D");
  expect_error("up_block_types", nlohmann::json::array({"UpDecoderBlock2D"}), "up_block_types");
  expect_error("latents_mean", nlohmann::json::array({0.1, 0.2, 0.3, 0.4}), "latents_mean");
  expect_error("act_fn", "tanh", "tanh");
  expect_error("scaling_factor", "big", "scaling_factor");

  nlohmann::json config = base;
  config["shift_factor"] = 0.5;
  config["use_quant_conv"] = false;
  config["mid_block_add_attention"] = false;
  const VaeConfig c = VaeConfig::from_json(config, "vae/config.json");
  ASSERT_TRUE(c.shift_factor.has_value());
  EXPECT_DOUBLE_EQ(*c.shift_factor, 0.5);
  AutoencoderKL vae(c, ParamInit{ParamInit::Fill::ShapeOnly});
  const auto names = vae->named_parameters();
  EXPECT_EQ(names.find("quant_conv.weight"), nullptr);
  EXPECT_NE(names.find("post_quant_conv.weight"), nullptr);
  EXPECT_EQ(names.find("encoder.mid_block.attentions.0.to_q.weight"), nullptr);
}

// Random-initialised VAE runs end to end and keeps shapes.
TEST(VaeInit, RandomModelRoundTripShapes) {
  at::manual_seed(3);
  AutoencoderKL vae(VaeConfig::from_file(tiny_vae_dir() + "/config.json"));
  at::NoGradGuard no_grad;
  const LatentDistribution dist = vae->encode(at::rand({2, 3, 16, 24}) * 2 - 1);
  EXPECT_EQ(dist.mean.sizes(), (at::IntArrayRef{2, 4, 4, 6}));
  EXPECT_EQ(vae->decode(dist.mean).sizes(), (at::IntArrayRef{2, 3, 16, 24}));
}

}  // namespace
}  // namespace via::model::testing
