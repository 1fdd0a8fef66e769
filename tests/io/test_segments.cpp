// io/segments.h: chunks encoded as segments, joined by stream copy with the source's audio.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <functional>

#include "io/segments.h"
#include "io/video_reader.h"
#include "io/video_writer.h"
#include "tests/io/test_video_util.h"

namespace via::io {
namespace {

using test::TempDir;
using test::VideoSpec;

// Frames that carry their index: 8 bits as a 4 x 2 grid of black / white
// blocks, robust to compression.
constexpr int kW = 64, kH = 48;

RgbImage coded_frame(int64_t index) {
  RgbImage image(kW, kH);
  for (int y = 0; y < kH; ++y)
    for (int x = 0; x < kW; ++x) {
      const int bit = (y / 24) * 4 + x / 16;
      const uint8_t v = (index >> bit) & 1 ? 230 : 20;
      std::fill(image.pixel(x, y), image.pixel(x, y) + 3, v);
    }
  return image;
}

int64_t decode_index(const RgbImage& image) {
  int64_t index = 0;
  for (int bit = 0; bit < 8; ++bit) {
    const int cx = (bit % 4) * 16 + 8, cy = (bit / 4) * 24 + 12;
    if (image.pixel(cx, cy)[1] > 128) index |= int64_t{1} << bit;
  }
  return index;
}

// Writes frames [first, first + count) of `frame_at` as a segment at `rate`.
std::string write_segment(const TempDir& dir, int64_t first, int64_t count, Rational rate,
                          const std::function<RgbImage(int64_t)>& frame_at, Size size = {kW, kH}) {
  const std::string path = dir.file("segment_" + std::to_string(first) + ".mp4");
  EncodeOptions options;
  options.first_frame = first;
  options.preset = "veryfast";
  VideoWriter writer(path, size, rate, options);
  for (int64_t i = first; i < first + count; ++i) writer.write(frame_at(i));
  writer.finish();
  return path;
}

// Segments tiling [0, n) (n > 34): chunks of 16 and 15, then chunks of one and
// two frames (x264 gives those no B-frame delay: their timestamps differ in
// kind from the others'), then the rest.
std::vector<std::string> tile(const TempDir& dir, int64_t n, Rational rate,
                              const std::function<RgbImage(int64_t)>& frame_at) {
  const std::vector<int64_t> bounds = {0, 16, 31, 32, 34, n};
  std::vector<std::string> segments;
  for (size_t i = 0; i + 1 < bounds.size(); ++i) {
    segments.push_back(write_segment(dir, bounds[i], bounds[i + 1] - bounds[i], rate, frame_at));
  }
  return segments;
}

VideoSpec source_spec(const char* rate, double seconds, const char* audio_codec = "-c:a aac") {
  VideoSpec spec;
  spec.width = kW;
  spec.height = kH;
  spec.rate = rate;
  spec.seconds = seconds;
  spec.audio = true;
  spec.audio_codec = audio_codec;
  return spec;
}

TEST(Segments, ConcatenationKeepsFrameCountOrderAndAudio) {
  TempDir dir;
  const std::string source = test::make_video(dir, "source.mp4", source_spec("30000/1001", 1.5));
  const VideoInfo src = probe_video(source);
  ASSERT_EQ(src.frame_count, 45);
  ASSERT_EQ(src.audio.size(), 1u);

  const std::vector<std::string> segments = tile(dir, src.frame_count, src.frame_rate, coded_frame);
  ConcatOptions options;
  options.audio_source = source;
  const std::string output = dir.file("joined.mp4");
  const ConcatResult result = concat_segments(segments, output, options);
  EXPECT_EQ(result.frames, src.frame_count);
  EXPECT_EQ(result.audio_streams, 1);
  EXPECT_NEAR(result.duration, src.duration, 1e-6);
  EXPECT_FALSE(std::filesystem::exists(output + ".part"));

  const VideoInfo out = probe_video(output);
  const double frame = 1.0 / src.frame_rate.to_double();
  EXPECT_EQ(out.frame_count, src.frame_count);
  EXPECT_EQ(out.frame_rate, src.frame_rate);
  EXPECT_EQ(out.start_time, 0.0);
  EXPECT_NEAR(out.duration, src.duration, frame);
  ASSERT_EQ(out.audio.size(), 1u);
  EXPECT_EQ(out.audio[0].codec, src.audio[0].codec);
  EXPECT_EQ(out.audio[0].sample_rate, src.audio[0].sample_rate);
  EXPECT_EQ(out.audio[0].channels, src.audio[0].channels);
  // Audio is cut at the video's end, to within one AAC frame (1024 samples).
  const double audio_frame = 1024.0 / src.audio[0].sample_rate;
  EXPECT_NEAR(out.audio[0].duration, std::min(src.audio[0].duration, src.duration), audio_frame + frame);
  EXPECT_NEAR(out.container_duration, src.duration, frame + audio_frame);
  // The video outlasts the source's audio here, so every audio packet is copied
  // unchanged (the ffmpeg command's checksum of the stream-copied packets).
  const std::string audio_md5 = "-map 0:a -c copy -f md5 -";
  EXPECT_EQ(test::run("ffmpeg -v error -i '" + output + "' " + audio_md5, dir).out,
            test::run("ffmpeg -v error -i '" + source + "' " + audio_md5, dir).out);

  VideoReader reader(output);
  Frame f;
  int64_t n = 0;
  while (reader.next(f)) {
    EXPECT_EQ(decode_index(f.image), n) << "frame " << n << " is out of order";
    EXPECT_NEAR(f.seconds, n * frame, 1e-9);
    ++n;
  }
  EXPECT_EQ(n, src.frame_count);
}

TEST(Segments, ChunkedRenderOfARealVideoMatchesTheSource) {
  TempDir dir;
  VideoSpec spec = source_spec("25", 2);
  spec.width = 160;
  spec.height = 120;
  const std::string source = test::make_video(dir, "source.mp4", spec);
  VideoReader reader(source);
  const VideoInfo& src = reader.info();
  ASSERT_EQ(src.frame_count, 50);

  // As a renderer does it: read a chunk, encode it as a segment; join at the end.
  std::vector<std::string> segments;
  std::vector<RgbImage> originals;
  for (int64_t first = 0; first < src.frame_count; first += 16) {
    const int64_t count = std::min<int64_t>(16, src.frame_count - first);
    const std::vector<Frame> chunk = reader.read_range(first, count);
    EncodeOptions options;
    options.first_frame = first;
    options.preset = "veryfast";
    const std::string path = dir.file("chunk_" + std::to_string(first) + ".mp4");
    VideoWriter writer(path, reader.frame_size(), src.frame_rate, options);
    for (const Frame& frame : chunk) {
      writer.write(frame);
      originals.push_back(frame.image);
    }
    writer.finish();
    segments.push_back(path);
  }
  ConcatOptions options;
  options.audio_source = source;
  const std::string output = dir.file("rendered.mp4");
  concat_segments(segments, output, options);

  const VideoInfo out = probe_video(output);
  EXPECT_EQ(out.frame_count, src.frame_count);
  EXPECT_EQ(out.frame_rate, src.frame_rate);
  EXPECT_NEAR(out.duration, src.duration, 1.0 / 25);
  ASSERT_EQ(out.audio.size(), 1u);
  EXPECT_EQ(out.audio[0].codec, "aac");
  VideoReader joined(output);
  const std::vector<Frame> frames = joined.read_range(0, out.frame_count);
  for (size_t i = 0; i < frames.size(); ++i) {
    EXPECT_GT(test::luma_psnr(originals[i], frames[i].image), 34.0) << "frame " << i;
  }
}

// As a renderer does it, for sources whose frames are unevenly spaced: chunks
// read, encoded with the source's frame times, joined with those times. Every
// output frame is at its source frame's time (within a tick), and the video
// and audio last as long as the source's.
class VariableRate : public ::testing::TestWithParam<const char*> {};

TEST_P(VariableRate, ChunkedRenderKeepsEveryFrameTimeAndTheAudio) {
  TempDir dir;
  const std::string source = test::make_vfr_video(dir, std::string(GetParam()) + ".mp4", GetParam(), kW, kH);
  VideoReader reader(source);
  const VideoInfo& src = reader.info();
  ASSERT_TRUE(src.variable_frame_rate);
  ASSERT_EQ(src.frame_times.size(), src.frame_count);
  ASSERT_EQ(src.audio.size(), 1u);
  // The probe's rate is the real average, which fits its own frame count.
  EXPECT_NEAR(src.frame_rate.to_double(), src.frame_count / src.duration, 1e-6);

  std::vector<std::string> segments;
  std::vector<double> source_seconds;
  for (int64_t first = 0; first < src.frame_count; first += 7) {  // 7: chunks straddle the rate changes
    const int64_t count = std::min<int64_t>(7, src.frame_count - first);
    EncodeOptions options;
    options.preset = "veryfast";
    options.times = src.frame_times.slice(first, count);
    const std::string path = dir.file("chunk_" + std::to_string(first) + ".mp4");
    VideoWriter writer(path, reader.frame_size(), src.frame_rate, options);
    for (const Frame& frame : reader.read_range(first, count)) {
      writer.write(frame);
      source_seconds.push_back(frame.seconds);
    }
    writer.finish();
    segments.push_back(path);
  }
  ConcatOptions options;
  options.audio_source = source;
  options.times = src.frame_times;
  const std::string output = dir.file("rendered.mp4");
  const ConcatResult result = concat_segments(segments, output, options);
  EXPECT_NEAR(result.duration, src.duration, 1e-9);

  const VideoInfo out = probe_video(output);
  const double tick = std::max(src.time_base.to_double(), out.time_base.to_double());
  EXPECT_EQ(out.frame_count, src.frame_count);
  EXPECT_TRUE(out.variable_frame_rate);
  EXPECT_NEAR(out.duration, src.duration, tick);
  EXPECT_NEAR(out.frame_rate.to_double(), src.frame_rate.to_double(), 1e-3);
  VideoReader joined(output);
  Frame f;
  while (joined.next(f)) {
    ASSERT_LT(f.index, static_cast<int64_t>(source_seconds.size()));
    EXPECT_NEAR(f.seconds, source_seconds[static_cast<size_t>(f.index)], tick) << "frame " << f.index;
  }
  ASSERT_EQ(out.audio.size(), 1u);
  const double audio_frame = 1024.0 / src.audio[0].sample_rate;
  EXPECT_NEAR(out.audio[0].duration, std::min(src.audio[0].duration, src.duration), audio_frame);
}

INSTANTIATE_TEST_SUITE_P(Sources, VariableRate, ::testing::Values("dropped", "joined", "jitter"));

TEST(Segments, SegmentsOffTheirFrameTimesAreRefused) {
  TempDir dir;
  FrameTimes times;  // 8 frames, every other one 3 ticks long
  times.time_base = {1, 100};
  for (int64_t i = 0, t = 0; i < 8; t += i % 2 ? 3 : 1, ++i) times.pts.push_back(t);
  times.end = times.pts.back() + 3;
  const auto segment = [&](const std::string& name, int64_t first, int64_t count, const FrameTimes& t) {
    EncodeOptions options;
    options.preset = "veryfast";
    options.times = t.slice(first, count);
    VideoWriter writer(dir.file(name), {kW, kH}, {50, 1}, options);
    for (int64_t i = first; i < first + count; ++i) writer.write(coded_frame(i));
    writer.finish();
    return dir.file(name);
  };
  const std::string a = segment("a.mp4", 0, 4, times), b = segment("b.mp4", 4, 4, times);
  ConcatOptions options;
  options.times = times;
  const ConcatResult ok = concat_segments({a, b}, dir.file("ok.mp4"), options);
  EXPECT_EQ(ok.frames, 8);
  EXPECT_NEAR(ok.duration, times.end / 100.0, 1e-9);

  FrameTimes even = FrameTimes::constant({50, 1}, 8);
  even.time_base = {1, 100};  // frames 1 tick apart
  const std::string off = segment("off.mp4", 4, 4, even);
  try {
    concat_segments({a, off}, dir.file("bad.mp4"), options);
    FAIL() << "no exception";
  } catch (const VideoError& e) {
    EXPECT_NE(std::string(e.what()).find("do not follow the frames' times"), std::string::npos) << e.what();
  }
  try {
    concat_segments({a}, dir.file("short.mp4"), options);
    FAIL() << "no exception";
  } catch (const VideoError& e) {
    EXPECT_NE(std::string(e.what()).find("4 frames, their times 8"), std::string::npos) << e.what();
  }
  EXPECT_FALSE(std::filesystem::exists(dir.file("bad.mp4")));
}

TEST(Segments, WithoutAudioSourceTheOutputIsSilent) {
  TempDir dir;
  const std::vector<std::string> segments = tile(dir, 40, {25, 1}, coded_frame);
  const std::string output = dir.file("silent.mp4");
  const ConcatResult result = concat_segments(segments, output);
  EXPECT_EQ(result.audio_streams, 0);
  const VideoInfo out = probe_video(output);
  EXPECT_EQ(out.frame_count, 40);
  EXPECT_TRUE(out.audio.empty());
  EXPECT_NEAR(out.duration, 40 / 25.0, 1e-9);
}

TEST(Segments, AudioThatMp4CannotCarryIsRefusedOrGoesToMatroska) {
  TempDir dir;
  const std::string source = test::make_video(dir, "source.mov", source_spec("25", 1.5, "-c:a pcm_s16le"));
  const VideoInfo src = probe_video(source);
  ASSERT_EQ(src.audio.size(), 1u);
  EXPECT_EQ(src.audio[0].codec, "pcm_s16le");
  EXPECT_FALSE(src.audio[0].mp4_compatible);
  const std::vector<std::string> segments = tile(dir, src.frame_count, src.frame_rate, coded_frame);
  ConcatOptions options;
  options.audio_source = source;

  const std::string mp4 = dir.file("out.mp4");
  try {
    concat_segments(segments, mp4, options);
    FAIL() << "no exception";
  } catch (const VideoError& e) {
    const std::string what = e.what();
    EXPECT_NE(what.find("pcm_s16le"), std::string::npos) << what;
    EXPECT_NE(what.find(source), std::string::npos) << what;
    EXPECT_EQ(what.find('\n'), std::string::npos) << what;
  }
  EXPECT_FALSE(std::filesystem::exists(mp4));
  EXPECT_FALSE(std::filesystem::exists(mp4 + ".part"));

  const std::string mkv = dir.file("out.mkv");
  concat_segments(segments, mkv, options);
  const VideoInfo out = probe_video(mkv);
  EXPECT_EQ(out.frame_count, src.frame_count);
  ASSERT_EQ(out.audio.size(), 1u);
  EXPECT_EQ(out.audio[0].codec, "pcm_s16le");
  VideoReader reader(mkv);
  for (const Frame& f : reader.read_range(0, out.frame_count)) EXPECT_EQ(decode_index(f.image), f.index);
}

void expect_concat_error(const std::vector<std::string>& segments, const std::string& output, const std::string& names,
                         const std::string& part) {
  try {
    concat_segments(segments, output);
    FAIL() << "no exception";
  } catch (const VideoError& e) {
    const std::string what = e.what();
    EXPECT_NE(what.find(names), std::string::npos) << what;
    EXPECT_NE(what.find(part), std::string::npos) << what;
    EXPECT_EQ(what.find('\n'), std::string::npos) << what;
  }
  EXPECT_FALSE(std::filesystem::exists(output));
  EXPECT_FALSE(std::filesystem::exists(output + ".part"));
}

TEST(Segments, BrokenSequencesAreRefused) {
  TempDir dir;
  const Rational rate{25, 1};
  const std::string a = write_segment(dir, 0, 16, rate, coded_frame);
  const std::string b = write_segment(dir, 16, 16, rate, coded_frame);
  const std::string gap = write_segment(dir, 20, 10, rate, coded_frame);
  const std::string output = dir.file("out.mp4");

  expect_concat_error({a, gap}, output, gap, "not contiguous");
  expect_concat_error({b, a}, output, a, "not contiguous");
  expect_concat_error({a, a}, output, a, "not contiguous");
  expect_concat_error({a, dir.file("missing.mp4")}, output, dir.file("missing.mp4"), "No such file");
  expect_concat_error({}, output, output, "no segments");

  const std::string wide = write_segment(dir, 16, 4, rate, [](int64_t) { return RgbImage(96, 48); }, {96, 48});
  expect_concat_error({a, wide}, output, wide, "encoded differently");

  std::ofstream(dir.file("junk.mp4")) << "junk";
  expect_concat_error({a, dir.file("junk.mp4")}, output, dir.file("junk.mp4"), "Invalid data");
}

}  // namespace
}  // namespace via::io
