#pragma once
// The one exception type of via's video I/O (io/video_reader.h, io/video_writer.h,
// io/segments.h).
#include <stdexcept>
#include <string>

namespace via::io {

/// Thrown for every failure to read or write a video: a missing, empty,
/// truncated or foreign file, an FFmpeg error, an unusable setting. what() is
/// one line that names the file and, where FFmpeg failed, carries FFmpeg's own
/// message (av_strerror's text, plus the last error FFmpeg logged).
class VideoError : public std::runtime_error {
 public:
  /// `av_error` is the FFmpeg error code (AVERROR(...)), or 0 when the failure
  /// was found by via itself.
  VideoError(const std::string& message, std::string file, int av_error = 0)
      : std::runtime_error(message), file_(std::move(file)), av_error_(av_error) {}

  /// The file the failure is about.
  const std::string& file() const { return file_; }
  /// FFmpeg's error code, or 0.
  int av_error() const { return av_error_; }

 private:
  std::string file_;
  int av_error_;
};

}  // namespace via::io
