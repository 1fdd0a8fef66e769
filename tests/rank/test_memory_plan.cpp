// The memory plan on a full-size model, without the model: SD-1.5's
// attention layers at 512x512 (what group_layers() gives for its UNet;
// test_render checks group_layers() against the gathered group byte for
// byte), the group's size, the device's share and the refusals.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "rank/memory_plan.h"

using via::rank::GroupLayer;
using via::rank::MemoryPlan;
using via::rank::PlanInputs;
using via::rank::RenderSettings;
using via::rank::SettingsError;

namespace {

constexpr double kGiB = 1024.0 * 1024.0 * 1024.0;

// SD-1.5 (block_out_channels 320/640/1280/1280, 2 layers per down block, 3
// per up block, one transformer each) at 512x512: latents 64x64.
PlanInputs sd15_512() {
  PlanInputs in;
  const struct {
    int64_t tokens, channels, layers;
  } levels[] = {{64 * 64, 320, 5}, {32 * 32, 640, 5}, {16 * 16, 1280, 5}, {8 * 8, 1280, 1}};
  for (const auto& l : levels)
    for (int64_t i = 0; i < l.layers; ++i) {
      in.layers.push_back({"attn1", false, l.tokens, l.channels});
      in.layers.push_back({"attn2", true, 77, l.channels});
    }
  in.frame_count = 600;
  in.latent_pixels = 64 * 64;
  in.base_channels = 320;
  in.element_size = 2;  // fp16
  return in;
}

RenderSettings sd_settings() {
  RenderSettings s;
  s.steps = 20;
  s.group_size = 4;
  return s;
}

std::string refusal(const PlanInputs& in, const RenderSettings& s) {
  try {
    via::rank::checked_memory_plan(in, s);
  } catch (const SettingsError& e) {
    return e.what();
  }
  return "";
}

}  // namespace

// The estimate (about 11-12 GB for 20 steps, 3 branches, 4 key
// frames in fp16): 20 steps of 554 MB of self-attention, and cross-attention
// once (11.5 MB) instead of per step and key frame (923 MB).
TEST(MemoryPlan, Sd15At512) {
  const MemoryPlan p = via::rank::plan_memory(sd15_512(), sd_settings());
  EXPECT_EQ(p.rows, 3);
  EXPECT_EQ(p.key_frames, 4);
  EXPECT_EQ(p.steps, 20);
  EXPECT_EQ(p.step_bytes, 554434560);
  EXPECT_EQ(p.cross_bytes, 11531520);
  EXPECT_EQ(p.cross_bytes_per_step_and_frame, 922521600);
  EXPECT_EQ(p.group_bytes(), 11100222720);
  EXPECT_EQ(p.host_bytes(), p.group_bytes() + p.step_bytes);
  EXPECT_EQ(p.batch_frames, 1) << "auto on the CPU";
  EXPECT_EQ(p.device_bytes(), 0) << "on the CPU the host holds it";
  RenderSettings half = sd_settings();
  half.swap_steps = 10;
  EXPECT_EQ(via::rank::plan_memory(sd15_512(), half).group_bytes(), int64_t{10} * 554434560 + 11531520);
  half.swap_layers = via::adapt::LayerSet::Cross;
  EXPECT_EQ(via::rank::plan_memory(sd15_512(), half).group_bytes(), 11531520);
  RenderSettings own = sd_settings();
  own.attention = via::adapt::AttentionMode::Own;
  EXPECT_EQ(via::rank::plan_memory(sd15_512(), own).group_bytes(), 0);
}

// On a GPU the device holds two steps' group (the step in use and the next,
// copied while it computes; and cross-attention's) unless
// the whole group takes at most half of it; the automatic batch fills what
// is left (at most 16).
TEST(MemoryPlan, TheDeviceHoldsTwoStepsUnlessTheGroupFitsEasily) {
  PlanInputs in = sd15_512();
  in.limits.device_is_host = false;
  in.limits.device = 16 * kGiB;
  MemoryPlan p = via::rank::plan_memory(in, sd_settings());
  EXPECT_FALSE(p.whole_on_device);
  EXPECT_EQ(p.device_group_bytes(), 2 * int64_t{554434560} + 11531520) << "the step in use and the next";
  EXPECT_EQ(p.batch_frames, 12);
  EXPECT_LE(static_cast<double>(p.device_bytes()), in.limits.device);
  EXPECT_EQ(p.problem(), "");
  in.limits.device = 80 * kGiB;
  p = via::rank::plan_memory(in, sd_settings());
  EXPECT_TRUE(p.whole_on_device);
  EXPECT_EQ(p.batch_frames, 16);
  in.limits.device = -1;  // unknown: one frame at a time, one step at a time
  p = via::rank::plan_memory(in, sd_settings());
  EXPECT_FALSE(p.whole_on_device);
  EXPECT_EQ(p.batch_frames, 1);
}

// A plan that does not fit is refused in one line naming the need, the
// limit and each setting that alone would fit.
TEST(MemoryPlan, RefusalsNameTheSettingsThatFit) {
  PlanInputs in = sd15_512();
  in.limits.host = 8 * kGiB;
  in.limits.host_source = "--host-memory";
  EXPECT_EQ(refusal(in, sd_settings()),
            "the attention group needs 10.9 GiB of host memory per rank (the group and one step in transit), more "
            "than the 8.0 GiB there are (--host-memory); any one of these fits: --swap-steps 14, --group-size 2 or "
            "--swap-layers cross");
  RenderSettings fewer = sd_settings();
  fewer.swap_steps = 14;
  EXPECT_EQ(refusal(in, fewer), "");
  in.limits.host = -1;
  in.limits.device_is_host = false;
  in.limits.device = 4 * kGiB;
  in.limits.device_source = "free device memory";
  RenderSettings batched = sd_settings();
  batched.batch_frames = 8;
  const std::string device = refusal(in, batched);
  EXPECT_NE(device.find("8 frames per UNet call need"), std::string::npos) << device;
  EXPECT_NE(device.find("of device memory per rank"), std::string::npos) << device;
  EXPECT_NE(device.find("--batch-frames 3"), std::string::npos) << device;
  EXPECT_EQ(device.find('\n'), std::string::npos);
}
