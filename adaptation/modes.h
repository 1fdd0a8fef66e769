#pragma once
// The modes of adaptation a render chooses between, apart from the code that
// runs them, so that settings can hold them without the model's headers.
// Names are the command line's.
#include <string>

namespace via::adapt {

/// How each frame attends (docs/ARCHITECTURE.md §5): `own` (plain
/// frame-by-frame editing), `anchor` (the key frames' K/V plus its own, as in
/// Fairy), `gather-swap` (Via: the key frames' K/V instead of its own).
enum class AttentionMode { Own, Anchor, GatherSwap };
/// "own" | "anchor" | "gather-swap"; anything else throws std::invalid_argument
/// naming the accepted values.
AttentionMode attention_mode_from_name(const std::string& name);
std::string attention_mode_name(AttentionMode mode);

/// Which attention layers the gather and the swap act on.
enum class LayerSet { Self, Cross, Both };
/// "self" | "cross" | "both".
LayerSet layer_set_from_name(const std::string& name);
std::string layer_set_name(LayerSet layers);

/// What fine-tuning trains (docs/ARCHITECTURE.md §4).
enum class FinetuneMode {
  Lora,  ///< a LoraAdapter on the attention projections; base weights frozen
  Full,  ///< every UNet parameter (the "adapter" is then the whole UNet state)
  Off,   ///< no fine-tuning
};
/// "lora" | "full" | "off"; anything else throws std::invalid_argument naming it.
FinetuneMode finetune_mode_from_name(const std::string& name);
std::string finetune_mode_name(FinetuneMode mode);

}  // namespace via::adapt
