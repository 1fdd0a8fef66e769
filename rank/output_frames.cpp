#include "rank/output_frames.h"

#include <ATen/ATen.h>

#include <algorithm>
#include <cmath>
#include <type_traits>

#include "io/mask_source.h"
#include "io/output_format.h"

namespace via::rank {

io::EncodeOptions segment_encoding(const RenderSettings& settings, const io::VideoInfo& video) {
  const io::VideoFormat format = io::resolve_video_format(settings.output, settings.codec, settings.pix_fmt);
  io::EncodeOptions enc;
  enc.codec = format.codec;
  enc.pixel_format = format.pixel_format;
  enc.color = video.color;  // declared fields kept, the rest BT.709 limited
  enc.crf = static_cast<int>(settings.crf);
  enc.preset = settings.preset;
  if (format.codec == io::VideoCodec::ProRes || format.codec == io::VideoCodec::FFV1) enc.muxer = "mov";
  return enc;
}

io::Size output_frame_size(const RenderSettings& settings, const io::VideoInfo& video, io::Size model_size) {
  return io::parse_output_size(settings.output_size).resolve(video.display_size(), model_size);
}

bool segment_matches(const std::string& segment, const RenderSettings& settings, const io::VideoInfo& video,
                     io::Size model_size) {
  try {
    const io::VideoFormat format = io::resolve_video_format(settings.output, settings.codec, settings.pix_fmt);
    const io::Size size = output_frame_size(settings, video, model_size);
    const io::VideoInfo seg = io::probe_video(segment);
    // The writer encodes even sides (io/video_writer.h).
    // ProRes 4444 decodes at 12 bits whatever it was given.
    const bool prores444 = format.codec == io::VideoCodec::ProRes && format.pixel_format == "yuv444p10le";
    const std::string pixel_format = prores444 ? "yuv444p12le" : format.pixel_format;
    return seg.codec == io::video_codec_name(format.codec) && seg.pixel_format == pixel_format &&
           seg.width == (size.width & ~1) && seg.height == (size.height & ~1);
  } catch (const std::exception&) {
    return false;  // damaged (or settings that cannot be written): made again from the latents
  }
}

OutputFrames::OutputFrames(const RenderSettings& settings, const io::VideoInfo& video, io::Size model_size,
                           const io::ResizePlan& model_plan)
    : size_(output_frame_size(settings, video, model_size)), model_target_(model_plan.target) {
  if (size_ == model_size) return;  // the edited frames as they are
  const io::VideoFormat format = io::resolve_video_format(settings.output, settings.codec, settings.pix_fmt);
  deep_ = format.pixel_format.find("p10") != std::string::npos;  // yuv4xxp10le
  io::ReaderOptions read{size_, settings.resize};
  read.rgb48 = deep_;
  source_ = std::make_unique<io::VideoReader>(settings.input, read);
  if (!settings.mask.empty()) {
    mask_ = std::make_unique<io::MaskSource>(settings.mask, size_, settings.resize, video.upright_size(),
                                             video.display_size());
  }
  // The part of the upright source the model saw (model_plan.source), in
  // output pixels: both plans map upright source pixels linearly.
  const io::ResizePlan& out = source_->plan();
  const io::Rect& s = model_plan.source;
  const double sx = static_cast<double>(out.target.width) / out.source.width;
  const double sy = static_cast<double>(out.target.height) / out.source.height;
  const long x0 = std::lround(out.target.x + (s.x - out.source.x) * sx);
  const long x1 = std::lround(out.target.x + (s.x + s.width - out.source.x) * sx);
  const long y0 = std::lround(out.target.y + (s.y - out.source.y) * sy);
  const long y1 = std::lround(out.target.y + (s.y + s.height - out.source.y) * sy);
  edit_area_ = {static_cast<int>(x0), static_cast<int>(y0), static_cast<int>(x1 - x0), static_cast<int>(y1 - y0)};
}

OutputFrames::~OutputFrames() = default;

void OutputFrames::write(io::VideoWriter& segment, int64_t index, const io::RgbImage& edit) {
  if (!source_) return segment.write(edit);
  io::Frame source = source_->read_frame(index);
  if (deep_) {
    composite(source.image48, index, edit);
    segment.write(source.image48);
  } else {
    composite(source.image, index, edit);
    segment.write(source.image);
  }
}

// `out` (the source frame at the output size, 8 or 16 bits a sample) with the
// edit scaled into edit_area_, weighted by the mask where there is one.
template <class Image>
void OutputFrames::composite(Image& out, int64_t index, const io::RgbImage& edit) {
  const io::Rect& a = edit_area_;
  if (a.width < 1 || a.height < 1) return;
  const io::ResizePlan up{{a.width, a.height}, model_target_, {0, 0, a.width, a.height}};
  const io::RgbImage scaled = io::resize_rgb(edit, up);
  constexpr float kScale = sizeof(*out.pixel(0, 0)) == 2 ? 257.0f : 1.0f;  // 8 bits to the image's
  at::Tensor mask;
  const float* m = nullptr;
  if (mask_) {
    mask = mask_->mask(index).contiguous();
    m = mask.data_ptr<float>();
  }
  using Sample = std::remove_reference_t<decltype(*out.pixel(0, 0))>;
  const int ys = std::max(0, a.y), ye = std::min(out.height, a.y + a.height);
  const int xs = std::max(0, a.x), xe = std::min(out.width, a.x + a.width);
  for (int y = ys; y < ye; ++y) {
    for (int x = xs; x < xe; ++x) {
      const uint8_t* e = scaled.pixel(x - a.x, y - a.y);
      Sample* o = out.pixel(x, y);
      const float w = m == nullptr ? 1.0f : m[static_cast<size_t>(y) * out.width + x];
      for (int c = 0; c < 3; ++c) o[c] = static_cast<Sample>(std::lround(w * kScale * e[c] + (1.0f - w) * o[c]));
    }
  }
}

}  // namespace via::rank
