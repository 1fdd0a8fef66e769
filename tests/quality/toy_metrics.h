#pragma once
// Edit metrics on toy-world frames (tests/reference/toy/toy_world.py holds the
// world and the same metrics in Python): the palette of "paint the shapes",
// saturation, luma targets and PSNR, over the clips' exact shape labels.
#include <algorithm>
#include <array>
#include <cmath>
#include <map>
#include <string>
#include <vector>

#include "io/video_types.h"

namespace via::test::toy {

using Mask = std::vector<bool>;  // width * height, row-major

// toy_world.PALETTE and CLEAN_DISTANCE.
inline const std::array<std::array<double, 3>, 4> kPalette = {{
    {0.90, 0.10, 0.10}, {0.10, 0.75, 0.15}, {0.10, 0.25, 0.90}, {0.95, 0.85, 0.10}}};
constexpr double kCleanDistance = 0.2;

inline double channel(const io::RgbImage& img, size_t i, int c) { return img.data[i * 3 + c] / 255.0; }

/// Pixels where `labels` (a label picture: grey level = label) equals `label`.
inline Mask label_mask(const io::RgbImage& labels, int label) {
  Mask m(static_cast<size_t>(labels.width) * labels.height);
  for (size_t i = 0; i < m.size(); ++i) m[i] = labels.data[i * 3] == label;
  return m;
}

/// Pixels of a grey picture at or above `level` (0-255).
inline Mask threshold(const io::RgbImage& grey, int level) {
  Mask m(static_cast<size_t>(grey.width) * grey.height);
  for (size_t i = 0; i < m.size(); ++i) m[i] = grey.data[i * 3] >= level;
  return m;
}

/// `m` shrunk by `r` pixels (4-neighbourhood); grow with erode(invert(m)).
inline Mask erode(Mask m, int w, int h, int r) {
  for (int k = 0; k < r; ++k) {
    Mask out = m;
    for (int y = 0; y < h; ++y)
      for (int x = 0; x < w; ++x) {
        const size_t i = static_cast<size_t>(y) * w + x;
        if (!m[i]) continue;
        out[i] = (x > 0 && m[i - 1]) && (x + 1 < w && m[i + 1]) && (y > 0 && m[i - w]) && (y + 1 < h && m[i + w]);
      }
    m = std::move(out);
  }
  return m;
}

inline Mask invert(Mask m) {
  m.flip();
  return m;
}

inline size_t count(const Mask& m) { return static_cast<size_t>(std::count(m.begin(), m.end(), true)); }

inline std::array<double, 3> mean_colour(const io::RgbImage& img, const Mask& m) {
  std::array<double, 3> s{0, 0, 0};
  size_t n = 0;
  for (size_t i = 0; i < m.size(); ++i)
    if (m[i]) {
      for (int c = 0; c < 3; ++c) s[c] += channel(img, i, c);
      ++n;
    }
  for (double& v : s) v /= std::max<size_t>(n, 1);
  return s;
}

/// Mean HSV saturation (max - min) / max over `m`.
inline double saturation(const io::RgbImage& img, const Mask& m) {
  double s = 0;
  size_t n = 0;
  for (size_t i = 0; i < m.size(); ++i)
    if (m[i]) {
      const double r = channel(img, i, 0), g = channel(img, i, 1), b = channel(img, i, 2);
      const double mx = std::max({r, g, b}), mn = std::min({r, g, b});
      s += mx > 1e-6 ? (mx - mn) / mx : 0.0;
      ++n;
    }
  return s / std::max<size_t>(n, 1);
}

inline Mask everywhere(const io::RgbImage& img) { return Mask(static_cast<size_t>(img.width) * img.height, true); }

/// The exact grayscale target: Rec.601 luma of every pixel (toy_world.grayscale).
inline io::RgbImage luma(const io::RgbImage& img) {
  io::RgbImage out(img.width, img.height);
  for (size_t i = 0; i < out.data.size() / 3; ++i) {
    const double y = 0.299 * channel(img, i, 0) + 0.587 * channel(img, i, 1) + 0.114 * channel(img, i, 2);
    for (int c = 0; c < 3; ++c) out.data[i * 3 + c] = static_cast<uint8_t>(std::lround(y * 255.0));
  }
  return out;
}

inline double psnr(const io::RgbImage& a, const io::RgbImage& b, const Mask& m) {
  double se = 0;
  size_t n = 0;
  for (size_t i = 0; i < m.size(); ++i)
    if (m[i])
      for (int c = 0; c < 3; ++c) {
        const double d = channel(a, i, c) - channel(b, i, c);
        se += d * d;
        ++n;
      }
  const double mse = se / std::max<size_t>(n, 1);
  return mse <= 1e-10 ? 99.0 : 10.0 * std::log10(1.0 / mse);
}

/// The palette colour every shape of the frame is within kCleanDistance of,
/// or -1 (labels 1..3 are the shapes; their interiors are measured).
inline int paint_index(const io::RgbImage& img, const io::RgbImage& labels) {
  int index = -2;
  for (int label = 1; label <= 3; ++label) {
    const Mask inner = erode(label_mask(labels, label), img.width, img.height, 1);
    if (count(inner) < 4) continue;
    const auto c = mean_colour(img, inner);
    int best = 0;
    double best_d = 1e9;
    for (int k = 0; k < 4; ++k) {
      const double d = std::hypot(c[0] - kPalette[k][0], c[1] - kPalette[k][1], c[2] - kPalette[k][2]);
      if (d < best_d) best_d = d, best = k;
    }
    if (best_d > kCleanDistance || (index >= 0 && best != index)) return -1;
    index = best;
  }
  return index < 0 ? -1 : index;
}

/// Colour agreement: the fraction of frames whose shapes got the video's
/// majority palette colour (frames without a clean colour disagree).
inline double agreement(const std::vector<int>& indices) {
  std::map<int, int> votes;
  for (int i : indices)
    if (i >= 0) ++votes[i];
  int best = 0;
  for (const auto& [k, v] : votes) best = std::max(best, v);
  return indices.empty() ? 0.0 : static_cast<double>(best) / static_cast<double>(indices.size());
}

}  // namespace via::test::toy
