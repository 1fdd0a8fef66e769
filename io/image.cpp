// Still-image read/write with libavformat/libavcodec, converted through io/'s
// Scaler. Call order follows FFmpeg's doc/examples (open, find stream info,
// open decoder, send/receive until a frame, flush).
#include "io/image.h"

#include <ATen/ATen.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <stdexcept>
#include <fstream>
#include <string>

#include "io/ffmpeg_common.h"

namespace via::io {
namespace {

using namespace via::io::ffmpeg;

// The decoded frame as an RGB image.
RgbImage frame_to_rgb(const AVFrame* frame, const std::string& path) {
  Image src;
  src.format = static_cast<AVPixelFormat>(frame->format);
  src.width = frame->width;
  src.height = frame->height;
  for (int i = 0; i < 4; ++i) {
    src.data[i] = frame->data[i];
    src.linesize[i] = frame->linesize[i];
  }
  src.colorspace = frame->colorspace;
  src.full_range = frame->color_range == AVCOL_RANGE_JPEG;
  RgbImage rgb(frame->width, frame->height);
  Scaler scaler;
  scaler.convert(src, rgb_image(rgb.data.data(), rgb.width, rgb.height, rgb.width * 3), path);
  return rgb;
}

// errno's failure on `written` (the file itself or its temporary) while writing `path`.
[[noreturn]] void throw_file_error(const std::string& what, const std::string& written, const std::string& path) {
  throw VideoError(what + " '" + written + "': " + std::strerror(errno), path, AVERROR(errno));
}

}  // namespace

RgbImage read_image(const std::string& path) {
  begin_operation();
  AVFormatContext* raw = nullptr;
  // On failure avformat_open_input frees the context itself.
  VIA_AV_CHECK(avformat_open_input(&raw, path.c_str(), nullptr, nullptr), "cannot open image", path);
  InputFormatPtr format(raw);
  VIA_AV_CHECK(avformat_find_stream_info(format.get(), nullptr), "cannot read the image", path);
  const AVCodec* codec = nullptr;
  const int stream = av_find_best_stream(format.get(), AVMEDIA_TYPE_VIDEO, -1, -1, &codec, 0);
  if (stream < 0 || codec == nullptr)
    throw VideoError("'" + path + "' is not an image FFmpeg can decode", path, stream < 0 ? stream : 0);

  CodecContextPtr decoder(avcodec_alloc_context3(codec));
  if (!decoder) throw_av_error(AVERROR(ENOMEM), "cannot allocate a decoder for", path);
  VIA_AV_CHECK(avcodec_parameters_to_context(decoder.get(), format->streams[stream]->codecpar),
               "cannot configure the decoder for", path);
  VIA_AV_CHECK(avcodec_open2(decoder.get(), codec, nullptr), "cannot open the decoder for", path);

  PacketPtr packet = alloc_packet(path);
  FramePtr frame = alloc_frame(path);
  bool flushing = false;
  for (;;) {
    if (!flushing) {
      const int rc = av_read_frame(format.get(), packet.get());
      if (rc == AVERROR_EOF) {
        flushing = true;
        VIA_AV_CHECK(avcodec_send_packet(decoder.get(), nullptr), "cannot decode", path);
      } else {
        VIA_AV_CHECK(rc, "cannot read", path);
        PacketUnref unref(packet.get());
        if (packet->stream_index == stream) {
          const int sent = avcodec_send_packet(decoder.get(), packet.get());
          if (sent != AVERROR(EAGAIN)) VIA_AV_CHECK(sent, "cannot decode", path);
        }
      }
    }
    const int rc = avcodec_receive_frame(decoder.get(), frame.get());
    if (rc == 0) return frame_to_rgb(frame.get(), path);
    if (rc == AVERROR_EOF) throw VideoError("'" + path + "' holds no decodable picture", path, rc);
    if (rc != AVERROR(EAGAIN)) VIA_AV_CHECK(rc, "cannot decode", path);
  }
}

void write_png(const std::string& path, const RgbImage& image) {
  begin_operation();
  if (image.width < 1 || image.height < 1 ||
      image.data.size() != static_cast<size_t>(image.width) * image.height * 3)
    throw VideoError("cannot write '" + path + "': the image is empty or its size does not match its data", path);
  const AVCodec* codec = avcodec_find_encoder(AV_CODEC_ID_PNG);
  if (codec == nullptr) throw VideoError("cannot write '" + path + "': this FFmpeg has no PNG encoder", path);
  CodecContextPtr encoder(avcodec_alloc_context3(codec));
  if (!encoder) throw_av_error(AVERROR(ENOMEM), "cannot allocate the PNG encoder for", path);
  encoder->width = image.width;
  encoder->height = image.height;
  encoder->pix_fmt = AV_PIX_FMT_RGB24;
  encoder->time_base = AVRational{1, 1};
  VIA_AV_CHECK(avcodec_open2(encoder.get(), codec, nullptr), "cannot open the PNG encoder for", path);

  FramePtr frame = alloc_frame(path);
  frame->format = AV_PIX_FMT_RGB24;
  frame->width = image.width;
  frame->height = image.height;
  VIA_AV_CHECK(av_frame_get_buffer(frame.get(), 0), "cannot allocate a picture for", path);
  const size_t row = static_cast<size_t>(image.width) * 3;
  for (int y = 0; y < image.height; ++y)
    std::memcpy(frame->data[0] + static_cast<ptrdiff_t>(y) * frame->linesize[0], image.data.data() + y * row, row);

  VIA_AV_CHECK(avcodec_send_frame(encoder.get(), frame.get()), "cannot encode PNG for", path);
  VIA_AV_CHECK(avcodec_send_frame(encoder.get(), nullptr), "cannot encode PNG for", path);
  PacketPtr packet = alloc_packet(path);
  std::string bytes;
  for (;;) {
    const int rc = avcodec_receive_packet(encoder.get(), packet.get());
    if (rc == AVERROR_EOF) break;
    VIA_AV_CHECK(rc, "cannot encode PNG for", path);
    PacketUnref unref(packet.get());
    bytes.append(reinterpret_cast<const char*>(packet->data), static_cast<size_t>(packet->size));
  }

  const std::string tmp = path + ".tmp";
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    if (!out) throw_file_error("cannot create", tmp, path);
    out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
    out.close();
    if (!out) {
      const int saved = errno;
      std::remove(tmp.c_str());
      errno = saved;
      throw_file_error("cannot write", tmp, path);
    }
  }
  if (std::rename(tmp.c_str(), path.c_str()) != 0) {
    const int saved = errno;
    std::remove(tmp.c_str());
    errno = saved;
    throw_file_error("cannot rename the finished image to", path, path);
  }
}

at::Tensor image_to_tensor(const RgbImage& image) {
  at::Tensor t = at::empty({image.height, image.width, 3}, at::TensorOptions().dtype(at::kByte));
  if (!image.data.empty()) std::memcpy(t.data_ptr<uint8_t>(), image.data.data(), image.data.size());
  return t;
}

RgbImage tensor_to_image(const at::Tensor& rgb) {
  if (!rgb.defined() || rgb.dim() != 3 || rgb.size(2) != 3 || rgb.scalar_type() != at::kByte)
    throw std::invalid_argument("expected an RGB uint8 [height, width, 3] tensor, got " +
                                (rgb.defined() ? std::string(c10::toString(rgb.scalar_type())) + " " +
                                                     c10::str(rgb.sizes())
                                               : std::string("no tensor")));
  const at::Tensor src = rgb.to(at::kCPU).contiguous();
  RgbImage image(static_cast<int>(src.size(1)), static_cast<int>(src.size(0)));
  if (!image.data.empty()) std::memcpy(image.data.data(), src.data_ptr<uint8_t>(), image.data.size());
  return image;
}

}  // namespace via::io
