#include "io/video_writer.h"

extern "C" {
#include <libavutil/opt.h>
#include <libavutil/pixdesc.h>
}

#include <algorithm>
#include <filesystem>
#include <iterator>
#include <utility>
#include <system_error>

#include "io/ffmpeg_common.h"

namespace via::io {


class VideoWriter::Impl {
 public:
  Impl(const std::string& path, Size size, Rational rate, EncodeOptions options)
      : path_(path), part_path_(path + ".part"), size_(size), options_(std::move(options)) {
    ffmpeg::begin_operation();
    if (size.width < 2 || size.height < 2) {
      throw VideoError("cannot encode frames of " + std::to_string(size.width) + "x" + std::to_string(size.height) +
                           " into '" + path + "': sides must be at least 2 pixels",
                       path);
    }
    if (!rate.positive()) {
      throw VideoError("cannot encode '" + path + "' at frame rate " + rate.to_string(), path);
    }
    if (options_.crf < 0 || options_.crf > 51) {
      throw VideoError("CRF " + std::to_string(options_.crf) + " for '" + path + "' is outside 0..51", path);
    }
    // Checked here: x264 itself would print its complaint to stderr.
    static const char* const kPresets[] = {"ultrafast", "superfast", "veryfast", "faster",   "fast",
                                           "medium",    "slow",      "slower",   "veryslow", "placebo"};
    if (std::find(std::begin(kPresets), std::end(kPresets), options_.preset) == std::end(kPresets)) {
      throw VideoError("unknown x264 preset '" + options_.preset + "' for '" + path +
                           "' (ultrafast, superfast, veryfast, faster, fast, medium, slow, slower, veryslow, placebo)",
                       path);
    }
    if (options_.threads < 0) {
      throw VideoError("encoder threads " + std::to_string(options_.threads) + " for '" + path + "' is negative", path);
    }
    if (options_.first_frame < 0) {
      throw VideoError("first frame " + std::to_string(options_.first_frame) + " for '" + path + "' is negative", path);
    }
    const FrameTimes& times = options_.times;
    if (!times.empty()) {
      bool increasing = times.time_base.positive() && times.end > times.pts.back();
      for (size_t i = 1; increasing && i < times.pts.size(); ++i) increasing = times.pts[i] > times.pts[i - 1];
      if (!increasing) {
        throw VideoError("frame times for '" + path + "' are not increasing (time base " +
                             times.time_base.to_string() + ")",
                         path);
      }
    }
    encoded_ = {size.width & ~1, size.height & ~1};
    try {
      open(rate);
    } catch (...) {
      close_and_remove();
      throw;
    }
  }

  ~Impl() {
    if (!finished_) close_and_remove();
  }

  void write(const RgbImage& image) {
    check_size(image.width, image.height, image.data.size());
    const size_t bytes = image.data.size();
    stage(image.data.data(), bytes);
    encode(ffmpeg::rgb_image(padded_.data(), encoded_.width, encoded_.height, image.width * 3));
  }

  void write(const Rgb48Image& image) {
    check_size(image.width, image.height, image.data.size());
    const size_t bytes = image.data.size() * sizeof(uint16_t);
    stage(reinterpret_cast<const uint8_t*>(image.data.data()), bytes);
    ffmpeg::Image src = ffmpeg::rgb_image(padded_.data(), encoded_.width, encoded_.height, image.width * 6);
    src.format = AV_PIX_FMT_RGB48;
    encode(src);
  }

 private:
  void check_size(int width, int height, size_t samples) const {
    if (finished_) throw VideoError("'" + path_ + "' is already finished", path_);
    if (width != size_.width || height != size_.height || samples != static_cast<size_t>(width) * height * 3) {
      throw VideoError("frame of " + std::to_string(width) + "x" + std::to_string(height) + " given to '" + path_ +
                           "', which takes " + std::to_string(size_.width) + "x" + std::to_string(size_.height),
                       path_);
    }
  }

  // The frame's bytes into padded_. swscale's SIMD input readers read up to
  // 16 bytes past the last pixel (valgrind shows it); those bytes must be ours
  // and always the same, or the bitstream depends on whatever the heap held there.
  void stage(const uint8_t* data, size_t bytes) {
    if (padded_.size() < bytes + kReadSlack) padded_.assign(bytes + kReadSlack, 0);
    std::copy(data, data + bytes, padded_.begin());
  }

  // Converts `src` (the top-left even-sized part of the frame, see the class
  // comment) into the encoder's format and sends it.
  void encode(const ffmpeg::Image& src) {
    // The encoder may still hold a reference to the previous frame's buffers.
    VIA_AV_CHECK(av_frame_make_writable(frame_.get()), "cannot encode a frame into", part_path_);
    ffmpeg::Image dst;
    dst.format = pixel_format_;
    dst.width = encoded_.width;
    dst.height = encoded_.height;
    std::copy(frame_->data, frame_->data + 4, dst.data);
    std::copy(frame_->linesize, frame_->linesize + 4, dst.linesize);
    dst.colorspace = encoder_->colorspace;
    dst.full_range = encoder_->color_range == AVCOL_RANGE_JPEG;
    scaler_.convert(src, dst, path_);
    if (options_.times.empty()) {
      frame_->pts = options_.first_frame + written_;
    } else if (written_ < options_.times.size()) {
      frame_->pts = options_.times.pts[static_cast<size_t>(written_)];
    } else {
      throw VideoError("frame " + std::to_string(written_) + " given to '" + path_ + "', which has times for " +
                           std::to_string(options_.times.size()) + " frames",
                       path_);
    }
    VIA_AV_CHECK(avcodec_send_frame(encoder_.get(), frame_.get()), "cannot encode a frame into", part_path_);
    ++written_;
    drain();
  }

 public:
  void finish() {
    if (finished_) return;
    if (written_ == 0) throw VideoError("no frames were written to '" + path_ + "'", path_);
    VIA_AV_CHECK(avcodec_send_frame(encoder_.get(), nullptr), "cannot finish encoding", part_path_);
    drain();
    VIA_AV_CHECK(av_write_trailer(out_.get()), "cannot finish writing", part_path_);
    out_.reset();  // closes the file
    std::error_code ec;
    std::filesystem::rename(part_path_, path_, ec);
    if (ec) throw VideoError("cannot rename '" + part_path_ + "' to '" + path_ + "': " + ec.message(), path_);
    finished_ = true;
  }

  const std::string& path() const { return path_; }
  Size frame_size() const { return size_; }
  Size encoded_size() const { return encoded_; }
  int64_t frames_written() const { return written_; }

 private:
  void open(Rational rate) {
    const VideoCodec which = options_.codec;
    const char* encoder_name = video_encoder_name(which);
    const AVCodec* codec = avcodec_find_encoder_by_name(encoder_name);
    if (codec == nullptr) {
      throw VideoError("cannot encode '" + path_ + "': this FFmpeg was built without " + encoder_name, path_);
    }
    const std::string pix_name = options_.pixel_format.empty() ? default_pixel_format(which) : options_.pixel_format;
    pixel_format_ = av_get_pix_fmt(pix_name.c_str());
    if (pixel_format_ == AV_PIX_FMT_NONE) {
      throw VideoError("cannot encode '" + path_ + "': unknown pixel format '" + pix_name + "'", path_);
    }
    out_ = ffmpeg::open_output(path_, part_path_, options_.muxer.c_str());
    encoder_.reset(avcodec_alloc_context3(codec));
    if (!encoder_) ffmpeg::throw_av_error(AVERROR(ENOMEM), "cannot allocate an encoder for", path_);
    AVCodecContext* enc = encoder_.get();
    enc->width = encoded_.width;
    enc->height = encoded_.height;
    enc->pix_fmt = pixel_format_;
    enc->sample_aspect_ratio = AVRational{1, 1};
    // Constant rate: one tick per frame, timestamps are frame numbers.
    // Otherwise the frames' own time base, so their times stay exact.
    enc->time_base = options_.times.empty() ? av_inv_q(ffmpeg::to_av(rate)) : ffmpeg::to_av(options_.times.time_base);
    enc->framerate = ffmpeg::to_av(rate);
    const ffmpeg::AvColor color = ffmpeg::to_av(output_color(options_.color), path_);
    enc->color_primaries = color.primaries;
    enc->color_trc = color.transfer;
    enc->colorspace = color.matrix;
    enc->color_range = color.range;
    enc->thread_count = options_.threads;
    if (out_->oformat->flags & AVFMT_GLOBALHEADER) enc->flags |= AV_CODEC_FLAG_GLOBAL_HEADER;
    if (which == VideoCodec::VP9) {
      set_vp9_options(enc);
    } else if (which == VideoCodec::HEVC) {
      set_x265_options(enc);
    } else if (which == VideoCodec::ProRes) {
      // HQ for 4:2:2, 4444 for 4:4:4; Apple's vendor tag, as Apple's own files carry.
      const bool yuv444 = pixel_format_ == AV_PIX_FMT_YUV444P10LE;
      VIA_AV_CHECK(av_opt_set(enc->priv_data, "profile", yuv444 ? "4444" : "hq", 0), "cannot set ProRes' profile for",
                   path_);
      VIA_AV_CHECK(av_opt_set(enc->priv_data, "vendor", "apl0", 0), "cannot set ProRes' vendor for", path_);
    } else if (which == VideoCodec::FFV1) {
      // Version 3, every frame a keyframe (an intermediate for editing), with slice checksums.
      enc->gop_size = 1;
      VIA_AV_CHECK(av_opt_set_int(enc, "level", 3, AV_OPT_SEARCH_CHILDREN), "cannot set FFV1's level for", path_);
      VIA_AV_CHECK(av_opt_set_int(enc->priv_data, "slicecrc", 1, 0), "cannot set FFV1's checksums for", path_);
    } else {
      VIA_AV_CHECK(av_opt_set(enc->priv_data, "preset", options_.preset.c_str(), 0),
                   "cannot set preset '" + options_.preset + "' for", path_);
      VIA_AV_CHECK(av_opt_set_double(enc->priv_data, "crf", options_.crf, 0), "cannot set the CRF for", path_);
      // x264's macroblock tree gave different bitstreams for the same frames
      // from run to run inside a render (measured: 1 encode in ~10 differed;
      // none of 45 without it), which would break docs/ARCHITECTURE.md §7 (decoded output
      // bit-identical for any rank count). It costs a little compression.
      // The cause is x264's AVX-512 code: with mbtree on and x264's asm limited
      // to AVX2 (or off), 4 renders x 12 segments were identical; with AVX-512,
      // 5 of 12 differed. Never seen in a process without libtorch. Keeping
      // mbtree off is also what keeps nodes with other CPUs bit-identical: the
      // macroblock tree is float code whose SIMD versions may round differently
      // from CPU to CPU (not checked), while x264's integer code is bit-exact.
      VIA_AV_CHECK(av_opt_set(enc->priv_data, "x264-params", "mbtree=0", 0), "cannot set x264's options for", path_);
    }
    const int rc = avcodec_open2(enc, codec, nullptr);
    if (rc < 0) {
      ffmpeg::throw_av_error(rc, std::string("cannot open the ") + encoder_name + " encoder (preset '" +
                                     options_.preset + "') for",
                             path_);
    }

    stream_ = avformat_new_stream(out_.get(), nullptr);
    if (stream_ == nullptr) ffmpeg::throw_av_error(AVERROR(ENOMEM), "cannot add a video stream to", path_);
    VIA_AV_CHECK(avcodec_parameters_from_context(stream_->codecpar, enc), "cannot set up the video stream of", path_);
    stream_->time_base = enc->time_base;  // a hint; the muxer may choose another
    stream_->avg_frame_rate = enc->framerate;
    // MP4 states a late start (a segment's first frame > 0) in an edit list
    // counted in the movie's timescale, 1/1000 s by default; the time base's
    // denominator makes it exact (every timestamp is a multiple of num / den).
    AVDictionary* mux_opts = nullptr;  // freed right below; nothing in between can throw
    if (ffmpeg::is_mov_family(out_->oformat)) av_dict_set_int(&mux_opts, "movie_timescale", enc->time_base.den, 0);
    const int header_rc = avformat_write_header(out_.get(), &mux_opts);
    av_dict_free(&mux_opts);
    VIA_AV_CHECK(header_rc, "cannot write the header of", part_path_);

    packet_ = ffmpeg::alloc_packet(path_);
    frame_ = ffmpeg::alloc_frame(path_);
    frame_->format = enc->pix_fmt;
    frame_->width = enc->width;
    frame_->height = enc->height;
    // The frame's own description too: ProRes writes the frame's into each frame header.
    frame_->color_primaries = enc->color_primaries;
    frame_->color_trc = enc->color_trc;
    frame_->colorspace = enc->colorspace;
    frame_->color_range = enc->color_range;
    VIA_AV_CHECK(av_frame_get_buffer(frame_.get(), 0), "cannot allocate a frame for", path_);
  }

  // libx265 in constant quality, quiet (it prints to stderr itself), and with
  // one thread unless asked for more, so a segment's bitstream does not depend on the machine.
  void set_x265_options(AVCodecContext* enc) {
    VIA_AV_CHECK(av_opt_set(enc->priv_data, "preset", options_.preset.c_str(), 0),
                 "cannot set preset '" + options_.preset + "' for", path_);
    VIA_AV_CHECK(av_opt_set_double(enc->priv_data, "crf", options_.crf, 0), "cannot set the CRF for", path_);
    const std::string params =
        std::string("log-level=error") + (options_.threads == 1 ? ":pools=none:frame-threads=1" : "");
    VIA_AV_CHECK(av_opt_set(enc->priv_data, "x265-params", params.c_str(), 0), "cannot set x265's options for", path_);
    // hvc1: the parameter sets in the sample description, as Apple's players need.
    if (ffmpeg::is_mov_family(out_->oformat)) enc->codec_tag = MKTAG('h', 'v', 'c', '1');
  }

  // libvpx-vp9 in constant quality (bit rate 0), one thread and no row
  // multithreading, so a segment's bitstream does not depend on the machine.
  void set_vp9_options(AVCodecContext* enc) {
    enc->bit_rate = 0;
    static const std::pair<const char*, int> kSpeed[] = {
        {"placebo", 0}, {"veryslow", 0}, {"slower", 1}, {"slow", 2},      {"medium", 3},
        {"fast", 4},    {"faster", 5},   {"veryfast", 5}, {"superfast", 5}, {"ultrafast", 5}};
    int speed = 3;
    for (const auto& [name, value] : kSpeed)
      if (options_.preset == name) speed = value;
    VIA_AV_CHECK(av_opt_set_int(enc->priv_data, "crf", options_.crf, 0), "cannot set the CRF for", path_);
    VIA_AV_CHECK(av_opt_set(enc->priv_data, "deadline", "good", 0), "cannot set libvpx's deadline for", path_);
    VIA_AV_CHECK(av_opt_set_int(enc->priv_data, "cpu-used", speed, 0), "cannot set libvpx's speed for", path_);
    VIA_AV_CHECK(av_opt_set_int(enc->priv_data, "row-mt", 0, 0), "cannot set libvpx's threading for", path_);
  }

  // Moves every packet the encoder has ready into the file.
  void drain() {
    for (;;) {
      const int rc = avcodec_receive_packet(encoder_.get(), packet_.get());
      if (rc == AVERROR(EAGAIN) || rc == AVERROR_EOF) return;
      if (rc < 0) ffmpeg::throw_av_error(rc, "cannot encode a frame into", part_path_);
      ffmpeg::PacketUnref unref(packet_.get());
      if (!options_.times.empty()) {  // until the next frame's time: the muxer keeps it for the last frame
        const FrameTimes& t = options_.times;
        const auto at = std::lower_bound(t.pts.begin(), t.pts.end(), packet_->pts);
        if (at != t.pts.end() && *at == packet_->pts) packet_->duration = t.duration(at - t.pts.begin());
      }
      if (packet_->duration <= 0) packet_->duration = 1;  // one frame, in encoder ticks
      av_packet_rescale_ts(packet_.get(), encoder_->time_base, stream_->time_base);
      packet_->stream_index = stream_->index;
      VIA_AV_CHECK(av_interleaved_write_frame(out_.get(), packet_.get()), "cannot write", part_path_);
    }
  }

  static constexpr size_t kReadSlack = 64;
  std::vector<uint8_t> padded_;  // the frame being converted, plus zeroed slack

  void close_and_remove() noexcept {
    encoder_.reset();
    out_.reset();
    std::error_code ec;
    std::filesystem::remove(part_path_, ec);
  }

  std::string path_;
  std::string part_path_;
  Size size_;
  Size encoded_;
  EncodeOptions options_;
  ffmpeg::OutputFormatPtr out_;
  ffmpeg::CodecContextPtr encoder_;
  AVStream* stream_ = nullptr;  // owned by out_
  ffmpeg::PacketPtr packet_;
  ffmpeg::FramePtr frame_;
  ffmpeg::Scaler scaler_;
  AVPixelFormat pixel_format_ = AV_PIX_FMT_YUV420P;
  int64_t written_ = 0;
  bool finished_ = false;
};

VideoWriter::VideoWriter(const std::string& path, Size size, Rational frame_rate, EncodeOptions options)
    : impl_(std::make_unique<Impl>(path, size, frame_rate, std::move(options))) {}
VideoWriter::~VideoWriter() = default;
VideoWriter::VideoWriter(VideoWriter&&) noexcept = default;
VideoWriter& VideoWriter::operator=(VideoWriter&&) noexcept = default;

void VideoWriter::write(const RgbImage& image) { impl_->write(image); }
void VideoWriter::write(const Rgb48Image& image) { impl_->write(image); }
void VideoWriter::finish() { impl_->finish(); }
const std::string& VideoWriter::path() const { return impl_->path(); }
Size VideoWriter::frame_size() const { return impl_->frame_size(); }
Size VideoWriter::encoded_size() const { return impl_->encoded_size(); }
int64_t VideoWriter::frames_written() const { return impl_->frames_written(); }

}  // namespace via::io
