#pragma once
// Tensor-name conversion tables: checkpoints written in other namings than
// the diffusers / transformers module names this code's modules carry.
// Every table in checkpoint_names.cpp cites where its names come from.
#include <cstdint>
#include <optional>
#include <string>

namespace via::model {

/// Legacy VAE attention names (diffusers < 0.15 uploads): in an
/// `...attentions.N.` module, `query`/`key`/`value`/`proj_attn` become
/// `to_q`/`to_k`/`to_v`/`to_out.0`. Any other name is returned unchanged.
std::string legacy_vae_name(const std::string& name);

/// Key prefixes of the original (CompVis latent-diffusion / Stable
/// Diffusion / InstructPix2Pix) single-file checkpoint.
inline constexpr const char* kLdmUnetPrefix = "model.diffusion_model.";
inline constexpr const char* kLdmVaePrefix = "first_stage_model.";
inline constexpr const char* kLdmTextPrefix = "cond_stage_model.transformer.";

/// An original-layout UNet key (`model.diffusion_model.input_blocks.1.0.in_layers.0.weight`)
/// as the diffusers module name (`down_blocks.0.resnets.0.norm1.weight`);
/// nullopt for keys of other components. `layers_per_block` is the
/// diffusers config value (resnets per down block). Keys of the UNet that
/// the table does not know are returned unchanged (the loader reports them
/// as unexpected, under their own name).
std::optional<std::string> ldm_unet_name(const std::string& key, int64_t layers_per_block);

/// An original-layout VAE key (`first_stage_model.decoder.up.0.block.1.conv1.weight`)
/// as the diffusers name (`decoder.up_blocks.<n-1>.resnets.1.conv1.weight`);
/// `num_blocks` = len(block_out_channels) (decoder blocks are numbered in
/// reverse). nullopt for keys of other components and for the training-only
/// `first_stage_model.loss.*` (LPIPS / discriminator) weights.
std::optional<std::string> ldm_vae_name(const std::string& key, int64_t num_blocks);

/// An original-layout text-encoder key (`cond_stage_model.transformer.text_model.*`,
/// or without `text_model.` as transformers < 4.22 wrote it) as the published
/// transformers name `text_model.*`; nullopt for keys of other components.
std::optional<std::string> ldm_text_encoder_name(const std::string& key);

}  // namespace via::model
