#include <gtest/gtest.h>

#include "rank/settings.h"

using via::rank::RenderSettings;
using via::rank::SettingsError;

namespace {
RenderSettings valid() {
  RenderSettings s;
  s.input = "in.mp4";
  s.model = "model";
  s.instruction = "make it a pencil sketch";
  s.output = "out.mp4";
  return s;
}

// Every setting different from its default (and from valid()'s).
RenderSettings every_field_changed() {
  RenderSettings s;
  s.input = "/clips/in.mov";
  s.model = "/models/ip2p";
  s.instruction = "turn the car green";
  s.mask = "masks/%05d.png";
  s.long_side = 384;
  s.resize = "crop";
  s.steps = 12;
  s.scheduler = "dpmpp_2m_karras";
  s.text_guidance = 3.25;
  s.image_guidance = 1.75;
  s.seed = 18446744073709551557ULL;
  s.dtype = "bf16";
  s.root_frame = 7;
  s.candidates = 6;
  s.root_seed = 2;
  s.augment = 9;
  s.finetune = "full";
  s.lora_rank = 8;
  s.learning_rate = 3e-4;
  s.finetune_steps = 40;
  s.condition_dropout = 0.1;
  s.attention = "anchor";
  s.group_size = 5;
  s.swap_steps = 6;
  s.swap_layers = "cross";
  s.noise = "shared";
  s.mask_feather = 2.5;
  s.output = "/out/edited.mp4";
  s.crf = 23;
  s.preset = "slow";
  s.chunk_frames = 8;
  return s;
}
}  // namespace

TEST(Settings, JsonRoundTripKeepsEverySetting) {
  RenderSettings s = valid();
  s.steps = 12;
  s.seed = 99;
  s.attention = "anchor";
  s.mask = "masks/%05d.png";
  s.learning_rate = 3e-4;
  s.noise = "shared";
  const RenderSettings back = RenderSettings::from_json(s.to_json());
  EXPECT_EQ(back.to_json(), s.to_json());
  EXPECT_EQ(back.hash(), s.hash());
}

TEST(Settings, HashNamesTheDifferingSettingAndIgnoresTheOutputPath) {
  RenderSettings a = valid(), b = valid();
  b.output = "elsewhere.mp4";
  EXPECT_EQ(a.hash(), b.hash());
  EXPECT_EQ(a.first_difference(b), "");
  b.group_size = 6;
  EXPECT_NE(a.hash(), b.hash());
  EXPECT_EQ(a.first_difference(b), "group_size");
}

TEST(Settings, ValidationNamesTheBadSetting) {
  RenderSettings s = valid();
  s.validate();
  s.instruction = "   ";
  try {
    s.validate();
    FAIL() << "an empty instruction must be refused";
  } catch (const SettingsError& e) {
    EXPECT_NE(std::string(e.what()).find("--instruction"), std::string::npos);
  }
  s = valid();
  s.long_side = 500;  // not a multiple of 8
  EXPECT_THROW(s.validate(), SettingsError);
  s = valid();
  s.swap_steps = s.steps + 1;
  EXPECT_THROW(s.validate(), SettingsError);
  s = valid();
  s.root_seed = s.candidates;
  EXPECT_THROW(s.validate(), SettingsError);
  s = valid();
  s.noise = "per-rank";
  EXPECT_THROW(s.validate(), SettingsError);
  s = valid();
  s.scheduler = "dpmpp_2m_karras";
  s.validate();
  s.scheduler = "pndm";
  EXPECT_THROW(s.validate(), SettingsError);
}

TEST(Settings, UnknownOrMistypedSettingsAreRefused) {
  nlohmann::json j = valid().to_json();
  j["stpes"] = 3;
  EXPECT_THROW(RenderSettings::from_json(j), SettingsError);
  j = valid().to_json();
  j["steps"] = "many";
  EXPECT_THROW(RenderSettings::from_json(j), SettingsError);
}

// Work directories written before this version must keep resuming: the hash
// of the defaults and of settings with every field changed are pinned.
TEST(Settings, HashesOfExistingWorkDirectoriesAreStable) {
  EXPECT_EQ(valid().hash(), "e9fe9c56187ce421");
  EXPECT_EQ(every_field_changed().hash(), "aefb99a7c0f9068d");
}
