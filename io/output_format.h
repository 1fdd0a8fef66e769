#pragma once
// What a render's output file will be, decided before any compute
// (docs/ARCHITECTURE.md §1): the container from the file's extension, the
// video encoder that container takes, and what becomes of each of the
// source's audio streams. The render checks it at its start and follows it
// when it writes segments and joins them, so a container or audio problem is
// refused before a frame is computed, never found at the final join.
#include <optional>
#include <string>
#include <vector>

#include "io/video_reader.h"

namespace via::io {

/// --audio. auto: copy each stream when the container takes its codec, else
/// re-encode it to the container's usual codec (AAC for mp4/mov/mkv, Opus for
/// webm); copy: copy or refuse; reencode: always re-encode; none: no audio.
enum class AudioMode { Auto, Copy, Reencode, None };
inline const char* audio_mode_name(AudioMode m) {
  switch (m) {
    case AudioMode::Auto: return "auto";
    case AudioMode::Copy: return "copy";
    case AudioMode::Reencode: return "reencode";
    case AudioMode::None: return "none";
  }
  return "?";
}

/// The output's video codec (--codec): H.264 (libx264), HEVC (libx265),
/// ProRes (prores_ks), FFV1 (lossless, intra only) or VP9 (libvpx-vp9). The
/// default (--codec auto) is H.264, and VP9 in WebM.
enum class VideoCodec { H264, VP9, HEVC, ProRes, FFV1 };
inline constexpr VideoCodec kVideoCodecs[] = {VideoCodec::H264, VideoCodec::HEVC, VideoCodec::ProRes,
                                              VideoCodec::FFV1, VideoCodec::VP9};
/// FFmpeg's name of the codec ("h264", "hevc", "prores", "ffv1", "vp9"), which is also --codec's.
const char* video_codec_name(VideoCodec c);
/// The FFmpeg encoder via uses for it ("libx264", "libx265", "prores_ks", "ffv1", "libvpx-vp9").
const char* video_encoder_name(VideoCodec c);
/// --pix-fmt auto: yuv422p10le for ProRes, yuv420p for the others.
std::string default_pixel_format(VideoCodec c);

/// The video of an output file: its codec and pixel format, resolved from
/// --codec and --pix-fmt (auto) for the output's container.
struct VideoFormat {
  VideoCodec codec = VideoCodec::H264;
  std::string pixel_format = "yuv420p";
  /// "HEVC yuv420p10le".
  std::string describe() const;
};

/// The video format of `output` for `codec` (nullopt: auto) and `pixel_format`
/// ("auto" or an FFmpeg name). Throws VideoError, one line naming both, when
/// the container cannot hold the codec (ProRes in .webm), this FFmpeg lacks
/// the encoder, or the encoder does not take the pixel format. Reads no file.
VideoFormat resolve_video_format(const std::string& output, std::optional<VideoCodec> codec,
                                 const std::string& pixel_format);

/// --output-size: the model's size (the default), the source's displayed size
/// (square pixels), or a given size.
struct OutputSize {
  enum class Kind { Model, Source, Fixed };
  Kind kind = Kind::Model;
  Size size;  // Fixed
  /// The frame size for a source shown at `display` and rendered at `model`.
  Size resolve(Size display, Size model) const {
    return kind == Kind::Model ? model : kind == Kind::Source ? display : size;
  }
};
/// "model", "source" or "WxH" (e.g. "1920x1080", sides 2..16384); throws
/// std::invalid_argument naming the text otherwise.
OutputSize parse_output_size(const std::string& text);

/// Where the output's colour description comes from: the source's declared
/// fields, each undeclared one BT.709 (limited range "tv"), as via writes
/// when the source says nothing. A matrix swscale cannot convert to becomes BT.709.
ColorDescription output_color(const ColorDescription& source);

/// One source audio stream in the output.
struct AudioTrackPlan {
  int source_stream = -1;    // index among the source file's streams
  std::string source_codec;  // "pcm_s16le", "aac"...
  bool copy = true;          // false: re-encoded with `encoder`
  std::string encoder;       // FFmpeg encoder when re-encoded: "aac", "libopus"
  std::string codec;         // what the output holds: source_codec, or "aac" / "opus"
  std::string why;           // why it is re-encoded ("" when copied)
};

struct OutputPlan {
  std::string extension;  // "mp4", "mkv", "mov", "webm"
  std::string muxer;      // FFmpeg's muxer: "mp4", "matroska", "mov", "webm"
  VideoCodec video = VideoCodec::H264;
  std::string pixel_format = "yuv420p";
  std::vector<AudioTrackPlan> audio;
  /// The render's disk estimate (rank/disk_plan.h), "" when none was made.
  std::string disk;
  /// One line: "webm (VP9 yuv420p); audio stream 1: aac re-encoded to opus (...)[; disk]".
  std::string describe() const;
};

/// The supported output extensions, for messages: ".mp4, .mkv, .mov or .webm".
std::string supported_output_extensions();

/// The video codec --codec auto gives a file of this name: VP9 for ".webm",
/// else H.264 (never throws).
VideoCodec video_codec_for(const std::string& output);

/// Decides the output of a render of `source` into `output` with `mode`, and
/// with `codec` / `pixel_format` (resolve_video_format()).
/// Throws VideoError (one line naming the file) when the extension is not one
/// of the supported ones, the video format does not fit it, this FFmpeg lacks the video encoder, an audio
/// decoder or encoder it needs, or (`copy`) when an audio stream cannot be
/// stored in the container unchanged. Reads no file.
OutputPlan plan_output(const std::string& output, const VideoInfo& source, AudioMode mode,
                       std::optional<VideoCodec> codec = std::nullopt, const std::string& pixel_format = "auto");

}  // namespace via::io
