// io/video_reader.h and io/resize.h on videos made by FFmpeg's own generators.
#include <gtest/gtest.h>

#include <cmath>
#include <fstream>
#include <set>

#include "io/resize.h"
#include "io/video_reader.h"
#include "tests/io/test_video_util.h"

namespace via::io {
namespace {

using test::TempDir;
using test::VideoSpec;

// --- Geometry ---------------------------------------------------------------

TEST(Resize, FitLetterboxesAWiderSource) {
  const ResizePlan plan = plan_resize({160, 120}, {64, 64}, ResizeMode::fit);
  EXPECT_EQ(plan.output, (Size{64, 64}));
  EXPECT_EQ(plan.source, (Rect{0, 0, 160, 120}));
  EXPECT_EQ(plan.target, (Rect{0, 8, 64, 48}));
}

TEST(Resize, FitPillarboxesATallerSource) {
  const ResizePlan plan = plan_resize({120, 160}, {64, 64}, ResizeMode::fit);
  EXPECT_EQ(plan.target, (Rect{8, 0, 48, 64}));
}

TEST(Resize, CropCutsTheOverflowFromTheCentre) {
  const ResizePlan wide = plan_resize({160, 120}, {64, 64}, ResizeMode::crop);
  EXPECT_EQ(wide.source, (Rect{20, 0, 120, 120}));
  EXPECT_EQ(wide.target, (Rect{0, 0, 64, 64}));
  const ResizePlan tall = plan_resize({120, 160}, {64, 32}, ResizeMode::crop);
  EXPECT_EQ(tall.source, (Rect{0, 50, 120, 60}));
  // Source offsets stay even (no split chroma sample): (90 - 51) / 2 = 19 -> 18.
  EXPECT_EQ(plan_resize({90, 10}, {51, 10}, ResizeMode::crop).source.x, 18);
}

TEST(Resize, StretchUsesEverythingEverywhere) {
  const ResizePlan plan = plan_resize({160, 120}, {80, 80}, ResizeMode::stretch);
  EXPECT_EQ(plan.source, (Rect{0, 0, 160, 120}));
  EXPECT_EQ(plan.target, (Rect{0, 0, 80, 80}));
  EXPECT_TRUE(plan_resize({64, 48}, {64, 48}, ResizeMode::fit).identity({64, 48}));
  EXPECT_FALSE(plan.identity({160, 120}));
}

TEST(Resize, ModelSizeKeepsAspectInMultiplesOfEight) {
  EXPECT_EQ(model_size({1920, 1080}, 512), (Size{512, 288}));
  EXPECT_EQ(model_size({640, 480}, 512), (Size{512, 384}));
  EXPECT_EQ(model_size({1080, 1920}, 512), (Size{288, 512}));
  EXPECT_EQ(model_size({65, 49}, 64), (Size{64, 48}));
  EXPECT_EQ(model_size({1000, 10}, 512), (Size{512, 8}));    // never below 8
  EXPECT_EQ(model_size({100, 100}, 509), (Size{512, 512}));  // the long side is rounded too
  EXPECT_THROW(model_size({0, 10}, 512), std::invalid_argument);
  EXPECT_THROW(model_size({10, 10}, 0), std::invalid_argument);
}

TEST(Resize, ModeNames) {
  EXPECT_EQ(parse_resize_mode("fit"), ResizeMode::fit);
  EXPECT_EQ(parse_resize_mode("crop"), ResizeMode::crop);
  EXPECT_EQ(parse_resize_mode("stretch"), ResizeMode::stretch);
  EXPECT_STREQ(to_string(ResizeMode::crop), "crop");
  try {
    parse_resize_mode("zoom");
    FAIL() << "no exception";
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("'zoom'"), std::string::npos) << e.what();
  }
}

TEST(Resize, RgbResizeKeepsBarsBlackAndFillsTheTarget) {
  RgbImage white(40, 20);
  std::fill(white.data.begin(), white.data.end(), 255);
  const RgbImage out = resize_rgb(white, {20, 20}, ResizeMode::fit);  // target rows 5..14
  ASSERT_EQ(out.width, 20);
  ASSERT_EQ(out.height, 20);
  for (int y = 0; y < 20; ++y) {
    const bool bar = y < 5 || y >= 15;
    for (int x = 0; x < 20; ++x) ASSERT_EQ(out.pixel(x, y)[1], bar ? 0 : 255) << x << "," << y;
  }
}

// --- Probing and sequential reading ------------------------------------------

struct ProbeCase {
  const char* name;
  VideoSpec spec;
  const char* file;
  int64_t frames;
  Rational rate;
  int audio_sample_rate;  // 0: no audio
  const char* audio_codec;
  bool header_count;  // the container stores a frame count
};

class ProbeTest : public ::testing::TestWithParam<ProbeCase> {};

TEST_P(ProbeTest, FactsAndSequentialFramesAgree) {
  const ProbeCase& c = GetParam();
  TempDir dir;
  const std::string path = test::make_video(dir, c.file, c.spec);

  const VideoInfo info = probe_video(path);
  EXPECT_EQ(info.path, path);
  EXPECT_EQ(info.width, c.spec.width);
  EXPECT_EQ(info.height, c.spec.height);
  EXPECT_EQ(info.rotation, 0);
  EXPECT_EQ(info.frame_rate, c.rate);
  EXPECT_TRUE(info.time_base.positive());
  EXPECT_EQ(info.frame_count, c.frames);
  EXPECT_EQ(info.header_frame_count, c.header_count ? c.frames : 0);
  EXPECT_NEAR(info.duration, c.frames / c.rate.to_double(), 1e-3);
  // Matroska shifts every stream by Opus's encoder delay (6.5 ms); MP4 starts at 0.
  EXPECT_NEAR(info.start_time, 0.0, 0.01);
  if (c.audio_sample_rate > 0) {
    ASSERT_EQ(info.audio.size(), 1u);
    EXPECT_EQ(info.audio[0].codec, c.audio_codec);
    EXPECT_EQ(info.audio[0].sample_rate, c.audio_sample_rate);
    EXPECT_EQ(info.audio[0].channels, 1);
    EXPECT_NEAR(info.audio[0].duration, c.spec.seconds, 0.05);
    EXPECT_TRUE(info.audio[0].mp4_compatible);
    EXPECT_NE(info.audio[0].stream_index, info.stream_index);
  } else {
    EXPECT_TRUE(info.audio.empty());
  }

  VideoReader reader(path);
  EXPECT_EQ(reader.frame_size(), (Size{c.spec.width, c.spec.height}));
  Frame frame;
  int64_t n = 0;
  while (reader.next(frame)) {
    ASSERT_EQ(frame.index, n);
    ASSERT_EQ(frame.image.width, c.spec.width);
    ASSERT_EQ(frame.image.height, c.spec.height);
    ASSERT_EQ(frame.image.data.size(), static_cast<size_t>(c.spec.width) * c.spec.height * 3);
    // Constant frame rate: frame i is at i / rate, to within the time base's rounding
    // (exact for MP4's 1/30000 and 1/12800; Matroska counts milliseconds).
    ASSERT_NEAR(frame.seconds, n / c.rate.to_double(), info.time_base.to_double() / 2 + 1e-9) << "frame " << n;
    ++n;
  }
  EXPECT_EQ(n, c.frames);
  EXPECT_FALSE(reader.next(frame));
}

VideoSpec spec(int w, int h, const char* rate, double seconds, bool audio, const char* video_codec = nullptr,
               const char* audio_codec = nullptr) {
  VideoSpec s;
  s.width = w;
  s.height = h;
  s.rate = rate;
  s.seconds = seconds;
  s.audio = audio;
  if (video_codec != nullptr) s.video_codec = video_codec;
  if (audio_codec != nullptr) s.audio_codec = audio_codec;
  return s;
}

INSTANTIATE_TEST_SUITE_P(
    Videos, ProbeTest,
    ::testing::Values(
        ProbeCase{"even_25fps_silent", spec(64, 48, "25", 2, false), "a.mp4", 50, {25, 1}, 0, "", true},
        ProbeCase{
            "even_ntsc_aac", spec(160, 120, "30000/1001", 2, true), "b.mp4", 60, {30000, 1001}, 44100, "aac", true},
        // 4:2:0 H.264 cannot have odd sides; 4:4:4 can.
        ProbeCase{"odd_25fps_aac",
                  spec(65, 49, "25", 1, true, "-c:v libx264 -preset ultrafast -pix_fmt yuv444p"),
                  "c.mp4",
                  25,
                  {25, 1},
                  44100,
                  "aac",
                  true},
        // Matroska stores no frame count: counting is the only way.
        ProbeCase{"odd_ntsc_ffv1_mkv",
                  spec(67, 51, "30000/1001", 1, true, "-c:v ffv1", "-c:a libopus"),
                  "d.mkv",
                  30,
                  {30000, 1001},
                  48000,
                  "opus",
                  false}),
    [](const ::testing::TestParamInfo<ProbeCase>& info) { return std::string(info.param.name); });

TEST(VideoReader, PixelsMatchTheFfmpegCommand) {
  TempDir dir;
  const std::string path = test::make_video(dir, "v.mp4", spec(64, 48, "25", 0.4, false));
  const std::vector<RgbImage> expected = test::ffmpeg_decode_rgb(path, 64, 48, dir);
  VideoReader reader(path);
  const std::vector<Frame> frames = reader.read_range(0, reader.info().frame_count);
  ASSERT_EQ(frames.size(), expected.size());
  for (size_t i = 0; i < frames.size(); ++i) {
    // Same decoder, same swscale flags and colour matrix: equal here (FFmpeg 5.1);
    // a little slack for other FFmpeg versions' conversion paths.
    EXPECT_LT(test::mean_abs_diff(frames[i].image, expected[i]), 0.5) << "frame " << i;
  }
}

// --- Range reads --------------------------------------------------------------

std::vector<Frame> read_all(const std::string& path, ReaderOptions options = {}) {
  VideoReader reader(path, options);
  std::vector<Frame> frames;
  Frame f;
  while (reader.next(f)) frames.push_back(f);
  return frames;
}

void expect_same_frames(const std::vector<Frame>& got, const std::vector<Frame>& all, int64_t first) {
  for (size_t i = 0; i < got.size(); ++i) {
    const Frame& want = all[static_cast<size_t>(first) + i];
    ASSERT_EQ(got[i].index, want.index);
    ASSERT_EQ(got[i].pts, want.pts);
    ASSERT_EQ(got[i].seconds, want.seconds);
    ASSERT_TRUE(got[i].image.data == want.image.data) << "frame " << want.index << " differs";
  }
}

TEST(VideoReader, RangeReadsEqualTheSequentialReadBitForBit) {
  TempDir dir;
  // Keyframes every 12 frames, B-frames: seeks land mid-GOP and frames are reordered.
  VideoSpec s = spec(96, 64, "30000/1001", 3, true);
  s.video_codec = "-c:v libx264 -preset ultrafast -g 12 -keyint_min 12 -bf 3 -pix_fmt yuv420p";
  const std::string path = test::make_video(dir, "v.mp4", s);
  const std::vector<Frame> all = read_all(path);
  ASSERT_EQ(all.size(), 90u);
  std::set<size_t> distinct;
  for (const Frame& f : all)
    distinct.insert(std::hash<std::string>()(std::string(f.image.data.begin(), f.image.data.end())));
  ASSERT_GT(distinct.size(), 80u) << "the test video should change every frame";

  VideoReader reader(path);
  // Jumps backwards and forwards, into and across GOPs, the very end, and
  // consecutive chunks as a renderer reads them.
  const std::pair<int64_t, int64_t> ranges[] = {{37, 10}, {12, 1},  {85, 5}, {3, 4},  {60, 3}, {63, 12},
                                                {0, 16},  {16, 16}, {89, 1}, {47, 1}, {11, 2}, {0, 90}};
  for (const auto& [first, count] : ranges) {
    SCOPED_TRACE("range " + std::to_string(first) + "+" + std::to_string(count));
    const std::vector<Frame> got = reader.read_range(first, count);
    ASSERT_EQ(got.size(), static_cast<size_t>(count));
    expect_same_frames(got, all, first);
    // A fresh reader gives the same.
    expect_same_frames(VideoReader(path).read_range(first, count), all, first);
  }
  const Frame single = reader.read_frame(50);
  EXPECT_EQ(single.index, 50);
  EXPECT_TRUE(single.image.data == all[50].image.data);

  // Resized reads are just as deterministic.
  ReaderOptions resized;
  resized.size = {64, 64};
  resized.resize = ResizeMode::crop;
  const std::vector<Frame> all_resized = read_all(path, resized);
  VideoReader resized_reader(path, resized);
  expect_same_frames(resized_reader.read_range(70, 8), all_resized, 70);
  expect_same_frames(resized_reader.read_range(5, 8), all_resized, 5);
}

TEST(VideoReader, SeekThenNextContinuesFromThere) {
  TempDir dir;
  const std::string path = test::make_video(dir, "v.mp4", spec(64, 48, "25", 1, false));
  const std::vector<Frame> all = read_all(path);
  VideoReader reader(path);
  reader.seek(20);
  Frame f;
  for (int64_t i = 20; i < 25; ++i) {
    ASSERT_TRUE(reader.next(f));
    EXPECT_EQ(f.index, i);
    EXPECT_TRUE(f.image.data == all[static_cast<size_t>(i)].image.data);
  }
  reader.seek(25);  // the end: nothing more
  EXPECT_FALSE(reader.next(f));
  EXPECT_THROW(reader.seek(26), std::out_of_range);
  EXPECT_THROW(reader.seek(-1), std::out_of_range);
  EXPECT_THROW(reader.read_range(20, 6), std::out_of_range);
  try {
    reader.read_range(24, 2);
    FAIL() << "no exception";
  } catch (const std::out_of_range& e) {
    EXPECT_NE(std::string(e.what()).find(path), std::string::npos) << e.what();
  }
}

// --- Resizing while reading ------------------------------------------------------

TEST(VideoReader, ResizesWithEachAspectPolicy) {
  TempDir dir;
  const std::string path = test::make_video(dir, "v.mp4", spec(160, 120, "25", 0.2, false));
  const RgbImage full = VideoReader(path).read_frame(2).image;

  ReaderOptions fit;
  fit.size = {64, 64};
  fit.resize = ResizeMode::fit;
  VideoReader fit_reader(path, fit);
  EXPECT_EQ(fit_reader.plan().target, (Rect{0, 8, 64, 48}));
  const RgbImage boxed = fit_reader.read_frame(2).image;
  ASSERT_EQ(boxed.width, 64);
  ASSERT_EQ(boxed.height, 64);
  for (int x = 0; x < 64; ++x) {
    for (int y : {0, 7, 56, 63}) ASSERT_EQ(boxed.pixel(x, y)[0] | boxed.pixel(x, y)[1] | boxed.pixel(x, y)[2], 0);
  }
  // The picture inside the bars is the whole frame scaled (scaled in YUV by the
  // reader, in RGB here: close, not identical).
  const RgbImage inner = resize_rgb(full, {64, 48}, ResizeMode::stretch);
  RgbImage boxed_inner(64, 48);
  for (int y = 0; y < 48; ++y)
    std::copy(boxed.pixel(0, y + 8), boxed.pixel(0, y + 8) + 64 * 3, boxed_inner.pixel(0, y));
  EXPECT_GT(test::psnr(inner, boxed_inner), 28.0);

  ReaderOptions crop;
  crop.size = {64, 64};
  crop.resize = ResizeMode::crop;
  const RgbImage cropped = VideoReader(path, crop).read_frame(2).image;
  EXPECT_GT(test::psnr(resize_rgb(full, {64, 64}, ResizeMode::crop), cropped), 28.0);

  ReaderOptions stretch;
  stretch.size = {80, 40};
  stretch.resize = ResizeMode::stretch;
  const RgbImage stretched = VideoReader(path, stretch).read_frame(2).image;
  EXPECT_EQ(stretched.width, 80);
  EXPECT_EQ(stretched.height, 40);
  EXPECT_GT(test::psnr(resize_rgb(full, {80, 40}, ResizeMode::stretch), stretched), 28.0);

  ReaderOptions half;
  half.size = {64, 0};
  EXPECT_THROW(VideoReader(path, half), std::invalid_argument);
}

TEST(VideoReader, NonSquarePixelsKeepThePicturesShape) {
  TempDir dir;
  // PAL 4:3 at 360x288: pixels 16/15 as wide as high, shown at 384x288.
  const std::string path = dir.file("pal.mp4");
  test::ffmpeg("-f lavfi -i testsrc2=size=360x288:rate=25 -vf setsar=16/15 -t 0.2 -c:v libx264 -preset ultrafast '" +
                   path + "'",
               dir);
  const VideoInfo info = probe_video(path);
  EXPECT_EQ(info.sample_aspect, (Rational{16, 15}));
  EXPECT_EQ(info.upright_size(), (Size{360, 288}));
  EXPECT_EQ(info.display_size(), (Size{384, 288}));
  EXPECT_EQ(model_size(info.display_size(), 512), (Size{512, 384}));

  // Unsized: square pixels at the displayed size, as the ffmpeg command scales them.
  VideoReader shown(path);
  EXPECT_EQ(shown.frame_size(), (Size{384, 288}));
  const std::vector<RgbImage> by_ffmpeg = test::ffmpeg_decode_rgb(path, 384, 288, dir, "scale=384:288");
  ASSERT_FALSE(by_ffmpeg.empty());
  EXPECT_GT(test::psnr(by_ffmpeg[0], shown.read_frame(0).image), 30.0);

  // 4:3 into 4:3: fit needs no bars.
  ReaderOptions fit;
  fit.size = {64, 48};
  EXPECT_EQ(VideoReader(path, fit).plan().target, (Rect{0, 0, 64, 48}));
  // A square crop of the 384x288 picture is 288 wide: 270 stored pixels, from 45 (even: 44).
  ReaderOptions crop;
  crop.size = {48, 48};
  crop.resize = ResizeMode::crop;
  EXPECT_EQ(VideoReader(path, crop).plan().source, (Rect{44, 0, 270, 288}));
}

// --- Rotation ---------------------------------------------------------------------

RgbImage turn_clockwise(const RgbImage& in) {
  RgbImage out(in.height, in.width);
  for (int y = 0; y < in.height; ++y)
    for (int x = 0; x < in.width; ++x) std::copy(in.pixel(x, y), in.pixel(x, y) + 3, out.pixel(in.height - 1 - y, x));
  return out;
}

TEST(VideoReader, TurnsRotatedVideosUprightLikeTheFfmpegCommand) {
  TempDir dir;
  const std::string plain = test::make_video(dir, "plain.mp4", spec(64, 48, "25", 0.2, false));
  const RgbImage stored = VideoReader(plain).read_frame(0).image;
  for (int rotate : {90, 180, 270}) {
    SCOPED_TRACE("rotate tag " + std::to_string(rotate));
    const std::string path = dir.file("rot" + std::to_string(rotate) + ".mp4");
    test::ffmpeg("-i '" + plain + "' -c copy -metadata:s:v:0 rotate=" + std::to_string(rotate) + " '" + path + "'",
                 dir);
    const VideoInfo info = probe_video(path);
    ASSERT_NE(info.rotation, 0);
    EXPECT_EQ(info.width, 64);
    EXPECT_EQ(info.height, 48);
    const Size shown = info.display_size();
    EXPECT_EQ(shown, info.rotation == 180 ? (Size{64, 48}) : (Size{48, 64}));

    VideoReader reader(path);
    EXPECT_EQ(reader.frame_size(), shown);
    const RgbImage upright = reader.read_frame(0).image;
    // Our turn equals turning the stored frame by info.rotation clockwise ...
    RgbImage expected = stored;
    for (int turned = 0; turned < info.rotation; turned += 90) expected = turn_clockwise(expected);
    EXPECT_TRUE(upright.data == expected.data);
    // ... and the ffmpeg command (autorotate) shows it the same way.
    const std::vector<RgbImage> shown_by_ffmpeg = test::ffmpeg_decode_rgb(path, shown.width, shown.height, dir);
    ASSERT_FALSE(shown_by_ffmpeg.empty());
    // The command turns the YUV planes, we turn RGB: 0.03 apart here.
    EXPECT_LT(test::mean_abs_diff(upright, shown_by_ffmpeg[0]), 0.5);

    ReaderOptions raw;
    raw.apply_rotation = false;
    EXPECT_TRUE(VideoReader(path, raw).read_frame(0).image.data == stored.data);
  }
}

// --- Bad input -----------------------------------------------------------------------

void expect_one_line_error(const std::string& path, const char* expected_part = nullptr) {
  for (int api = 0; api < 2; ++api) {
    try {
      if (api == 0) {
        probe_video(path);
      } else {
        VideoReader reader(path);
      }
      FAIL() << "no exception for " << path;
    } catch (const VideoError& e) {
      const std::string what = e.what();
      EXPECT_EQ(e.file(), path);
      EXPECT_NE(what.find("'" + path + "'"), std::string::npos) << what;
      EXPECT_EQ(what.find('\n'), std::string::npos) << what;
      if (expected_part != nullptr) {
        EXPECT_NE(what.find(expected_part), std::string::npos) << what;
      }
    }
  }
}

TEST(VideoReaderBadInput, MissingFile) {
  TempDir dir;
  expect_one_line_error(dir.file("missing.mp4"), "No such file or directory");
}

TEST(VideoReaderBadInput, EmptyFile) {
  TempDir dir;
  std::ofstream(dir.file("empty.mp4")).close();
  expect_one_line_error(dir.file("empty.mp4"));
}

TEST(VideoReaderBadInput, TextFileNamedMp4) {
  TempDir dir;
  std::ofstream(dir.file("notes.mp4")) << "These are not the frames you are looking for.\n";
  expect_one_line_error(dir.file("notes.mp4"));
}

TEST(VideoReaderBadInput, TruncatedMp4) {
  TempDir dir;
  const std::string full = test::make_video(dir, "full.mp4", spec(96, 64, "25", 2, true));
  const size_t size = test::read_file(full).size();
  // Index at the end (the default): the index is gone.
  test::truncate_copy(full, dir.file("cut.mp4"), size / 2);
  expect_one_line_error(dir.file("cut.mp4"), "moov atom not found");
  // Index at the front: the index promises data the file no longer has.
  test::ffmpeg("-i '" + full + "' -c copy -movflags +faststart '" + dir.file("fast.mp4") + "'", dir);
  test::truncate_copy(dir.file("fast.mp4"), dir.file("fast_cut.mp4"), size / 2);
  expect_one_line_error(dir.file("fast_cut.mp4"), "truncated or damaged");
}

TEST(VideoReaderBadInput, AudioOnlyFile) {
  TempDir dir;
  test::ffmpeg("-f lavfi -i sine=frequency=440 -t 0.5 '" + dir.file("tone.m4a") + "'", dir);
  expect_one_line_error(dir.file("tone.m4a"), "no video stream");
}

}  // namespace
}  // namespace via::io
