// The output's video formats (io/output_format.h, io/video_writer.h): --codec
// and --pix-fmt resolved against the container and this FFmpeg's encoders,
// each codec written into the containers that hold it and read back by
// ffprobe, 10-bit output that really holds 10 bits, the source's colour
// description read by probe_video() and written again, and --output-size's
// parsing.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "io/output_format.h"
#include "io/segments.h"
#include "io/video_reader.h"
#include "io/video_writer.h"
#include "tests/io/test_video_util.h"

namespace via::io {
namespace {

using test::TempDir;

}  // namespace
void PrintTo(const ColorDescription& c, std::ostream* os) {
  *os << "{" << c.primaries << ", " << c.transfer << ", " << c.matrix << ", " << c.range << "}";
}
namespace {

std::string refusal(const std::string& output, std::optional<VideoCodec> codec, const std::string& pix_fmt) {
  try {
    resolve_video_format(output, codec, pix_fmt);
  } catch (const VideoError& e) {
    return e.what();
  }
  return "";
}

TEST(VideoFormats, AutoIsH264OrVp9ForWebmAndProResDefaultsTo10Bit422) {
  EXPECT_EQ(resolve_video_format("a.mp4", std::nullopt, "auto").codec, VideoCodec::H264);
  EXPECT_EQ(resolve_video_format("a.mp4", std::nullopt, "auto").pixel_format, "yuv420p");
  EXPECT_EQ(resolve_video_format("a.webm", std::nullopt, "auto").codec, VideoCodec::VP9);
  const VideoFormat prores = resolve_video_format("a.mov", VideoCodec::ProRes, "auto");
  EXPECT_EQ(prores.pixel_format, "yuv422p10le");
  EXPECT_EQ(prores.describe(), "ProRes yuv422p10le");
  EXPECT_EQ(resolve_video_format("a.mkv", VideoCodec::HEVC, "yuv420p10le").pixel_format, "yuv420p10le");
  EXPECT_EQ(resolve_video_format("a.mkv", VideoCodec::FFV1, "yuv444p10le").codec, VideoCodec::FFV1);
}

TEST(VideoFormats, CombinationsTheContainerOrEncoderCannotTakeAreRefusedInOneLine) {
  struct Case {
    std::string output;
    VideoCodec codec;
    std::string pix_fmt, says;
  };
  for (const Case& c : {Case{"a.webm", VideoCodec::ProRes, "auto", "--codec prores: a .webm file cannot hold ProRes"},
                        Case{"a.webm", VideoCodec::H264, "auto", "a .webm file cannot hold H.264"},
                        Case{"a.mp4", VideoCodec::FFV1, "auto", "a .mp4 file cannot hold FFV1"},
                        Case{"a.mp4", VideoCodec::ProRes, "auto", "a .mp4 file cannot hold ProRes"},
                        Case{"a.mov", VideoCodec::ProRes, "yuv420p",
                             "--pix-fmt yuv420p: --codec prores (prores_ks) takes yuv422p10le, yuv444p10le"},
                        Case{"a.mkv", VideoCodec::HEVC, "rgb24", "--pix-fmt rgb24"},
                        Case{"a.mkv", VideoCodec::H264, "nonsense", "--pix-fmt nonsense"}}) {
    SCOPED_TRACE(c.output + " " + video_codec_name(c.codec) + " " + c.pix_fmt);
    const std::string message = refusal(c.output, c.codec, c.pix_fmt);
    EXPECT_NE(message.find(c.says), std::string::npos) << message;
    EXPECT_EQ(message.find('\n'), std::string::npos) << message;
  }
  // plan_output() refuses the same, before it looks at audio.
  VideoInfo v;
  EXPECT_THROW(plan_output("a.webm", v, AudioMode::Auto, VideoCodec::ProRes), VideoError);
  EXPECT_EQ(plan_output("a.mkv", v, AudioMode::Auto, VideoCodec::FFV1).describe(), "mkv (FFV1 yuv420p), no audio");
}

TEST(VideoFormats, OutputSizeParses) {
  EXPECT_EQ(parse_output_size("model").kind, OutputSize::Kind::Model);
  EXPECT_EQ(parse_output_size("source").resolve({320, 180}, {64, 40}), (Size{320, 180}));
  EXPECT_EQ(parse_output_size("model").resolve({320, 180}, {64, 40}), (Size{64, 40}));
  EXPECT_EQ(parse_output_size("1280x720").resolve({320, 180}, {64, 40}), (Size{1280, 720}));
  for (const char* bad : {"", "big", "0x10", "10x", "1280x720x3", "-4x4", "99999x2"})
    EXPECT_THROW(parse_output_size(bad), std::invalid_argument) << bad;
}

TEST(VideoFormats, UndeclaredColourIsBt709LimitedAndDeclaredFieldsAreKept) {
  const ColorDescription none = output_color({});
  EXPECT_EQ(none.primaries, "bt709");
  EXPECT_EQ(none.transfer, "bt709");
  EXPECT_EQ(none.matrix, "bt709");
  EXPECT_EQ(none.range, "tv");
  const ColorDescription pal = output_color({"bt470bg", "", "bt470bg", "pc"});
  EXPECT_EQ(pal.primaries, "bt470bg");
  EXPECT_EQ(pal.transfer, "bt709");
  EXPECT_EQ(pal.matrix, "bt470bg");
  EXPECT_EQ(pal.range, "pc");
  EXPECT_EQ(output_color({"", "", "rgb", ""}).matrix, "bt709") << "a matrix RGB cannot be converted to";
}

// A smooth horizontal grey ramp with a slow colour drift: every 8-bit level
// appears, and 10-bit output of it lands between them.
RgbImage ramp(int w, int h, int frame) {
  RgbImage image(w, h);
  for (int y = 0; y < h; ++y)
    for (int x = 0; x < w; ++x) {
      uint8_t* p = image.pixel(x, y);
      const int v = x * 255 / (w - 1);
      p[0] = static_cast<uint8_t>(v);
      p[1] = static_cast<uint8_t>(std::min(255, v + y / 4 + frame));
      p[2] = static_cast<uint8_t>(255 - v);
    }
  return image;
}

std::string write(const TempDir& dir, const std::string& name, VideoCodec codec, const std::string& pix_fmt,
                  ColorDescription color = {}) {
  EncodeOptions options;
  options.codec = codec;
  options.pixel_format = pix_fmt;
  options.color = color;
  options.crf = 4;
  options.preset = "ultrafast";
  VideoWriter writer(dir.file(name), {128, 72}, {10, 1}, options);
  for (int i = 0; i < 4; ++i) writer.write(ramp(128, 72, i));
  writer.finish();
  return dir.file(name);
}

nlohmann::json stream_of(const std::string& path, const TempDir& dir) {
  const test::RunResult r = test::run(
      "ffprobe -v error -count_frames -select_streams v:0 -show_entries "
      "stream=codec_name,codec_tag_string,pix_fmt,profile,width,height,nb_read_frames,color_primaries,color_transfer,"
      "color_space,color_range,bits_per_raw_sample:format=format_name -of json '" + path + "'",
      dir);
  if (r.exit_code != 0) throw std::runtime_error("ffprobe " + path + ": " + r.err);
  nlohmann::json j = nlohmann::json::parse(r.out);
  nlohmann::json s = j["streams"][0];
  s["format_name"] = j["format"]["format_name"];
  return s;
}

// The luma samples of frame 0 decoded as 16-bit words (yuv420p10le).
std::vector<uint16_t> luma10(const std::string& path, const TempDir& dir, int w, int h) {
  const std::string raw = dir.file("luma.raw");
  test::ffmpeg("-i '" + path + "' -frames:v 1 -f rawvideo -pix_fmt yuv420p10le '" + raw + "'", dir);
  const std::string bytes = test::read_file(raw);
  std::vector<uint16_t> y(static_cast<size_t>(w) * h);
  for (size_t i = 0; i < y.size(); ++i)
    y[i] = static_cast<uint16_t>(static_cast<uint8_t>(bytes[2 * i]) | static_cast<uint8_t>(bytes[2 * i + 1]) << 8);
  return y;
}

TEST(VideoFormats, TenBitHevcHoldsTenBitsNotEightShifted) {
  TempDir dir;
  const std::string path = write(dir, "ten.mkv", VideoCodec::HEVC, "yuv420p10le");
  const nlohmann::json s = stream_of(path, dir);
  EXPECT_EQ(s["codec_name"], "hevc");
  EXPECT_EQ(s["pix_fmt"], "yuv420p10le");
  EXPECT_EQ(s["profile"], "Main 10");
  EXPECT_EQ(s["nb_read_frames"], "4");
  EXPECT_EQ(probe_video(path).pixel_format, "yuv420p10le");
  const std::vector<uint16_t> y = luma10(path, dir, 128, 72);
  size_t between = 0;  // samples an 8-bit picture shifted by 2 bits cannot have
  uint16_t lo = 1023, hi = 0;
  for (uint16_t v : y) {
    between += v % 4 != 0;
    lo = std::min(lo, v);
    hi = std::max(hi, v);
  }
  std::printf("10-bit HEVC luma: %zu of %zu samples not multiples of 4, range %u..%u\n", between, y.size(), lo, hi);
  EXPECT_GT(between, y.size() / 2) << "the 10-bit output holds 8-bit values shifted";
  EXPECT_GE(lo, 60);  // limited range: 64..940, give or take the codec
  EXPECT_LE(hi, 950);

  // The same frames as 8-bit H.264 decode to multiples of 4 only: the check can fail.
  const std::vector<uint16_t> y8 = luma10(write(dir, "eight.mkv", VideoCodec::H264, "yuv420p"), dir, 128, 72);
  size_t between8 = 0;
  for (uint16_t v : y8) between8 += v % 4 != 0;
  EXPECT_EQ(between8, 0u);
}

TEST(VideoFormats, SixteenBitFramesReadAndWrittenKeepATenBitSource) {
  TempDir dir;
  const std::string source = dir.file("ramp10.mkv");
  // A 10-bit ramp, stored turned a quarter (the reader turns it upright).
  test::ffmpeg("-f lavfi -i \"nullsrc=s=64x48:r=10,format=yuv420p10le,geq=lum='100+X*10+Y':cb=512:cr=520\" "
               "-t 0.3 -c:v ffv1 -color_primaries bt709 -color_trc bt709 -colorspace bt709 -color_range tv "
               "-metadata:s:v rotate=90 '" + source + "'",
               dir);
  ReaderOptions deep;
  deep.rgb48 = true;
  VideoReader reader48(source, deep);
  VideoReader reader8(source);
  const Frame f48 = reader48.read_frame(1), f8 = reader8.read_frame(1);
  ASSERT_EQ(f48.image48.width, f8.image.width);
  ASSERT_EQ(f48.image48.height, f8.image.height);
  EXPECT_TRUE(f48.image.data.empty());
  int worst = 0;
  size_t finer = 0;  // samples an 8-bit value scaled by 257 cannot be
  for (size_t i = 0; i < f8.image.data.size(); ++i) {
    worst = std::max(worst, static_cast<int>(std::lround(std::abs(f48.image48.data[i] / 257.0 - f8.image.data[i]))));
    finer += f48.image48.data[i] % 257 != 0;
  }
  EXPECT_LE(worst, 1) << "the 16-bit frame is the 8-bit one (which swscale dithers) to a level";
  EXPECT_GT(finer, f8.image.data.size() / 2);

  // Written back as 10-bit FFV1: the luma is the source's.
  EncodeOptions options;
  options.codec = VideoCodec::FFV1;
  options.pixel_format = "yuv420p10le";
  const std::string out = dir.file("back.mkv");
  {
    options.color = reader48.info().color;  // converted back with the matrix it was read with
    VideoWriter writer(out, {f48.image48.width, f48.image48.height}, {10, 1}, options);
    writer.write(f48.image48);
    writer.finish();
  }
  const std::vector<uint16_t> back = luma10(out, dir, 48, 64);
  test::ffmpeg("-i '" + source + "' -frames:v 2 -f rawvideo -pix_fmt yuv420p10le '" +
                   dir.file("upright.raw") + "'",
               dir);
  const std::string upright = test::read_file(dir.file("upright.raw"));  // ffmpeg turned it upright too
  const size_t frame_bytes = 48 * 64 * 3;
  int off = 0;
  for (size_t i = 0; i < back.size(); ++i) {
    const size_t at = frame_bytes + 2 * i;  // frame 1
    const int want = static_cast<uint8_t>(upright[at]) | static_cast<uint8_t>(upright[at + 1]) << 8;
    off = std::max(off, std::abs(want - back[i]));
  }
  EXPECT_LE(off, 1) << "10-bit luma through 16-bit RGB";
}

TEST(VideoFormats, EachCodecInItsContainers) {
  TempDir dir;
  struct Case {
    std::string name;
    VideoCodec codec;
    std::string pix_fmt, format;
    std::string decoded = pix_fmt;  // ProRes 4444 decodes at 12 bits
  };
  for (const Case& c : {Case{"p.mov", VideoCodec::ProRes, "yuv422p10le", "mov"},
                        Case{"p4.mkv", VideoCodec::ProRes, "yuv444p10le", "matroska", "yuv444p12le"},
                        Case{"f.mkv", VideoCodec::FFV1, "yuv420p", "matroska"},
                        Case{"f10.mkv", VideoCodec::FFV1, "yuv444p10le", "matroska"},
                        Case{"v.webm", VideoCodec::VP9, "yuv420p", "matroska"},
                        Case{"v10.webm", VideoCodec::VP9, "yuv420p10le", "matroska"},
                        Case{"h.mp4", VideoCodec::HEVC, "yuv420p", "mp4"},
                        Case{"x10.mp4", VideoCodec::H264, "yuv420p10le", "mp4"}}) {
    SCOPED_TRACE(c.name);
    const nlohmann::json s = stream_of(write(dir, c.name, c.codec, c.pix_fmt), dir);
    EXPECT_EQ(s["codec_name"], video_codec_name(c.codec));
    EXPECT_EQ(s["pix_fmt"], c.decoded);
    EXPECT_EQ(s["nb_read_frames"], "4");
    EXPECT_NE(s["format_name"].get<std::string>().find(c.format), std::string::npos) << s.dump();
    if (c.codec == VideoCodec::HEVC) {
      EXPECT_EQ(s["codec_tag_string"], "hvc1") << "as Apple's players need";
    }
  }
  // Segments of ProRes in QuickTime files named .mp4 (a render's segments) join into a .mov.
  EncodeOptions options;
  options.codec = VideoCodec::ProRes;
  options.muxer = "mov";
  std::vector<std::string> segments;
  for (int k = 0; k < 2; ++k) {
    options.first_frame = 2 * k;
    segments.push_back(dir.file("seg" + std::to_string(k) + ".mp4"));
    VideoWriter w(segments.back(), {128, 72}, {10, 1}, options);
    w.write(ramp(128, 72, 2 * k));
    w.write(ramp(128, 72, 2 * k + 1));
    w.finish();
  }
  ConcatOptions concat;
  concat.color = output_color({});
  concat_segments(segments, dir.file("joined.mov"), concat);
  const nlohmann::json joined = stream_of(dir.file("joined.mov"), dir);
  EXPECT_EQ(joined["codec_name"], "prores");
  EXPECT_EQ(joined["nb_read_frames"], "4");
  EXPECT_EQ(joined["color_range"], "tv");
}

TEST(VideoFormats, TheSourcesColourDescriptionIsReadAndWrittenAgain) {
  TempDir dir;
  struct Case {
    std::string args;
    ColorDescription want;
  };
  for (const Case& c :
       {Case{"-color_primaries bt709 -color_trc bt709 -colorspace bt709 -color_range tv",
             {"bt709", "bt709", "bt709", "tv"}},
        Case{"-color_primaries bt470bg -color_trc gamma28 -colorspace bt470bg -color_range pc",
             {"bt470bg", "bt470bg", "bt470bg", "pc"}},  // FFmpeg's name of gamma 2.8
        Case{"-color_primaries smpte170m -color_trc smpte170m -colorspace smpte170m -color_range tv",
             {"smpte170m", "smpte170m", "smpte170m", "tv"}}}) {
    SCOPED_TRACE(c.args);
    const std::string source = dir.file("src.mkv");
    test::ffmpeg("-f lavfi -i testsrc2=size=64x48:rate=10 -t 0.3 -c:v libx264 -preset ultrafast -pix_fmt yuv420p " +
                     c.args + " '" + source + "'",
                 dir);
    const VideoInfo info = probe_video(source);
    EXPECT_EQ(info.color, c.want);
    const nlohmann::json s = stream_of(write(dir, "out.mkv", VideoCodec::H264, "yuv420p", info.color), dir);
    EXPECT_EQ(s["color_primaries"], c.want.primaries);
    EXPECT_EQ(s["color_transfer"], c.want.transfer);
    EXPECT_EQ(s["color_space"], c.want.matrix);
    EXPECT_EQ(s["color_range"], c.want.range);
  }
  // Nothing declared: BT.709, limited range.
  const std::string plain = dir.file("plain.mkv");
  test::ffmpeg("-f lavfi -i testsrc2=size=64x48:rate=10 -t 0.3 -c:v libx264 -preset ultrafast -pix_fmt yuv420p '" +
                   plain + "'",
               dir);
  const VideoInfo info = probe_video(plain);
  EXPECT_FALSE(info.color.declared());
  const nlohmann::json s = stream_of(write(dir, "out2.mkv", VideoCodec::H264, "yuv420p", info.color), dir);
  EXPECT_EQ(s["color_primaries"], "bt709");
  EXPECT_EQ(s["color_space"], "bt709");
  EXPECT_EQ(s["color_range"], "tv");
}

}  // namespace
}  // namespace via::io
