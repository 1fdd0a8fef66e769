// `via render`'s output video end to end (env VIA_BIN, the tiny reference
// model): --codec and --pix-fmt (10-bit HEVC that holds 10 bits, FFV1, ProRes),
// --output-size source with a mask (the source's own pixels outside it), the
// source's colour description kept, segments of another format re-encoded
// from their latents on a resume, and impossible combinations refused in one
// line before the model is loaded or the work directory is made. Streams are
// read with ffprobe and decoded with the ffmpeg command, not via's reader.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <regex>

#include "tests/io/test_video_util.h"

namespace via::test {
namespace {

namespace fs = std::filesystem;

std::string env(const char* name) {
  const char* value = std::getenv(name);
  if (value == nullptr || *value == '\0') throw std::runtime_error(std::string(name) + " is not set (run through ctest)");
  return value;
}

// The smallest render that still runs every stage, at a model size of 64x40.
std::string render(const std::string& input, const std::string& output, const std::string& work,
                   const std::string& extra) {
  return "'" + env("VIA_BIN") + "' render --input '" + input + "' --output '" + output + "' --model '" +
         env("VIA_SOURCE_DIR") + "/tests/reference/data/tiny_ip2p' --instruction 'make it a pencil sketch'" +
         " --workdir '" + work + "' --long-side 64 --steps 1 --augment 1 --group-size 2 --chunk-frames 4" +
         " --threads 1 --candidates 1 --finetune-steps 2 " + extra;
}

// A 320x180 clip of 8 frames with the colour description `tags` (ffmpeg options).
std::string make_source(const TempDir& dir, const std::string& tags) {
  const std::string path = dir.file("source.mp4");
  ffmpeg("-f lavfi -i testsrc2=size=320x180:rate=10 -t 0.8 -c:v libx264 -preset ultrafast -crf 8 -pix_fmt yuv420p " +
             tags + " '" + path + "'",
         dir);
  return path;
}

nlohmann::json video_stream(const std::string& path, const TempDir& dir) {
  const RunResult r = run(
      "ffprobe -v error -count_frames -select_streams v:0 -show_entries stream=codec_name,pix_fmt,profile,width,height,"
      "nb_read_frames,color_primaries,color_transfer,color_space,color_range -of json '" + path + "'",
      dir);
  if (r.exit_code != 0) throw std::runtime_error("ffprobe " + path + ": " + r.err);
  return nlohmann::json::parse(r.out)["streams"][0];
}

int lines(const std::string& text) { return static_cast<int>(std::count(text.begin(), text.end(), '\n')); }

TEST(RenderFormats, TenBitHevcThenFfv1AndProResFromTheSameLatents) {
  TempDir dir;
  const std::string source =
      make_source(dir, "-color_primaries bt470bg -color_trc gamma28 -colorspace bt470bg -color_range tv");
  const std::string hevc = dir.file("edited.mkv"), work = dir.file("w");
  const RunResult r = run(render(source, hevc, work, "--codec hevc --pix-fmt yuv420p10le --crf 4"), dir);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.err.find("output: " + hevc + ", mkv (HEVC yuv420p10le), no audio; disk: the work directory " + work +
                       " takes about"),
            std::string::npos)
      << r.err;
  // The disk estimate's adaptation files against the files the render wrote.
  const std::smatch said = [&] {
    std::smatch m;
    std::regex_search(r.err, m, std::regex("adaptation files ([0-9.]+) (KiB|MiB)"));
    return m;
  }();
  ASSERT_EQ(said.size(), 3u) << r.err;
  const double estimate = std::stod(said[1]) * (said[2] == "MiB" ? 1 << 20 : 1 << 10);
  double written = 0;
  for (const char* name : {"adapter.h5", "attention_group.h5", "root_pair.h5", "candidates.png"})
    written += static_cast<double>(fs::file_size(work + "/" + name));
  std::printf("disk estimate of the adaptation files: %.0f bytes; written: %.0f bytes\n", estimate, written);
  EXPECT_GT(estimate, written) << "on the safe side";
  EXPECT_LT(estimate, 2 * written) << "but not far off";

  const nlohmann::json s = video_stream(hevc, dir);
  EXPECT_EQ(s["codec_name"], "hevc");
  EXPECT_EQ(s["pix_fmt"], "yuv420p10le");
  EXPECT_EQ(s["profile"], "Main 10");
  EXPECT_EQ(s["width"], 64) << "the model's size by default";
  EXPECT_EQ(s["nb_read_frames"], "8");
  // The source's colour description is passed on (PAL: BT.470BG, gamma 2.8).
  EXPECT_EQ(s["color_primaries"], "bt470bg");
  EXPECT_EQ(s["color_transfer"], "bt470bg");
  EXPECT_EQ(s["color_space"], "bt470bg");
  EXPECT_EQ(s["color_range"], "tv");

  // 10 bits stored: most luma samples lie between the 8-bit levels.
  const std::string raw = dir.file("y.raw");
  ffmpeg("-i '" + hevc + "' -frames:v 1 -f rawvideo -pix_fmt yuv420p10le '" + raw + "'", dir);
  const std::string bytes = read_file(raw);
  const size_t samples = 64 * 40;
  size_t between = 0;
  for (size_t i = 0; i < samples; ++i) between += (static_cast<uint8_t>(bytes[2 * i]) % 4) != 0;
  std::printf("10-bit render: %zu of %zu luma samples not multiples of 4\n", between, samples);
  EXPECT_GT(between, samples / 2);

  // The same work directory into FFV1: the segments are made again from the
  // chunks' latents, nothing is denoised again.
  const std::string ffv1 = dir.file("edited-ffv1.mkv");
  const RunResult again = run(render(source, ffv1, work, "--codec ffv1 --crf 4 --resume"), dir);
  ASSERT_EQ(again.exit_code, 0) << again.err;
  EXPECT_NE(again.err.find("nothing was denoised"), std::string::npos) << again.err;
  EXPECT_NE(again.err.find("segment re-encoded from its latents"), std::string::npos) << again.err;
  const nlohmann::json f = video_stream(ffv1, dir);
  EXPECT_EQ(f["codec_name"], "ffv1");
  EXPECT_EQ(f["pix_fmt"], "yuv420p");
  EXPECT_EQ(f["nb_read_frames"], "8");
  EXPECT_EQ(f["color_space"], "bt470bg");
  EXPECT_EQ(f["color_range"], "tv") << "kept through the QuickTime segments";

  // And ProRes (422 HQ, 10-bit by default) in a .mov.
  const std::string prores = dir.file("edited.mov");
  const RunResult third = run(render(source, prores, work, "--codec prores --crf 4 --resume"), dir);
  ASSERT_EQ(third.exit_code, 0) << third.err;
  EXPECT_NE(third.err.find("nothing was denoised"), std::string::npos) << third.err;
  const nlohmann::json p = video_stream(prores, dir);
  EXPECT_EQ(p["codec_name"], "prores");
  EXPECT_EQ(p["profile"], "HQ");
  EXPECT_EQ(p["pix_fmt"], "yuv422p10le");
  EXPECT_EQ(p["nb_read_frames"], "8");
  EXPECT_EQ(p["color_primaries"], "bt470bg");
}

TEST(RenderFormats, SourceSizeWithAMaskKeepsTheSourcesPixelsOutsideIt) {
  TempDir dir;
  const std::string source =
      make_source(dir, "-color_primaries bt709 -color_trc bt709 -colorspace bt709 -color_range tv");
  // Edit only a 120x80 box in the middle of the 320x180 frame.
  const std::string mask = dir.file("mask.png");
  ffmpeg("-f lavfi -i color=black:size=320x180,drawbox=x=100:y=50:w=120:h=80:color=white:t=fill -frames:v 1 '" +
             mask + "'",
         dir);
  const std::string output = dir.file("edited.mkv");
  const RunResult r =
      run(render(source, output, dir.file("w"), "--mask '" + mask + "' --output-size source --codec ffv1 "
                                                "--pix-fmt yuv444p"),
          dir);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const nlohmann::json s = video_stream(output, dir);
  EXPECT_EQ(s["width"], 320) << "the model worked at 64x40";
  EXPECT_EQ(s["height"], 180);
  EXPECT_EQ(s["color_space"], "bt709");

  const std::vector<io::RgbImage> src = ffmpeg_decode_rgb(source, 320, 180, dir);
  const std::vector<io::RgbImage> out = ffmpeg_decode_rgb(output, 320, 180, dir);
  ASSERT_EQ(out.size(), 8u);
  ASSERT_EQ(src.size(), 8u);
  // Outside the box (4 pixels away from its edge): the source's own pixels,
  // through one lossless RGB -> YUV 4:4:4 round trip. Inside: the edit.
  double outside_sum = 0, inside_sum = 0;
  size_t outside_n = 0, inside_n = 0;
  for (size_t f = 0; f < out.size(); ++f)
    for (int y = 0; y < 180; ++y)
      for (int x = 0; x < 320; ++x) {
        const bool inside = x >= 100 && x < 220 && y >= 50 && y < 130;
        const bool far = x < 96 || x >= 224 || y < 46 || y >= 134;
        for (int c = 0; c < 3; ++c) {
          const double d = static_cast<double>(out[f].pixel(x, y)[c]) - src[f].pixel(x, y)[c];
          if (inside) inside_sum += d * d, ++inside_n;
          if (far) outside_sum += d * d, ++outside_n;
        }
      }
  const auto db = [](double sum, size_t n) { return sum == 0 ? 99.0 : 10 * std::log10(255.0 * 255.0 * n / sum); };
  const double outside = db(outside_sum, outside_n), inside = db(inside_sum, inside_n);
  std::printf("--output-size source with a mask: PSNR against the source's decode %.1f dB outside, %.1f dB inside\n",
              outside, inside);
  EXPECT_GT(outside, 45.0) << "the source's full-resolution pixels outside the mask";
  EXPECT_LT(inside, 30.0) << "edited inside";

  // WxH: any size, the same composite.
  const std::string sized = dir.file("sized.mp4");
  const RunResult w = run(render(source, sized, dir.file("w2"), "--output-size 160x90"), dir);
  ASSERT_EQ(w.exit_code, 0) << w.err;
  const nlohmann::json ws = video_stream(sized, dir);
  EXPECT_EQ(ws["width"], 160);
  EXPECT_EQ(ws["height"], 90);
  EXPECT_EQ(ws["nb_read_frames"], "8");
}

TEST(RenderFormats, ATenBitSourcesBackgroundKeepsItsTenBits) {
  TempDir dir;
  // A smooth 10-bit ramp (every luma code, in gamut), stored losslessly.
  const std::string source = dir.file("source10.mkv");
  ffmpeg("-f lavfi -i \"nullsrc=s=320x180:r=10,format=yuv420p10le,geq=lum='100+X*2+Y/2':cb='512+(X-160)/8':"
         "cr='512+(Y-90)/8'\" -t 0.4 -c:v ffv1 -color_primaries bt709 -color_trc bt709 -colorspace bt709 "
         "-color_range tv '" + source + "'",
         dir);
  const std::string mask = dir.file("mask.png");
  ffmpeg("-f lavfi -i color=black:size=320x180,drawbox=x=100:y=50:w=120:h=80:color=white:t=fill -frames:v 1 '" +
             mask + "'",
         dir);
  const std::string output = dir.file("edited.mkv");
  const RunResult r = run(render(source, output, dir.file("w"), "--mask '" + mask + "' --output-size source "
                                                                "--codec ffv1 --pix-fmt yuv420p10le"),
                          dir);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const auto luma = [&](const std::string& path) {
    const std::string raw = dir.file("luma.raw");
    ffmpeg("-i '" + path + "' -f rawvideo -pix_fmt yuv420p10le '" + raw + "'", dir);
    const std::string bytes = read_file(raw);
    std::vector<std::vector<int>> frames;
    const size_t frame_bytes = 320 * 180 * 3;  // 4:2:0 at 2 bytes a sample
    for (size_t at = 0; at + frame_bytes <= bytes.size(); at += frame_bytes) {
      std::vector<int> y(320 * 180);
      for (size_t i = 0; i < y.size(); ++i)
        y[i] = static_cast<uint8_t>(bytes[at + 2 * i]) | static_cast<uint8_t>(bytes[at + 2 * i + 1]) << 8;
      frames.push_back(std::move(y));
    }
    return frames;
  };
  const auto src = luma(source), out = luma(output);
  ASSERT_EQ(src.size(), 4u);
  ASSERT_EQ(out.size(), 4u);
  // Outside the mask (4 pixels from its edge) the source's 10-bit luma comes
  // back as it was: through 8-bit RGB it would be up to 2 codes off.
  int worst = 0;
  double sum = 0;
  size_t n = 0;
  for (size_t f = 0; f < src.size(); ++f)
    for (int y = 0; y < 180; ++y)
      for (int x = 0; x < 320; ++x) {
        if (x >= 96 && x < 224 && y >= 46 && y < 134) continue;
        const int d = std::abs(out[f][y * 320 + x] - src[f][y * 320 + x]);
        worst = std::max(worst, d);
        sum += d;
        ++n;
      }
  std::printf("10-bit background: luma %.3f codes off on average, %d at most\n", sum / n, worst);
  EXPECT_LE(worst, 1);
  EXPECT_LT(sum / n, 0.1);
}

TEST(RenderFormats, ImpossibleVideoFormatsAreRefusedBeforeAnythingIsWritten) {
  TempDir dir;
  const std::string source = make_source(dir, "");
  struct Case {
    std::string output, extra, says;
  };
  for (const Case& c : {Case{"edited.webm", "--codec prores", "--codec prores: a .webm file cannot hold ProRes"},
                        Case{"edited.mp4", "--codec ffv1", "--codec ffv1: a .mp4 file cannot hold FFV1"},
                        Case{"edited.mov", "--codec prores --pix-fmt yuv420p", "--pix-fmt yuv420p: --codec prores"},
                        Case{"edited.mkv", "--codec av1", "--codec must be"},
                        Case{"edited.mkv", "--output-size 0x5",
                             "--output-size must be model, source or WIDTHxHEIGHT"}}) {
    SCOPED_TRACE(c.output + " " + c.extra);
    const std::string work = dir.file("w-" + c.output);
    const RunResult r = run(render(source, dir.file(c.output), work, c.extra), dir);
    EXPECT_TRUE(r.exit_code == 1 || r.exit_code == 2) << r.exit_code;
    EXPECT_NE(r.err.find(c.says), std::string::npos) << r.err;
    EXPECT_EQ(lines(r.err), 1) << "one line: " << r.err;
    EXPECT_EQ(r.err.find("loading the model"), std::string::npos) << "refused before the model is loaded";
    EXPECT_FALSE(fs::exists(work)) << "no work directory is made";
    EXPECT_FALSE(fs::exists(dir.file(c.output)));
  }
}

}  // namespace
}  // namespace via::test
