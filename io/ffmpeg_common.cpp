#include "io/ffmpeg_common.h"

extern "C" {
#include <libavutil/pixdesc.h>
}

#include <algorithm>
#include <cstdarg>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <mutex>

namespace via::io::ffmpeg {
namespace {

// The calling thread's last error-level FFmpeg log message ("component: text").
thread_local std::string t_last_error;
thread_local uint64_t t_format_errors = 0;
thread_local std::string t_last_format_error;

bool forward_log() {
  static const bool forward = [] {
    const char* v = std::getenv("VIA_FFMPEG_LOG");
    return v != nullptr && *v != '\0' && std::string(v) != "0";
  }();
  return forward;
}

// One line: newlines become "; ", trailing whitespace goes.
std::string one_line(std::string s) {
  while (!s.empty() && (s.back() == '\n' || s.back() == '\r' || s.back() == ' ')) s.pop_back();
  std::string out;
  for (char c : s) {
    if (c == '\n' || c == '\r') {
      out += "; ";
    } else {
      out += c;
    }
  }
  return out;
}

void log_callback(void* avcl, int level, const char* fmt, va_list args) {
  if (forward_log()) {
    va_list copy;
    va_copy(copy, args);
    av_log_default_callback(avcl, level, fmt, copy);
    va_end(copy);
  }
  if (level > AV_LOG_ERROR) return;
  const AVClass* cls = avcl != nullptr ? *static_cast<const AVClass* const*>(avcl) : nullptr;
  const bool from_format = cls != nullptr && cls == avformat_get_class();
  if (from_format) ++t_format_errors;
  char text[1024];
  std::vsnprintf(text, sizeof(text), fmt, args);
  std::string message = one_line(text);
  if (message.empty()) return;
  // The component ("mov,mp4,m4a,3gp,3g2,mj2", "libx264") says who complained.
  if (cls != nullptr && cls->item_name != nullptr) message = std::string(cls->item_name(avcl)) + ": " + message;
  t_last_error = message;
  if (from_format) t_last_format_error = message;
}

}  // namespace

void OutputFormatDeleter::operator()(AVFormatContext* ctx) const {
  if (ctx->pb != nullptr && !(ctx->oformat->flags & AVFMT_NOFILE)) avio_closep(&ctx->pb);
  avformat_free_context(ctx);
}

void begin_operation() {
  static std::once_flag once;
  std::call_once(once, [] { av_log_set_callback(log_callback); });
  t_last_error.clear();
}

uint64_t format_error_count() { return t_format_errors; }
std::string last_format_error() { return t_last_format_error; }

std::string describe(int av_error, const std::string& what, const std::string& file) {
  char text[AV_ERROR_MAX_STRING_SIZE] = {0};
  av_strerror(av_error, text, sizeof(text));
  std::string message = what + " '" + file + "': " + text;
  if (!t_last_error.empty()) message += " (" + t_last_error + ")";
  return message;
}

void throw_av_error(int av_error, const std::string& what, const std::string& file) {
  throw VideoError(describe(av_error, what, file), file, av_error);
}

FramePtr alloc_frame(const std::string& file) {
  FramePtr frame(av_frame_alloc());
  if (!frame) throw_av_error(AVERROR(ENOMEM), "cannot allocate a frame for", file);
  return frame;
}

PacketPtr alloc_packet(const std::string& file) {
  PacketPtr packet(av_packet_alloc());
  if (!packet) throw_av_error(AVERROR(ENOMEM), "cannot allocate a packet for", file);
  return packet;
}

InputFormatPtr open_input(const std::string& path) {
  begin_operation();
  AVFormatContext* raw = nullptr;
  // On failure avformat_open_input frees the context itself.
  VIA_AV_CHECK(avformat_open_input(&raw, path.c_str(), nullptr, nullptr), "cannot open video", path);
  InputFormatPtr ctx(raw);
  VIA_AV_CHECK(avformat_find_stream_info(ctx.get(), nullptr), "cannot read the streams of", path);
  return ctx;
}

OutputFormatPtr open_output(const std::string& name_for_format, const std::string& write_path, const char* muxer) {
  begin_operation();
  auto format = muxer != nullptr && *muxer != '\0' ? av_guess_format(muxer, nullptr, nullptr)
                                                   : av_guess_format(nullptr, name_for_format.c_str(), nullptr);
  if (format == nullptr) format = av_guess_format("mp4", nullptr, nullptr);
  AVFormatContext* raw = nullptr;
  // The context is named after the file really written: muxers that reopen it
  // (MP4's faststart pass) must find the temporary file, not the final name.
  VIA_AV_CHECK(avformat_alloc_output_context2(&raw, format, nullptr, write_path.c_str()),
               "cannot create the container for", name_for_format);
  OutputFormatPtr ctx(raw);
  if (!(ctx->oformat->flags & AVFMT_NOFILE)) {
    VIA_AV_CHECK(avio_open(&ctx->pb, write_path.c_str(), AVIO_FLAG_WRITE), "cannot write", write_path);
  }
  return ctx;
}

AvColor to_av(const ColorDescription& color, const std::string& file) {
  const auto value = [&](const std::string& name, int (*from_name)(const char*)) {
    if (name.empty()) return 2;  // AVCOL_*_UNSPECIFIED, except the range's
    const int v = from_name(name.c_str());
    if (v < 0) throw VideoError("cannot write '" + file + "': unknown colour value '" + name + "'", file);
    return v;
  };
  AvColor c;
  c.primaries = static_cast<AVColorPrimaries>(value(color.primaries, av_color_primaries_from_name));
  c.transfer = static_cast<AVColorTransferCharacteristic>(value(color.transfer, av_color_transfer_from_name));
  c.matrix = static_cast<AVColorSpace>(value(color.matrix, av_color_space_from_name));
  if (!color.range.empty()) c.range = static_cast<AVColorRange>(value(color.range, av_color_range_from_name));
  return c;
}

bool format_can_carry(const AVOutputFormat* format, AVCodecID codec_id) {
  return avformat_query_codec(format, codec_id, FF_COMPLIANCE_NORMAL) == 1;
}

bool is_mov_family(const AVOutputFormat* format) {
  return std::strstr(format->name, "mp4") != nullptr || std::strstr(format->name, "mov") != nullptr;
}

Image rgb48_image(uint16_t* data, int width, int height, int row_samples) {
  Image image = rgb_image(reinterpret_cast<uint8_t*>(data), width, height, row_samples * 2);
  image.format = AV_PIX_FMT_RGB48;  // native byte order, as Rgb48Image holds it
  return image;
}

Image rgb_image(uint8_t* data, int width, int height, int row_bytes) {
  Image image;
  image.format = AV_PIX_FMT_RGB24;
  image.width = width;
  image.height = height;
  image.data[0] = data;
  image.linesize[0] = row_bytes;
  image.full_range = true;
  return image;
}

namespace {

// The deprecated "J" formats are plain YUV formats in full range; swscale
// wants them named as such with the range given separately.
AVPixelFormat without_jpeg_alias(AVPixelFormat format, bool& full_range) {
  switch (format) {
    case AV_PIX_FMT_YUVJ420P:
      full_range = true;
      return AV_PIX_FMT_YUV420P;
    case AV_PIX_FMT_YUVJ422P:
      full_range = true;
      return AV_PIX_FMT_YUV422P;
    case AV_PIX_FMT_YUVJ444P:
      full_range = true;
      return AV_PIX_FMT_YUV444P;
    case AV_PIX_FMT_YUVJ440P:
      full_range = true;
      return AV_PIX_FMT_YUV440P;
    case AV_PIX_FMT_YUVJ411P:
      full_range = true;
      return AV_PIX_FMT_YUV411P;
    default:
      return format;
  }
}

bool is_yuv(AVPixelFormat format) {
  const AVPixFmtDescriptor* desc = av_pix_fmt_desc_get(format);
  return desc != nullptr && !(desc->flags & AV_PIX_FMT_FLAG_RGB) && desc->nb_components >= 3;
}

const char* format_name(AVPixelFormat format) {
  const char* name = av_get_pix_fmt_name(format);
  return name != nullptr ? name : "unknown";
}

}  // namespace

void Scaler::convert(const Image& src_in, const Image& dst_in, const std::string& file) {
  Image src = src_in;
  Image dst = dst_in;
  src.format = without_jpeg_alias(src.format, src.full_range);
  dst.format = without_jpeg_alias(dst.format, dst.full_range);

  const int geometry[6] = {src.format, src.width, src.height, dst.format, dst.width, dst.height};
  if (!ctx_ || !std::equal(geometry, geometry + 6, geometry_)) {
    ctx_.reset();
    // Bicubic, with full chroma resolution on both sides; BITEXACT + ACCURATE_RND
    // keep the output independent of the CPU's SIMD paths.
    const int flags = SWS_BICUBIC | SWS_BITEXACT | SWS_ACCURATE_RND | SWS_FULL_CHR_H_INT | SWS_FULL_CHR_H_INP;
    ctx_.reset(sws_getContext(src.width, src.height, src.format, dst.width, dst.height, dst.format, flags, nullptr,
                              nullptr, nullptr));
    if (!ctx_) {
      throw VideoError("cannot convert frames of '" + file + "' from " + format_name(src.format) + " " +
                           std::to_string(src.width) + "x" + std::to_string(src.height) + " to " +
                           format_name(dst.format) + " " + std::to_string(dst.width) + "x" + std::to_string(dst.height),
                       file, AVERROR(EINVAL));
    }
    std::copy(geometry, geometry + 6, geometry_);
    std::fill(details_key_, details_key_ + 4, -1);
  }

  // Colour matrix and range matter only where one side is YUV.
  const bool src_yuv = is_yuv(src.format);
  const bool dst_yuv = is_yuv(dst.format);
  if (src_yuv != dst_yuv) {
    const int key[4] = {src.colorspace, src.full_range, dst.colorspace, dst.full_range};
    if (!std::equal(key, key + 4, details_key_)) {
      sws_setColorspaceDetails(ctx_.get(), sws_getCoefficients(src.colorspace), src.full_range ? 1 : 0,
                               sws_getCoefficients(dst.colorspace), dst.full_range ? 1 : 0, 0, 1 << 16, 1 << 16);
      std::copy(key, key + 4, details_key_);
    }
  }

  const int rc = sws_scale(ctx_.get(), src.data, src.linesize, 0, src.height, dst.data, dst.linesize);
  if (rc <= 0) throw_av_error(rc < 0 ? rc : AVERROR(EINVAL), "cannot convert a frame of", file);
}

}  // namespace via::io::ffmpeg
