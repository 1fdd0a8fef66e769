// io/video_writer.h: encode/decode round trips on FFmpeg test videos.
#include <gtest/gtest.h>

#include <filesystem>
#include <functional>

#include "io/video_reader.h"
#include "io/video_writer.h"
#include "tests/io/test_video_util.h"

namespace via::io {
namespace {

using test::TempDir;
using test::VideoSpec;

std::vector<Frame> read_all(const std::string& path) {
  VideoReader reader(path);
  return reader.read_range(0, reader.info().frame_count);
}

struct RoundTripCase {
  const char* name;
  int width, height;
  const char* rate;
  Rational expected_rate;
  int64_t frames;
};

class WriterRoundTrip : public ::testing::TestWithParam<RoundTripCase> {};

TEST_P(WriterRoundTrip, KeepsCountRateSizeAndPixels) {
  const RoundTripCase& c = GetParam();
  TempDir dir;
  VideoSpec spec;
  spec.width = c.width;
  spec.height = c.height;
  spec.rate = c.rate;
  spec.seconds = 1;
  // Odd sides need 4:4:4 in the source; the output is always 4:2:0.
  spec.video_codec = std::string("-c:v libx264 -preset ultrafast -qp 0 -pix_fmt ") +
                     (c.width % 2 != 0 || c.height % 2 != 0 ? "yuv444p" : "yuv420p");
  const std::string source = test::make_video(dir, "source.mp4", spec);
  const VideoInfo in = probe_video(source);
  ASSERT_EQ(in.frame_count, c.frames);
  ASSERT_EQ(in.frame_rate, c.expected_rate);
  const std::vector<Frame> frames = read_all(source);

  const std::string output = dir.file("out.mp4");
  EncodeOptions options;
  options.crf = 18;
  options.preset = "veryfast";
  VideoWriter writer(output, {c.width, c.height}, in.frame_rate, options);
  const Size even{c.width & ~1, c.height & ~1};
  EXPECT_EQ(writer.encoded_size(), even);
  EXPECT_EQ(writer.frame_size(), (Size{c.width, c.height}));
  for (const Frame& f : frames) writer.write(f);
  EXPECT_EQ(writer.frames_written(), c.frames);
  EXPECT_FALSE(std::filesystem::exists(output)) << "the file appears only when finished";
  writer.finish();
  ASSERT_TRUE(std::filesystem::exists(output));
  EXPECT_FALSE(std::filesystem::exists(output + ".part"));

  const VideoInfo out = probe_video(output);
  EXPECT_EQ(out.codec, "h264");
  EXPECT_EQ(out.pixel_format, "yuv420p");
  EXPECT_EQ(out.width, even.width);
  EXPECT_EQ(out.height, even.height);
  EXPECT_EQ(out.frame_count, c.frames);
  EXPECT_EQ(out.frame_rate, c.expected_rate);
  EXPECT_NEAR(out.duration, in.duration, 1e-6);
  EXPECT_EQ(out.start_time, 0.0);
  EXPECT_TRUE(out.audio.empty());

  const std::vector<Frame> decoded = read_all(output);
  ASSERT_EQ(decoded.size(), frames.size());
  double worst_rgb = 99.0, worst_luma = 99.0;
  for (size_t i = 0; i < decoded.size(); ++i) {
    EXPECT_EQ(decoded[i].index, static_cast<int64_t>(i));
    EXPECT_NEAR(decoded[i].seconds, frames[i].seconds, 1e-9);
    // Odd sources lose their last column / row (see VideoWriter).
    const RgbImage expected = test::top_left(frames[i].image, even.width, even.height);
    worst_rgb = std::min(worst_rgb, test::psnr(expected, decoded[i].image));
    worst_luma = std::min(worst_luma, test::luma_psnr(expected, decoded[i].image));
  }
  // Measured: luma 35.5..39.7 dB, RGB 25.7..29.2 dB (RGB also counts the chroma
  // detail that 4:2:0 drops on testsrc2's saturated edges). A wrong colour
  // matrix (BT.601 data tagged BT.709) brings luma down to 24.7..28.6 dB.
  EXPECT_GT(worst_luma, 34.0) << "CRF 18 should be close to the source";
  EXPECT_GT(worst_rgb, 24.0);
}

INSTANTIATE_TEST_SUITE_P(Videos, WriterRoundTrip,
                         ::testing::Values(RoundTripCase{"even_25fps", 64, 48, "25", {25, 1}, 25},
                                           RoundTripCase{"even_ntsc", 160, 120, "30000/1001", {30000, 1001}, 30},
                                           RoundTripCase{"odd_25fps", 65, 49, "25", {25, 1}, 25},
                                           RoundTripCase{"odd_ntsc", 97, 71, "30000/1001", {30000, 1001}, 30}),
                         [](const ::testing::TestParamInfo<RoundTripCase>& info) {
                           return std::string(info.param.name);
                         });

RgbImage gradient(int w, int h, int shift) {
  RgbImage image(w, h);
  for (int y = 0; y < h; ++y)
    for (int x = 0; x < w; ++x) {
      uint8_t* p = image.pixel(x, y);
      p[0] = static_cast<uint8_t>(x * 4 + shift);
      p[1] = static_cast<uint8_t>(y * 4);
      p[2] = static_cast<uint8_t>(128 + shift);
    }
  return image;
}

void expect_video_error(const std::function<void()>& f, const std::string& file, const std::string& part) {
  try {
    f();
    FAIL() << "no exception";
  } catch (const VideoError& e) {
    const std::string what = e.what();
    EXPECT_NE(what.find(file), std::string::npos) << what;
    EXPECT_NE(what.find(part), std::string::npos) << what;
    EXPECT_EQ(what.find('\n'), std::string::npos) << what;
  }
}

TEST(VideoWriter, FirstFrameSetsTheTimestamps) {
  TempDir dir;
  const std::string path = dir.file("segment.mp4");
  EncodeOptions options;
  options.first_frame = 10;
  options.preset = "ultrafast";
  VideoWriter writer(path, {32, 32}, {30000, 1001}, options);
  for (int i = 0; i < 5; ++i) writer.write(gradient(32, 32, i * 8));
  writer.finish();
  const VideoInfo info = probe_video(path);
  EXPECT_EQ(info.frame_count, 5);
  // Exactly 10 frame durations: start_pts * time_base == 10 * 1001 / 30000.
  EXPECT_EQ(info.start_pts * 30000LL * info.time_base.num, 10LL * 1001 * info.time_base.den);
  EXPECT_NEAR(info.start_time, 10 * 1001 / 30000.0, 1e-9);
}

TEST(VideoWriter, FrameTimesAreKeptToTheTick) {
  TempDir dir;
  const std::string path = dir.file("uneven.mp4");
  FrameTimes times;  // milliseconds: 40, 120, 10, 30, 50 and 200 ms long
  times.time_base = {1, 1000};
  times.pts = {0, 40, 160, 170, 200, 250};
  times.end = 450;
  EncodeOptions options;
  options.preset = "ultrafast";
  options.times = times;
  VideoWriter writer(path, {32, 32}, {40, 3}, options);  // 13.3 fps on average
  for (int i = 0; i < 6; ++i) writer.write(gradient(32, 32, i * 8));
  // One frame more than the times hold.
  expect_video_error([&] { writer.write(gradient(32, 32, 0)); }, path, "times for 6 frames");
  writer.finish();

  const VideoInfo info = probe_video(path);
  EXPECT_EQ(info.frame_count, 6);
  EXPECT_TRUE(info.variable_frame_rate);
  EXPECT_NEAR(info.duration, 0.450, 1e-9);
  ASSERT_EQ(info.frame_times.size(), 6);
  for (size_t i = 0; i < times.pts.size(); ++i) {
    EXPECT_NEAR(info.frame_times.pts[i] * info.frame_times.time_base.to_double(), times.pts[i] / 1000.0, 1e-9)
        << "frame " << i;
  }

  EncodeOptions backwards = options;
  backwards.times.pts = {0, 40, 40, 170, 200, 250};
  expect_video_error([&] { VideoWriter(dir.file("b.mp4"), {32, 32}, {40, 3}, backwards); }, dir.file("b.mp4"),
                     "not increasing");
}

TEST(VideoWriter, SameFramesSameBytes) {
  TempDir dir;
  for (const char* name : {"a.mp4", "b.mp4"}) {
    VideoWriter writer(dir.file(name), {48, 32}, {25, 1});
    for (int i = 0; i < 12; ++i) writer.write(gradient(48, 32, i * 5));
    writer.finish();
  }
  EXPECT_EQ(test::read_file(dir.file("a.mp4")), test::read_file(dir.file("b.mp4")));
}

TEST(VideoWriter, AbandonedWriterLeavesNoFile) {
  TempDir dir;
  const std::string path = dir.file("abandoned.mp4");
  {
    VideoWriter writer(path, {32, 32}, {25, 1});
    writer.write(gradient(32, 32, 0));
    EXPECT_TRUE(std::filesystem::exists(path + ".part"));
  }
  EXPECT_FALSE(std::filesystem::exists(path));
  EXPECT_FALSE(std::filesystem::exists(path + ".part"));
}

TEST(VideoWriter, BadSettingsAreClearErrors) {
  TempDir dir;
  const std::string path = dir.file("bad.mp4");
  EncodeOptions crf;
  crf.crf = 52;
  expect_video_error([&] { VideoWriter(path, {32, 32}, {25, 1}, crf); }, path, "CRF 52");
  EncodeOptions preset;
  preset.preset = "warp-speed";
  expect_video_error([&] { VideoWriter(path, {32, 32}, {25, 1}, preset); }, path, "warp-speed");
  expect_video_error([&] { VideoWriter(path, {32, 32}, {0, 1}); }, path, "frame rate 0/1");
  expect_video_error([&] { VideoWriter(path, {1, 32}, {25, 1}); }, path, "at least 2 pixels");
  expect_video_error(
      [&] {
        VideoWriter(dir.file("no/such/dir/x.mp4"), {32, 32}, {25, 1});
      },
      "no/such/dir/x.mp4", "No such file or directory");
  expect_video_error(
      [&] {
        VideoWriter writer(path, {32, 32}, {25, 1});
        writer.write(gradient(16, 16, 0));
      },
      path, "16x16");
  expect_video_error(
      [&] {
        VideoWriter writer(path, {32, 32}, {25, 1});
        writer.finish();
      },
      path, "no frames");
  EXPECT_FALSE(std::filesystem::exists(path));
  EXPECT_FALSE(std::filesystem::exists(path + ".part"));
}

}  // namespace
}  // namespace via::io
