#pragma once
// The adapter seam of the attention projections: an object an Attention layer
// asks for an additive correction of each projection's output (LoRA, Hu et
// al. 2021, "LoRA: Low-Rank Adaptation of Large Language Models",
// arXiv:2106.09685). Declared here so model/ never depends on the code that
// implements adapters (adaptation/).
#include <ATen/core/Tensor.h>

namespace via::model {

/// The four projections of an attention layer, named as in the checkpoint:
/// to_q, to_k, to_v, to_out.0.
enum class Projection { Query, Key, Value, Out };

/// An additive correction of an attention layer's projections: the layer
/// computes W x + b + delta(which, x).
///
/// Contract: delta() receives the projection's input x ([B, N, in], the
/// model's dtype and device) and returns a tensor of the projection's output
/// shape in x's dtype, or an undefined tensor for "no correction". It is
/// called on the forward's thread, possibly with autograd on (fine-tuning),
/// and must not change x.
class LinearAdapter {
 public:
  virtual ~LinearAdapter() = default;
  virtual at::Tensor delta(Projection which, const at::Tensor& x) = 0;
};

}  // namespace via::model
