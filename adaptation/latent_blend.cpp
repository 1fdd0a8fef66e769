#include "adaptation/latent_blend.h"

#include <ATen/TensorOperators.h>
#include <ATen/ops/adaptive_avg_pool2d.h>
#include <ATen/ops/arange.h>
#include <ATen/ops/conv2d.h>
#include <ATen/ops/exp.h>
#include <ATen/ops/replication_pad2d.h>
#include <c10/util/Exception.h>

#include <cmath>

namespace via::adapt {

at::Tensor mask_to_latent_grid(const at::Tensor& mask, int64_t h, int64_t w) {
  TORCH_CHECK(mask.dim() == 4 && mask.size(1) == 1, "mask must be [1, 1, H, W], got ", mask.sizes());
  return at::adaptive_avg_pool2d(mask.to(at::kFloat), {h, w}).clamp(0.0, 1.0);
}

at::Tensor feather_mask(const at::Tensor& mask, double sigma) {
  TORCH_CHECK(mask.dim() == 4 && mask.size(1) == 1, "mask must be [1, 1, h, w], got ", mask.sizes());
  if (sigma <= 0) return mask;
  const int64_t radius = static_cast<int64_t>(std::ceil(3 * sigma));
  const at::Tensor x = at::arange(-radius, radius + 1, mask.options().dtype(at::kFloat));
  at::Tensor kernel = at::exp(-(x * x) / (2 * sigma * sigma));
  kernel = kernel / kernel.sum();
  // Separable blur: rows, then columns.
  at::Tensor out = at::replication_pad2d(mask.to(at::kFloat), {radius, radius, radius, radius});
  out = at::conv2d(out, kernel.view({1, 1, 1, -1}));
  out = at::conv2d(out, kernel.view({1, 1, -1, 1}));
  return out.clamp(0.0, 1.0);
}

at::Tensor step_mask(const at::Tensor& feathered, int64_t step, int64_t num_steps) {
  TORCH_CHECK(num_steps > 0 && step >= 0 && step < num_steps, "step ", step, " out of range for ", num_steps,
              " steps");
  const double w = static_cast<double>(step + 1) / static_cast<double>(num_steps);
  return 1.0 - w * (1.0 - feathered);
}

at::Tensor blend_latents(const at::Tensor& z, const at::Tensor& z_src, const at::Tensor& m) {
  const at::Tensor mm = m.to(z.scalar_type());
  return mm * z + (1.0 - mm) * z_src.to(z.scalar_type());
}

}  // namespace via::adapt
