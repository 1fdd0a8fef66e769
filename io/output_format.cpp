#include "io/output_format.h"

#include <algorithm>
#include <cctype>
#include <filesystem>

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

const char* video_encoder(VideoCodec c) { return c == VideoCodec::VP9 ? "libvpx-vp9" : "libx264"; }

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

std::string OutputPlan::describe() const {
  std::string text = extension + " (" + (video == VideoCodec::VP9 ? "VP9" : "H.264") + ")";
  if (audio.empty()) return text + ", no audio";
  for (const AudioTrackPlan& a : audio) {
    text += "; audio stream " + std::to_string(a.source_stream) + ": " + a.source_codec;
    text += a.copy ? " copied" : " re-encoded to " + a.codec + (a.why.empty() ? "" : " (" + a.why + ")");
  }
  return text;
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

OutputPlan plan_output(const std::string& output, const VideoInfo& source, AudioMode mode) {
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
  plan.video = container->video;
  if (avcodec_find_encoder_by_name(video_encoder(plan.video)) == nullptr) {
    throw VideoError("--output " + output + ": this FFmpeg has no " + video_encoder(plan.video) +
                         " encoder, which ." + ext + " files need",
                     output);
  }
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
