// `via render` end to end (env VIA_BIN, the tiny reference model) on sources a
// phone, an editor or a PAL camera makes: every output frame is shown at its
// source frame's time, the video and its audio last as long as the source's,
// constant rates stay exact, and non-square pixels keep the picture's shape.
// Frame times are read with ffprobe, not with via's own reader.
#include <gtest/gtest.h>

#include <cstdlib>
#include <nlohmann/json.hpp>

#include "io/video_reader.h"
#include "tests/io/test_video_util.h"

namespace via::test {
namespace {

std::string env(const char* name) {
  const char* value = std::getenv(name);
  if (value == nullptr || *value == '\0') throw std::runtime_error(std::string(name) + " is not set (run through ctest)");
  return value;
}

// The smallest render that still runs every stage.
std::string render(const std::string& input, const std::string& output, const std::string& work, int long_side) {
  return "'" + env("VIA_BIN") + "' render --input '" + input + "' --output '" + output + "' --model '" +
         env("VIA_SOURCE_DIR") + "/tests/reference/data/tiny_ip2p' --instruction 'make it a pencil sketch'" +
         " --workdir '" + work + "' --long-side " + std::to_string(long_side) +
         " --steps 1 --candidates 1 --augment 1 --finetune-steps 1 --group-size 2 --chunk-frames 7 --threads 1";
}

// Every video frame's presentation time in seconds, in display order, by ffprobe.
std::vector<double> frame_times(const std::string& path, const TempDir& dir) {
  const RunResult r =
      run("ffprobe -v error -select_streams v:0 -show_entries frame=pts_time -of json '" + path + "'", dir);
  if (r.exit_code != 0) throw std::runtime_error("ffprobe " + path + ": " + r.err);
  std::vector<double> times;
  for (const auto& frame : nlohmann::json::parse(r.out)["frames"]) {
    times.push_back(std::stod(frame["pts_time"].get<std::string>()));
  }
  return times;
}

class VariableRateRender : public ::testing::TestWithParam<const char*> {};

TEST_P(VariableRateRender, EveryFrameKeepsItsTimeAndTheAudioItsLength) {
  TempDir dir;
  const std::string source = make_vfr_video(dir, "source.mp4", GetParam());
  const std::string output = dir.file("edited.mp4");
  const RunResult r = run(render(source, output, dir.file("work"), 48), dir);
  ASSERT_EQ(r.exit_code, 0) << r.err;

  const io::VideoInfo src = io::probe_video(source);
  const io::VideoInfo out = io::probe_video(output);
  ASSERT_TRUE(src.variable_frame_rate);
  const double tick = std::max(src.time_base.to_double(), out.time_base.to_double()) + 1e-6;  // + ffprobe's rounding
  const std::vector<double> want = frame_times(source, dir);
  const std::vector<double> got = frame_times(output, dir);
  ASSERT_EQ(got.size(), want.size());
  ASSERT_EQ(out.frame_count, src.frame_count);
  for (size_t i = 0; i < want.size(); ++i) {
    EXPECT_NEAR(got[i] - got[0], want[i] - want[0], tick) << "frame " << i;
  }
  EXPECT_NEAR(out.duration, src.duration, tick);
  EXPECT_TRUE(out.variable_frame_rate);
  EXPECT_NEAR(out.frame_rate.to_double(), src.frame_rate.to_double(), 1e-3);
  // The audio is copied until the video's end: within one AAC frame of the source's.
  ASSERT_EQ(out.audio.size(), 1u);
  ASSERT_EQ(src.audio.size(), 1u);
  EXPECT_NEAR(out.audio[0].duration, std::min(src.audio[0].duration, src.duration),
              1024.0 / src.audio[0].sample_rate);
}

INSTANTIATE_TEST_SUITE_P(Sources, VariableRateRender, ::testing::Values("dropped", "joined", "jitter"));

TEST(RenderTiming, ConstantRatesStayExact) {
  TempDir dir;
  // Matroska counts milliseconds: its 29.97 fps frames are 33 or 34 ms apart.
  for (const auto& [rate, name] : {std::pair{"30000/1001", "source.mp4"}, std::pair{"60000/1001", "source.mp4"},
                                   std::pair{"30000/1001", "source.mkv"}}) {
    SCOPED_TRACE(std::string(rate) + " " + name);
    VideoSpec spec;
    spec.width = 96;
    spec.height = 64;
    spec.rate = rate;
    spec.seconds = 0.5;
    spec.audio = true;
    const std::string source = make_video(dir, name, spec);
    const std::string output = dir.file("edited.mp4");
    std::filesystem::remove_all(dir.file("work"));
    std::filesystem::remove(output);
    const RunResult r = run(render(source, output, dir.file("work"), 48), dir);
    ASSERT_EQ(r.exit_code, 0) << r.err;
    const io::VideoInfo src = io::probe_video(source);
    const io::VideoInfo out = io::probe_video(output);
    EXPECT_EQ(out.frame_rate.to_string(), rate);
    EXPECT_FALSE(out.variable_frame_rate);
    EXPECT_EQ(out.frame_count, src.frame_count);
    EXPECT_NEAR(out.duration, src.duration, src.time_base.to_double() + 1e-9);
  }
}

TEST(RenderTiming, NonSquarePixelsKeepTheDisplayAspect) {
  TempDir dir;
  // 360x288 with 16:15 pixels: PAL's 4:3 picture, shown at 384x288.
  const std::string source = dir.file("pal.mp4");
  ffmpeg("-f lavfi -i testsrc2=size=360x288:rate=25 -vf setsar=16/15 -t 0.4 -c:v libx264 -preset ultrafast '" +
             source + "'",
         dir);
  const RunResult probe = run("'" + env("VIA_BIN") + "' probe --json '" + source + "'", dir);
  ASSERT_EQ(probe.exit_code, 0) << probe.err;
  const nlohmann::json facts = nlohmann::json::parse(probe.out)["video"];
  EXPECT_EQ(facts["sample_aspect_ratio"], "16:15");
  EXPECT_EQ(facts["display_width"], 384);
  EXPECT_EQ(facts["display_height"], 288);
  EXPECT_EQ(facts["display_aspect_ratio"], "4:3");

  // Long side 96: 96x72 when the pixels' shape is honoured, 96x80 (squeezed) when not.
  const std::string output = dir.file("edited.mp4");
  const RunResult r = run(render(source, output, dir.file("work"), 96), dir);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const io::VideoInfo out = io::probe_video(output);
  const io::Size shown = out.display_size();
  EXPECT_EQ(shown.width * 3, shown.height * 4) << shown.width << "x" << shown.height;
  EXPECT_EQ(out.width, 96);
  EXPECT_EQ(out.height, 72);
}

}  // namespace
}  // namespace via::test
