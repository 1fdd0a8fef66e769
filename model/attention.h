#pragma once
// The attention layer of the UNet's transformer blocks and the VAE's mid
// block: diffusers `Attention` with `AttnProcessor2_0`
// (models/attention_processor.py). In the UNet every layer asks the
// AttentionControl (model/attention_control.h) for the keys and values it
// attends to.
#include <ATen/core/Tensor.h>
#include <torch/nn/module.h>
#include <torch/nn/modules/container/modulelist.h>
#include <torch/nn/pimpl.h>

#include <cstdint>
#include <memory>
#include <string>
#include <utility>

#include "model/adapter.h"
#include "model/attention_control.h"
#include "model/blocks.h"

namespace via::model {

/// The settings of one attention layer (diffusers `Attention` arguments).
struct AttentionOptions {
  std::string name;                 ///< checkpoint path, e.g. "mid_block.attentions.0.transformer_blocks.0.attn2"
  int64_t query_dim = 0;            ///< channels of the hidden states
  int64_t cross_attention_dim = 0;  ///< channels of the context; 0: self-attention (= query_dim)
  int64_t heads = 8;
  int64_t dim_head = 64;            ///< inner width = heads * dim_head
  bool qkv_bias = false;            ///< to_q/to_k/to_v bias (VAE: true)
  bool upcast_attention = false;    ///< math path: Q K^T in fp32 (the softmax is fp32 for fp16/bf16 anyway)
  double dropout = 0.0;             ///< to_out.1
  int64_t norm_num_groups = 0;      ///< > 0: a `group_norm` before attending (VAE form)
  double norm_eps = 1e-5;
  bool residual_connection = false;  ///< VAE form: add the input to the output
  double rescale_output_factor = 1.0;
};

/// One attention layer: to_q, to_k, to_v, to_out.0 (and group_norm in the
/// VAE form), named after its checkpoint path. Q comes from the hidden
/// states, K and V from the context (cross-attention) or the hidden states
/// (self-attention); a control in the AttentionContext may replace K and V,
/// with any token count, before they are split into heads. Keeps no state
/// between calls; the control is called on the forward's thread.
class AttentionImpl : public torch::nn::Module {
 public:
  AttentionImpl(AttentionOptions options, const ParamInit& init);

  /// hidden: [B, N, query_dim]; context: [B, M, cross_attention_dim] for
  /// cross-attention, undefined for self-attention. Returns [B, N, query_dim].
  /// ctx.control, when set, is asked for the K/V (AttentionSite{name(),
  /// is_cross(), ctx}).
  at::Tensor forward(const at::Tensor& hidden, const at::Tensor& context, const AttentionContext& ctx);

  /// The VAE form, never controlled: x [B, C, H, W] -> group_norm -> self-
  /// attention over the H*W positions -> (+ x) / rescale_output_factor.
  at::Tensor forward_spatial(const at::Tensor& x);

  // name() (torch::nn::Module's) is the checkpoint path given in the options:
  // what controls are told.
  bool is_cross() const { return options_.cross_attention_dim > 0; }
  const AttentionOptions& options() const { return options_; }

  /// Installs `adapter` (nullptr: none): every projection's output gets its
  /// delta added from the next forward on. The layer shares ownership.
  void set_adapter(std::shared_ptr<LinearAdapter> adapter) { adapter_ = std::move(adapter); }
  const std::shared_ptr<LinearAdapter>& adapter() const { return adapter_; }

  /// The projections, named as in the checkpoint. Every use goes through
  /// project(), the one place where an adapter (LoRA) adds its delta.
  Linear to_q{nullptr}, to_k{nullptr}, to_v{nullptr};
  torch::nn::ModuleList to_out{nullptr};  // [0]: Linear (with bias), [1]: Dropout
  GroupNorm group_norm{nullptr};          // VAE form only

 private:
  /// `ctx` (may be null) tells how many frames the batch holds per branch.
  at::Tensor project(Projection which, const at::Tensor& x, const AttentionContext* ctx = nullptr);
  at::Tensor base_projection(Projection which, const at::Tensor& x);

  AttentionOptions options_;
  Linear out_proj_{nullptr};  // = to_out[0]
  Dropout out_dropout_{nullptr};
  std::shared_ptr<LinearAdapter> adapter_;
};
TORCH_MODULE(Attention);

/// softmax(Q K^T / sqrt(D)) V per head. q: [B, N, H*D]; k, v: [B, M, H*D]
/// -> [B, N, H*D]. Uses the fused at::scaled_dot_product_attention where this
/// libtorch has it (>= 2.0; its kernels accumulate in fp32, and like the
/// reference's AttnProcessor2_0 it ignores `upcast_scores`), otherwise the
/// math form in slices of heads, with the softmax in fp32 for fp16/bf16 and,
/// with `upcast_scores`, Q K^T in fp32 as well.
at::Tensor scaled_dot_product(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, int64_t heads,
                              bool upcast_scores = false);

}  // namespace via::model
