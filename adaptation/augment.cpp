#include "adaptation/augment.h"

#include <ATen/ops/affine_grid_generator.h>
#include <ATen/ops/grid_sampler.h>
#include <ATen/ops/tensor.h>
#include <c10/util/Exception.h>

#include <cmath>
#include <cstdio>

#include "base/random.h"

namespace via::adapt {
namespace {

constexpr double kPi = 3.14159265358979323846;

class Uniform {
 public:
  explicit Uniform(uint64_t state) : state_(state) {}
  /// A double in [lo, hi).
  double operator()(double lo, double hi) {
    state_ = random::splitmix64(state_);
    const double u = static_cast<double>(state_ >> 11) * 0x1.0p-53;
    return lo + (hi - lo) * u;
  }

 private:
  uint64_t state_;
};

}  // namespace

std::string AffineParams::to_string() const {
  char buf[160];
  std::snprintf(buf, sizeof(buf), "rotation %.2f deg, translation (%.3f, %.3f), crop %.3f, shear %.2f deg",
                rotation_deg, tx, ty, crop, shear_deg);
  return buf;
}

AffineParams sample_affine(uint64_t seed, int64_t index, const AffineLimits& limits) {
  TORCH_CHECK(limits.min_crop > 0 && limits.min_crop <= limits.max_crop && limits.max_crop <= 1.0,
              "augmentation crop range must satisfy 0 < min <= max <= 1");
  Uniform u(random::augment_seed(seed, index));
  AffineParams p;
  p.rotation_deg = u(-limits.max_rotation_deg, limits.max_rotation_deg);
  p.tx = u(-limits.max_translation, limits.max_translation);
  p.ty = u(-limits.max_translation, limits.max_translation);
  p.crop = u(limits.min_crop, limits.max_crop);
  p.shear_deg = u(-limits.max_shear_deg, limits.max_shear_deg);
  return p;
}

at::Tensor apply_affine(const at::Tensor& images, const AffineParams& p) {
  TORCH_CHECK(images.dim() == 4, "apply_affine expects [N, C, H, W], got ", images.sizes());
  const int64_t n = images.size(0), h = images.size(2), w = images.size(3);
  // The sampling map, in pixel units centred on the frame:
  //   p_in = crop * R(rotation) * Shear_x(shear) * p_out + t
  const double r = p.rotation_deg * kPi / 180.0, s = std::tan(p.shear_deg * kPi / 180.0);
  const double c = std::cos(r), sn = std::sin(r);
  // R * Shear_x = [[c, c*s - sn], [sn, sn*s + c]]
  double a00 = p.crop * c, a01 = p.crop * (c * s - sn);
  double a10 = p.crop * sn, a11 = p.crop * (sn * s + c);
  // affine_grid works in normalised [-1, 1] coordinates per axis; convert the
  // pixel-space matrix (x scaled by w/2, y by h/2) so rotations are not skewed
  // on non-square frames.
  const double aspect = static_cast<double>(h) / static_cast<double>(w);
  a01 *= aspect;
  a10 /= aspect;
  const double tx = 2.0 * p.tx, ty = 2.0 * p.ty;  // fractions of the frame -> normalised units
  const at::Tensor theta =
      at::tensor({a00, a01, tx, a10, a11, ty}, images.options().dtype(at::kFloat)).view({1, 2, 3}).expand({n, 2, 3});
  const at::Tensor grid = at::affine_grid_generator(theta, images.sizes(), /*align_corners=*/false);
  const at::Tensor in = images.scalar_type() == at::kFloat ? images : images.to(at::kFloat);
  // interpolation 0 = bilinear, padding 2 = reflection
  at::Tensor out = at::grid_sampler(in, grid, 0, 2, /*align_corners=*/false);
  return out.to(images.scalar_type());
}

}  // namespace via::adapt
