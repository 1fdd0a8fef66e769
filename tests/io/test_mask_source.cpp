// MaskSource: the three kinds of mask input, their values, their geometry
// under each resize mode, call-order independence and the errors.
#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <fstream>
#include <functional>

#include "io/image.h"
#include "io/mask_source.h"
#include "tests/io/test_video_util.h"

using via::io::MaskError;
using via::io::MaskKind;
using via::io::MaskSource;
using via::io::ResizeMode;
using via::io::RgbImage;
using via::io::Size;
using via::test::TempDir;

namespace {

// A grey picture whose level at (x, y) is level(x, y).
RgbImage grey(int w, int h, const std::function<uint8_t(int, int)>& level) {
  RgbImage im(w, h);
  for (int y = 0; y < h; ++y) {
    for (int x = 0; x < w; ++x) {
      uint8_t* p = im.pixel(x, y);
      p[0] = p[1] = p[2] = level(x, y);
    }
  }
  return im;
}

// The expected mask of a grey picture at its own size: level / 255.
at::Tensor expected(const RgbImage& im) {
  at::Tensor t = at::empty({1, 1, im.height, im.width}, at::kFloat);
  auto a = t.accessor<float, 4>();
  for (int y = 0; y < im.height; ++y)
    for (int x = 0; x < im.width; ++x) a[0][0][y][x] = im.pixel(x, y)[0] / 255.0f;
  return t;
}

float max_abs_diff(const at::Tensor& a, const at::Tensor& b) { return (a - b).abs().max().item<float>(); }

// Asserts that `fn` throws MaskError whose message contains every one of `parts`.
template <typename Fn>
void expect_mask_error(Fn fn, const std::vector<std::string>& parts) {
  try {
    fn();
    ADD_FAILURE() << "no MaskError thrown";
  } catch (const MaskError& e) {
    const std::string msg = e.what();
    EXPECT_EQ(msg.find('\n'), std::string::npos) << msg;
    for (const auto& part : parts) EXPECT_NE(msg.find(part), std::string::npos) << "'" << part << "' not in: " << msg;
  }
}

// Per-frame content for the pattern and video tests: a vertical white bar at
// a frame-dependent place over a frame-dependent grey.
RgbImage frame_picture(int i) {
  return grey(32, 24, [i](int x, int) { return static_cast<uint8_t>(x / 8 == i ? 255 : 40 * i + 17); });
}

}  // namespace

TEST(MaskSource, StillImageIsTheSameMaskForEveryFrameAndIsResized) {
  TempDir dir;
  const std::string path = dir.file("half.png");
  via::io::write_png(path, grey(64, 48, [](int x, int) { return x < 32 ? 255 : 0; }));  // left half white
  const MaskSource masks(path, Size{32, 24}, ResizeMode::stretch);
  EXPECT_EQ(masks.kind(), MaskKind::still_image);
  const at::Tensor m0 = masks.mask(0);
  ASSERT_EQ(m0.sizes(), (std::vector<int64_t>{1, 1, 24, 32}));
  EXPECT_EQ(m0.scalar_type(), at::kFloat);
  EXPECT_TRUE(m0.device().is_cpu());
  EXPECT_TRUE(at::equal(m0, masks.mask(7)));
  // Halved size: columns 0..15 are the white half, 16..31 the black; allow the
  // scaler's filter one column either side of the edge.
  EXPECT_GT(m0.slice(3, 0, 15).min().item<float>(), 0.99f);
  EXPECT_LT(m0.slice(3, 17, 32).max().item<float>(), 0.01f);
  EXPECT_GE(m0.min().item<float>(), 0.0f);
  EXPECT_LE(m0.max().item<float>(), 1.0f);
  // The caller owns its tensor: changing it does not change the next mask.
  at::Tensor owned = masks.mask(3);
  owned.zero_();
  EXPECT_TRUE(at::equal(masks.mask(3), m0));
}

TEST(MaskSource, SoftValuesAndColourPassThroughAsLuma) {
  TempDir dir;
  const std::string path = dir.file("soft.png");
  RgbImage im(16, 8);
  for (int y = 0; y < 8; ++y) {
    for (int x = 0; x < 16; ++x) {
      uint8_t* p = im.pixel(x, y);
      if (x < 8) {
        p[0] = p[1] = p[2] = 128;  // soft grey: 128 / 255, not thresholded
      } else {
        p[0] = 255, p[1] = 0, p[2] = 0;  // pure red: BT.601 luma 0.299
      }
    }
  }
  via::io::write_png(path, im);
  const at::Tensor m = MaskSource(path, Size{16, 8}, ResizeMode::stretch).mask(0);
  EXPECT_NEAR(m[0][0][3][2].item<float>(), 128.0f / 255.0f, 1e-6);
  EXPECT_NEAR(m[0][0][3][12].item<float>(), 0.299f, 1e-6);
}

TEST(MaskSource, PatternReadsFileIForFrameIInAnyOrder) {
  TempDir dir;
  for (int i = 0; i < 3; ++i) {
    char name[32];
    std::snprintf(name, sizeof name, "m%05d.png", i);
    via::io::write_png(dir.file(name), frame_picture(i));
  }
  const MaskSource masks(dir.file("m%05d.png"), Size{32, 24}, ResizeMode::stretch);
  EXPECT_EQ(masks.kind(), MaskKind::per_frame_images);
  EXPECT_EQ(masks.frame_path(2), dir.file("m00002.png"));
  EXPECT_NO_THROW(masks.validate(3));
  for (int i : {2, 0, 1, 2, 0}) {
    EXPECT_LT(max_abs_diff(masks.mask(i), expected(frame_picture(i))), 1e-6) << "frame " << i;
  }
  EXPECT_FALSE(at::equal(masks.mask(0), masks.mask(1)));
}

TEST(MaskSource, MaskVideoFrameIIsTheMaskOfFrameI) {
  TempDir dir;
  for (int i = 0; i < 4; ++i) {
    char name[32];
    std::snprintf(name, sizeof name, "v%03d.png", i);
    via::io::write_png(dir.file(name), frame_picture(i));
  }
  // Planar RGB FFV1: lossless, so the decoded values are the pictures' own.
  const std::string video = dir.file("mask.mkv");
  via::test::ffmpeg("-framerate 5 -i '" + dir.file("v%03d.png") + "' -c:v ffv1 -pix_fmt gbrp '" + video + "'", dir);
  const MaskSource masks(video, Size{32, 24}, ResizeMode::stretch);
  EXPECT_EQ(masks.kind(), MaskKind::video);
  EXPECT_EQ(masks.frame_count(), 4);
  EXPECT_NO_THROW(masks.validate(4));
  expect_mask_error([&] { masks.validate(6); }, {video, "4 frames", "6"});
  for (int i : {3, 0, 2, 1, 3, 0}) {  // backward jumps and repeats: same values
    EXPECT_LT(max_abs_diff(masks.mask(i), expected(frame_picture(i))), 1e-6) << "frame " << i;
  }
  expect_mask_error([&] { masks.mask(4); }, {video, "frame 4"});
}

TEST(MaskSource, FitPadsWithZeroSoTheLetterboxKeepsTheSource) {
  TempDir dir;
  const std::string path = dir.file("white.png");
  via::io::write_png(path, grey(64, 32, [](int, int) { return 255; }));  // 2:1 into 1:1
  const at::Tensor m = MaskSource(path, Size{32, 32}, ResizeMode::fit).mask(0);
  // Fit: 64x32 -> 32x16 centred, bars of 8 rows above and below.
  EXPECT_EQ(m.slice(2, 0, 8).max().item<float>(), 0.0f);
  EXPECT_EQ(m.slice(2, 24, 32).max().item<float>(), 0.0f);
  EXPECT_GT(m.slice(2, 8, 24).min().item<float>(), 0.99f);
}

TEST(MaskSource, CropCutsTheSameWindowAsTheFrames) {
  TempDir dir;
  const std::string path = dir.file("quarter.png");
  // White in the second quarter of a 2:1 picture; a 1:1 crop keeps columns 16..47.
  via::io::write_png(path, grey(64, 32, [](int x, int) { return x >= 16 && x < 32 ? 255 : 0; }));
  const at::Tensor crop = MaskSource(path, Size{32, 32}, ResizeMode::crop).mask(0);
  EXPECT_GT(crop.slice(3, 0, 15).min().item<float>(), 0.99f);
  EXPECT_LT(crop.slice(3, 17, 32).max().item<float>(), 0.01f);
  // Stretch keeps the whole width instead: the white quarter lands in columns 8..15.
  const at::Tensor stretch = MaskSource(path, Size{32, 32}, ResizeMode::stretch).mask(0);
  EXPECT_LT(stretch.slice(3, 0, 7).max().item<float>(), 0.01f);
  EXPECT_GT(stretch.slice(3, 9, 15).min().item<float>(), 0.99f);
}

TEST(MaskSource, APictureOfTheStoredSizeHasTheVideosPixels) {
  TempDir dir;
  // Drawn over a 72x48 frame whose pixels are 4/3 as wide as high (shown 96x48,
  // 2:1): white in the left half.
  const std::string path = dir.file("half.png");
  via::io::write_png(path, grey(72, 48, [](int x, int) { return x < 36 ? 255 : 0; }));
  // Into a 2:1 model frame, fit: the frames fill it, and so does the mask.
  const at::Tensor m = MaskSource(path, Size{32, 16}, ResizeMode::fit, Size{72, 48}, Size{96, 48}).mask(0);
  EXPECT_GT(m.slice(3, 0, 15).min().item<float>(), 0.99f);
  EXPECT_LT(m.slice(3, 17, 32).max().item<float>(), 0.01f);
  // Taken as square pixels it would be pillarboxed: its first columns 0.
  const at::Tensor square = MaskSource(path, Size{32, 16}, ResizeMode::fit).mask(0);
  EXPECT_EQ(square.slice(3, 0, 2).max().item<float>(), 0.0f);
}

TEST(MaskSource, MissingFrameFileNamesFileAndFrame) {
  TempDir dir;
  for (int i = 0; i < 3; ++i) via::io::write_png(dir.file("m" + std::to_string(i) + ".png"), frame_picture(i));
  const MaskSource masks(dir.file("m%d.png"), Size{32, 24}, ResizeMode::stretch);
  expect_mask_error([&] { masks.mask(3); }, {dir.file("m3.png"), "frame 3"});
  expect_mask_error([&] { masks.validate(5); }, {dir.file("m3.png"), "frame 3"});
  EXPECT_THROW(masks.mask(-1), std::out_of_range);
}

TEST(MaskSource, UnusableSpecsGiveOneLineNamingThePath) {
  TempDir dir;
  const Size size{32, 24};
  expect_mask_error([&] { MaskSource(dir.file("absent.png"), size, ResizeMode::fit); },
                    {dir.file("absent.png"), "does not exist"});
  expect_mask_error([&] { MaskSource(dir.file("none_%05d.png"), size, ResizeMode::fit); },
                    {dir.file("none_%05d.png"), "matches no files"});
  // A file the pattern does not produce (7 is not 00007) does not count.
  via::io::write_png(dir.file("p7.png"), frame_picture(0));
  expect_mask_error([&] { MaskSource(dir.file("p%05d.png"), size, ResizeMode::fit); }, {"matches no files"});
  expect_mask_error([&] { MaskSource(dir.file("nodir/%05d.png"), size, ResizeMode::fit); },
                    {dir.file("nodir"), "does not exist"});
  expect_mask_error([&] { MaskSource(dir.file("%s_%05d.png"), size, ResizeMode::fit); }, {"%s"});
  expect_mask_error([&] { MaskSource(dir.file("%d_%d.png"), size, ResizeMode::fit); }, {"one"});
  expect_mask_error([&] { MaskSource(dir.path(), size, ResizeMode::fit); }, {dir.path(), "directory"});
  const std::string junk = dir.file("junk.png");
  std::ofstream(junk) << "this is not a picture\n";
  expect_mask_error([&] { MaskSource(junk, size, ResizeMode::fit); }, {junk});
  // A pattern's frame file that does not decode names the file and frame.
  std::ofstream(dir.file("q00000.png")) << "not a png either\n";
  const MaskSource bad_frame(dir.file("q%05d.png"), size, ResizeMode::fit);
  expect_mask_error([&] { bad_frame.mask(0); }, {dir.file("q00000.png"), "frame 0"});
}

TEST(MaskSource, LiteralPercentInAPlainPathIsNotAPattern) {
  TempDir dir;
  const std::string path = dir.file("100%.png");
  via::io::write_png(path, grey(8, 8, [](int, int) { return 255; }));
  const MaskSource masks(path, Size{8, 8}, ResizeMode::stretch);
  EXPECT_EQ(masks.kind(), MaskKind::still_image);
  EXPECT_EQ(masks.mask(5).min().item<float>(), 1.0f);
}
