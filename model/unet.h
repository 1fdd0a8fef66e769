#pragma once
// UNet2DConditionModel as used by Stable Diffusion 1.x and InstructPix2Pix
// (diffusers models/unets/unet_2d_condition.py), built from the model's
// `unet/config.json`.
#include <ATen/core/Tensor.h>
#include <c10/core/Device.h>
#include <c10/core/ScalarType.h>
#include <nlohmann/json_fwd.hpp>
#include <torch/nn/module.h>
#include <torch/nn/pimpl.h>

#include <cstdint>
#include <string>
#include <vector>

#include "model/attention.h"
#include "model/attention_control.h"
#include "model/blocks.h"
#include "model/unet_blocks.h"
#include "model/weights.h"

namespace via::model {

/// Every architecture setting of a UNet2DConditionModel config. Per-block
/// values are expanded to one entry per down block (diffusers accepts a
/// single value or a list). `heads` is the number of attention heads per block:
/// `num_attention_heads` when given, else `attention_head_dim` (SD1's
/// misnomer for the same thing).
struct UNetConfig {
  int64_t in_channels = 4;
  int64_t out_channels = 4;
  bool center_input_sample = false;
  bool flip_sin_to_cos = true;
  double freq_shift = 0;
  std::vector<std::string> down_block_types;  ///< CrossAttnDownBlock2D | DownBlock2D
  std::string mid_block_type;                 ///< UNetMidBlock2DCrossAttn, or empty: no mid block
  std::vector<std::string> up_block_types;    ///< CrossAttnUpBlock2D | UpBlock2D
  std::vector<bool> only_cross_attention;
  std::vector<int64_t> block_out_channels;
  std::vector<int64_t> layers_per_block;
  int64_t downsample_padding = 1;
  double mid_block_scale_factor = 1.0;
  double dropout = 0.0;
  std::string act_fn = "silu";
  int64_t norm_num_groups = 32;
  double norm_eps = 1e-5;
  std::vector<int64_t> cross_attention_dim;
  std::vector<int64_t> transformer_layers_per_block;
  std::vector<int64_t> heads;
  bool use_linear_projection = false;
  bool upcast_attention = false;
  int64_t time_embedding_dim = 0;  ///< 0: 4 * block_out_channels[0]
  int64_t conv_in_kernel = 3;
  int64_t conv_out_kernel = 3;

  /// Parses a config; `where` names it in errors (usually the file's path).
  /// Settings this implementation does not support (class/addition
  /// embeddings, fourier time embedding, other block types, ...) throw
  /// ModelError naming the setting and its value.
  static UNetConfig from_json(const nlohmann::json& config, const std::string& where);
  static UNetConfig from_file(const std::string& path);
};

/// The conditional UNet. Module names equal the diffusers checkpoint's
/// (`conv_in`, `time_embedding.linear_1`, `down_blocks.0.attentions.0.
/// transformer_blocks.0.attn1.to_q`, `mid_block.resnets.0.conv1`, ...), in
/// the reference's order. forward() is not thread-safe for one instance
/// (attention controls are called on the forward's thread, in layer order).
class UNet2DConditionModelImpl : public torch::nn::Module {
 public:
  UNet2DConditionModelImpl(const UNetConfig& config, const ParamInit& init = {});

  /// sample: [B, in_channels, h, w]; timestep: a scalar or [B] (a [1] tensor
  /// is broadcast); encoder_hidden_states: [B, tokens, cross_attention_dim].
  /// Inputs are converted to the parameters' dtype and device; the output,
  /// [B, out_channels, h, w], is in the parameters' dtype. With
  /// ctx.branches non-empty, B must be a multiple of its size.
  at::Tensor forward(const at::Tensor& sample, const at::Tensor& timestep, const at::Tensor& encoder_hidden_states,
                     const AttentionContext& ctx = {});
  at::Tensor forward(const at::Tensor& sample, double timestep, const at::Tensor& encoder_hidden_states,
                     const AttentionContext& ctx = {});

  /// Every attention layer (attn1 and attn2 of every transformer block) in
  /// the order a forward calls them; each knows its checkpoint path (name()).
  const std::vector<Attention>& attention_layers() const { return attention_layers_; }

  const UNetConfig& config() const { return config_; }
  at::ScalarType dtype() const;
  c10::Device device() const;


 private:
  at::Tensor time_embed(const at::Tensor& timestep, int64_t batch, at::ScalarType dtype);

  UNetConfig config_;
  Activation act_;
  Conv2d conv_in_{nullptr}, conv_out_{nullptr};
  Linear time_linear_1_{nullptr}, time_linear_2_{nullptr};
  std::vector<DownBlock> down_blocks_;
  MidBlock mid_block_{nullptr};
  std::vector<UpBlock> up_blocks_;
  GroupNorm conv_norm_out_{nullptr};
  std::vector<Attention> attention_layers_;
};
TORCH_MODULE(UNet2DConditionModel);

/// How load_component (model/weights.h) loads the UNet: built with
/// uninitialised parameters of the target dtype on the target device, the
/// weights read straight into them, by their diffusers names.
template <>
struct ComponentTraits<UNet2DConditionModel> {
  using Config = UNetConfig;
  static UNet2DConditionModel build(const UNetConfig& config, const WeightLoadOptions& options);
  static torch::nn::Module& target(UNet2DConditionModel& unet, const std::vector<std::string>& files,
                                   WeightLoadOptions& options);
};

/// diffusers' get_timestep_embedding (models/embeddings.py): [N] timesteps ->
/// [N, dim] fp32 sinusoidal embeddings, frequencies
/// exp(-ln(max_period) * i / (dim/2 - downscale_freq_shift)), (sin, cos) or
/// (cos, sin) with flip_sin_to_cos, zero-padded for odd dim.
at::Tensor timestep_embedding(const at::Tensor& timesteps, int64_t dim, bool flip_sin_to_cos,
                              double downscale_freq_shift, double scale = 1.0, double max_period = 10000.0);

}  // namespace via::model
