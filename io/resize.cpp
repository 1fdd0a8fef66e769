#include "io/resize.h"

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <stdexcept>

#include "io/ffmpeg_common.h"

namespace via::io {
namespace {

// round(a * b / c) for positive values, exact in integers.
int mul_div_round(int64_t a, int64_t b, int64_t c) { return static_cast<int>((2 * a * b + c) / (2 * c)); }

void require_positive(Size size, const char* what) {
  if (size.width <= 0 || size.height <= 0) {
    throw std::invalid_argument(std::string(what) + " size " + std::to_string(size.width) + "x" +
                                std::to_string(size.height) + " is not positive");
  }
}

}  // namespace

ResizeMode parse_resize_mode(const std::string& name) {
  if (name == "stretch") return ResizeMode::stretch;
  if (name == "fit") return ResizeMode::fit;
  if (name == "crop") return ResizeMode::crop;
  throw std::invalid_argument("unknown resize mode '" + name + "' (expected fit, crop or stretch)");
}

const char* to_string(ResizeMode mode) {
  switch (mode) {
    case ResizeMode::stretch:
      return "stretch";
    case ResizeMode::fit:
      return "fit";
    case ResizeMode::crop:
      return "crop";
  }
  return "?";
}

ResizePlan plan_resize(Size in, Size out, ResizeMode mode) {
  require_positive(in, "input");
  require_positive(out, "output");
  ResizePlan plan;
  plan.output = out;
  plan.source = {0, 0, in.width, in.height};
  plan.target = {0, 0, out.width, out.height};
  // Compare aspects exactly: in.w / in.h against out.w / out.h.
  const int64_t in_aspect = static_cast<int64_t>(in.width) * out.height;
  const int64_t out_aspect = static_cast<int64_t>(out.width) * in.height;
  if (mode == ResizeMode::fit) {
    if (in_aspect >= out_aspect) {  // source is wider: full width, bars above and below
      const int h = std::clamp(mul_div_round(in.height, out.width, in.width), 1, out.height);
      plan.target = {0, (out.height - h) / 2, out.width, h};
    } else {  // source is taller: full height, bars left and right
      const int w = std::clamp(mul_div_round(in.width, out.height, in.height), 1, out.width);
      plan.target = {(out.width - w) / 2, 0, w, out.height};
    }
  } else if (mode == ResizeMode::crop) {
    if (in_aspect >= out_aspect) {  // source is wider: keep its height, cut the sides
      const int w = std::clamp(mul_div_round(out.width, in.height, out.height), 1, in.width);
      plan.source = {((in.width - w) / 2) & ~1, 0, w, in.height};
    } else {  // source is taller: keep its width, cut top and bottom
      const int h = std::clamp(mul_div_round(out.height, in.width, out.width), 1, in.height);
      plan.source = {0, ((in.height - h) / 2) & ~1, in.width, h};
    }
  }
  return plan;
}

ResizePlan plan_resize(Size in, Size display, Size out, ResizeMode mode) {
  require_positive(in, "input");
  require_positive(display, "display");
  ResizePlan plan = plan_resize(display, out, mode);
  if (display == in) return plan;
  // Only crop cuts into the source; map its rectangle from display to stored
  // pixels, keeping offsets even as plan_resize() does.
  const Rect s = plan.source;
  const int x = std::min(mul_div_round(s.x, in.width, display.width) & ~1, in.width - 1);
  const int y = std::min(mul_div_round(s.y, in.height, display.height) & ~1, in.height - 1);
  const int w = std::clamp(mul_div_round(s.width, in.width, display.width), 1, in.width - x);
  const int h = std::clamp(mul_div_round(s.height, in.height, display.height), 1, in.height - y);
  plan.source = {x, y, w, h};
  return plan;
}

Size model_size(Size source, int long_side) {
  require_positive(source, "source");
  if (long_side <= 0) throw std::invalid_argument("long side " + std::to_string(long_side) + " is not positive");
  const auto round8 = [](int64_t num, int64_t den) {  // round(num / den) to a multiple of 8, at least 8
    return std::max<int>(8, static_cast<int>((2 * num + 8 * den) / (16 * den)) * 8);
  };
  const int long_px = round8(long_side, 1);
  if (source.width >= source.height) {
    return {long_px, round8(static_cast<int64_t>(source.height) * long_px, source.width)};
  }
  return {round8(static_cast<int64_t>(source.width) * long_px, source.height), long_px};
}

RgbImage resize_rgb(const RgbImage& image, const ResizePlan& plan) {
  const Size in{image.width, image.height};
  if (image.data.size() != static_cast<size_t>(image.width) * image.height * 3) {
    throw std::invalid_argument("RGB image of " + std::to_string(image.width) + "x" + std::to_string(image.height) +
                                " holds " + std::to_string(image.data.size()) + " bytes");
  }
  const Rect& s = plan.source;
  if (s.x < 0 || s.y < 0 || s.width <= 0 || s.height <= 0 || s.x + s.width > in.width || s.y + s.height > in.height) {
    throw std::invalid_argument("resize plan's source rectangle lies outside the " + std::to_string(in.width) + "x" +
                                std::to_string(in.height) + " image");
  }
  if (plan.identity(in)) return image;
  RgbImage out(plan.output.width, plan.output.height);
  const Rect& t = plan.target;
  auto* src = const_cast<uint8_t*>(image.pixel(s.x, s.y));  // swscale reads only
  ffmpeg::Scaler scaler;
  scaler.convert(ffmpeg::rgb_image(src, s.width, s.height, image.width * 3),
                 ffmpeg::rgb_image(out.pixel(t.x, t.y), t.width, t.height, out.width * 3), "an RGB image");
  return out;
}

RgbImage resize_rgb(const RgbImage& image, Size output, ResizeMode mode) {
  return resize_rgb(image, plan_resize({image.width, image.height}, output, mode));
}

}  // namespace via::io
