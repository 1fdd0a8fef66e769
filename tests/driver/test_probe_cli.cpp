// `via probe` through the real binary (env VIA_BIN): the facts of a video, and
// one clear error line for each kind of bad input.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdlib>
#include <fstream>
#include <nlohmann/json.hpp>

#include "tests/io/test_video_util.h"

namespace via::test {
namespace {

std::string via_bin() {
  const char* bin = std::getenv("VIA_BIN");
  if (bin == nullptr || *bin == '\0') throw std::runtime_error("VIA_BIN is not set (run through ctest)");
  return bin;
}

RunResult probe(const std::string& args, const TempDir& dir) { return run("'" + via_bin() + "' probe " + args, dir); }

TEST(ProbeCli, PrintsTheFactsOfATestVideo) {
  TempDir dir;
  VideoSpec spec;
  spec.width = 160;
  spec.height = 120;
  spec.rate = "30000/1001";
  spec.seconds = 2;
  spec.audio = true;
  const std::string path = make_video(dir, "test.mp4", spec);

  const RunResult text = probe("'" + path + "'", dir);
  ASSERT_EQ(text.exit_code, 0) << text.err;
  EXPECT_EQ(text.err, "");
  for (const char* fact : {"h264", "yuv420p", "160x120", "30000/1001 (29.970 fps)", "frames:      60 ",
                           "duration:    2.002000 s", "aac, 44100 Hz, 1 channel(s)", "1 stream(s)"}) {
    EXPECT_NE(text.out.find(fact), std::string::npos) << "missing '" << fact << "' in:\n" << text.out;
  }

  const RunResult json = probe("--json '" + path + "'", dir);
  ASSERT_EQ(json.exit_code, 0) << json.err;
  const nlohmann::json facts = nlohmann::json::parse(json.out);
  EXPECT_EQ(facts["path"], path);
  EXPECT_EQ(facts["video"]["codec"], "h264");
  EXPECT_EQ(facts["video"]["width"], 160);
  EXPECT_EQ(facts["video"]["height"], 120);
  EXPECT_EQ(facts["video"]["rotation"], 0);
  EXPECT_EQ(facts["video"]["frame_rate"], "30000/1001");
  EXPECT_EQ(facts["video"]["variable_frame_rate"], false);
  EXPECT_EQ(facts["video"]["sample_aspect_ratio"], "1:1");
  EXPECT_EQ(facts["video"]["display_aspect_ratio"], "4:3");
  EXPECT_EQ(facts["video"]["time_base"], "1/30000");
  EXPECT_EQ(facts["video"]["frame_count"], 60);
  EXPECT_NEAR(facts["video"]["duration"].get<double>(), 2.002, 1e-9);
  ASSERT_EQ(facts["audio"].size(), 1u);
  EXPECT_EQ(facts["audio"][0]["codec"], "aac");
  EXPECT_EQ(facts["audio"][0]["sample_rate"], 44100);
  EXPECT_EQ(facts["audio"][0]["channels"], 1);
  EXPECT_EQ(facts["audio"][0]["mp4_compatible"], true);
}

TEST(ProbeCli, AVariableRateIsReportedWithItsRealAverage) {
  TempDir dir;
  // 24 frames in 1.9 s, 33 and 133 ms apart: the container's guess is 30 fps.
  const std::string path = make_vfr_video(dir, "dropped.mp4", "dropped");
  const RunResult text = probe("'" + path + "'", dir);
  ASSERT_EQ(text.exit_code, 0) << text.err;
  for (const char* fact : {"frame rate:  variable, 240/19 on average (12.632 fps), frames 33.333 to 133.333 ms apart",
                           "frames:      24 ", "duration:    1.900000 s"}) {
    EXPECT_NE(text.out.find(fact), std::string::npos) << "missing '" << fact << "' in:\n" << text.out;
  }
  const RunResult json = probe("--json '" + path + "'", dir);
  ASSERT_EQ(json.exit_code, 0) << json.err;
  const nlohmann::json video = nlohmann::json::parse(json.out)["video"];
  EXPECT_EQ(video["variable_frame_rate"], true);
  EXPECT_EQ(video["frame_rate"], "240/19");
  // The rate fits the frame count and the duration.
  EXPECT_NEAR(video["fps"].get<double>() * video["duration"].get<double>(), video["frame_count"].get<double>(), 1e-9);
}

// Exit code 1, nothing on stdout, exactly one line on stderr that names the file.
void expect_clean_failure(const std::string& path, const TempDir& dir, const std::string& detail) {
  SCOPED_TRACE(path);
  const RunResult r = probe("'" + path + "'", dir);
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_EQ(r.out, "");
  ASSERT_FALSE(r.err.empty());
  EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;
  EXPECT_EQ(r.err.back(), '\n');
  EXPECT_EQ(r.err.rfind("via probe: error: ", 0), 0u) << r.err;
  EXPECT_NE(r.err.find("'" + path + "'"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find(detail), std::string::npos) << r.err;
}

TEST(ProbeCli, BadInputsFailWithOneLine) {
  TempDir dir;
  expect_clean_failure(dir.file("missing.mp4"), dir, "No such file or directory");

  std::ofstream(dir.file("empty.mp4")).close();
  expect_clean_failure(dir.file("empty.mp4"), dir, "Invalid data");

  std::ofstream(dir.file("text.mp4")) << "just some text\nover two lines\n";
  expect_clean_failure(dir.file("text.mp4"), dir, "Invalid data");

  VideoSpec spec;
  spec.seconds = 2;
  spec.audio = true;
  const std::string full = make_video(dir, "full.mp4", spec);
  const size_t size = read_file(full).size();
  truncate_copy(full, dir.file("truncated.mp4"), size / 2);
  expect_clean_failure(dir.file("truncated.mp4"), dir, "moov atom not found");
  ffmpeg("-i '" + full + "' -c copy -movflags +faststart '" + dir.file("faststart.mp4") + "'", dir);
  truncate_copy(dir.file("faststart.mp4"), dir.file("faststart_truncated.mp4"), size / 2);
  expect_clean_failure(dir.file("faststart_truncated.mp4"), dir, "truncated or damaged");

  expect_clean_failure(dir.path(), dir, "Is a directory");
}

TEST(ProbeCli, UsageErrors) {
  TempDir dir;
  const RunResult none = probe("", dir);
  EXPECT_EQ(none.exit_code, 2);
  EXPECT_EQ(std::count(none.err.begin(), none.err.end(), '\n'), 1) << none.err;
  const RunResult unknown = probe("--frobnicate x.mp4", dir);
  EXPECT_EQ(unknown.exit_code, 2);
  EXPECT_EQ(std::count(unknown.err.begin(), unknown.err.end(), '\n'), 1) << unknown.err;
  const RunResult help = run("'" + via_bin() + "' --help", dir);
  EXPECT_EQ(help.exit_code, 0);
  EXPECT_NE(help.out.find("probe"), std::string::npos) << help.out;
}

TEST(ProbeCli, SaysTheColourDescriptionASourceDeclares) {
  TempDir dir;
  VideoSpec spec;
  spec.video_codec = "-c:v libx264 -preset ultrafast -pix_fmt yuv420p -color_primaries bt470bg -color_trc gamma28 "
                     "-colorspace bt470bg -color_range tv";
  const std::string tagged = make_video(dir, "pal.mkv", spec);
  const RunResult text = probe("'" + tagged + "'", dir);
  ASSERT_EQ(text.exit_code, 0) << text.err;
  EXPECT_NE(text.out.find("colour:      primaries bt470bg, transfer bt470bg, matrix bt470bg, range tv\n"),
            std::string::npos)
      << text.out;
  const nlohmann::json facts = nlohmann::json::parse(probe("--json '" + tagged + "'", dir).out);
  EXPECT_EQ(facts["video"]["color_primaries"], "bt470bg");
  EXPECT_EQ(facts["video"]["color_space"], "bt470bg");
  EXPECT_EQ(facts["video"]["color_range"], "tv");

  const std::string plain = make_video(dir, "plain.mp4", VideoSpec{});
  const RunResult untagged = probe("'" + plain + "'", dir);
  EXPECT_NE(untagged.out.find("colour:      primaries unspecified, transfer unspecified, matrix unspecified, range "
                              "unspecified (an output is BT.709, limited range)"),
            std::string::npos)
      << untagged.out;
}

}  // namespace
}  // namespace via::test
