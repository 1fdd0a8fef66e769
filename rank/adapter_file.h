#pragma once
// The LoRA adapter's file (adapter.h5 of a work directory, docs/ARCHITECTURE.md §9):
// the file side of adaptation/lora.h, which computes and owns no file.
#include <map>
#include <string>

#include "adaptation/lora.h"
#include "io/checkpoint.h"

namespace via::rank {

/// Saves the adapter's tensors and settings to a checkpoint file
/// (io/checkpoint.h): the tensors under their names, and the attributes
/// "lora_rank" (int), "lora_alpha" (double) and "lora_targets" (comma-separated),
/// with `attributes` (the render key).
void save_lora(const std::string& path, const adapt::LoraAdapter& adapter,
               std::map<std::string, io::Attribute> attributes = {});

/// Loads a file written by save_lora into `adapter`. Throws io::CheckpointError
/// for an unreadable file and std::invalid_argument when its rank, alpha,
/// targets or tensors do not match the adapter's.
void load_lora(const std::string& path, adapt::LoraAdapter& adapter);

/// The LoraOptions stored in a file written by save_lora (the seed is not
/// stored: it only matters for fresh adapters).
adapt::LoraOptions read_lora_options(const std::string& path);

}  // namespace via::rank
