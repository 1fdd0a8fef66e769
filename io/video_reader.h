#pragma once
// Reading videos: the facts of a file (probe_video) and its frames as RGB24
// (VideoReader), sequentially or as contiguous ranges, with exact frame indices.
//
// Frame indices: a video's frames are numbered 0..frame_count-1 in display
// (presentation) order. The reader finds them by demuxing the whole file
// once on open (cheap: packets are read, not decoded) and sorting the
// presentation timestamps, so frame_count is exact and a frame's index is the
// same whether it was reached sequentially or by a seek. A container's own
// frame count (MP4 `nb_frames`) is reported for information but never used:
// edit lists, truncation and containers without one (Matroska) make it
// unreliable.
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "io/resize.h"
#include "io/video_error.h"
#include "io/video_types.h"

namespace via::io {

/// One audio stream of a video file.
struct AudioStreamInfo {
  int stream_index = -1;  // index among all of the file's streams
  std::string codec;      // FFmpeg's codec name: "aac", "mp3", "opus", "pcm_s16le"...
  int sample_rate = 0;    // Hz
  int channels = 0;
  int64_t bit_rate = 0;   // bits per second, 0 when unknown
  double duration = 0.0;  // seconds: the container's, else the span of its packets
  /// True when the stream can be copied into an MP4 file unchanged (see io/segments.h).
  bool mp4_compatible = false;
};

/// The facts of a video file.
struct VideoInfo {
  std::string path;
  std::string container;     // FFmpeg's demuxer name, e.g. "mov,mp4,m4a,3gp,3g2,mj2"
  int stream_index = -1;     // the video stream read (FFmpeg's "best" video stream)
  std::string codec;         // "h264", "hevc", "ffv1"...
  std::string pixel_format;  // as decoded, e.g. "yuv420p"
  /// The colour description the stream declares (fields it leaves unspecified are "").
  ColorDescription color;
  int width = 0;             // stored frame size, before rotation
  int height = 0;
  /// Sample (pixel) aspect ratio: a stored pixel is shown sample_aspect times
  /// as wide as it is high (16/15 for 4:3 PAL at 360x288); 1/1 when the file
  /// says nothing.
  Rational sample_aspect{1, 1};
  /// Clockwise rotation, in degrees (0, 90, 180 or 270), that the file's display
  /// matrix asks for to show the frames upright. Other angles are rounded to the
  /// nearest quarter turn; flips in the matrix are ignored.
  int rotation = 0;
  /// Stored frame size turned upright: width x height, swapped for 90 and 270.
  Size upright_size() const { return rotation % 180 == 0 ? Size{width, height} : Size{height, width}; }
  /// Frame size as displayed: upright, with the stored width scaled by the
  /// sample aspect ratio (rounded): 360x288 at 16/15 shows as 384x288.
  Size display_size() const;
  /// Frames per second as a rational. A constant-rate video: its exact rate
  /// (30000/1001), FFmpeg's best guess from the container and codec. A
  /// variable-rate video: the average, frame_count / duration.
  Rational frame_rate;
  /// True when the frames are not evenly spaced at frame_rate: some interval
  /// between two frames differs from 1 / frame_rate by more than one tick of
  /// the time base and 0.5 %. Phones, screen recorders and joined clips do this.
  bool variable_frame_rate = false;
  /// The shortest and longest interval between two frames, in seconds (0 for one frame).
  double min_frame_interval = 0.0;
  double max_frame_interval = 0.0;
  /// When each frame is shown, from frame 0 on: FrameTimes::constant() at
  /// frame_rate for a constant-rate video whose last frame lasts one frame too
  /// (the source's times within their rounding), otherwise the stream's own
  /// timestamps less start_pts. An output of the video is written with these
  /// times, so its frames, duration and audio sync are the source's.
  FrameTimes frame_times;
  /// The unit of the stream's timestamps (Frame::pts), e.g. 1/30000.
  Rational time_base;
  /// Exact number of frames, counted by demuxing (see the file comment).
  int64_t frame_count = 0;
  /// The container's own frame count (0 when it has none); informational.
  int64_t header_frame_count = 0;
  /// Timestamp of frame 0 in time_base units, and in seconds.
  int64_t start_pts = 0;
  double start_time = 0.0;
  /// Video duration in seconds: from frame 0's start to the end of the last
  /// frame (its timestamp plus its duration; 1 / the container's rate when
  /// the file gives none).
  double duration = 0.0;
  /// The container's duration in seconds (longest stream), 0 when unknown.
  double container_duration = 0.0;
  std::vector<AudioStreamInfo> audio;
};

/// The facts of the video at `path` (demuxes the whole file, decodes nothing).
/// Throws VideoError naming the file when it is missing, empty, truncated or
/// otherwise damaged (the demuxer reports a short read or a corrupt packet),
/// not a media file, or has no video stream.
VideoInfo probe_video(const std::string& path);

/// How a VideoReader delivers frames.
struct ReaderOptions {
  /// Output frame size; 0 x 0 gives the displayed size (VideoInfo::display_size():
  /// upright, and scaled to square pixels when the sample aspect ratio is not
  /// 1/1). Both or neither side must be given. The aspect policy works on the
  /// displayed shape, so non-square pixels are never squeezed.
  Size size;
  /// Aspect policy when `size` is given (see io/resize.h).
  ResizeMode resize = ResizeMode::fit;
  /// Turn frames upright by VideoInfo::rotation before resizing.
  bool apply_rotation = true;
  /// Decoder threads; 0 lets FFmpeg choose. Decoding is bit-exact for any count.
  int threads = 0;
  /// Frames at 16 bits a sample (Frame::image48) instead of 8 (Frame::image):
  /// a 10-bit video's full precision.
  bool rgb48 = false;
};

/// Decodes one video stream to RGB24 frames.
///
/// Frames come in display order with their exact index (see the file comment).
/// Reading is deterministic: the bytes of frame i do not depend on how it was
/// reached (sequentially, by seek(), in any order of range reads) nor on the
/// CPU (decoders are bit-exact; scaling is SWS_BITEXACT). Conversion honours
/// the stream's colour matrix and range (unspecified = BT.601, as FFmpeg).
///
/// Opening demuxes the whole file once to index its frames (no decoding); a
/// renderer keeps one reader and reads its chunks from it. Reading chunks in
/// increasing order decodes each frame once; a backward or distant jump seeks.
///
/// A reader owns its file and decoder; it is movable, not copyable, and not
/// thread-safe: use one reader per thread. Errors throw VideoError naming the
/// file; asking for frames outside [0, frame_count) throws std::out_of_range.
class VideoReader {
 public:
  explicit VideoReader(const std::string& path, ReaderOptions options = {});
  ~VideoReader();
  VideoReader(VideoReader&&) noexcept;
  VideoReader& operator=(VideoReader&&) noexcept;
  VideoReader(const VideoReader&) = delete;
  VideoReader& operator=(const VideoReader&) = delete;

  const VideoInfo& info() const;
  /// Size of the frames this reader returns.
  Size frame_size() const;
  /// The resize applied to each (upright) frame.
  const ResizePlan& plan() const;

  /// The next frame in display order into `frame`; false after the last frame.
  bool next(Frame& frame);
  /// Makes `index` (0..frame_count) the next frame next() returns. When no
  /// keyframe lies between the current position and `index`, decoding just
  /// goes on; otherwise the reader seeks to the last keyframe at or before
  /// `index` and decodes forward from there, dropping the frames before it.
  void seek(int64_t index);
  /// Frames [first, first + count), in order: seek(first) then next() count times.
  /// Throws std::out_of_range when the range leaves [0, frame_count).
  std::vector<Frame> read_range(int64_t first, int64_t count);
  /// Frame `index` (a range of one).
  Frame read_frame(int64_t index);

 private:
  class Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace via::io
