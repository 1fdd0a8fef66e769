#pragma once
// A small random InstructPix2Pix model in the published diffusers layout, for
// tests and demos: complete with configs, tokenizer files and safetensors
// weights, loadable by InstructPix2Pix (and by the reference library).
#include <cstdint>
#include <string>

namespace via::model {

/// Writes the tiny model to `dir`:
///   model_index.json
///   scheduler/scheduler_config.json   (the published IP2P Euler-ancestral config)
///   tokenizer/vocab.json, merges.txt, tokenizer_config.json, special_tokens_map.json
///   text_encoder/config.json, model.safetensors         (CLIP, 2 layers, width 48)
///   unet/config.json, diffusion_pytorch_model.safetensors  (3 blocks 24-48-48, linear projections)
///   vae/config.json, diffusion_pytorch_model.safetensors   (4 blocks: 8x downsampling, as SD)
/// The architecture deliberately differs from the reference's tiny model
/// (tests/reference/data/tiny_ip2p). Weights are drawn from a generator
/// seeded with `seed` (same seed, same bytes) and scaled so every layer
/// matters: the edit depends visibly on the image and the instruction. A
/// 64x64 edit with 10 steps takes a fraction of a second on one CPU core.
/// `dir` must not exist, be empty, or hold an earlier model (model_index.json),
/// whose files are replaced; anything else throws ModelError naming it.
void write_tiny_model(const std::string& dir, uint64_t seed = 0);

}  // namespace via::model
