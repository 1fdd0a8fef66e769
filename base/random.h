#pragma once
// The seeds of every random draw (docs/ARCHITECTURE.md §7).
//
// Determinism contract: a draw is seeded by what it is for (the render's
// seed and the draw's own coordinates: frame, step, pair, iteration, layer),
// never by a shared generator's position. So a frame's output does not
// depend on which rank drew it, how many ranks there were, in which order
// frames were edited, or whether the render was stopped and resumed. Each
// purpose has its own stream below; a new purpose gets a new function here,
// apart from the others. Changing any of them changes every existing
// render's output: the golden and determinism tests pin them.
#include <cstdint>
#include <string_view>

namespace via::random {

/// splitmix64's finaliser (Steele, Lea, Flood 2014): a fixed, portable,
/// bijective 64-bit mix (std:: distributions differ between standard libraries).
constexpr uint64_t splitmix64(uint64_t x) {
  x += 0x9e3779b97f4a7c15ULL;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
  return x ^ (x >> 31);
}

/// The seed mixed with coordinates, one at a time: each passes through the
/// mix before the next is added, so tuples that differ anywhere give
/// unrelated seeds.
constexpr uint64_t mix_chain(uint64_t seed, int64_t a) { return splitmix64(splitmix64(seed) ^ static_cast<uint64_t>(a)); }
constexpr uint64_t mix_chain(uint64_t seed, int64_t a, int64_t b) {
  return splitmix64(mix_chain(seed, a) ^ static_cast<uint64_t>(b));
}

/// FNV-1a, 64 bit: a stable fingerprint of a text (settings, tensor
/// layouts); not a security boundary.
constexpr uint64_t fnv1a(std::string_view text) {
  uint64_t h = 0xcbf29ce484222325ULL;
  for (const char c : text) h = (h ^ static_cast<unsigned char>(c)) * 0x100000001b3ULL;
  return h;
}

// ---- the streams ----

/// make_noise's step for a frame's initial latent noise; step i >= 0 is the
/// ancestral (per-step) noise of denoising step i.
constexpr int64_t kInitialNoiseStep = -1;
/// make_noise's step for mask blending's noise of the source latent at step i
/// is kMaskNoiseStep + i: far past any real step count.
constexpr int64_t kMaskNoiseStep = 1'000'000;

/// The generator seed of make_noise(seed, frame, step): initial noise, per-step
/// noise and mask blending's noise (the steps above). `frame` -1 is the
/// shared-noise baseline's one frame.
constexpr uint64_t noise_seed(uint64_t seed, int64_t frame, int64_t step) { return mix_chain(seed, frame, step); }

/// Root candidate k is an edit with the seed `seed + k` (its noise streams
/// are noise_seed(seed + k, root frame, step)).
constexpr uint64_t candidate_seed(uint64_t seed, int64_t k) { return seed + static_cast<uint64_t>(k); }

/// The root frame when none is given: drawn from the seed.
constexpr int64_t root_frame(uint64_t seed, int64_t frames) {
  return static_cast<int64_t>(splitmix64(seed) % static_cast<uint64_t>(frames));
}

/// The state of tuning pair `pair`'s affine transform draws (augmentation).
constexpr uint64_t augment_seed(uint64_t seed, int64_t pair) {
  return splitmix64(seed) ^ splitmix64(0x5eed0000ULL + static_cast<uint64_t>(pair));
}

/// The generator seed of fine-tuning iteration `iteration`: its pair, posterior
/// noise, timestep, target noise and conditioning dropout, in that order.
/// The domain constant ("tune") keeps it apart from noise_seed.
constexpr uint64_t finetune_seed(uint64_t seed, int64_t iteration) {
  return mix_chain(seed ^ 0x7475'6e65'0000'0000ULL, iteration);
}

/// The generator seed of LoRA's initial A matrix for attention layer `layer`,
/// projection `projection`: a matrix does not depend on which other targets exist.
constexpr uint64_t lora_init_seed(uint64_t seed, int64_t layer, int64_t projection) {
  return mix_chain(seed, layer, projection);
}

}  // namespace via::random
