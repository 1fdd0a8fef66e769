// Quality guards on the committed toy-world model (tests/data/toy_ip2p):
// the model really edits through via, and full Via keeps an ambiguous edit
// consistent where frame-by-frame editing does not. These fail when gather-swap,
// the adaptation or the masking is disconnected (each was tried: see the model
// card, tests/data/toy_ip2p/README.md).
#include <gtest/gtest.h>

#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "io/image.h"
#include "io/video_reader.h"
#include "tests/io/test_video_util.h"
#include "tests/quality/toy_metrics.h"

namespace toy = via::test::toy;
using via::io::RgbImage;
using via::test::TempDir;

namespace {

std::string env(const char* name) { return std::getenv(name) ? std::getenv(name) : ""; }
std::string data_dir() { return env("VIA_SOURCE_DIR") + "/tests/data"; }
std::string model() { return data_dir() + "/toy_ip2p"; }
// 701: grayscale and the mask. 902: "paint the shapes", a clip of the
// benchmark's (bench/consistency.sh) whose shapes the model paints cleanly
// (701's 7-pixel triangle often comes out mixed, which measures the model, not Via).
std::string clip(int seed = 701) { return data_dir() + "/toy/clip" + std::to_string(seed); }
std::string frame_file(const std::string& dir, int64_t i) {
  char name[32];
  std::snprintf(name, sizeof(name), "/%05lld.png", static_cast<long long>(i));
  return dir + name;
}

std::vector<RgbImage> decode(const std::string& path) {
  via::io::VideoReader reader(path);
  std::vector<RgbImage> frames;
  const int64_t n = via::io::probe_video(path).frame_count;
  for (int64_t i = 0; i < n; ++i) frames.push_back(reader.read_frame(i).image);
  return frames;
}

// The settings every render here shares: the clip's own size, 20 Euler-a steps
// (the model's scheduler), the model's text guidance (its model card), one
// thread per render.
const std::string kGuidance = " --text-guidance 3";
const std::string kRender = " --long-side 96 --steps 20 --chunk-frames 8 --threads 1 --crf 4" + kGuidance;

class ToyQuality : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    source_ = decode(clip() + "/source.mp4");
    for (size_t i = 0; i < source_.size(); ++i) {
      labels_.push_back(via::io::read_image(frame_file(clip() + "/labels", static_cast<int64_t>(i))));
      circles_.push_back(via::io::read_image(frame_file(clip() + "/circle", static_cast<int64_t>(i))));
    }
  }

  std::vector<RgbImage> render(const std::string& name, const std::string& instruction, const std::string& flags,
                               int seed = 701) const {
    const std::string out = dir_.file(name + ".mp4");
    const auto r = via::test::run(env("VIA_BIN") + " render --input '" + clip(seed) + "/source.mp4' --output '" + out +
                                      "' --model '" + model() + "' --instruction '" + instruction +
                                      "' --workdir '" + dir_.file(name) + "'" + kRender + " " + flags,
                                  dir_);
    EXPECT_EQ(r.exit_code, 0) << r.err;
    return decode(out);
  }

  static std::vector<int> paint_indices(const std::vector<RgbImage>& frames, int seed) {
    std::vector<int> idx;
    for (size_t i = 0; i < frames.size(); ++i)
      idx.push_back(toy::paint_index(frames[i], via::io::read_image(frame_file(clip(seed) + "/labels", static_cast<int64_t>(i)))));
    return idx;
  }

  TempDir dir_;
  static inline std::vector<RgbImage> source_, labels_, circles_;
};

std::string joined(const std::vector<int>& v) {
  std::string s;
  for (int i : v) s += std::to_string(i) + " ";
  return s;
}

// The model's grayscale leaves a faint tint: on held-out stills 6.4 % of the
// source's saturation at guidance 2 / 2 and 10.4 % at the videos' 3 / 1.5
// (its model card); on this clip at 3 / 1.5, 0.065-0.070 through edit-image
// and 0.06-0.11 a frame through render (mean 0.078). An edit that did not happen keeps
// the source's saturation (ratio 1) and is 14-20 dB from the target; the
// previous model (0.14 on stills) needed a bar of 0.4.
constexpr double kGraySaturation = 0.15;     // at most this share of the source's saturation, per frame
constexpr double kGrayMeanSaturation = 0.10;  // the model's target, on average over a render's frames
constexpr double kGrayPsnr = 25.0;            // dB to the exact target (the source's luma)

double expect_grayscale(const RgbImage& edit, const RgbImage& src, const std::string& what) {
  const auto all = toy::everywhere(src);
  const double ratio = toy::saturation(edit, all) / toy::saturation(src, all);
  const double db = toy::psnr(edit, toy::luma(src), all);
  std::printf("%s: saturation %.3f of the source's, %.1f dB to the target\n", what.c_str(), ratio, db);
  EXPECT_LT(ratio, kGraySaturation) << what;
  EXPECT_GT(db, kGrayPsnr) << what;
  return ratio;
}

TEST_F(ToyQuality, GrayscaleThroughEditImageMeetsTheTarget) {
  for (int64_t f : {0, 9}) {
    const std::string in = dir_.file("in.png"), out = dir_.file("out.png");
    via::io::write_png(in, source_[static_cast<size_t>(f)]);
    const auto r = via::test::run(env("VIA_BIN") + " edit-image --model '" + model() + "' --input '" + in +
                                      "' --output '" + out + "' --instruction 'make it grayscale' --threads 1" +
                                      kGuidance,
                                  dir_);
    ASSERT_EQ(r.exit_code, 0) << r.err;
    expect_grayscale(via::io::read_image(out), source_[static_cast<size_t>(f)], "edit-image frame " + std::to_string(f));
  }
}

TEST_F(ToyQuality, GrayscaleThroughRenderMeetsTheTarget) {
  const auto frames = render("gray", "make it grayscale", "");
  ASSERT_EQ(frames.size(), source_.size());
  double sum = 0;
  for (size_t i = 0; i < frames.size(); ++i)
    sum += expect_grayscale(frames[i], source_[i], "render frame " + std::to_string(i));
  const double mean = sum / static_cast<double>(frames.size());
  std::printf("render: mean saturation %.3f of the source's\n", mean);
  EXPECT_LT(mean, kGrayMeanSaturation);
}

// "paint the shapes" has four right answers; frame by frame, each frame's own
// noise picks one. On clip902 each part of Via alone must keep one colour
// where frame by frame does not: the attention group (gather-swap), and the
// test-time adaptation (the model fine-tuned on the root pair); full Via too.
// The frame-by-frame render they are compared with is made once.
class ToyPaint : public ToyQuality {
 protected:
  std::vector<int> paint(const std::string& name, const std::string& flags) const {
    return paint_indices(render(name, "paint the shapes", flags, 902), 902);
  }
  double own_agreement() const {
    static const std::vector<int> own = paint("own", "--attention own --finetune off");
    std::printf("frame by frame: %s\n", joined(own).c_str());
    return toy::agreement(own);
  }
  // At least `floor` of the frames share the majority's clean colour, and
  // `margin` more than frame by frame (measured: 1.0 against 0.375).
  void expect_one_colour(const std::string& mode, const std::vector<int>& idx, double floor, double margin) const {
    const double a_own = own_agreement(), a = toy::agreement(idx);
    std::printf("colour agreement: frame by frame %.3f, %s %.3f (%s)\n", a_own, mode.c_str(), a, joined(idx).c_str());
    EXPECT_GE(a, floor) << mode;
    EXPECT_GE(a - a_own, margin) << mode;
  }
};

TEST_F(ToyPaint, FullViaKeepsOneColourWhereFrameByFrameChangesIt) {
  expect_one_colour("full Via", paint("via", ""), 0.9, 0.25);
}

TEST_F(ToyPaint, GatherSwapAloneKeepsOneColour) {
  expect_one_colour("gather-swap only", paint("swap", "--finetune off"), 0.9, 0.25);
}

// Via's LoRA default (rank 4, lr 1e-4, 100 steps) barely moves this small
// model; a full fine-tune of 200 steps at 1e-4 makes it paint every frame in
// the root pair's colour (100 steps: 0.56 here, unclean frames; model card).
TEST_F(ToyPaint, AdaptationAloneKeepsOneColour) {
  expect_one_colour("adaptation only", paint("adapt", "--attention own --finetune full --finetune-steps 200"), 0.9,
                    0.25);
}

// A global edit under a mask: only the circle turns grey; outside it the frame
// keeps the source (to the VAE's and H.264's precision).
TEST_F(ToyQuality, MaskedEditChangesOnlyTheMaskedShape) {
  const auto frames = render("mask", "make it grayscale", "--mask '" + clip() + "/circle/%05d.png'");
  ASSERT_EQ(frames.size(), source_.size());
  for (size_t i = 0; i < frames.size(); ++i) {
    const int w = frames[i].width, h = frames[i].height;
    const auto inside = toy::erode(toy::threshold(circles_[i], 128), w, h, 1);
    const auto outside = toy::erode(toy::invert(toy::threshold(circles_[i], 1)), w, h, 8);
    const double in_ratio = toy::saturation(frames[i], inside) / toy::saturation(source_[i], inside);
    const double out_ratio = toy::saturation(frames[i], outside) / toy::saturation(source_[i], outside);
    const double out_db = toy::psnr(frames[i], source_[i], outside);
    std::printf("masked frame %zu: saturation inside %.3f, outside %.3f of the source's; outside %.1f dB\n", i,
                in_ratio, out_ratio, out_db);
    // Measured 0.55-0.57: the feathered mask (sigma 1 latent pixel) and its
    // ramp soften the edit on a circle of radius ~2 latent pixels; unedited is 1.
    EXPECT_LT(in_ratio, 0.75) << "frame " << i;
    EXPECT_GT(out_ratio, 0.8) << "frame " << i;
    EXPECT_GT(out_db, 24.0) << "frame " << i;
  }
}

}  // namespace
