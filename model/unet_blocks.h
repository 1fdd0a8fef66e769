#pragma once
// The blocks of diffusers' UNet2DConditionModel and AutoencoderKL
// (models/unets/unet_2d_blocks.py, models/transformers/transformer_2d.py,
// models/attention.py): Transformer2DModel with BasicTransformerBlocks, and
// the down, mid and up blocks. One class per role covers the cross-attention
// and plain variants (CrossAttnDownBlock2D / DownBlock2D / DownEncoderBlock2D,
// ...). Submodules are registered in diffusers' order, so parameter lists
// match the reference's order as well as its names.
#include <ATen/core/Tensor.h>
#include <torch/nn/module.h>
#include <torch/nn/pimpl.h>

#include <cstdint>
#include <string>
#include <vector>

#include "model/attention.h"
#include "model/attention_control.h"
#include "model/blocks.h"

namespace via::model {

/// The transformer settings of a cross-attention block.
struct TransformerSpec {
  int64_t heads = 8;                ///< number of heads (SD1 configs call it attention_head_dim)
  int64_t cross_attention_dim = 768;
  int64_t layers = 1;               ///< BasicTransformerBlocks per Transformer2DModel
  bool use_linear_projection = false;
  bool only_cross_attention = false;  ///< attn1 attends to the context too
  bool upcast_attention = false;
  double dropout = 0.0;
};

/// diffusers `BasicTransformerBlock` (norm_type "layer_norm", GEGLU):
/// x += attn1(norm1(x)); x += attn2(norm2(x), context); x += ff(norm3(x)).
class BasicTransformerBlockImpl : public torch::nn::Module {
 public:
  BasicTransformerBlockImpl(const std::string& name, int64_t dim, int64_t dim_head, const TransformerSpec& spec,
                            const ParamInit& init);
  /// x: [B, N, dim]; context: [B, M, cross_attention_dim].
  at::Tensor forward(const at::Tensor& x, const at::Tensor& context, const AttentionContext& ctx);

  Attention attn1{nullptr}, attn2{nullptr};

 private:
  bool only_cross_attention_;
  LayerNorm norm1_{nullptr}, norm2_{nullptr}, norm3_{nullptr};
  Linear ff_proj_{nullptr}, ff_out_{nullptr};  // ff.net.0.proj (GEGLU), ff.net.2
  Dropout ff_dropout_{nullptr};                // ff.net.1
};
TORCH_MODULE(BasicTransformerBlock);

/// diffusers `Transformer2DModel` on continuous inputs: GroupNorm (eps 1e-6),
/// proj_in (1x1 conv, or linear with use_linear_projection), the blocks,
/// proj_out, plus the input.
class Transformer2DModelImpl : public torch::nn::Module {
 public:
  Transformer2DModelImpl(const std::string& name, int64_t channels, int64_t norm_groups,
                         const TransformerSpec& spec, const ParamInit& init);
  /// x: [B, C, H, W] -> [B, C, H, W].
  at::Tensor forward(const at::Tensor& x, const at::Tensor& context, const AttentionContext& ctx);
  /// attn1, attn2 of each block, in forward order.
  std::vector<Attention> attention_layers() const;

 private:
  bool linear_projection_;
  int64_t inner_dim_;
  GroupNorm norm_{nullptr};
  Conv2d proj_in_conv_{nullptr}, proj_out_conv_{nullptr};
  Linear proj_in_linear_{nullptr}, proj_out_linear_{nullptr};
  std::vector<BasicTransformerBlock> blocks_;
};
TORCH_MODULE(Transformer2DModel);

/// What down and up blocks share: `num_layers` layers, each a resnet to
/// `out_channels` followed, in the cross-attention form, by a
/// Transformer2DModel (`transformer`).
struct BlockOptions {
  std::string name;  ///< e.g. "down_blocks.0"
  int64_t in_channels = 0, out_channels = 0, num_layers = 1;
  ResnetSpec resnet;
  bool cross_attention = false;
  TransformerSpec transformer;
};

/// The layers of a down or up block, registered on the block as diffusers
/// assigns them: `attentions` (in the cross-attention form) before `resnets`.
class BlockLayers {
 public:
  BlockLayers(torch::nn::Module& block, const BlockOptions& options);
  /// Appends the next layer, its resnet taking `in_channels`.
  void add(int64_t in_channels, const ParamInit& init);
  size_t size() const { return resnets_.size(); }
  /// Layer i on x: its resnet, then its attention.
  at::Tensor forward(size_t i, const at::Tensor& x, const at::Tensor& temb, const at::Tensor& context,
                     const AttentionContext& ctx);
  /// attn1, attn2 of every transformer block, in forward order.
  std::vector<Attention> attention_layers() const;

 private:
  BlockOptions options_;
  torch::nn::ModuleList attention_list_{nullptr}, resnet_list_{nullptr};
  std::vector<ResnetBlock2D> resnets_;
  std::vector<Transformer2DModel> attentions_;
};

/// CrossAttnDownBlock2D (with `transformer`), DownBlock2D (without) and
/// DownEncoderBlock2D (without, temb_channels 0): the layers, then an
/// optional stride-2 downsampler.
struct DownBlockOptions : BlockOptions {
  bool add_downsample = true;
  int64_t downsample_padding = 1;
};

/// Down block `i` of the path through `channels` (a config's
/// block_out_channels), named `prefix` + i: from channels[i - 1] (channels[0]
/// for block 0) to channels[i] in `layers` layers of `resnet`, all blocks but
/// the last downsampling. Attention and padding are the caller's.
DownBlockOptions down_block_options(const std::string& prefix, const std::vector<int64_t>& channels, size_t i,
                                    int64_t layers, const ResnetSpec& resnet);

class DownBlockImpl : public torch::nn::Module {
 public:
  DownBlockImpl(const DownBlockOptions& options, const ParamInit& init);
  /// Returns the output and appends each stage's output to `skips` (the UNet's
  /// skip connections; the VAE passes nullptr).
  at::Tensor forward(at::Tensor x, const at::Tensor& temb, const at::Tensor& context, const AttentionContext& ctx,
                     std::vector<at::Tensor>* skips);
  std::vector<Attention> attention_layers() const { return layers_.attention_layers(); }

 private:
  BlockLayers layers_;
  Downsample2D downsampler_{nullptr};
};
TORCH_MODULE(DownBlock);

/// CrossAttnUpBlock2D / UpBlock2D (resnets take the concatenation of the input
/// and a skip connection) and UpDecoderBlock2D (`skip_connections` false):
/// the layers, then an optional 2x upsampler.
struct UpBlockOptions : BlockOptions {
  int64_t prev_output_channels = 0;
  bool skip_connections = true;
  bool add_upsample = true;
};

class UpBlockImpl : public torch::nn::Module {
 public:
  UpBlockImpl(const UpBlockOptions& options, const ParamInit& init);
  /// Consumes skip connections from the back of `skips` (one per resnet);
  /// `upsample_size`: the upsampler's output [H, W], empty for 2x.
  at::Tensor forward(at::Tensor x, std::vector<at::Tensor>* skips, const at::Tensor& temb,
                     const at::Tensor& context, const AttentionContext& ctx,
                     const std::vector<int64_t>& upsample_size = {});
  std::vector<Attention> attention_layers() const { return layers_.attention_layers(); }
  int64_t num_resnets() const { return static_cast<int64_t>(layers_.size()); }

 private:
  BlockLayers layers_;
  Upsample2D upsampler_{nullptr};
};
TORCH_MODULE(UpBlock);

/// UNetMidBlock2DCrossAttn (Transformer2DModel attentions) and UNetMidBlock2D
/// (the VAE's: one spatial self-attention with group norm, or none):
/// resnet, then (attention, resnet) x num_layers.
struct MidBlockOptions {
  enum class AttentionKind { Transformer, Spatial, None };
  std::string name;  ///< "mid_block"
  int64_t channels = 0, num_layers = 1;
  ResnetSpec resnet;
  AttentionKind attention = AttentionKind::Transformer;
  TransformerSpec transformer;  ///< AttentionKind::Transformer
};

class MidBlockImpl : public torch::nn::Module {
 public:
  MidBlockImpl(const MidBlockOptions& options, const ParamInit& init);
  at::Tensor forward(at::Tensor x, const at::Tensor& temb, const at::Tensor& context, const AttentionContext& ctx);
  /// The transformers' attn1/attn2 layers; the VAE's spatial attention is
  /// not one of the controlled layers and is not listed.
  std::vector<Attention> attention_layers() const;

 private:
  std::vector<ResnetBlock2D> resnets_;
  std::vector<Transformer2DModel> transformers_;
  std::vector<Attention> spatial_;
};
TORCH_MODULE(MidBlock);

}  // namespace via::model
