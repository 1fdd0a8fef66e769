#pragma once
// Spatiotemporal attention adaptation on the real model (docs/ARCHITECTURE.md §5): pick
// the key frames, gather the attention group by editing them in order, and
// edit any frame with the group swapped in (or with a comparison mode).
//
// Noise. Every edit of frame f, key frames included, uses the initial noise
// make_noise(shape, seed, f, -1) and the ancestral noise
// frame_noise(seed, {f}): a frame's result is a pure function of (frame
// image, frame index, settings, model weights with any adapter the caller
// attached, attention group), whatever was edited before it and wherever.
#include <ATen/core/Tensor.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "adaptation/attention_group.h"
#include "adaptation/modes.h"
#include "model/pipeline.h"

namespace via::adapt {

/// The settings shared by the gather and every frame's swap edit; they must be
/// the same for both (the group is recorded per step and branch).
struct SwapSettings {
  model::DenoiseSettings denoise;
  uint64_t seed = 0;
  int64_t swap_steps = -1;  ///< gather/swap during steps < swap_steps; -1: all steps
  LayerSet layers = LayerSet::Both;
  AttentionMode mode = AttentionMode::GatherSwap;
  /// Every frame draws the same noise (the stream of kSharedNoiseFrame)
  /// instead of its own: the shared-noise baseline.
  bool shared_noise = false;
  /// The frame index whose noise streams frame `frame` uses.
  int64_t noise_frame(int64_t frame) const { return shared_noise ? kSharedNoiseFrame : frame; }
  static constexpr int64_t kSharedNoiseFrame = -1;  // no real frame has it
  int64_t resolved_swap_steps() const { return swap_steps < 0 ? denoise.steps : swap_steps; }
};

/// `group_size` key frames spread evenly over frames [first, first + num_frames):
/// key frame i is frame first + floor((i + 0.5) * num_frames / group_size),
/// the centre of the i-th of group_size equal parts, so they are distinct and
/// increasing. A group larger than the range is clipped to one key frame per
/// frame. num_frames, group_size >= 1 (std::invalid_argument otherwise).
std::vector<int64_t> key_frame_indices(int64_t num_frames, int64_t group_size, int64_t first = 0);

/// Lets a test (or a diagnostic) wrap the control an edit uses: given the
/// edit's own control (nullptr for `own`) and which key frame (gather) or
/// frame (swap) it serves, returns the control to hand to the UNet, which
/// must forward to the inner one. Empty: the inner control is used as is.
using ControlWrapper =
    std::function<std::unique_ptr<model::AttentionControl>(model::AttentionControl* inner, int64_t index)>;

/// Gather: edits the key frames `images` ([G, 3, H, W] in [0, 1], in
/// key-frame order; `frames` their frame indices) one after another, key
/// frame i attending to the K/V of key frames 0..i-1 (key frame 0 to its
/// own; with mode Anchor also to its own) in the layers and steps the
/// settings name, and records the K/V each computes. Returns the attention
/// group. With mode Own there is nothing to gather: returns an empty group.
/// `key_latents`, when given, receives the key frames' final latents.
/// `on_step` runs after every denoising step (a renderer's stop check).
AttentionGroup gather_group(const model::InstructPix2Pix& model, const at::Tensor& images,
                            const std::vector<int64_t>& frames, const model::TextEmbeddings& text,
                            const SwapSettings& settings, const ControlWrapper& wrap = {},
                            at::Tensor* key_latents = nullptr, const model::StepHook& on_step = {});

/// One frame's denoising with the settings' attention mode: image latents
/// [1, C, h, w] (from encode_image) of frame `frame` -> final latents. The
/// `on_step` hook (mask blending) runs after every step. The group is not
/// needed (may be empty) for mode Own.
at::Tensor swap_denoise(const model::InstructPix2Pix& model, const at::Tensor& image_latents, int64_t frame,
                        const AttentionGroup& group, const model::TextEmbeddings& text,
                        const SwapSettings& settings, const model::StepHook& on_step = {},
                        const ControlWrapper& wrap = {});

/// swap_denoise of several frames in one batch: image latents [B, C, h, w]
/// of frames `frames` (B of them) -> final latents [B, C, h, w]. One UNet
/// call per step runs the 3B rows (B per guidance branch); each frame draws
/// its own noise streams, so row b equals swap_denoise of frames[b] alone
/// (bit for bit on the CPU; within kernel nondeterminism on a GPU). `on_step`
/// sees all B rows.
at::Tensor swap_denoise_batch(const model::InstructPix2Pix& model, const at::Tensor& image_latents,
                              const std::vector<int64_t>& frames, const AttentionGroup& group,
                              const model::TextEmbeddings& text, const SwapSettings& settings,
                              const model::StepHook& on_step = {}, const ControlWrapper& wrap = {});

/// encode_image, swap_denoise and decode of one frame [1, 3, H, W] in [0, 1]:
/// the edited frame [1, 3, H, W] in [0, 1].
at::Tensor swap_edit(const model::InstructPix2Pix& model, const at::Tensor& image, int64_t frame,
                     const AttentionGroup& group, const model::TextEmbeddings& text, const SwapSettings& settings);

/// Temporal consistency of a frame sequence [N, C, H, W]: the mean absolute
/// difference between consecutive frames (0 for fewer than two frames).
double temporal_difference(const at::Tensor& frames);

/// temporal_difference of an edit and of its source, and their ratio
/// (edited / source; 1 means the edit flickers as much as the video moves).
struct TemporalConsistency {
  double edited = 0.0;
  double source = 0.0;
  double ratio = 0.0;  ///< 0 when the source is static
};
TemporalConsistency temporal_consistency(const at::Tensor& edited, const at::Tensor& source);

}  // namespace via::adapt
