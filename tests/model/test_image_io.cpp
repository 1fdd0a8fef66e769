// Still-image I/O: PNG round trips (RGB, RGBA, grey, 16-bit), JPEG (full-range
// YUV) decoding, tensor conversions, and a clear error naming the file for
// every kind of bad input.
#include "io/image.h"

#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <memory>
#include <string>

extern "C" {
#include <libavcodec/avcodec.h>
#include <libavutil/frame.h>
#include <libswscale/swscale.h>
}

namespace fs = std::filesystem;
using via::io::image_to_tensor;
using via::io::RgbImage;
using via::io::tensor_to_image;
using via::io::VideoError;

// The file API on tensors, to compare pictures with torch ops.
at::Tensor read_image(const std::string& path) { return image_to_tensor(via::io::read_image(path)); }
void write_png(const std::string& path, const at::Tensor& rgb) { via::io::write_png(path, tensor_to_image(rgb)); }

namespace {

class ImageIoTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string tmpl = (fs::temp_directory_path() / "via_image_XXXXXX").string();
    ASSERT_NE(::mkdtemp(tmpl.data()), nullptr);
    dir_ = tmpl;
  }
  void TearDown() override { fs::remove_all(dir_); }
  std::string path(const std::string& name) const { return (dir_ / name).string(); }

  // Encodes `rgb` (uint8 [H, W, 3]) with `codec_id` in pixel format `fmt`
  // through swscale and writes the single packet to `name`: image files made
  // independently of the code under test.
  std::string encode_file(const std::string& name, const at::Tensor& rgb, AVCodecID codec_id, AVPixelFormat fmt) {
    const int h = static_cast<int>(rgb.size(0)), w = static_cast<int>(rgb.size(1));
    const AVCodec* codec = avcodec_find_encoder(codec_id);
    EXPECT_NE(codec, nullptr);
    AVCodecContext* ctx = avcodec_alloc_context3(codec);
    ctx->width = w;
    ctx->height = h;
    ctx->pix_fmt = fmt;
    ctx->time_base = AVRational{1, 25};
    if (codec_id == AV_CODEC_ID_MJPEG) {
      ctx->color_range = AVCOL_RANGE_JPEG;
      ctx->flags |= AV_CODEC_FLAG_QSCALE;
      ctx->global_quality = FF_QP2LAMBDA * 2;  // high quality
    }
    EXPECT_EQ(avcodec_open2(ctx, codec, nullptr), 0);
    AVFrame* frame = av_frame_alloc();
    frame->format = fmt;
    frame->width = w;
    frame->height = h;
    frame->color_range = ctx->color_range;
    frame->quality = ctx->global_quality;
    EXPECT_EQ(av_frame_get_buffer(frame, 0), 0);
    SwsContext* sws = sws_getContext(w, h, AV_PIX_FMT_RGB24, w, h, fmt, SWS_BICUBIC | SWS_ACCURATE_RND, nullptr,
                                     nullptr, nullptr);
    if (codec_id == AV_CODEC_ID_MJPEG)
      sws_setColorspaceDetails(sws, sws_getCoefficients(SWS_CS_ITU601), 1, sws_getCoefficients(SWS_CS_ITU601), 1, 0,
                               1 << 16, 1 << 16);
    const at::Tensor src = rgb.contiguous();
    const uint8_t* src_data[4] = {src.data_ptr<uint8_t>(), nullptr, nullptr, nullptr};
    const int src_stride[4] = {3 * w, 0, 0, 0};
    sws_scale(sws, src_data, src_stride, 0, h, frame->data, frame->linesize);
    sws_freeContext(sws);
    EXPECT_EQ(avcodec_send_frame(ctx, frame), 0);
    EXPECT_EQ(avcodec_send_frame(ctx, nullptr), 0);
    AVPacket* packet = av_packet_alloc();
    std::ofstream out(path(name), std::ios::binary);
    while (avcodec_receive_packet(ctx, packet) == 0) {
      out.write(reinterpret_cast<const char*>(packet->data), packet->size);
      av_packet_unref(packet);
    }
    av_packet_free(&packet);
    av_frame_free(&frame);
    avcodec_free_context(&ctx);
    return path(name);
  }

  // Expects `fn` to throw VideoError whose message contains `needle` and
  // names `file` (also as VideoError::file()).
  template <typename Fn>
  static void expect_error(Fn fn, const std::string& file, const std::string& needle = "") {
    try {
      fn();
      FAIL() << "expected VideoError for " << file;
    } catch (const VideoError& e) {
      const std::string msg = e.what();
      EXPECT_NE(msg.find(file), std::string::npos) << msg;
      EXPECT_NE(msg.find(needle), std::string::npos) << msg;
      EXPECT_EQ(e.file(), file);
      EXPECT_EQ(msg.find('\n'), std::string::npos) << "one line: " << msg;
    }
  }

  fs::path dir_;
};

at::Tensor random_image(int h, int w, uint64_t seed) {
  auto gen = at::detail::createCPUGenerator(seed);
  return at::randint(0, 256, {h, w, 3}, gen, at::TensorOptions().dtype(at::kByte));
}

// A smooth picture (JPEG-friendly): horizontal, vertical and diagonal ramps.
at::Tensor smooth_image(int h, int w) {
  const at::Tensor y = at::linspace(0, 1, h, at::kFloat).view({h, 1}).expand({h, w});
  const at::Tensor x = at::linspace(0, 1, w, at::kFloat).view({1, w}).expand({h, w});
  return (at::stack({x, y, (x + y) / 2}, 2) * 200 + 20).round().to(at::kByte);
}

TEST_F(ImageIoTest, PngRoundTripIsExact) {
  const at::Tensor img = random_image(37, 53, 1);
  write_png(path("a.png"), img);
  const at::Tensor back = read_image(path("a.png"));
  EXPECT_EQ(back.sizes(), img.sizes());
  EXPECT_EQ(back.scalar_type(), at::kByte);
  EXPECT_TRUE(at::equal(back, img));
  EXPECT_FALSE(fs::exists(path("a.png.tmp")));
}

TEST_F(ImageIoTest, WritesNonContiguousTensors) {
  const at::Tensor img = random_image(20, 30, 2);
  const at::Tensor view = img.transpose(0, 1);  // [30, 20, 3], not contiguous
  write_png(path("t.png"), view);
  EXPECT_TRUE(at::equal(read_image(path("t.png")), view.contiguous()));
}

TEST_F(ImageIoTest, OverwritesAnExistingFile) {
  write_png(path("o.png"), random_image(8, 8, 3));
  const at::Tensor second = random_image(16, 8, 4);
  write_png(path("o.png"), second);
  EXPECT_TRUE(at::equal(read_image(path("o.png")), second));
}

TEST_F(ImageIoTest, ReadsRgbaGreyAnd16BitPng) {
  const at::Tensor img = random_image(24, 40, 5);
  // RGBA: alpha is dropped, colour kept exactly.
  EXPECT_TRUE(at::equal(read_image(encode_file("rgba.png", img, AV_CODEC_ID_PNG, AV_PIX_FMT_RGBA)), img));
  // 16-bit: exact after the round trip through 16 bits.
  EXPECT_TRUE(at::equal(read_image(encode_file("rgb48.png", img, AV_CODEC_ID_PNG, AV_PIX_FMT_RGB48BE)), img));
  // Grey: all three channels equal.
  const at::Tensor grey = read_image(encode_file("grey.png", img, AV_CODEC_ID_PNG, AV_PIX_FMT_GRAY8));
  EXPECT_EQ(grey.sizes(), img.sizes());
  EXPECT_TRUE(at::equal(grey.select(2, 0), grey.select(2, 1)));
  EXPECT_TRUE(at::equal(grey.select(2, 0), grey.select(2, 2)));
}

TEST_F(ImageIoTest, ReadsJpegInFullRange) {
  const at::Tensor img = smooth_image(64, 96);
  const std::string file = encode_file("s.jpg", img, AV_CODEC_ID_MJPEG, AV_PIX_FMT_YUVJ420P);
  const at::Tensor back = read_image(file);
  ASSERT_EQ(back.sizes(), img.sizes());
  const at::Tensor diff = (back.to(at::kFloat) - img.to(at::kFloat)).abs();
  // Lossy, but close; a range mix-up (16..235 read as 0..255) would shift
  // the extremes by ~15 levels.
  EXPECT_LT(diff.mean().item<float>(), 2.0f);
  EXPECT_LT(diff.max().item<float>(), 12.0f);
}

TEST(ImageTensors, ConvertBothWays) {
  const at::Tensor img = random_image(5, 7, 9);
  const RgbImage image = tensor_to_image(img);
  EXPECT_EQ(image.width, 7);
  EXPECT_EQ(image.height, 5);
  EXPECT_EQ(image.pixel(6, 4)[2], img[4][6][2].item<uint8_t>());
  EXPECT_TRUE(at::equal(image_to_tensor(image), img));
  EXPECT_TRUE(at::equal(image_to_tensor(tensor_to_image(img.transpose(0, 1))), img.transpose(0, 1).contiguous()));
  EXPECT_THROW(tensor_to_image(img.to(at::kFloat)), std::invalid_argument);
  EXPECT_THROW(tensor_to_image(img.select(2, 0)), std::invalid_argument);
  EXPECT_THROW(tensor_to_image(at::Tensor()), std::invalid_argument);
}

TEST_F(ImageIoTest, ErrorsNameTheFile) {
  const std::string missing = path("missing.png");
  expect_error([&] { read_image(missing); }, missing, "No such file");

  const std::string text = path("notes.png");
  std::ofstream(text) << "this is not an image\n";
  expect_error([&] { read_image(text); }, text);

  const at::Tensor img = random_image(32, 32, 6);
  write_png(path("full.png"), img);
  const std::string truncated = path("truncated.png");
  {
    std::ifstream in(path("full.png"), std::ios::binary);
    std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    std::ofstream(truncated, std::ios::binary) << bytes.substr(0, 60);
  }
  expect_error([&] { read_image(truncated); }, truncated);

  expect_error([&] { read_image(dir_.string()); }, dir_.string());  // a directory

  const std::string unwritable = path("no/such/dir/out.png");
  expect_error([&] { write_png(unwritable, img); }, unwritable, "No such file");
  expect_error([&] { via::io::write_png(path("empty.png"), RgbImage()); }, path("empty.png"), "empty");
  EXPECT_FALSE(fs::exists(path("empty.png")));
}

}  // namespace
