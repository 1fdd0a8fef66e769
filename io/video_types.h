#pragma once
// Plain value types shared by via's video reader, writer and segments. No
// FFmpeg types leak into the public API.
#include <cstdint>
#include <stdexcept>
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

/// When each frame of a video is shown, in `time_base` units counted from the
/// video's frame 0: frame i from pts[i] until pts[i + 1], the last until `end`.
/// A constant-rate video has time base 1 / rate and pts[i] == i; any other
/// video keeps its source's timestamps (variable frame rate).
struct FrameTimes {
  Rational time_base;
  std::vector<int64_t> pts;  // strictly increasing
  int64_t end = 0;           // > pts.back()

  int64_t size() const { return static_cast<int64_t>(pts.size()); }
  bool empty() const { return pts.empty(); }
  /// How long frame i is shown.
  int64_t duration(int64_t i) const {
    return (i + 1 < size() ? pts[static_cast<size_t>(i + 1)] : end) - pts[static_cast<size_t>(i)];
  }
  /// Frames [first, first + count), with their times unchanged: the slice ends
  /// where frame first + count starts. Throws std::out_of_range outside [0, size()).
  FrameTimes slice(int64_t first, int64_t count) const {
    if (first < 0 || count < 1 || first + count > size()) {
      throw std::out_of_range("frames [" + std::to_string(first) + ", " + std::to_string(first + count) +
                              ") are outside a video of " + std::to_string(size()) + " frames");
    }
    FrameTimes part;
    part.time_base = time_base;
    part.pts.assign(pts.begin() + first, pts.begin() + first + count);
    part.end = first + count < size() ? pts[static_cast<size_t>(first + count)] : end;
    return part;
  }
  /// `frames` frames at a constant `rate`: time base 1 / rate, frame i at i.
  static FrameTimes constant(Rational rate, int64_t frames) {
    FrameTimes times;
    times.time_base = {rate.den, rate.num};
    for (int64_t i = 0; i < frames; ++i) times.pts.push_back(i);
    times.end = frames;
    return times;
  }
};

/// A video's colour description as its stream declares it, in FFmpeg's names
/// (primaries and transfer "bt709", "bt470bg", "smpte170m", "bt2020", ...;
/// matrix "bt709", "bt470bg", "smpte170m", "bt2020nc"...; range "tv" or "pc").
/// "" = not declared.
struct ColorDescription {
  std::string primaries;
  std::string transfer;
  std::string matrix;
  std::string range;
  bool declared() const { return !primaries.empty() || !transfer.empty() || !matrix.empty() || !range.empty(); }
  friend bool operator==(const ColorDescription& a, const ColorDescription& b) {
    return a.primaries == b.primaries && a.transfer == b.transfer && a.matrix == b.matrix && a.range == b.range;
  }
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

/// A packed RGB image of 16 bits a sample (R, G, B, 0..65535, native byte
/// order): frames read at their full precision (10-bit video), for outputs of
/// more than 8 bits.
struct Rgb48Image {
  int width = 0;
  int height = 0;
  std::vector<uint16_t> data;

  Rgb48Image() = default;
  Rgb48Image(int w, int h) : width(w), height(h), data(static_cast<size_t>(w) * h * 3, 0) {}
  uint16_t* pixel(int x, int y) { return data.data() + (static_cast<size_t>(y) * width + x) * 3; }
  const uint16_t* pixel(int x, int y) const { return data.data() + (static_cast<size_t>(y) * width + x) * 3; }
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
  /// The frame at 16 bits a sample instead, when read with ReaderOptions::rgb48 (`image` is then empty).
  Rgb48Image image48;
};

}  // namespace via::io
