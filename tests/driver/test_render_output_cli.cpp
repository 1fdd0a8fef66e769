// `via render` end to end (env VIA_BIN, the tiny reference model): the output
// a video professional expects to hand on, and every problem with it found
// before any compute. PCM audio from a MOV is re-encoded to AAC for .mp4 and
// copied into .mov; .webm gets VP9 and Opus (also when a finished render is
// resumed into one); --audio copy into a container
// that cannot hold the audio, and an unsupported extension, are refused with
// one line before the model is loaded or the work directory is made; an
// existing output is replaced only with --overwrite (or when this work
// directory wrote it); fine-tuning reports its steps as it goes. Streams are
// read with ffprobe, not with via's own reader.
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

// The smallest render that still runs every stage.
std::string render(const std::string& input, const std::string& output, const std::string& work,
                   const std::string& extra = "", const std::string& adaptation = "--candidates 1 --finetune-steps 2") {
  return "'" + env("VIA_BIN") + "' render --input '" + input + "' --output '" + output + "' --model '" +
         env("VIA_SOURCE_DIR") + "/tests/reference/data/tiny_ip2p' --instruction 'make it a pencil sketch'" +
         " --workdir '" + work + "' --long-side 48 --steps 1 --augment 1 --group-size 2 --chunk-frames 7" +
         " --threads 1 " + adaptation + " " + extra;
}

// A 1 s camera-like MOV: H.264 video, 16-bit PCM audio (a 440 Hz tone) at 44.1 kHz.
std::string make_mov_pcm(const TempDir& dir) {
  ffmpeg("-f lavfi -i testsrc2=size=96x64:rate=10 -f lavfi -i sine=frequency=440:sample_rate=44100 -t 1 "
         "-c:v libx264 -preset ultrafast -pix_fmt yuv420p -c:a pcm_s16le '" + dir.file("camera.mov") + "'",
         dir);
  return dir.file("camera.mov");
}

struct Stream {
  std::string type, codec;
  int sample_rate = 0, channels = 0, frames = 0;
  double duration = 0, start = 0;
};

// Every stream of `path`, by ffprobe (frames counted for video).
std::vector<Stream> streams(const std::string& path, const TempDir& dir) {
  const RunResult r = run("ffprobe -v error -count_frames -show_entries "
                          "stream=codec_type,codec_name,sample_rate,channels,nb_read_frames,start_time:format=duration "
                          "-of json '" + path + "'",
                          dir);
  if (r.exit_code != 0) throw std::runtime_error("ffprobe " + path + ": " + r.err);
  const nlohmann::json j = nlohmann::json::parse(r.out);
  const auto number = [](const nlohmann::json& s, const char* key) {
    return s.contains(key) ? std::stod(s[key].get<std::string>()) : 0.0;
  };
  std::vector<Stream> out;
  for (const auto& s : j["streams"]) {
    Stream st;
    st.type = s.value("codec_type", "");
    st.codec = s.value("codec_name", "");
    st.sample_rate = static_cast<int>(number(s, "sample_rate"));
    st.channels = s.value("channels", 0);
    st.frames = static_cast<int>(number(s, "nb_read_frames"));
    st.start = number(s, "start_time");
    st.duration = number(j["format"], "duration");
    out.push_back(st);
  }
  return out;
}

// The audio's mean volume in dB (ffmpeg's volumedetect): a silent or garbled
// re-encode of the tone would not keep it.
double mean_volume(const std::string& path, const TempDir& dir) {
  const RunResult r = run("ffmpeg -nostdin -hide_banner -i '" + path + "' -map 0:a:0 -af volumedetect -f null -", dir);
  std::smatch m;
  if (!std::regex_search(r.err, m, std::regex("mean_volume: (-?[0-9.]+) dB")))
    throw std::runtime_error("no volume for " + path + ": " + r.err);
  return std::stod(m[1]);
}

int lines(const std::string& text) { return static_cast<int>(std::count(text.begin(), text.end(), '\n')); }

TEST(RenderOutput, PcmFromMovIsReencodedToAacForMp4AndCopiedIntoMov) {
  TempDir dir;
  const std::string source = make_mov_pcm(dir);
  const std::vector<Stream> src = streams(source, dir);
  ASSERT_EQ(src.size(), 2u);

  const std::string mp4 = dir.file("edited.mp4");
  const RunResult r = run(render(source, mp4, dir.file("w1")), dir);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.err.find("pcm_s16le re-encoded to aac"), std::string::npos) << "the re-encoding is said: " << r.err;
  const std::vector<Stream> out = streams(mp4, dir);
  ASSERT_EQ(out.size(), 2u);
  EXPECT_EQ(out[0].codec, "h264");
  EXPECT_EQ(out[0].frames, src[0].frames);
  EXPECT_EQ(out[1].codec, "aac");
  EXPECT_EQ(out[1].sample_rate, 44100) << "the sample rate is kept";
  EXPECT_EQ(out[1].channels, 1);
  EXPECT_NEAR(out[1].start, 0.0, 1e-3) << "the audio starts with the first frame";
  EXPECT_NEAR(out[1].duration, src[1].duration, 1024.0 / 44100);
  EXPECT_NEAR(mean_volume(mp4, dir), mean_volume(source, dir), 1.0);

  const std::string mov = dir.file("edited.mov");
  const RunResult copied = run(render(source, mov, dir.file("w2"), "--audio copy"), dir);
  ASSERT_EQ(copied.exit_code, 0) << copied.err;
  const std::vector<Stream> out_mov = streams(mov, dir);
  ASSERT_EQ(out_mov.size(), 2u);
  EXPECT_EQ(out_mov[0].codec, "h264");
  EXPECT_EQ(out_mov[1].codec, "pcm_s16le") << "copied unchanged";
  EXPECT_EQ(out_mov[1].sample_rate, 44100);
  EXPECT_NEAR(out_mov[1].duration, src[1].duration, 1.0 / 44100 + 1e-6);

  // --audio none drops it.
  const std::string silent = dir.file("silent.mp4");
  const RunResult none = run(render(source, silent, dir.file("w3"), "--audio none"), dir);
  ASSERT_EQ(none.exit_code, 0) << none.err;
  EXPECT_EQ(streams(silent, dir).size(), 1u);
}

TEST(RenderOutput, WebmIsVp9WithOpus) {
  TempDir dir;
  VideoSpec spec;
  spec.width = 96;
  spec.height = 64;
  spec.rate = "10";
  spec.audio = true;  // AAC, which WebM cannot hold
  const std::string source = make_video(dir, "phone.mp4", spec);
  const std::string webm = dir.file("edited.webm");
  const RunResult r = run(render(source, webm, dir.file("w")), dir);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const std::vector<Stream> src = streams(source, dir), out = streams(webm, dir);
  ASSERT_EQ(out.size(), 2u);
  EXPECT_EQ(out[0].codec, "vp9");
  EXPECT_EQ(out[0].frames, src[0].frames);
  EXPECT_EQ(out[1].codec, "opus");
  EXPECT_EQ(out[1].sample_rate, 48000) << "Opus runs at 48 kHz";
  EXPECT_NEAR(out[0].duration, src[0].duration, 0.1);  // Matroska counts milliseconds; Opus pads its last frame

  // A finished render resumed into another container: its H.264 segments are
  // made again from the chunks' latents as VP9, nothing is denoised again.
  const RunResult mp4 = run(render(source, dir.file("first.mp4"), dir.file("w2")), dir);
  ASSERT_EQ(mp4.exit_code, 0) << mp4.err;
  const RunResult resumed = run(render(source, dir.file("then.webm"), dir.file("w2"), "--resume"), dir);
  ASSERT_EQ(resumed.exit_code, 0) << resumed.err;
  EXPECT_NE(resumed.err.find("nothing was denoised"), std::string::npos) << resumed.err;
  EXPECT_EQ(streams(dir.file("then.webm"), dir)[0].codec, "vp9");
}

TEST(RenderOutput, ImpossibleOutputsAreRefusedBeforeAnythingIsWritten) {
  TempDir dir;
  const std::string source = make_mov_pcm(dir);
  struct Case {
    std::string output, extra, says;
  };
  for (const Case& c : {Case{"edited.mp4", "--audio copy", "--audio copy: the pcm_s16le audio"},
                        Case{"edited.avi", "", "via writes .mp4, .mkv, .mov or .webm files, not .avi"},
                        Case{"edited.ts", "--audio none", "not .ts"}}) {
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

TEST(RenderOutput, AnExistingOutputIsReplacedOnlyWithOverwriteOrByItsOwnWorkDirectory) {
  TempDir dir;
  const std::string source = make_mov_pcm(dir);
  const std::string output = dir.file("edited.mkv"), work = dir.file("w");
  { std::ofstream(output) << "somebody's edit"; }

  const RunResult refused = run(render(source, output, work), dir);
  EXPECT_EQ(refused.exit_code, 1);
  EXPECT_NE(refused.err.find(output + " exists; pass --overwrite to replace it"), std::string::npos) << refused.err;
  EXPECT_EQ(lines(refused.err), 1) << refused.err;
  EXPECT_FALSE(fs::exists(work)) << "refused before the work directory is written";
  EXPECT_EQ(read_file(output), "somebody's edit");

  const RunResult replaced = run(render(source, output, work, "--overwrite"), dir);
  ASSERT_EQ(replaced.exit_code, 0) << replaced.err;
  EXPECT_EQ(streams(output, dir)[0].codec, "h264");
  // The same work directory writes its own output again without --overwrite.
  const RunResult again = run(render(source, output, work, "--resume"), dir);
  EXPECT_EQ(again.exit_code, 0) << again.err;
  // Another work directory does not.
  const RunResult other = run(render(source, output, dir.file("w2")), dir);
  EXPECT_EQ(other.exit_code, 1);
  EXPECT_NE(other.err.find("pass --overwrite"), std::string::npos) << other.err;
}

TEST(RenderOutput, AdaptationReportsItsStepsAsItGoes) {
  TempDir dir;
  const std::string source = make_mov_pcm(dir);
  const RunResult r =
      run(render(source, dir.file("edited.mp4"), dir.file("w"), "", "--finetune-steps 20 --candidates 2"), dir);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  // stderr is a file here: plain lines, nothing drawn in place.
  EXPECT_EQ(r.err.find('\r'), std::string::npos) << r.err;
  const std::regex step("via: fine-tuning: step [0-9]+/20, loss [0-9.]+, [0-9.]+ steps/s, ETA [0-9hms?]+\n");
  EXPECT_TRUE(std::regex_search(r.err, step)) << r.err;
  const size_t first_step = r.err.find("via: fine-tuning: step 1/20"), done = r.err.find("adaptation: fine-tuned");
  ASSERT_NE(first_step, std::string::npos) << "the first step is shown at once: " << r.err;
  EXPECT_LT(first_step, done) << "during fine-tuning, not after it";
  EXPECT_NE(r.err.find("via: candidates: candidate 1/2, step 1/1"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("via: gather: key frame 1/2, step 1/1"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("via: render: "), std::string::npos) << r.err;
}

}  // namespace
}  // namespace via::test
