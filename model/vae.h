#pragma once
// AutoencoderKL (diffusers models/autoencoders/autoencoder_kl.py, vae.py),
// built from the model's `vae/config.json`. Its attention is plain
// self-attention: the attention seam (AttentionControl) is the UNet's only.
#include <ATen/core/Tensor.h>
#include <c10/core/Device.h>
#include <c10/core/ScalarType.h>
#include <nlohmann/json_fwd.hpp>
#include <torch/nn/module.h>
#include <torch/nn/pimpl.h>

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "model/blocks.h"
#include "model/unet_blocks.h"
#include "model/weights.h"

namespace via::model {

/// Every architecture setting of an AutoencoderKL config, plus the latent
/// scaling the pipelines apply.
struct VaeConfig {
  int64_t in_channels = 3;
  int64_t out_channels = 3;
  std::vector<int64_t> block_out_channels;  ///< one DownEncoderBlock2D / UpDecoderBlock2D each
  int64_t layers_per_block = 1;
  std::string act_fn = "silu";
  int64_t latent_channels = 4;
  int64_t norm_num_groups = 32;
  double scaling_factor = 0.18215;
  std::optional<double> shift_factor;  ///< null in SD-1.x configs
  bool force_upcast = true;            ///< the reference runs this VAE in fp32 when the pipeline is fp16
  bool use_quant_conv = true;
  bool use_post_quant_conv = true;
  bool mid_block_add_attention = true;

  /// Parses a config; `where` names it in errors. Unsupported settings (other
  /// block types, latents_mean/latents_std) throw ModelError naming them.
  static VaeConfig from_json(const nlohmann::json& config, const std::string& where);
  static VaeConfig from_file(const std::string& path);
};

/// diffusers `Encoder`: conv_in, DownEncoderBlock2Ds, UNetMidBlock2D,
/// GroupNorm, SiLU, conv_out to 2 * latent_channels (mean ‖ logvar).
class VaeEncoderImpl : public torch::nn::Module {
 public:
  VaeEncoderImpl(const VaeConfig& config, const ParamInit& init);
  at::Tensor forward(const at::Tensor& images);  // [B, in, H, W] -> [B, 2 * latent, H / f, W / f]

 private:
  Activation act_;
  Conv2d conv_in_{nullptr}, conv_out_{nullptr};
  std::vector<DownBlock> down_blocks_;
  MidBlock mid_block_{nullptr};
  GroupNorm conv_norm_out_{nullptr};
};
TORCH_MODULE(VaeEncoder);

/// diffusers `Decoder`: conv_in, UNetMidBlock2D, UpDecoderBlock2Ds,
/// GroupNorm, SiLU, conv_out.
class VaeDecoderImpl : public torch::nn::Module {
 public:
  VaeDecoderImpl(const VaeConfig& config, const ParamInit& init);
  at::Tensor forward(const at::Tensor& latents);  // [B, latent, h, w] -> [B, out, h * f, w * f]

 private:
  Activation act_;
  Conv2d conv_in_{nullptr}, conv_out_{nullptr};
  MidBlock mid_block_{nullptr};
  std::vector<UpBlock> up_blocks_;
  GroupNorm conv_norm_out_{nullptr};
};
TORCH_MODULE(VaeDecoder);

/// The diagonal Gaussian the encoder predicts (diffusers
/// DiagonalGaussianDistribution): logvar clamped to [-30, 20].
struct LatentDistribution {
  at::Tensor mean;    ///< [B, latent, h, w]; also the mode
  at::Tensor logvar;  ///< same shape
  at::Tensor std() const;
  /// mean + std * noise; `noise` has mean's shape (drawn by the caller, so the
  /// caller's generator decides the draw).
  at::Tensor sample(const at::Tensor& noise) const;
};

/// The VAE. Module names equal the diffusers checkpoint's (`encoder.conv_in`,
/// `encoder.down_blocks.0.resnets.0.conv1`, `quant_conv`, `post_quant_conv`,
/// `decoder.mid_block.attentions.0.to_q`, ...). Latents are unscaled: the
/// pipeline multiplies by config().scaling_factor (and subtracts
/// shift_factor, when set) itself, as the reference pipelines do.
class AutoencoderKLImpl : public torch::nn::Module {
 public:
  AutoencoderKLImpl(const VaeConfig& config, const ParamInit& init = {});

  /// images: [B, in_channels, H, W] in [-1, 1], H and W multiples of the
  /// downsampling factor; converted to the parameters' dtype and device.
  LatentDistribution encode(const at::Tensor& images);
  /// latents: [B, latent_channels, h, w] (unscaled) -> images [B, out, H, W],
  /// nominally in [-1, 1], in the parameters' dtype.
  at::Tensor decode(const at::Tensor& latents);

  const VaeConfig& config() const { return config_; }
  /// Spatial downsampling factor between images and latents (8 for SD).
  int64_t downsampling_factor() const;
  at::ScalarType dtype() const;
  c10::Device device() const;

  VaeEncoder encoder{nullptr};
  VaeDecoder decoder{nullptr};

 private:
  VaeConfig config_;
  Conv2d quant_conv_{nullptr}, post_quant_conv_{nullptr};
};
TORCH_MODULE(AutoencoderKL);

/// How load_component (model/weights.h) loads the VAE: built with
/// uninitialised parameters of the target dtype on the target device, the
/// weights read straight into them, by their diffusers names. Without
/// options.rename, the legacy attention names (query/key/value/proj_attn) are
/// renamed as diffusers does on load.
template <>
struct ComponentTraits<AutoencoderKL> {
  using Config = VaeConfig;
  static AutoencoderKL build(const VaeConfig& config, const WeightLoadOptions& options);
  static torch::nn::Module& target(AutoencoderKL& vae, const std::vector<std::string>& files,
                                   WeightLoadOptions& options);
};

}  // namespace via::model
