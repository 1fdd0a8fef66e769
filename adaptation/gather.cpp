#include "adaptation/gather.h"

#include <ATen/ATen.h>

#include <algorithm>
#include <stdexcept>

#include "base/random.h"

namespace via::adapt {
namespace {

// The control the UNet gets: the wrapper's, when there is one.
model::AttentionControl* wrapped(const ControlWrapper& wrap, model::AttentionControl* inner, int64_t index,
                                 std::unique_ptr<model::AttentionControl>& holder) {
  if (!wrap) return inner;
  holder = wrap(inner, index);
  if (!holder) throw std::invalid_argument("attention control wrapper returned no control");
  return holder.get();
}

at::Tensor initial_noise(const at::Tensor& latents, uint64_t seed, int64_t frame) {
  return model::make_noise(latents.sizes(), seed, frame, random::kInitialNoiseStep);
}

}  // namespace

AttentionMode attention_mode_from_name(const std::string& name) {
  if (name == "own") return AttentionMode::Own;
  if (name == "anchor") return AttentionMode::Anchor;
  if (name == "gather-swap") return AttentionMode::GatherSwap;
  throw std::invalid_argument("unknown attention mode '" + name + "' (expected own, anchor or gather-swap)");
}

std::string attention_mode_name(AttentionMode mode) {
  switch (mode) {
    case AttentionMode::Own: return "own";
    case AttentionMode::Anchor: return "anchor";
    case AttentionMode::GatherSwap: return "gather-swap";
  }
  return "?";
}

LayerSet layer_set_from_name(const std::string& name) {
  if (name == "self") return LayerSet::Self;
  if (name == "cross") return LayerSet::Cross;
  if (name == "both") return LayerSet::Both;
  throw std::invalid_argument("unknown attention layer set '" + name + "' (expected self, cross or both)");
}

std::string layer_set_name(LayerSet layers) {
  switch (layers) {
    case LayerSet::Self: return "self";
    case LayerSet::Cross: return "cross";
    case LayerSet::Both: return "both";
  }
  return "?";
}

std::vector<int64_t> key_frame_indices(int64_t num_frames, int64_t group_size, int64_t first) {
  if (num_frames < 1 || group_size < 1)
    throw std::invalid_argument("key frames: need at least one frame and a group size of at least 1, got " +
                                std::to_string(num_frames) + " frames and group size " + std::to_string(group_size));
  const int64_t g = std::min(group_size, num_frames);
  std::vector<int64_t> keys;
  keys.reserve(static_cast<size_t>(g));
  // floor((i + 0.5) n / g) in integers; consecutive values differ by >= 1 as n >= g.
  for (int64_t i = 0; i < g; ++i) keys.push_back(first + (2 * i + 1) * num_frames / (2 * g));
  return keys;
}

AttentionGroup gather_group(const model::InstructPix2Pix& model, const at::Tensor& images,
                            const std::vector<int64_t>& frames, const model::TextEmbeddings& text,
                            const SwapSettings& settings, const ControlWrapper& wrap, at::Tensor* key_latents,
                            const model::StepHook& on_step) {
  if (images.dim() != 4 || images.size(0) != static_cast<int64_t>(frames.size()) || frames.empty())
    throw std::invalid_argument("gather: expected key frame images [G, 3, H, W] with G = " +
                                std::to_string(frames.size()) + " frame indices (G >= 1), got " +
                                c10::str(images.sizes()));
  AttentionGroup group;
  if (settings.mode == AttentionMode::Own) return group;
  const bool include_own = settings.mode == AttentionMode::Anchor;
  std::vector<at::Tensor> finals;
  for (size_t i = 0; i < frames.size(); ++i) {
    const int64_t key = static_cast<int64_t>(i);
    const at::Tensor latents = model.encode_image(images.narrow(0, key, 1));
    GatherControl gather(group, key, settings.resolved_swap_steps(), settings.layers, include_own);
    std::unique_ptr<model::AttentionControl> holder;
    model::AttentionControl* control = wrapped(wrap, &gather, key, holder);
    const int64_t nf = settings.noise_frame(frames[i]);
    finals.push_back(model.denoise(latents, text, initial_noise(latents, settings.seed, nf), settings.denoise, control,
                                   on_step, model::frame_noise(settings.seed, {nf})));
  }
  if (key_latents) *key_latents = at::cat(finals, 0);
  group.set_key_frames(static_cast<int64_t>(frames.size()));
  return group;
}

at::Tensor swap_denoise(const model::InstructPix2Pix& model, const at::Tensor& image_latents, int64_t frame,
                        const AttentionGroup& group, const model::TextEmbeddings& text,
                        const SwapSettings& settings, const model::StepHook& on_step, const ControlWrapper& wrap) {
  if (image_latents.dim() != 4 || image_latents.size(0) != 1)
    throw std::invalid_argument("swap edit of frame " + std::to_string(frame) +
                                ": expected image latents [1, C, h, w], got " + c10::str(image_latents.sizes()));
  return swap_denoise_batch(model, image_latents, {frame}, group, text, settings, on_step, wrap);
}

at::Tensor swap_denoise_batch(const model::InstructPix2Pix& model, const at::Tensor& image_latents,
                              const std::vector<int64_t>& frames, const AttentionGroup& group,
                              const model::TextEmbeddings& text, const SwapSettings& settings,
                              const model::StepHook& on_step, const ControlWrapper& wrap) {
  if (frames.empty() || image_latents.dim() != 4 || image_latents.size(0) != static_cast<int64_t>(frames.size()))
    throw std::invalid_argument("swap edit of " + std::to_string(frames.size()) +
                                " frames: expected image latents [" + std::to_string(frames.size()) +
                                ", C, h, w], got " + c10::str(image_latents.sizes()));
  std::unique_ptr<SwapControl> swap;
  if (settings.mode != AttentionMode::Own) {
    if (group.empty())
      throw std::invalid_argument("swap edit of frame " + std::to_string(frames.front()) + " in " +
                                  attention_mode_name(settings.mode) + " mode: the attention group is empty");
    swap = std::make_unique<SwapControl>(group, settings.resolved_swap_steps(), settings.layers,
                                         settings.mode == AttentionMode::Anchor);
  }
  std::unique_ptr<model::AttentionControl> holder;
  model::AttentionControl* control = wrapped(wrap, swap.get(), frames.front(), holder);
  // Each row its own frame's streams: the batch changes no frame's noise.
  std::vector<int64_t> noise_frames;
  std::vector<at::Tensor> initial;
  for (size_t b = 0; b < frames.size(); ++b) {
    noise_frames.push_back(settings.noise_frame(frames[b]));
    initial.push_back(initial_noise(image_latents.narrow(0, static_cast<int64_t>(b), 1), settings.seed,
                                    noise_frames.back()));
  }
  return model.denoise(image_latents, text, initial.size() == 1 ? initial.front() : at::cat(initial, 0),
                       settings.denoise, control, on_step, model::frame_noise(settings.seed, std::move(noise_frames)));
}

at::Tensor swap_edit(const model::InstructPix2Pix& model, const at::Tensor& image, int64_t frame,
                     const AttentionGroup& group, const model::TextEmbeddings& text, const SwapSettings& settings) {
  if (image.dim() != 4 || image.size(0) != 1)
    throw std::invalid_argument("swap edit of frame " + std::to_string(frame) + ": expected an image [1, 3, H, W], got " +
                                c10::str(image.sizes()));
  const at::Tensor latents = model.encode_image(image);
  return model.decode(swap_denoise(model, latents, frame, group, text, settings));
}

double temporal_difference(const at::Tensor& frames) {
  if (!frames.defined() || frames.dim() < 1) throw std::invalid_argument("temporal_difference: expected [N, ...] frames");
  if (frames.size(0) < 2) return 0.0;
  const at::Tensor f = frames.to(at::kCPU, at::kDouble);
  const int64_t n = f.size(0);
  return (f.narrow(0, 1, n - 1) - f.narrow(0, 0, n - 1)).abs().mean().item<double>();
}

TemporalConsistency temporal_consistency(const at::Tensor& edited, const at::Tensor& source) {
  if (edited.sizes() != source.sizes())
    throw std::invalid_argument("temporal_consistency: edited " + c10::str(edited.sizes()) + " and source " +
                                c10::str(source.sizes()) + " differ in shape");
  TemporalConsistency tc;
  tc.edited = temporal_difference(edited);
  tc.source = temporal_difference(source);
  tc.ratio = tc.source > 0.0 ? tc.edited / tc.source : 0.0;
  return tc;
}

}  // namespace via::adapt
