#pragma once
// What a model path holds, read from its configs and checkpoint headers only
// (no weights are loaded): for `via inspect-model`.
#include <nlohmann/json.hpp>

#include <string>

namespace via::model {

/// {"path", "layout" ("diffusers folder" | "original single file"),
///  "components": {"unet"|"vae"|"text_encoder": {"files", "tensors",
///  "parameters", "dtypes": {dtype: tensors}, "config": {...}}},
///  "tokenizer": {"form", "vocab_size"}, "scheduler": {"class", "source",
///  "supported", "default"}, "instruct_pix2pix": bool (an 8-channel UNet:
///  noisy latent + image latent), "unet_in_channels", "latent_channels"}.
/// The UNet's and VAE's tensor names and shapes are checked against modules
/// built from their configs on the meta device (no memory).
/// `config_dir` as ModelOptions::config_dir for a single file. The first
/// problem found (missing file, bad config, unsupported scheduler class, ...)
/// throws ModelError naming the file.
nlohmann::json inspect_model(const std::string& path, const std::string& config_dir = "");

}  // namespace via::model
