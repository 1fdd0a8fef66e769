// The attention group and its controls, driven directly through the seam.
#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include "adaptation/attention_group.h"

using namespace via;
using adapt::AttentionGroup;
using adapt::GatherControl;
using adapt::LayerSet;
using adapt::SwapControl;

namespace {

const std::string kSelf = "down_blocks.0.attentions.0.transformer_blocks.0.attn1";
const std::string kCross = "down_blocks.0.attentions.0.transformer_blocks.0.attn2";

model::AttentionContext context(int64_t step) {
  return {nullptr, step, {model::Branch::TextImage, model::Branch::Image, model::Branch::Uncond}};
}

// A frame's own K/V: [3 branches, 4 tokens, 2 channels], exactly representable in half.
at::Tensor kv_of(int frame, double offset) { return at::full({3, 4, 2}, frame * 10 + offset); }

}  // namespace

TEST(AttentionGroup, GatherFeedsEachKeyFrameTheOnesBeforeIt) {
  AttentionGroup group;
  const auto ctx = context(0);
  for (int i = 0; i < 3; ++i) {
    GatherControl gather(group, i, /*swap_steps=*/10, LayerSet::Both);
    const at::Tensor k = kv_of(i, 1), v = kv_of(i, 2), q = at::zeros({3, 4, 2});
    auto [gk, gv] = gather.keys_values({kSelf, false, ctx}, q, k, v);
    if (i == 0) {
      EXPECT_TRUE(at::equal(gk, k)) << "the first key frame attends to itself";
    } else {
      ASSERT_EQ(gk.size(1), 4 * i) << "key frame " << i << " sees the tokens of " << i << " earlier frames";
      for (int j = 0; j < i; ++j) {
        EXPECT_TRUE(at::equal(gk.slice(1, 4 * j, 4 * j + 4), kv_of(j, 1))) << "frame " << i << " block " << j;
        EXPECT_TRUE(at::equal(gv.slice(1, 4 * j, 4 * j + 4), kv_of(j, 2)));
      }
    }
  }
  auto [k, v] = group.get(kSelf, 0);
  EXPECT_EQ(k.scalar_type(), AttentionGroup::kStorageType);
  ASSERT_EQ(k.sizes(), (std::vector<int64_t>{3, 12, 2}));
  for (int j = 0; j < 3; ++j) EXPECT_TRUE(at::equal(k.slice(1, 4 * j, 4 * j + 4).to(at::kFloat), kv_of(j, 1)));
}

TEST(AttentionGroup, SwapIgnoresTheFramesOwnKeysAndValues) {
  AttentionGroup group;
  group.append(kSelf, 0, kv_of(0, 1), kv_of(0, 2));
  group.append(kSelf, 0, kv_of(1, 1), kv_of(1, 2));
  SwapControl swap(group, /*swap_steps=*/1, LayerSet::Both);
  const auto ctx = context(0);
  const at::Tensor q = at::zeros({3, 4, 2});
  auto a = swap.keys_values({kSelf, false, ctx}, q, at::rand({3, 4, 2}), at::rand({3, 4, 2}));
  auto b = swap.keys_values({kSelf, false, ctx}, q, at::rand({3, 4, 2}), at::rand({3, 4, 2}));
  EXPECT_TRUE(at::equal(a.first, b.first));
  EXPECT_TRUE(at::equal(a.second, b.second));
  EXPECT_TRUE(at::equal(a.first, at::cat({kv_of(0, 1), kv_of(1, 1)}, 1)));
}

TEST(AttentionGroup, SwapRespectsStepsAndLayers) {
  AttentionGroup group;
  group.append(kSelf, 0, kv_of(0, 1), kv_of(0, 2));
  SwapControl self_only(group, /*swap_steps=*/1, LayerSet::Self);
  const at::Tensor own = at::rand({3, 4, 2}), q = at::zeros({3, 4, 2});
  const auto late = context(1), early = context(0);
  EXPECT_TRUE(at::equal(self_only.keys_values({kSelf, false, late}, q, own, own).first, own))
      << "steps at or after swap_steps keep their own K/V";
  EXPECT_TRUE(at::equal(self_only.keys_values({kCross, true, early}, q, own, own).first, own))
      << "cross-attention is left alone with LayerSet::Self";
  EXPECT_FALSE(at::equal(self_only.keys_values({kSelf, false, early}, q, own, own).first, own));
}

TEST(AttentionGroup, AnchorModeAppendsTheFramesOwn) {
  AttentionGroup group;
  group.append(kSelf, 0, kv_of(0, 1), kv_of(0, 2));
  SwapControl anchor(group, 1, LayerSet::Both, /*include_own=*/true);
  const at::Tensor own = at::rand({3, 4, 2});
  const auto ctx = context(0);
  auto [k, v] = anchor.keys_values({kSelf, false, ctx}, own, own, own);
  ASSERT_EQ(k.size(1), 8);
  EXPECT_TRUE(at::equal(k.slice(1, 4, 8), own));
}

TEST(AttentionGroup, SeveralFramesPerBranchRepeatTheGroupRows) {
  AttentionGroup group;
  at::Tensor k = at::arange(3).to(at::kFloat).view({3, 1, 1}).expand({3, 4, 2}).contiguous();
  group.append(kSelf, 0, k, k);
  SwapControl swap(group, 1, LayerSet::Both);
  const at::Tensor own = at::zeros({6, 4, 2});  // 2 frames per branch: rows [TI, TI, I, I, U, U]
  const auto ctx = context(0);
  auto [gk, gv] = swap.keys_values({kSelf, false, ctx}, own, own, own);
  ASSERT_EQ(gk.size(0), 6);
  for (int r = 0; r < 6; ++r) EXPECT_EQ(gk[r][0][0].item<float>(), static_cast<float>(r / 2));
}

TEST(AttentionGroup, NamedTensorsRoundTrip) {
  AttentionGroup group;
  group.append(kSelf, 0, kv_of(0, 1), kv_of(0, 2));
  group.append(kSelf, 0, kv_of(1, 1), kv_of(1, 2));
  group.append(kCross, 3, kv_of(2, 1), kv_of(2, 2));
  const auto named = group.to_named();
  EXPECT_EQ(named.size(), 4u);
  const AttentionGroup back = AttentionGroup::from_named(named);
  EXPECT_EQ(back.size(), 2u);
  EXPECT_EQ(back.bytes(), group.bytes());
  for (const auto& [layer, step] : {std::pair{kSelf, int64_t{0}}, std::pair{kCross, int64_t{3}}}) {
    EXPECT_TRUE(at::equal(back.get(layer, step).first, group.get(layer, step).first));
    EXPECT_TRUE(at::equal(back.get(layer, step).second, group.get(layer, step).second));
  }
}

TEST(AttentionGroup, MissingEntryIsAnError) {
  AttentionGroup group;
  EXPECT_THROW(group.get(kSelf, 0), std::out_of_range);
}

// The group goes to other ranks and to disk one step at a time: step_named()
// of every step, added back with add_named(), is the group again.
TEST(AttentionGroup, StepsRoundTripOneAtATime) {
  AttentionGroup group;
  for (int64_t step : {0, 1}) {
    group.append(kSelf, step, kv_of(0, step), kv_of(0, step + 2));
    group.append(kSelf, step, kv_of(1, step), kv_of(1, step + 2));
  }
  group.append(kCross, AttentionGroup::kCrossStep, kv_of(3, 1), kv_of(3, 2));
  group.set_key_frames(2);
  EXPECT_EQ(group.steps(), (std::vector<int64_t>{AttentionGroup::kCrossStep, 0, 1}));
  EXPECT_EQ(group.step_named(AttentionGroup::kCrossStep).count(kCross + "@cross/k"), 1u);
  AttentionGroup back;
  int64_t bytes = 0;
  for (int64_t step : group.steps()) {
    const auto part = group.step_named(step);
    EXPECT_EQ(part.size(), step == AttentionGroup::kCrossStep ? 2u : 2u);
    back.add_named(part);
    bytes += group.step_bytes(step);
  }
  EXPECT_EQ(bytes, group.bytes());
  EXPECT_EQ(back.bytes(), group.bytes());
  EXPECT_EQ(back.to_named().size(), group.to_named().size());
  for (const auto& [name, t] : group.to_named()) EXPECT_TRUE(at::equal(back.to_named().at(name), t)) << name;
  std::string layer;
  int64_t step = 0;
  bool is_key = false;
  EXPECT_TRUE(AttentionGroup::parse_name(kCross + "@cross/v", &layer, &step, &is_key));
  EXPECT_EQ(layer, kCross);
  EXPECT_EQ(step, AttentionGroup::kCrossStep);
  EXPECT_FALSE(is_key);
  EXPECT_FALSE(AttentionGroup::parse_name("latents", nullptr, nullptr, nullptr));
  EXPECT_FALSE(AttentionGroup::parse_name(kSelf + "@x/k", nullptr, nullptr, nullptr));
}

// The swap holds one step's entries (and cross-attention's) at a time on its
// device; with residency Whole every entry once copied stays.
TEST(AttentionGroup, TheDeviceHoldsOneStepAtATime) {
  AttentionGroup group;
  for (int64_t step : {0, 1, 2}) group.append(kSelf, step, kv_of(0, step), kv_of(0, step));
  group.append(kCross, AttentionGroup::kCrossStep, kv_of(3, 1), kv_of(3, 2));
  group.set_key_frames(1);
  SwapControl swap(group, 3, LayerSet::Both);
  const at::Tensor own = at::zeros({3, 4, 2});
  const int64_t step_bytes = group.step_bytes(0), cross_bytes = group.step_bytes(AttentionGroup::kCrossStep);
  for (int64_t step : {0, 1, 2}) {
    const auto ctx = context(step);
    swap.keys_values({kSelf, false, ctx}, own, own, own);
    swap.keys_values({kCross, true, ctx}, own, own, own);
    EXPECT_EQ(group.device_bytes(), step_bytes + cross_bytes) << "step " << step;
  }
  EXPECT_EQ(group.peak_device_bytes(), step_bytes + cross_bytes);
  group.set_device_residency(AttentionGroup::DeviceResidency::Whole);
  for (int64_t step : {0, 1, 2}) {
    const auto ctx = context(step);
    swap.keys_values({kSelf, false, ctx}, own, own, own);
  }
  EXPECT_EQ(group.device_bytes(), group.bytes());
}

// A cross-attention layer's entry is one key frame's: the swap hands out G
// copies of it, as if each key frame's had been stored.
TEST(AttentionGroup, CrossAttentionIsRepeatedForEveryKeyFrame) {
  AttentionGroup group;
  group.append(kCross, AttentionGroup::kCrossStep, kv_of(3, 1), kv_of(3, 2));
  group.set_key_frames(4);
  SwapControl swap(group, 1, LayerSet::Both);
  const at::Tensor own = at::zeros({6, 4, 2});  // 2 frames per branch
  const auto ctx = context(0);
  auto [k, v] = swap.keys_values({kCross, true, ctx}, own, own, own);
  ASSERT_EQ(k.sizes(), (std::vector<int64_t>{6, 16, 2}));
  for (int j = 0; j < 4; ++j) EXPECT_TRUE(at::equal(k.slice(1, 4 * j, 4 * j + 4), kv_of(3, 1).repeat_interleave(2, 0)));
  EXPECT_TRUE(at::equal(v.slice(1, 12, 16), kv_of(3, 2).repeat_interleave(2, 0)));
}
