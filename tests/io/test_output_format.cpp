// io::plan_output(): the container from the extension, its video encoder, and
// each audio stream copied or re-encoded, decided from the source's facts
// alone (no file is read), so that a render can refuse before any compute.
#include <gtest/gtest.h>

#include "io/output_format.h"

namespace via::io {
namespace {

VideoInfo source_with(std::vector<std::string> audio_codecs) {
  VideoInfo v;
  v.path = "/clips/camera.mov";
  int index = 1;
  for (const std::string& codec : audio_codecs) {
    AudioStreamInfo a;
    a.stream_index = index++;
    a.codec = codec;
    a.sample_rate = 48000;
    a.channels = 2;
    v.audio.push_back(a);
  }
  return v;
}

std::string message_of(const std::string& output, const VideoInfo& v, AudioMode mode) {
  try {
    plan_output(output, v, mode);
  } catch (const VideoError& e) {
    return e.what();
  }
  return "";
}

TEST(OutputFormat, ContainerAndVideoCodecComeFromTheExtension) {
  const VideoInfo v = source_with({});
  EXPECT_EQ(plan_output("a.mp4", v, AudioMode::Auto).video, VideoCodec::H264);
  EXPECT_EQ(plan_output("a.MKV", v, AudioMode::Auto).muxer, "matroska");
  EXPECT_EQ(plan_output("a.mov", v, AudioMode::Auto).muxer, "mov");
  const OutputPlan webm = plan_output("a.webm", v, AudioMode::Auto);
  EXPECT_EQ(webm.video, VideoCodec::VP9);
  EXPECT_EQ(webm.muxer, "webm");
  EXPECT_EQ(video_codec_for("x/edited.webm"), VideoCodec::VP9);
  EXPECT_EQ(video_codec_for("edited.mp4"), VideoCodec::H264);
  for (const char* bad : {"a.avi", "a.ts", "a", "a.gif"}) {
    const std::string m = message_of(bad, v, AudioMode::Auto);
    EXPECT_NE(m.find(".mp4, .mkv, .mov or .webm"), std::string::npos) << bad << ": " << m;
  }
  EXPECT_NE(message_of("a.avi", v, AudioMode::Auto).find("not .avi"), std::string::npos);
}

TEST(OutputFormat, AutoCopiesWhatTheContainerHoldsAndReencodesTheRest) {
  const VideoInfo v = source_with({"pcm_s16le", "aac"});
  const OutputPlan mp4 = plan_output("a.mp4", v, AudioMode::Auto);
  ASSERT_EQ(mp4.audio.size(), 2u);
  EXPECT_FALSE(mp4.audio[0].copy);
  EXPECT_EQ(mp4.audio[0].encoder, "aac");
  EXPECT_EQ(mp4.audio[0].source_stream, 1);
  EXPECT_TRUE(mp4.audio[1].copy);
  EXPECT_EQ(mp4.audio[1].source_stream, 2);
  EXPECT_NE(mp4.describe().find("pcm_s16le re-encoded to aac (a .mp4 file cannot hold pcm_s16le)"), std::string::npos)
      << mp4.describe();
  for (const char* ext : {"a.mov", "a.mkv"}) {
    const OutputPlan p = plan_output(ext, v, AudioMode::Auto);
    EXPECT_TRUE(p.audio[0].copy && p.audio[1].copy) << ext;
  }
  const OutputPlan webm = plan_output("a.webm", v, AudioMode::Auto);
  EXPECT_EQ(webm.audio[1].encoder, "libopus");
  EXPECT_EQ(webm.audio[1].codec, "opus");
  EXPECT_TRUE(plan_output("a.webm", source_with({"opus"}), AudioMode::Auto).audio[0].copy);
}

TEST(OutputFormat, CopyRefusesReencodeAlwaysReencodesNoneDrops) {
  const VideoInfo v = source_with({"pcm_s16le"});
  const std::string m = message_of("a.mp4", v, AudioMode::Copy);
  EXPECT_NE(m.find("--audio copy: the pcm_s16le audio of /clips/camera.mov cannot be stored in a .mp4 file"),
            std::string::npos)
      << m;
  EXPECT_NE(message_of("a.webm", source_with({"aac"}), AudioMode::Copy).find("--audio copy"), std::string::npos);
  EXPECT_TRUE(plan_output("a.mov", v, AudioMode::Copy).audio[0].copy);
  const OutputPlan re = plan_output("a.mkv", source_with({"aac"}), AudioMode::Reencode);
  EXPECT_FALSE(re.audio[0].copy);
  EXPECT_EQ(re.audio[0].encoder, "aac");
  EXPECT_TRUE(plan_output("a.mp4", v, AudioMode::None).audio.empty());
}

}  // namespace
}  // namespace via::io
