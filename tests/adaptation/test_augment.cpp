// Augmentation: bounds, seeded repeatability, one transform for the whole
// batch, and the geometry of the sampling map.
#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <set>

#include "adaptation/augment.h"

using via::adapt::AffineLimits;
using via::adapt::AffineParams;
using via::adapt::apply_affine;
using via::adapt::sample_affine;

TEST(Augment, ParametersStayWithinThePapersBounds) {
  const AffineLimits lim;
  std::set<double> rotations;
  for (int64_t i = 0; i < 2000; ++i) {
    const AffineParams p = sample_affine(7, i, lim);
    EXPECT_LE(std::abs(p.rotation_deg), 5.0);
    EXPECT_LE(std::abs(p.tx), 0.05);
    EXPECT_LE(std::abs(p.ty), 0.05);
    EXPECT_GE(p.crop, 0.75);
    EXPECT_LE(p.crop, 1.0);
    EXPECT_LE(std::abs(p.shear_deg), 10.0);
    rotations.insert(p.rotation_deg);
  }
  EXPECT_GT(rotations.size(), 1990u) << "transforms should differ from one index to the next";
}

TEST(Augment, SameSeedAndIndexGiveTheSameTransform) {
  const AffineParams a = sample_affine(42, 3), b = sample_affine(42, 3);
  EXPECT_EQ(a.rotation_deg, b.rotation_deg);
  EXPECT_EQ(a.tx, b.tx);
  EXPECT_EQ(a.crop, b.crop);
  EXPECT_EQ(a.shear_deg, b.shear_deg);
  EXPECT_NE(sample_affine(42, 4).rotation_deg, a.rotation_deg);
  EXPECT_NE(sample_affine(43, 3).rotation_deg, a.rotation_deg);
}

TEST(Augment, IdentityLeavesImagesUnchanged) {
  const at::Tensor x = at::rand({2, 3, 24, 40});
  EXPECT_TRUE(at::allclose(apply_affine(x, AffineParams{}), x, 1e-5, 1e-5));
}

TEST(Augment, OneTransformForTheWholeBatch) {
  const at::Tensor src = at::rand({1, 3, 32, 48}), edit = at::rand({1, 3, 32, 48});
  const AffineParams p = sample_affine(1, 0);
  const at::Tensor both = apply_affine(at::cat({src, edit}), p);
  EXPECT_TRUE(at::equal(both[0], apply_affine(src, p)[0]));
  EXPECT_TRUE(at::equal(both[1], apply_affine(edit, p)[0]));
  EXPECT_FALSE(at::allclose(both[0], src, 1e-3, 1e-3)) << "a random transform should move pixels";
}

TEST(Augment, TranslationMovesByWholePixels) {
  const int64_t h = 16, w = 20;
  const at::Tensor x = at::rand({1, 1, h, w});
  AffineParams p;
  p.tx = 1.0 / static_cast<double>(w);  // output(x) samples input(x + 1 pixel)
  p.ty = -2.0 / static_cast<double>(h);  // output(y) samples input(y - 2 pixels)
  const at::Tensor y = apply_affine(x, p);
  const at::Tensor inner_out = y.slice(2, 2, h).slice(3, 0, w - 1);
  const at::Tensor inner_in = x.slice(2, 0, h - 2).slice(3, 1, w);
  EXPECT_TRUE(at::allclose(inner_out, inner_in, 1e-5, 1e-5));
}

TEST(Augment, RotationIsRigidOnSquareFrames) {
  const at::Tensor x = at::rand({1, 2, 12, 12});
  AffineParams p;
  p.rotation_deg = 90.0;
  // Sampling map p_in = R(90) p_out: output(x, y) = input(-y, x) in centred
  // coordinates, i.e. a transpose followed by a flip of the rows.
  const at::Tensor expected = x.transpose(2, 3).flip({2});
  EXPECT_TRUE(at::allclose(apply_affine(x, p), expected, 1e-4, 1e-4));
}

TEST(Augment, CropZoomsIntoTheCentre) {
  // A horizontal ramp: zooming by crop c scales the slope by c around the centre.
  const int64_t w = 64;
  const at::Tensor ramp = at::linspace(-1, 1, w).view({1, 1, 1, w}).expand({1, 1, 8, w}).contiguous();
  AffineParams p;
  p.crop = 0.75;
  const at::Tensor y = apply_affine(ramp, p);
  EXPECT_TRUE(at::allclose(y, ramp * 0.75, 1e-4, 1e-4));
}
