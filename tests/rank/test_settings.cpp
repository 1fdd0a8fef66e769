#include <gtest/gtest.h>

#include <optional>
#include <type_traits>
#include <utility>

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
  s.resize = via::io::ResizeMode::crop;
  s.steps = 12;
  s.scheduler = via::model::SchedulerKind::DpmSolverKarras;
  s.text_guidance = 3.25;
  s.image_guidance = 1.75;
  s.seed = 18446744073709551557ULL;
  s.dtype = c10::kBFloat16;
  s.root_frame = 7;
  s.candidates = 6;
  s.root_seed = 2;
  s.augment = 9;
  s.finetune = via::adapt::FinetuneMode::Full;
  s.lora_rank = 8;
  s.learning_rate = 3e-4;
  s.finetune_steps = 40;
  s.condition_dropout = 0.1;
  s.attention = via::adapt::AttentionMode::Anchor;
  s.group_size = 5;
  s.swap_steps = 6;
  s.swap_layers = via::adapt::LayerSet::Cross;
  s.noise = via::rank::NoiseMode::Shared;
  s.mask_feather = 2.5;
  s.output = "/out/edited.mp4";
  s.audio = via::io::AudioMode::None;
  s.codec = via::io::VideoCodec::HEVC;
  s.pix_fmt = "yuv420p10le";
  s.output_size = "source";
  s.crf = 23;
  s.preset = "slow";
  s.chunk_frames = 8;
  s.batch_frames = 4;
  s.host_memory = 2048;
  s.device_memory = 512.5;
  s.disk_check = "off";
  return s;
}
}  // namespace

// Every member of RenderSettings, as an aggregate: its members are counted
// by brace-initialising it from more and more values that convert to anything.
template <class T>
struct is_optional : std::false_type {};
template <class T>
struct is_optional<std::optional<T>> : std::true_type {};
// (An optional member is initialised through its own converting constructor.)
struct AnyValue {
  template <class T, class = std::enable_if_t<!is_optional<T>::value>>
  operator T() const {
    return T{};
  }
};
template <class T, class... A>
constexpr auto brace_initialises(int) -> decltype(T{std::declval<A>()...}, true) {
  return true;
}
template <class T, class... A>
constexpr bool brace_initialises(...) {
  return false;
}
template <class T, class... A>
constexpr size_t member_count() {
  if constexpr (brace_initialises<T, A..., AnyValue>(0)) return member_count<T, A..., AnyValue>();
  else return sizeof...(A);
}

TEST(Settings, EveryMemberIsARowOfTheTable) {
  EXPECT_EQ(member_count<RenderSettings>(), via::rank::settings_table().size())
      << "a member of RenderSettings without a row in settings_table() would be left out of the command line, "
         "settings.json and the hash";
  // every_field_changed() changes them all, so the round trip below covers them all.
  const RenderSettings changed = every_field_changed(), defaults;
  for (const via::rank::SettingField& f : via::rank::settings_table())
    EXPECT_NE(f.get(changed), f.get(defaults)) << f.key << " is not changed by every_field_changed()";
}

TEST(Settings, JsonRoundTripKeepsEverySetting) {
  const RenderSettings s = every_field_changed();
  const RenderSettings back = RenderSettings::from_json(nlohmann::json::parse(s.to_json().dump()));
  for (const via::rank::SettingField& f : via::rank::settings_table()) EXPECT_EQ(f.get(back), f.get(s)) << f.key;
  EXPECT_EQ(back.to_json(), s.to_json());
  EXPECT_EQ(back.hash(), s.hash());
  EXPECT_EQ(s.difference_from(back), "");
}

TEST(Settings, HashNamesTheDifferingSettingAndIgnoresTheOutputPathAndAudio) {
  RenderSettings a = valid(), b = valid();
  b.output = "elsewhere.webm";
  b.audio = via::io::AudioMode::Reencode;  // only the final join reads it
  b.batch_frames = 8;                      // resources: the frames do not depend on them
  b.host_memory = 100;
  b.device_memory = 100;
  b.codec = via::io::VideoCodec::FFV1;  // the output's video: segments are re-encoded from latents
  b.pix_fmt = "yuv444p";
  b.output_size = "1280x720";
  b.disk_check = "off";
  EXPECT_EQ(a.hash(), b.hash());
  EXPECT_EQ(a.first_difference(b), "");
  b.group_size = 6;
  EXPECT_NE(a.hash(), b.hash());
  EXPECT_EQ(a.first_difference(b), "group_size");
  EXPECT_EQ(a.difference_from(b), "--group-size is 4 there, 6 here");
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
  s.output = "edited.webm";
  s.codec = via::io::VideoCodec::ProRes;  // WebM holds VP9 only
  EXPECT_THROW(s.validate(), SettingsError);
  s = valid();
  s.pix_fmt = "rgb24";
  EXPECT_THROW(s.validate(), SettingsError);
  s = valid();
  s.output_size = "large";
  EXPECT_THROW(s.validate(), SettingsError);
  s = valid();
  s.long_side = 500;  // not a multiple of 8
  EXPECT_THROW(s.validate(), SettingsError);
  s = valid();
  s.swap_steps = s.steps + 1;
  EXPECT_THROW(s.validate(), SettingsError);
  s = valid();
  s.root_seed = s.candidates;
  EXPECT_THROW(s.validate(), SettingsError);
  // Enumerated settings are checked where their text comes in.
  s = valid();
  EXPECT_THROW(s.set("noise", "per-rank"), SettingsError);
  s.set("scheduler", "dpmpp_2m_karras");
  s.validate();
  EXPECT_THROW(s.set("scheduler", "pndm"), SettingsError);
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
