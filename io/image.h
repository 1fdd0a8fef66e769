#pragma once
// Still images through FFmpeg: whatever its image demuxers and decoders read
// (PNG, JPEG, BMP, WebP, ...) in, PNG out, as the RgbImage video frames use;
// plus the conversions between RgbImage and the model's uint8 tensors.
//
// Errors are io::VideoError (the one exception of via's FFmpeg-based I/O):
// one line naming the file, with FFmpeg's own message where FFmpeg failed.
#include <ATen/core/Tensor.h>

#include <string>

#include "io/video_error.h"
#include "io/video_types.h"

namespace via::io {

/// Reads the first picture of `path` as packed RGB. Alpha is dropped; grey,
/// palette, 16-bit and YUV pictures (JPEG's full range included) are
/// converted. A missing file, a file that is not an image or a picture that
/// does not decode throws VideoError naming `path`.
RgbImage read_image(const std::string& path);

/// Writes `image` to `path` as PNG (lossless). The bytes go to a temporary
/// file that is renamed over `path`, so `path` is either untouched or
/// complete. Throws VideoError naming `path`.
void write_png(const std::string& path, const RgbImage& image);

/// `image` as a uint8 [height, width, 3] CPU tensor (a copy).
at::Tensor image_to_tensor(const RgbImage& image);

/// A uint8 [height, width, 3] tensor (any strides and device) as an image.
/// Throws std::invalid_argument for any other dtype or shape.
RgbImage tensor_to_image(const at::Tensor& rgb);

}  // namespace via::io
