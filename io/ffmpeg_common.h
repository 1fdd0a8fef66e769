#pragma once
// Internal to io/: owners for FFmpeg handles, the one FFmpeg check macro, and
// the capture of FFmpeg's log. Public headers never include this file.
//
// FFmpeg reports the detail of a failure ("moov atom not found") through its
// log, not through the error code. io/ installs a log callback that keeps the
// last error-level message of the calling thread, so that VideoError can carry
// it, and prints nothing; set VIA_FFMPEG_LOG=1 in the environment to also see
// FFmpeg's own log on stderr.
extern "C" {
#include <libavcodec/avcodec.h>
#include <libavformat/avformat.h>
#include <libavutil/avutil.h>
#include <libavutil/frame.h>
#include <libswscale/swscale.h>
}

#include <memory>
#include <string>

#include "io/video_error.h"
#include "io/video_types.h"

namespace via::io::ffmpeg {

// --- Owners. Input and output format contexts are freed differently, so they
// have separate owners.
struct InputFormatDeleter {
  void operator()(AVFormatContext* ctx) const { avformat_close_input(&ctx); }
};
struct OutputFormatDeleter {
  void operator()(AVFormatContext* ctx) const;  // closes the file (if open), frees
};
struct CodecContextDeleter {
  void operator()(AVCodecContext* ctx) const { avcodec_free_context(&ctx); }
};
struct FrameDeleter {
  void operator()(AVFrame* frame) const { av_frame_free(&frame); }
};
struct PacketDeleter {
  void operator()(AVPacket* packet) const { av_packet_free(&packet); }
};
struct SwsDeleter {
  void operator()(SwsContext* ctx) const { sws_freeContext(ctx); }
};

using InputFormatPtr = std::unique_ptr<AVFormatContext, InputFormatDeleter>;
using OutputFormatPtr = std::unique_ptr<AVFormatContext, OutputFormatDeleter>;
using CodecContextPtr = std::unique_ptr<AVCodecContext, CodecContextDeleter>;
using FramePtr = std::unique_ptr<AVFrame, FrameDeleter>;
using PacketPtr = std::unique_ptr<AVPacket, PacketDeleter>;
using SwsPtr = std::unique_ptr<SwsContext, SwsDeleter>;

/// Unreferences a packet at the end of a loop iteration, whichever way it ends.
class PacketUnref {
 public:
  explicit PacketUnref(AVPacket* packet) : packet_(packet) {}
  ~PacketUnref() { av_packet_unref(packet_); }
  PacketUnref(const PacketUnref&) = delete;
  PacketUnref& operator=(const PacketUnref&) = delete;

 private:
  AVPacket* packet_;
};

/// Allocators that throw VideoError (naming `file`) when out of memory.
FramePtr alloc_frame(const std::string& file);
PacketPtr alloc_packet(const std::string& file);

/// "<what> '<file>': <av_strerror text> (<last FFmpeg error log line>)", one line.
std::string describe(int av_error, const std::string& what, const std::string& file);
[[noreturn]] void throw_av_error(int av_error, const std::string& what, const std::string& file);

/// Installs the log capture (once per process) and forgets the calling
/// thread's last captured message, so a new operation starts clean.
void begin_operation();

/// How many error-level messages demuxers and muxers (AVFormatContext) have
/// logged on the calling thread. Some damage is only logged: a truncated MP4
/// whose index promises more data ends reading with a plain end of file after
/// logging "partial file".
uint64_t format_error_count();
/// The last error-level message of a demuxer or muxer on the calling thread ("" if none).
std::string last_format_error();

/// Opens `path` for reading and reads its stream information.
InputFormatPtr open_input(const std::string& path);

/// Creates an output context whose container is chosen from `name_for_format`'s
/// extension (MP4 when it has none FFmpeg knows) and opens `write_path` for writing.
/// `name_for_format` is also the name used in error messages. `muxer`, when
/// given ("mov"), chooses the container instead of the name.
OutputFormatPtr open_output(const std::string& name_for_format, const std::string& write_path,
                            const char* muxer = nullptr);

inline Rational to_rational(AVRational r) { return {r.num, r.den}; }
inline AVRational to_av(Rational r) { return AVRational{r.num, r.den}; }

/// FFmpeg's values of a colour description ("" fields: unspecified).
struct AvColor {
  AVColorPrimaries primaries = AVCOL_PRI_UNSPECIFIED;
  AVColorTransferCharacteristic transfer = AVCOL_TRC_UNSPECIFIED;
  AVColorSpace matrix = AVCOL_SPC_UNSPECIFIED;
  AVColorRange range = AVCOL_RANGE_UNSPECIFIED;
};
/// Throws VideoError naming `file` for a name FFmpeg does not know.
AvColor to_av(const ColorDescription& color, const std::string& file);

/// True when the output format can carry `codec_id` (stream copy).
bool format_can_carry(const AVOutputFormat* format, AVCodecID codec_id);
/// True for the MP4 / QuickTime muxers (they share options such as movflags).
bool is_mov_family(const AVOutputFormat* format);

/// One side of a swscale conversion: an image in memory.
struct Image {
  AVPixelFormat format = AV_PIX_FMT_NONE;
  int width = 0;
  int height = 0;
  uint8_t* data[4] = {nullptr, nullptr, nullptr, nullptr};
  int linesize[4] = {0, 0, 0, 0};
  // For YUV images: the matrix (AVCOL_SPC_*, unspecified = BT.601 as in FFmpeg)
  // and whether the range is full (JPEG) rather than limited (MPEG).
  AVColorSpace colorspace = AVCOL_SPC_UNSPECIFIED;
  bool full_range = false;
};

/// `width` x `height` of a packed RGB24 buffer (an RgbImage or a region of one).
Image rgb_image(uint8_t* data, int width, int height, int row_bytes);
/// The same of a packed RGB48 buffer (an Rgb48Image or a region of one).
Image rgb48_image(uint16_t* data, int width, int height, int row_samples);

/// A swscale converter that keeps its context between calls with the same
/// geometry. Bit-exact (SWS_BITEXACT | SWS_ACCURATE_RND): the same input gives
/// the same bytes on every CPU, which the determinism contract needs.
/// Not thread-safe; one per reader / writer.
class Scaler {
 public:
  /// Converts and scales `src` into `dst`; `file` names the video in errors.
  void convert(const Image& src, const Image& dst, const std::string& file);

 private:
  SwsPtr ctx_;
  int geometry_[6] = {-1, -1, -1, -1, -1, -1};  // formats and sizes ctx_ was made for
  int details_key_[4] = {-1, -1, -1, -1};       // colour details last given to ctx_
};

}  // namespace via::io::ffmpeg

/// Checks an FFmpeg call's return code: a negative value throws VideoError
/// "<what> '<file>': <FFmpeg's message>". Evaluates `call` exactly once.
#define VIA_AV_CHECK(call, what, file)                                                 \
  do {                                                                                 \
    const int via_av_rc_ = (call);                                                     \
    if (via_av_rc_ < 0) ::via::io::ffmpeg::throw_av_error(via_av_rc_, (what), (file)); \
  } while (0)
