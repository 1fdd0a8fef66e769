#include "io/output_format.h"

#include <algorithm>
#include <cctype>
#include <cstdio>
#include <filesystem>
#include <stdexcept>

extern "C" {
#include <libavutil/pixdesc.h>
}

#include "io/ffmpeg_common.h"

namespace via::io {
namespace {

struct Container {
  const char* extension;
  const char* muxer;
  VideoCodec video;
  const char* audio_codec;  // what re-encoded audio becomes
};

// MP4 and MOV hold H.264 and AAC; Matroska anything; WebM only VP8/VP9/AV1
// with Vorbis/Opus. AVI (no Annex B conversion of H.264's headers) and MPEG-TS
// are not offered.
constexpr Container kContainers[] = {
    {"mp4", "mp4", VideoCodec::H264, "aac"},
    {"mkv", "matroska", VideoCodec::H264, "aac"},
    {"mov", "mov", VideoCodec::H264, "aac"},
    {"webm", "webm", VideoCodec::VP9, "opus"},
};


// The encoder for `codec`: Opus through libopus (FFmpeg's own is experimental).
std::string audio_encoder(const std::string& codec) { return codec == "opus" ? "libopus" : codec; }

}  // namespace

std::string supported_output_extensions() {
  std::string text;
  const size_t n = std::size(kContainers);
  for (size_t i = 0; i < n; ++i)
    text += std::string(i == 0 ? "" : i + 1 == n ? " or " : ", ") + "." + kContainers[i].extension;
  return text;
}

const char* video_codec_name(VideoCodec c) {
  switch (c) {
    case VideoCodec::H264: return "h264";
    case VideoCodec::VP9: return "vp9";
    case VideoCodec::HEVC: return "hevc";
    case VideoCodec::ProRes: return "prores";
    case VideoCodec::FFV1: return "ffv1";
  }
  return "?";
}

const char* video_encoder_name(VideoCodec c) {
  switch (c) {
    case VideoCodec::H264: return "libx264";
    case VideoCodec::VP9: return "libvpx-vp9";
    case VideoCodec::HEVC: return "libx265";
    case VideoCodec::ProRes: return "prores_ks";
    case VideoCodec::FFV1: return "ffv1";
  }
  return "?";
}

std::string default_pixel_format(VideoCodec c) { return c == VideoCodec::ProRes ? "yuv422p10le" : "yuv420p"; }

namespace {
const char* codec_title(VideoCodec c) {
  switch (c) {
    case VideoCodec::H264: return "H.264";
    case VideoCodec::VP9: return "VP9";
    case VideoCodec::HEVC: return "HEVC";
    case VideoCodec::ProRes: return "ProRes";
    case VideoCodec::FFV1: return "FFV1";
  }
  return "?";
}

// The pixel formats via offers: planar YUV at 8 and 10 bits (the writer's
// conversion from RGB and the probe's names stay simple), where the encoder takes them.
constexpr const char* kPixelFormats[] = {"yuv420p", "yuv422p", "yuv444p", "yuv420p10le", "yuv422p10le", "yuv444p10le"};

bool encoder_takes(const AVCodec* encoder, AVPixelFormat format) {
  if (encoder->pix_fmts == nullptr) return true;
  for (const AVPixelFormat* p = encoder->pix_fmts; *p != AV_PIX_FMT_NONE; ++p)
    if (*p == format) return true;
  return false;
}
}  // namespace

std::string VideoFormat::describe() const { return std::string(codec_title(codec)) + " " + pixel_format; }

std::string OutputPlan::describe() const {
  std::string text = extension + " (" + VideoFormat{video, pixel_format}.describe() + ")";
  if (audio.empty()) text += ", no audio";
  for (const AudioTrackPlan& a : audio) {
    text += "; audio stream " + std::to_string(a.source_stream) + ": " + a.source_codec;
    text += a.copy ? " copied" : " re-encoded to " + a.codec + (a.why.empty() ? "" : " (" + a.why + ")");
  }
  return disk.empty() ? text : text + "; " + disk;
}

namespace {
std::string extension_of(const std::string& output) {
  std::string ext = std::filesystem::path(output).extension().string();
  if (!ext.empty()) ext.erase(0, 1);
  std::transform(ext.begin(), ext.end(), ext.begin(), [](unsigned char c) { return std::tolower(c); });
  return ext;
}
}  // namespace

VideoCodec video_codec_for(const std::string& output) {
  return extension_of(output) == "webm" ? VideoCodec::VP9 : VideoCodec::H264;
}

VideoFormat resolve_video_format(const std::string& output, std::optional<VideoCodec> codec,
                                 const std::string& pixel_format) {
  VideoFormat f;
  f.codec = codec.value_or(video_codec_for(output));
  const std::string ext = extension_of(output);
  const AVOutputFormat* format = nullptr;
  for (const Container& c : kContainers)
    if (ext == c.extension) format = av_guess_format(c.muxer, nullptr, nullptr);
  const AVCodecDescriptor* desc = avcodec_descriptor_get_by_name(video_codec_name(f.codec));
  if (format != nullptr && (desc == nullptr || !ffmpeg::format_can_carry(format, desc->id))) {
    throw VideoError("--codec " + std::string(video_codec_name(f.codec)) + ": a ." + ext + " file cannot hold " +
                         codec_title(f.codec) + " video; use another --codec or another container (.mkv holds all)",
                     output);
  }
  const AVCodec* encoder = avcodec_find_encoder_by_name(video_encoder_name(f.codec));
  if (encoder == nullptr) {
    throw VideoError("--codec " + std::string(video_codec_name(f.codec)) + ": this FFmpeg has no " +
                         video_encoder_name(f.codec) + " encoder",
                     output);
  }
  f.pixel_format = pixel_format == "auto" || pixel_format.empty() ? default_pixel_format(f.codec) : pixel_format;
  const AVPixelFormat pix = av_get_pix_fmt(f.pixel_format.c_str());
  const bool offered = std::find(std::begin(kPixelFormats), std::end(kPixelFormats), f.pixel_format) !=
                       std::end(kPixelFormats);
  if (!offered || pix == AV_PIX_FMT_NONE || !encoder_takes(encoder, pix)) {
    std::string takes;
    for (const char* name : kPixelFormats)
      if (encoder_takes(encoder, av_get_pix_fmt(name))) takes += std::string(takes.empty() ? "" : ", ") + name;
    throw VideoError("--pix-fmt " + f.pixel_format + ": --codec " + video_codec_name(f.codec) + " (" +
                         video_encoder_name(f.codec) + ") takes " + takes,
                     output);
  }
  return f;
}

OutputSize parse_output_size(const std::string& text) {
  if (text == "model") return {};
  if (text == "source") return {OutputSize::Kind::Source, {}};
  int w = 0, h = 0;
  char x = 0, rest = 0;
  if (std::sscanf(text.c_str(), "%d%c%d%c", &w, &x, &h, &rest) == 3 && (x == 'x' || x == 'X') && w >= 2 &&
      h >= 2 && w <= 16384 && h <= 16384) {
    return {OutputSize::Kind::Fixed, {w, h}};
  }
  throw std::invalid_argument("--output-size must be model, source or WIDTHxHEIGHT (e.g. 1920x1080), got '" + text +
                              "'");
}

ColorDescription output_color(const ColorDescription& source) {
  ColorDescription c = source;
  if (c.primaries.empty()) c.primaries = "bt709";
  if (c.transfer.empty()) c.transfer = "bt709";
  if (c.range.empty()) c.range = "tv";
  // The matrices swscale converts RGB with.
  static const char* const kMatrices[] = {"bt709", "bt470bg", "smpte170m", "bt2020nc", "smpte240m", "fcc"};
  if (std::find(std::begin(kMatrices), std::end(kMatrices), c.matrix) == std::end(kMatrices)) c.matrix = "bt709";
  return c;
}

OutputPlan plan_output(const std::string& output, const VideoInfo& source, AudioMode mode,
                       std::optional<VideoCodec> codec, const std::string& pixel_format) {
  const std::string ext = extension_of(output);
  const Container* container = nullptr;
  for (const Container& c : kContainers)
    if (ext == c.extension) container = &c;
  if (container == nullptr) {
    throw VideoError("--output " + output + ": via writes " + supported_output_extensions() + " files, not " +
                         (ext.empty() ? "a name without an extension" : "." + ext),
                     output);
  }
  OutputPlan plan;
  plan.extension = container->extension;
  plan.muxer = container->muxer;
  const VideoFormat video = resolve_video_format(output, codec, pixel_format);
  plan.video = video.codec;
  plan.pixel_format = video.pixel_format;
  const AVOutputFormat* format = av_guess_format(container->muxer, nullptr, nullptr);
  if (format == nullptr) throw VideoError("--output " + output + ": this FFmpeg cannot write ." + ext + " files", output);
  if (mode == AudioMode::None) return plan;

  for (const AudioStreamInfo& in : source.audio) {
    AudioTrackPlan a;
    a.source_stream = in.stream_index;
    a.source_codec = in.codec;
    const AVCodecDescriptor* desc = avcodec_descriptor_get_by_name(in.codec.c_str());
    const bool fits = desc != nullptr && ffmpeg::format_can_carry(format, desc->id);
    if (mode == AudioMode::Copy && !fits) {
      throw VideoError("--audio copy: the " + in.codec + " audio of " + source.path + " cannot be stored in a ." +
                           ext + " file; use --audio auto (re-encodes it to " + container->audio_codec +
                           "), another container, or --audio none",
                       output);
    }
    a.copy = mode == AudioMode::Copy || (mode == AudioMode::Auto && fits);
    a.codec = a.copy ? in.codec : container->audio_codec;
    if (!a.copy) {
      a.encoder = audio_encoder(a.codec);
      a.why = mode == AudioMode::Reencode ? "--audio reencode" : "a ." + ext + " file cannot hold " + in.codec;
      if (desc == nullptr || avcodec_find_decoder(desc->id) == nullptr) {
        throw VideoError("cannot re-encode the " + in.codec + " audio of " + source.path +
                             ": this FFmpeg has no decoder for it; use --audio none",
                         source.path);
      }
      if (avcodec_find_encoder_by_name(a.encoder.c_str()) == nullptr) {
        throw VideoError("cannot re-encode the " + in.codec + " audio of " + source.path + " for ." + ext +
                             ": this FFmpeg has no " + a.encoder + " encoder; use --audio none",
                         output);
      }
    }
    plan.audio.push_back(a);
  }
  return plan;
}

}  // namespace via::io
