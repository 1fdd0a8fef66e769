#pragma once
// Single-file checkpoints in the original (CompVis latent-diffusion / Stable
// Diffusion / InstructPix2Pix) key layout, e.g. instruct-pix2pix-00-22000.safetensors:
// UNet under `model.diffusion_model.`, VAE under `first_stage_model.`, CLIP
// text encoder under `cond_stage_model.transformer.` (names: checkpoint_names.h).
// Such a file carries no configs; they are the built-in InstructPix2Pix
// SD-1.x ones with every size the weights show read from the weights (as
// stable-diffusion.cpp's detect_from_weights does).
#include <nlohmann/json.hpp>

#include <cstdint>
#include <map>
#include <string>
#include <vector>

namespace via::model {

/// Tensor name -> shape, as a checkpoint's header lists them.
using ShapeMap = std::map<std::string, std::vector<int64_t>>;

/// True when `shapes` holds an original-layout UNet (`model.diffusion_model.*`).
bool is_ldm_checkpoint(const ShapeMap& shapes);

/// The component configs of an original-layout checkpoint as diffusers /
/// transformers config JSON: the built-in timbrooks/instruct-pix2pix configs
/// (SD-1.x), overridden by what the weights show (channels, block and layer
/// counts, which blocks attend, cross-attention width, transformer depth,
/// linear or conv projections, latent channels, text width/depth/vocabulary).
/// What weights cannot show keeps the SD-1.x value: group-norm groups (32),
/// attention heads (8 per UNet block, text width / 64), scaling factor
/// 0.18215, activations. A missing essential tensor throws ModelError naming
/// `where` and the tensor.
struct DetectedConfigs {
  nlohmann::json unet, vae, text_encoder, scheduler;
};
DetectedConfigs detect_ldm_configs(const ShapeMap& shapes, const std::string& where);

/// The scheduler config timbrooks/instruct-pix2pix publishes (EulerAncestral,
/// scaled_linear 0.00085..0.012, 1000 steps): what a single file runs with.
nlohmann::json builtin_ip2p_scheduler_config();

}  // namespace via::model
