#pragma once
// Writing videos: RGB24 frames -> H.264, HEVC, ProRes, FFV1 or VP9 (io/output_format.h)
// at 8 or 10 bits, in the container the file name asks for.
#include <cstdint>
#include <memory>
#include <string>

#include "io/output_format.h"
#include "io/resize.h"
#include "io/video_error.h"
#include "io/video_types.h"

namespace via::io {

/// Encoder settings.
struct EncodeOptions {
  /// H.264 (libx264), or VP9 (libvpx-vp9) for outputs in WebM. With VP9, `crf`
  /// is libvpx's constant quality (0-63; 0-51 used here) and `preset` maps to
  /// its speed (cpu-used: veryslow and slower 0 ... faster and faster still 5).
  /// ProRes (prores_ks: profile HQ, or 4444 for yuv444p10le) and FFV1
  /// (lossless, every frame a keyframe) ignore `crf` and `preset`; HEVC
  /// (libx265) takes both as x264 does.
  VideoCodec codec = VideoCodec::H264;
  /// The encoded pixel format ("yuv420p10le"...); "" = the codec's default
  /// (default_pixel_format()). 10-bit formats are converted from the RGB
  /// frames at 10-bit precision (not 8-bit values shifted).
  std::string pixel_format;
  /// The colour description written into the stream, and the matrix and range
  /// the RGB frames are converted with; undeclared fields are BT.709 limited
  /// range (output_color()).
  ColorDescription color;
  /// FFmpeg's muxer ("mov", "matroska"); "" = from the file's name. A render's
  /// segments keep their .mp4 names and are QuickTime files for ProRes and FFV1,
  /// which MP4 cannot hold.
  std::string muxer;
  /// x264 constant rate factor: 0 (lossless) .. 51; 18 is visually lossless.
  int crf = 18;
  /// x264 preset: ultrafast, superfast, veryfast, faster, fast, medium, slow,
  /// slower, veryslow, placebo.
  std::string preset = "medium";
  /// Encoder threads. 1 (the default) gives the same bitstream on every
  /// machine; 0 lets x264 choose (faster; the bitstream then depends on the CPU count).
  int threads = 1;
  /// Index of the first frame written. Frame k gets the timestamp
  /// (first_frame + k) / frame_rate, so a segment holding frames [a, b) of a
  /// video starts at a's time, and segments of one video concatenate without
  /// gaps (io/segments.h). Unused when `times` is given.
  int64_t first_frame = 0;
  /// The frames' own times: the source's VideoInfo::frame_times, or its
  /// slice() for the frames of one segment. Frame k is written at times.pts[k]
  /// (in times.time_base) and lasts until the next frame's time (the last
  /// until times.end), so any frame rate, variable included, is kept as it
  /// was. Writing more frames than it holds is an error. Empty: the constant
  /// rate above.
  FrameTimes times;
};

/// Encodes RGB24 frames as EncodeOptions::codec in EncodeOptions::pixel_format
/// (yuv420p by default) with EncodeOptions::color (BT.709 limited range by
/// default), square pixels, at a constant frame rate or at the given frame times
/// (EncodeOptions::times), in the container the file name asks for (MP4 for
/// ".mp4" and for names FFmpeg does not know).
///
/// Odd sizes: 4:2:0 needs even sides, so a frame of odd width or height
/// is encoded without its last column or row (65x49 -> 64x48); frames are
/// never scaled. See encoded_size().
///
/// The file appears under its name only when finish() succeeds: frames go to
/// "<path>.part", which finish() renames; a writer destroyed without finish()
/// (an error, an interrupted render) deletes the partial file. Movable, not
/// copyable, not thread-safe. Errors throw VideoError naming the file.
class VideoWriter {
 public:
  /// A writer for frames of `size` at `frame_rate` (e.g. VideoInfo::frame_rate;
  /// with EncodeOptions::times, the average rate the encoder is told).
  VideoWriter(const std::string& path, Size size, Rational frame_rate, EncodeOptions options = {});
  ~VideoWriter();
  VideoWriter(VideoWriter&&) noexcept;
  VideoWriter& operator=(VideoWriter&&) noexcept;
  VideoWriter(const VideoWriter&) = delete;
  VideoWriter& operator=(const VideoWriter&) = delete;

  /// Appends one frame; its size must be the size given to the constructor.
  void write(const RgbImage& image);
  /// The same at 16 bits a sample, for outputs of more than 8 bits whose frames have them.
  void write(const Rgb48Image& image);
  void write(const Frame& frame) { write(frame.image); }
  /// Flushes the encoder, completes the file and moves it to its name.
  /// Writing no frame at all is an error (an empty video is not a video).
  void finish();

  const std::string& path() const;
  /// The size frames are given in, and the (even) size they are encoded at.
  Size frame_size() const;
  Size encoded_size() const;
  int64_t frames_written() const;

 private:
  class Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace via::io
