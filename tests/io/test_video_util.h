#pragma once
// Helpers for the video tests: a temporary directory, test videos made with
// FFmpeg's own generators through the `ffmpeg` command, running a command and
// capturing its output, and pixel comparisons.
#include <sys/wait.h>
#include <unistd.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

#include "io/video_types.h"

namespace via::test {

/// A fresh directory under the system's temporary directory, removed with its contents.
class TempDir {
 public:
  TempDir() {
    std::string pattern = (std::filesystem::temp_directory_path() / "via_video_XXXXXX").string();
    if (::mkdtemp(pattern.data()) == nullptr) throw std::runtime_error("mkdtemp failed");
    path_ = pattern;
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  std::string file(const std::string& name) const { return path_ + "/" + name; }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

/// The result of a shell command.
struct RunResult {
  int exit_code = -1;
  std::string out;
  std::string err;
};

inline std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

/// Runs `command` with sh, capturing stdout and stderr (through files in `dir`).
inline RunResult run(const std::string& command, const TempDir& dir) {
  const std::string out = dir.file("cmd.out"), err = dir.file("cmd.err");
  const int status = std::system((command + " >'" + out + "' 2>'" + err + "' </dev/null").c_str());
  RunResult r;
  r.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  r.out = read_file(out);
  r.err = read_file(err);
  return r;
}

/// Runs an ffmpeg command line (arguments after `ffmpeg`); throws with its stderr on failure.
inline void ffmpeg(const std::string& args, const TempDir& dir) {
  const RunResult r = run("ffmpeg -nostdin -y -hide_banner -v error " + args, dir);
  if (r.exit_code != 0) throw std::runtime_error("ffmpeg " + args + " failed: " + r.err);
}

/// A test video from FFmpeg's testsrc2 (and sine for audio).
struct VideoSpec {
  int width = 64;
  int height = 48;
  std::string rate = "25";  // frames per second, e.g. "30000/1001"
  double seconds = 1.0;
  bool audio = false;
  std::string video_codec = "-c:v libx264 -preset ultrafast -g 12 -bf 2 -pix_fmt yuv420p";
  std::string audio_codec = "-c:a aac";
};

/// Makes `name` in `dir` from `spec`; returns its path.
inline std::string make_video(const TempDir& dir, const std::string& name, const VideoSpec& spec) {
  const std::string path = dir.file(name);
  std::ostringstream args;
  // testsrc2 rounds odd sizes down to even; make it even and scale to the size asked for.
  args << "-f lavfi -i testsrc2=size=" << (spec.width + 1) / 2 * 2 << "x" << (spec.height + 1) / 2 * 2
       << ":rate=" << spec.rate;
  if (spec.audio) args << " -f lavfi -i sine=frequency=440:sample_rate=44100";
  // -t after the inputs: it bounds the output (sine never ends).
  args << " -t " << spec.seconds;
  if (spec.width % 2 != 0 || spec.height % 2 != 0) args << " -vf scale=" << spec.width << ":" << spec.height;
  args << " " << spec.video_codec;
  if (spec.audio) args << " " << spec.audio_codec;
  args << " '" << path << "'";
  ffmpeg(args.str(), dir);
  return path;
}

/// Sources whose frames are not evenly spaced, as phones, screen recorders and
/// editors make them, each with 44.1 kHz AAC audio, in `dir` under `name`:
///   "dropped"  30 fps with 3 of every 5 frames dropped (33 and 133 ms apart), 2 s
///   "joined"   clips of 0.5 s at 10, 25 and 30 fps one after the other
///   "jitter"   30 fps, each frame up to 10 ms off its slot (1 ms time base), 1 s
/// Frame sizes are `width` x `height`.
inline std::string make_vfr_video(const TempDir& dir, const std::string& name, const std::string& kind,
                                  int width = 96, int height = 64) {
  const std::string size = std::to_string(width) + "x" + std::to_string(height);
  const std::string codecs = " -c:v libx264 -preset ultrafast -pix_fmt yuv420p -c:a aac '" + dir.file(name) + "'";
  if (kind == "dropped") {
    ffmpeg("-f lavfi -i testsrc2=size=" + size + ":rate=30 -f lavfi -i sine -vf \"select='lt(mod(n\\,5)\\,2)'\"" +
               " -fps_mode vfr -t 2" + codecs,
           dir);
  } else if (kind == "joined") {
    ffmpeg("-f lavfi -i testsrc2=size=" + size + ":rate=10:d=0.5 -f lavfi -i testsrc2=size=" + size +
               ":rate=25:d=0.5 -f lavfi -i testsrc2=size=" + size +
               ":rate=30:d=0.5 -f lavfi -i sine=d=1.5 -filter_complex '[0:v][1:v][2:v]concat=n=3:v=1:a=0[v]'" +
               " -map '[v]' -map 3:a -fps_mode vfr" + codecs,
           dir);
  } else if (kind == "jitter") {
    // The encoder's time base is 1/rate unless -r says otherwise; passthrough keeps every frame as it comes.
    ffmpeg("-f lavfi -i testsrc2=size=" + size +
               ":rate=30 -f lavfi -i sine -vf \"settb=1/1000,setpts='(N+0.3*sin(N*7))/30/TB'\"" +
               " -r 1000 -fps_mode passthrough -t 1" + codecs,
           dir);
  } else {
    throw std::invalid_argument("no variable-rate source '" + kind + "'");
  }
  return dir.file(name);
}

/// `path` decoded by the ffmpeg command to packed RGB24 frames of w x h
/// (`filters` may turn or scale them), with the same swscale flags as via's reader.
inline std::vector<io::RgbImage> ffmpeg_decode_rgb(const std::string& path, int w, int h, const TempDir& dir,
                                                   const std::string& filters = "") {
  const std::string raw = dir.file("decoded.rgb");
  ffmpeg("-i '" + path + "' " + (filters.empty() ? "" : "-vf " + filters + " ") +
             "-sws_flags bicubic+accurate_rnd+full_chroma_int+full_chroma_inp+bitexact -f rawvideo -pix_fmt rgb24 '" +
             raw + "'",
         dir);
  const std::string bytes = read_file(raw);
  const size_t frame_bytes = static_cast<size_t>(w) * h * 3;
  std::vector<io::RgbImage> frames;
  for (size_t at = 0; at + frame_bytes <= bytes.size(); at += frame_bytes) {
    io::RgbImage image(w, h);
    std::copy(bytes.begin() + at, bytes.begin() + at + frame_bytes, image.data.begin());
    frames.push_back(std::move(image));
  }
  return frames;
}

/// Peak signal-to-noise ratio of b against a (same size), in dB; 99 when identical.
inline double psnr(const io::RgbImage& a, const io::RgbImage& b) {
  if (a.width != b.width || a.height != b.height) return 0.0;
  double sum = 0.0;
  for (size_t i = 0; i < a.data.size(); ++i) {
    const double d = static_cast<double>(a.data[i]) - b.data[i];
    sum += d * d;
  }
  if (sum == 0.0) return 99.0;
  return 10.0 * std::log10(255.0 * 255.0 / (sum / a.data.size()));
}

/// PSNR of the luma (BT.601 weights) of b against a's, in dB: insensitive to
/// the chroma detail that 4:2:0 subsampling removes by design.
inline double luma_psnr(const io::RgbImage& a, const io::RgbImage& b) {
  if (a.width != b.width || a.height != b.height) return 0.0;
  double sum = 0.0;
  const size_t pixels = a.data.size() / 3;
  for (size_t i = 0; i < pixels; ++i) {
    const uint8_t* p = &a.data[i * 3];
    const uint8_t* q = &b.data[i * 3];
    const double d = 0.299 * (p[0] - q[0]) + 0.587 * (p[1] - q[1]) + 0.114 * (p[2] - q[2]);
    sum += d * d;
  }
  if (sum == 0.0) return 99.0;
  return 10.0 * std::log10(255.0 * 255.0 / (sum / pixels));
}

/// Mean absolute difference per byte.
inline double mean_abs_diff(const io::RgbImage& a, const io::RgbImage& b) {
  double sum = 0.0;
  for (size_t i = 0; i < a.data.size(); ++i) sum += std::abs(static_cast<int>(a.data[i]) - b.data[i]);
  return sum / a.data.size();
}

/// The top-left w x h part of `image`.
inline io::RgbImage top_left(const io::RgbImage& image, int w, int h) {
  io::RgbImage out(w, h);
  for (int y = 0; y < h; ++y) std::copy(image.pixel(0, y), image.pixel(0, y) + w * 3, out.pixel(0, y));
  return out;
}

/// Only the file's first `keep` bytes.
inline void truncate_copy(const std::string& from, const std::string& to, size_t keep) {
  const std::string bytes = read_file(from);
  std::ofstream(to, std::ios::binary).write(bytes.data(), static_cast<std::streamsize>(std::min(keep, bytes.size())));
}

}  // namespace via::test
