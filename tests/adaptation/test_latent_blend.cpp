// Local latent adaptation: the blend formula, the ramp and the feathering.
#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include "adaptation/latent_blend.h"

using namespace via::adapt;

namespace {
// Left half edited (1), right half kept (0), on an 8x16 latent grid.
at::Tensor half_mask() {
  at::Tensor m = at::zeros({1, 1, 8, 16});
  m.slice(3, 0, 8).fill_(1.0);
  return m;
}
}  // namespace

TEST(LatentBlend, LastStepPinsTheOutsideToTheSource) {
  const at::Tensor m = feather_mask(half_mask(), 1.0);
  const at::Tensor z = at::randn({1, 4, 8, 16}), src = at::randn({1, 4, 8, 16});
  const at::Tensor out = blend_latents(z, src, step_mask(m, 9, 10));
  // Far from the boundary (columns 0..3 and 12..15) the result is exactly z / src.
  EXPECT_TRUE(at::allclose(out.slice(3, 0, 4), z.slice(3, 0, 4), 1e-4, 1e-4));
  EXPECT_TRUE(at::allclose(out.slice(3, 12, 16), src.slice(3, 12, 16), 1e-4, 1e-4));
}

TEST(LatentBlend, WeightRampsLinearlyOverTheSteps) {
  const at::Tensor m = half_mask();
  for (int64_t i = 0; i < 4; ++i) {
    const at::Tensor mi = step_mask(m, i, 4);
    // Inside: always 1. Outside: 1 - (i+1)/4.
    EXPECT_FLOAT_EQ(mi[0][0][3][2].item<float>(), 1.0f);
    EXPECT_FLOAT_EQ(mi[0][0][3][13].item<float>(), 1.0f - static_cast<float>(i + 1) / 4.0f);
  }
  EXPECT_THROW(step_mask(m, 4, 4), c10::Error);
}

TEST(LatentBlend, FeatheringIsMonotoneAcrossTheEdge) {
  const at::Tensor f = feather_mask(half_mask(), 1.5);
  const at::Tensor row = f[0][0][4];
  for (int64_t x = 1; x < 16; ++x) EXPECT_LE(row[x].item<float>(), row[x - 1].item<float>() + 1e-6f);
  EXPECT_GT(row[7].item<float>(), 0.5f);
  EXPECT_LT(row[8].item<float>(), 0.5f);
  EXPECT_GT(row[9].item<float>(), 0.0f) << "the edge must be soft";
  EXPECT_TRUE(at::equal(feather_mask(half_mask(), 0.0), half_mask()));
}

TEST(LatentBlend, MaskImageIsAveragedOntoTheLatentGrid) {
  at::Tensor img = at::zeros({1, 1, 64, 128});
  img.slice(3, 0, 64).fill_(1.0);
  EXPECT_TRUE(at::equal(mask_to_latent_grid(img, 8, 16), half_mask()));
}
