#pragma once
// LoRA on the UNet's attention projections (Hu et al. 2021, "LoRA: Low-Rank
// Adaptation of Large Language Models", arXiv:2106.09685) for test-time
// editing adaptation (docs/ARCHITECTURE.md §4): W x + b + (alpha / r) B A x for to_q,
// to_k, to_v and to_out.0 of every attention layer (attn1 and attn2), the
// base weights frozen. A is [r, in] and starts small and random (seeded), B
// is [out, r] and starts at zero, so a fresh adapter changes nothing.
#include <ATen/core/Tensor.h>

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "model/unet.h"

namespace via::adapt {

/// Which projections get a low-rank update, and its size.
struct LoraOptions {
  int64_t rank = 4;    ///< r >= 1
  double alpha = 0.0;  ///< scale alpha / r; <= 0 means alpha = rank (scale 1)
  /// Projection names among "to_q", "to_k", "to_v", "to_out.0"; every
  /// attention layer of the UNet gets all that are listed.
  std::vector<std::string> targets{"to_q", "to_k", "to_v", "to_out.0"};
  uint64_t seed = 0;  ///< draws the initial A matrices
  /// alpha as used (rank when alpha <= 0).
  double effective_alpha() const { return alpha > 0.0 ? alpha : static_cast<double>(rank); }
};

struct LoraLayer;  // one attention layer's matrices (lora.cpp)

/// A LoRA adapter for one UNet architecture: a named set of fp32 tensors
///   "<layer>.<projection>.lora_A" [r, in] and "<layer>.<projection>.lora_B" [out, r],
/// e.g. "down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q.lora_A".
///
/// Contract: the adapter owns its tensors (fp32, on the UNet's device,
/// requires_grad true: they are what fine-tuning trains). attach() installs
/// it into every attention layer of a UNet with the same attention layout
/// (names and widths); the layers then share its tensors, so load_named() or
/// an optimizer step changes an attached UNet's output at once. The delta is
/// computed in the activation's dtype (the fp32 tensors are cast per call).
/// Not thread-safe against a concurrent forward of an attached UNet.
class LoraAdapter {
 public:
  /// Matrices for every attention layer of `unet`: A ~ U(-1/sqrt(in),
  /// 1/sqrt(in)) (PyTorch's default Linear init with a = sqrt(5), as PEFT
  /// uses) from a CPU generator seeded by (options.seed, layer, projection),
  /// B = 0. Throws std::invalid_argument for a bad rank or target name.
  LoraAdapter(const model::UNet2DConditionModelImpl& unet, LoraOptions options);
  ~LoraAdapter();
  LoraAdapter(const LoraAdapter&) = delete;
  LoraAdapter& operator=(const LoraAdapter&) = delete;

  const LoraOptions& options() const { return options_; }
  /// alpha / r.
  double scale() const;

  /// Every tensor by name (the adapter's own tensors, not copies: clone them
  /// to keep a snapshot). For the adapter's file (rank/adapter_file.h) and
  /// broadcast_named.
  std::map<std::string, at::Tensor> named_tensors() const;
  /// The trainable tensors, in a fixed order (layer order, then q, k, v, out, A before B).
  std::vector<at::Tensor> parameters() const;
  /// Number of scalars in the adapter.
  int64_t numel() const;

  /// Copies `tensors` into the adapter in place (any dtype / device; converted).
  /// The map must hold exactly this adapter's names with the same shapes;
  /// otherwise std::invalid_argument naming the first missing, unexpected or
  /// mis-shaped tensor, and nothing is changed.
  void load_named(const std::map<std::string, at::Tensor>& tensors);

  /// Installs the adapter into every attention layer of `unet` (replacing any
  /// other adapter there). Throws std::invalid_argument when the UNet's
  /// attention layers do not match the adapter's (names or widths).
  void attach(model::UNet2DConditionModelImpl& unet) const;
  /// Removes this adapter from `unet`'s layers (layers holding another
  /// adapter, or none, are left alone). The UNet then computes exactly what
  /// it did before attach().
  void detach(model::UNet2DConditionModelImpl& unet) const;
  /// True when every attention layer of `unet` holds this adapter.
  bool attached_to(const model::UNet2DConditionModelImpl& unet) const;

 private:
  LoraOptions options_;
  std::vector<std::string> layer_names_;
  std::vector<std::shared_ptr<LoraLayer>> layers_;
};

/// Installs `adapter` for its lifetime and detaches it on destruction.
class ScopedLora {
 public:
  ScopedLora(const LoraAdapter& adapter, model::UNet2DConditionModelImpl& unet);
  ~ScopedLora();
  ScopedLora(const ScopedLora&) = delete;
  ScopedLora& operator=(const ScopedLora&) = delete;

 private:
  const LoraAdapter& adapter_;
  model::UNet2DConditionModelImpl& unet_;
};

}  // namespace via::adapt
