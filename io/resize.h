#pragma once
// Frame geometry: the model size of a video and how a frame is fitted to it.
//
// Aspect policies (ResizeMode), for a source of aspect a_s resized to a target
// of aspect a_t:
//   stretch  scale both sides independently to the target; aspect changes when
//            a_s != a_t, nothing is lost and nothing is added.
//   fit      scale by the smaller ratio so the whole frame fits, centre it and
//            pad the rest with black (letterbox / pillarbox).
//   crop     scale by the larger ratio so the frame covers the target and cut
//            the overflow equally from both sides (centre crop).
// Offsets into the source are rounded down to even numbers so that a crop
// never splits a 4:2:0 chroma sample; odd leftovers of a centred pad go to the
// right / bottom.
#include <string>

#include "io/video_types.h"

namespace via::io {

enum class ResizeMode { stretch, fit, crop };

/// "stretch" | "fit" | "crop"; throws std::invalid_argument naming the value otherwise.
ResizeMode parse_resize_mode(const std::string& name);
const char* to_string(ResizeMode mode);

struct Size {
  int width = 0;
  int height = 0;
  friend bool operator==(const Size& a, const Size& b) { return a.width == b.width && a.height == b.height; }
};

struct Rect {
  int x = 0;
  int y = 0;
  int width = 0;
  int height = 0;
  friend bool operator==(const Rect& a, const Rect& b) {
    return a.x == b.x && a.y == b.y && a.width == b.width && a.height == b.height;
  }
};

/// How one resize maps a source image onto an output image: the `source`
/// rectangle of the input is scaled into the `target` rectangle of an output
/// of size `output`; output pixels outside `target` are black.
struct ResizePlan {
  Size output;
  Rect source;
  Rect target;
  /// True when the plan copies the input unchanged.
  bool identity(Size input) const {
    return input == output && source == Rect{0, 0, input.width, input.height} && target == source;
  }
};

/// The plan for resizing an `input`-sized image to `output` with `mode`.
/// Throws std::invalid_argument for non-positive sizes.
ResizePlan plan_resize(Size input, Size output, ResizeMode mode);

/// The plan for an `input` of non-square pixels, shown at `display` size: the
/// aspect policy works on the displayed shape (nothing is squeezed), and the
/// source rectangle is in `input` pixels. Equals plan_resize(input, output,
/// mode) when display == input.
ResizePlan plan_resize(Size input, Size display, Size output, ResizeMode mode);

/// The model size for a source of size `source`: the longer side becomes
/// `long_side` and the shorter keeps the aspect; both sides are rounded to the
/// nearest multiple of 8 (at least 8), as the VAE and UNet need.
/// E.g. 1920x1080, 512 -> 512x288; 640x480, 512 -> 512x384; 1080x1920, 512 -> 288x512.
/// Throws std::invalid_argument for non-positive arguments.
Size model_size(Size source, int long_side);

/// `image` resized by `plan` (plan.source must lie inside the image).
/// Deterministic: bit-exact scaling (SWS_BITEXACT), the same bytes on every CPU.
RgbImage resize_rgb(const RgbImage& image, const ResizePlan& plan);
/// `image` resized to `output` with `mode`.
RgbImage resize_rgb(const RgbImage& image, Size output, ResizeMode mode);

}  // namespace via::io
