#pragma once
// The output's frames and their encoding: --output-size, --codec, --pix-fmt
// and the source's colour description.
//
// At the model size (the default) an edited frame goes out as decoded. At
// another size (the source's, or WxH) the edit is scaled up to where the same
// part of the picture lies in the source frame read at that size, and put
// over it: with --mask only inside the mask (the soft mask at the output's
// size), so an untouched background keeps the source's full sharpness instead
// of the model's upscaled pixels; without one, everywhere the model saw.
#include <cstdint>
#include <memory>
#include <string>

#include "io/resize.h"
#include "io/video_reader.h"
#include "io/video_writer.h"
#include "rank/settings.h"

namespace via::io {
class MaskSource;
}  // namespace via::io

namespace via::rank {

/// How each segment of a render is encoded: codec and pixel format
/// (io::resolve_video_format; throws io::VideoError when they do not fit
/// --output), the source's colour description, CRF and preset; ProRes and FFV1
/// segments are QuickTime files (MP4 holds neither).
io::EncodeOptions segment_encoding(const RenderSettings& settings, const io::VideoInfo& video);

/// The output frame size for `settings.output_size` (model_size for "model").
io::Size output_frame_size(const RenderSettings& settings, const io::VideoInfo& video, io::Size model_size);

/// True when `segment` holds what these settings ask for: codec, pixel format
/// and encoded size. False for a damaged or unreadable segment.
bool segment_matches(const std::string& segment, const RenderSettings& settings, const io::VideoInfo& video,
                     io::Size model_size);

/// Output frames of one render. Not thread-safe (it holds a reader).
class OutputFrames {
 public:
  /// `model_size` and `model_plan`: the size the model works at and how the
  /// source's upright frame was fitted to it (io::VideoReader::plan()).
  OutputFrames(const RenderSettings& settings, const io::VideoInfo& video, io::Size model_size,
               const io::ResizePlan& model_plan);
  ~OutputFrames();
  OutputFrames(const OutputFrames&) = delete;
  OutputFrames& operator=(const OutputFrames&) = delete;

  io::Size size() const { return size_; }
  /// Writes output frame `index`, made from `edit` (that frame's edit at the
  /// model size), to `segment`. For an output of more than 8 bits the source
  /// frame is read and written at 16 bits a sample, so a 10-bit source's
  /// background keeps its 10 bits (the edit itself is 8-bit, as decoded).
  void write(io::VideoWriter& segment, int64_t index, const io::RgbImage& edit);

 private:
  template <class Image>
  void composite(Image& out, int64_t index, const io::RgbImage& edit);

  io::Size size_;
  io::Rect edit_area_;  // where the model's picture (model_plan.target) lies in an output frame
  io::Rect model_target_;
  std::unique_ptr<io::VideoReader> source_;  // the source at the output size; null at the model size
  std::unique_ptr<io::MaskSource> mask_;     // at the output size; null without --mask
  bool deep_ = false;                        // the source read at 16 bits a sample
};

}  // namespace via::rank
