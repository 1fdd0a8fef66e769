#pragma once
// What a render's output file will be, decided before any compute
// (docs/ARCHITECTURE.md §1): the container from the file's extension, the
// video encoder that container takes, and what becomes of each of the
// source's audio streams. The render checks it at its start and follows it
// when it writes segments and joins them, so a container or audio problem is
// refused before a frame is computed, never found at the final join.
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

/// The output's video codec: H.264 (libx264) except in WebM, which takes VP9 (libvpx-vp9).
enum class VideoCodec { H264, VP9 };
inline const char* video_codec_name(VideoCodec c) { return c == VideoCodec::VP9 ? "vp9" : "h264"; }

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
  std::vector<AudioTrackPlan> audio;
  /// One line: "webm (VP9); audio stream 1: aac re-encoded to opus (...)".
  std::string describe() const;
};

/// The supported output extensions, for messages: ".mp4, .mkv, .mov or .webm".
std::string supported_output_extensions();

/// The video codec a file of this name gets: VP9 for ".webm", else H.264
/// (what a render's segments are encoded with; never throws).
VideoCodec video_codec_for(const std::string& output);

/// Decides the output of a render of `source` into `output` with `mode`.
/// Throws VideoError (one line naming the file) when the extension is not one
/// of the supported ones, when this FFmpeg lacks the video encoder, an audio
/// decoder or encoder it needs, or (`copy`) when an audio stream cannot be
/// stored in the container unchanged. Reads no file.
OutputPlan plan_output(const std::string& output, const VideoInfo& source, AudioMode mode);

}  // namespace via::io
