#pragma once
// Augmentation for test-time editing adaptation (docs/ARCHITECTURE.md §4): one random
// affine transform applied identically to the source frame and its edit, so
// the tuning set teaches the edit, not the framing.
#include <ATen/core/Tensor.h>

#include <cstdint>
#include <string>

namespace via::adapt {

/// Bounds of the random transform (the paper's: ±5°, ±5 %, 75–100 % crop, ±10° shear).
struct AffineLimits {
  double max_rotation_deg = 5.0;
  double max_translation = 0.05;  // fraction of the width / height, each axis
  double min_crop = 0.75;         // side of the crop as a fraction of the frame
  double max_crop = 1.0;
  double max_shear_deg = 10.0;
};

/// One transform. Read as: the output shows a `crop`-sized window of the
/// input, rotated by `rotation_deg`, sheared by `shear_deg` along x and moved
/// by (`tx`, `ty`) fractions of the frame, resized back to the full frame.
struct AffineParams {
  double rotation_deg = 0.0;
  double tx = 0.0;
  double ty = 0.0;
  double crop = 1.0;
  double shear_deg = 0.0;

  std::string to_string() const;
};

/// The `index`-th transform of a tuning set drawn with `seed`. Depends only on
/// (seed, index, limits): the same on every machine and in every process.
AffineParams sample_affine(uint64_t seed, int64_t index, const AffineLimits& limits = {});

/// Applies `p` to images [N, C, H, W] (float or bfloat16, any device): bilinear
/// sampling, reflection at the borders so no black corners enter the tuning
/// set. Every image of the batch gets the same transform: pass the source and
/// its edit together to keep them aligned.
at::Tensor apply_affine(const at::Tensor& images, const AffineParams& p);

}  // namespace via::adapt
