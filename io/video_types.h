#pragma once
// Plain value types shared by via's video reader, writer and segments. No
// FFmpeg types leak into the public API.
#include <cstdint>
#include <string>
#include <vector>

namespace via::io {

/// An exact rational number (a frame rate such as 30000/1001, a time base).
struct Rational {
  int num = 0;
  int den = 1;

  /// True for a usable, positive value (den > 0 and num > 0).
  bool positive() const { return num > 0 && den > 0; }
  double to_double() const { return den == 0 ? 0.0 : static_cast<double>(num) / den; }
  /// "30000/1001".
  std::string to_string() const { return std::to_string(num) + "/" + std::to_string(den); }
  friend bool operator==(const Rational& a, const Rational& b) { return a.num == b.num && a.den == b.den; }
  friend bool operator!=(const Rational& a, const Rational& b) { return !(a == b); }
};

/// A packed RGB24 image: `data` holds height rows of width * 3 bytes (R, G, B),
/// top row first, no padding; data.size() == width * height * 3.
struct RgbImage {
  int width = 0;
  int height = 0;
  std::vector<uint8_t> data;

  RgbImage() = default;
  /// A black image of the given size.
  RgbImage(int w, int h) : width(w), height(h), data(static_cast<size_t>(w) * h * 3, 0) {}
  uint8_t* pixel(int x, int y) { return data.data() + (static_cast<size_t>(y) * width + x) * 3; }
  const uint8_t* pixel(int x, int y) const { return data.data() + (static_cast<size_t>(y) * width + x) * 3; }
};

/// One decoded video frame.
struct Frame {
  /// Position in display order, 0-based: the same index whether the frame was
  /// read sequentially or after a seek.
  int64_t index = -1;
  /// Presentation timestamp in the stream's time base (VideoInfo::time_base).
  int64_t pts = 0;
  /// Presentation time in seconds relative to the first frame (frame 0 is at 0).
  double seconds = 0.0;
  RgbImage image;
};

}  // namespace via::io
