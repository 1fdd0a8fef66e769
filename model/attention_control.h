#pragma once
// The attention seam. Every attention layer of the UNet (self-attention
// `attn1` and cross-attention `attn2` of each transformer block) asks the
// control for the keys and values it should attend to. Gather, swap and the
// cross-frame baselines are controls; the model code never changes for them.
#include <ATen/core/Tensor.h>

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

namespace via::model {

/// The guidance branches of one edit step, in the reference pipeline's batch
/// order: (text, image), (no text, image), (no text, no image).
enum class Branch : int { TextImage = 0, Image = 1, Uncond = 2 };

/// What the UNet knows about the current call; passed down to every layer.
struct AttentionContext {
  class AttentionControl* control = nullptr;  // nullptr: every layer uses its own K/V
  int64_t step = -1;                           // denoising step index, -1 outside a denoising loop
  /// The branch of each block of rows of the batch: the batch is
  /// branches.size() equal blocks, block i belonging to branches[i].
  /// Empty: one block with no guidance meaning (e.g. training).
  std::vector<Branch> branches;
};

/// What one attention layer tells the control on each call.
struct AttentionSite {
  const std::string& layer;  // checkpoint path, e.g. "down_blocks.0.attentions.0.transformer_blocks.0.attn1"
  bool cross;                // true for attn2 (keys/values from the text encoder)
  const AttentionContext& ctx;
};

/// Decides which keys and values a layer attends to. q, k, v are the layer's
/// own projections, [batch, tokens, channels] before splitting into heads.
/// The returned k and v must have q's batch size and the same channel count;
/// their token count may differ (e.g. concatenated key frames).
/// Called from the UNet's forward, on the forward's thread, in layer order.
class AttentionControl {
 public:
  virtual ~AttentionControl() = default;
  virtual std::pair<at::Tensor, at::Tensor> keys_values(const AttentionSite& site, const at::Tensor& q,
                                                        const at::Tensor& k, const at::Tensor& v) = 0;
};

}  // namespace via::model
