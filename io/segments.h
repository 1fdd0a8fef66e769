#pragma once
// Segments: a render encodes each chunk of frames (a contiguous range
// [first, first + n)) as its own video file, then joins the files in order
// into the output and puts the source's audio back. The video is never
// re-encoded when joining: its packets are copied (libavformat, no ffmpeg
// command); audio is copied too, unless the caller asks for re-encoding
// (audio the container cannot hold).
//
// Writing a segment: VideoWriter with EncodeOptions::times = the source's
// VideoInfo::frame_times.slice(first, n), at the source's frame rate, with the
// same size, CRF and preset for every segment of one output. Every frame then
// keeps its source time (variable rates included), each segment starts where
// the one before ends, which concat_segments() checks, and the output has the
// source's duration. (EncodeOptions::first_frame = first at a constant rate
// joins the same way.)
#include <cstdint>
#include <string>
#include <vector>

#include "io/video_error.h"
#include "io/video_types.h"

namespace via::io {

struct ConcatOptions {
  /// The video whose audio streams go into the output ("" = no audio). Every
  /// audio stream is copied unchanged, aligned with the video (the source's
  /// frame `first` of the first segment is at time 0 of the output) and cut
  /// after the last frame's end: audio packets starting at or after it are
  /// dropped, so the audio ends within one audio frame of the video.
  std::string audio_source;
  /// Which audio streams of audio_source go into the output, in this order,
  /// and how: copied (`encoder` empty) or re-encoded with an FFmpeg encoder
  /// ("aac", "libopus"), with the same alignment and cut, to the sample.
  /// Empty: every audio stream, copied.
  struct AudioTrack {
    int source_stream = -1;  // index among audio_source's streams
    std::string encoder;     // "" = stream copy
  };
  std::vector<AudioTrack> audio_tracks;
  /// The frames' times, as given to the segments' writers (the source's
  /// VideoInfo::frame_times): the output's frames get exactly these times and
  /// durations, and its video ends at times.end, so a variable frame rate and
  /// the source's duration survive. Each segment's timestamps are checked
  /// against them (within one tick). Empty: the segments are laid end to end
  /// by their own spans (constant-rate segments).
  FrameTimes times;
  /// The output video's colour description (io::output_color()'s, as the
  /// segments were encoded with); fields left "" keep the segments' own.
  /// Needed where a segment's container or codec drops a field (FFV1 in a
  /// QuickTime segment has no colour range).
  ColorDescription color;
  /// MP4/MOV outputs: put the index at the front, so players can start before
  /// the whole file has arrived (costs one extra pass over the file).
  bool faststart = true;
};

struct ConcatResult {
  int64_t frames = 0;     // video frames in the output
  double duration = 0.0;  // video duration, seconds
  int audio_streams = 0;  // audio streams written (copied or re-encoded)
};

/// Joins `segments` (in order) into `output`, copying their video packets, and
/// the audio streams of options.audio_source (copied or re-encoded).
///
/// The segments must be contiguous: each starts where the one before ends
/// (checked on their timestamps: against ConcatOptions::times within one tick,
/// or without them within half a frame), and they must share one encoding
/// (codec, size, time base and codec headers; checked). The output is written to
/// "<output>.part" and renamed when complete. Its container follows the file
/// name (MP4 for ".mp4" and for names FFmpeg does not know).
///
/// Throws VideoError naming the offending file when a segment is missing,
/// damaged, out of order, or differs in encoding, and when an audio stream's
/// codec cannot be stored in the output's container and is to be copied (for
/// example pcm_s16le in MP4): re-encode it (ConcatOptions::audio_tracks;
/// io/output_format.h decides which before a render starts), write a .mkv or
/// .mov output, or leave audio_source empty.
ConcatResult concat_segments(const std::vector<std::string>& segments, const std::string& output,
                             const ConcatOptions& options = {});

}  // namespace via::io
