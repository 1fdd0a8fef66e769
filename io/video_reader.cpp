#include "io/video_reader.h"

extern "C" {
#include <libavutil/display.h>
#include <libavutil/pixdesc.h>
}

#include <algorithm>
#include <climits>
#include <cmath>
#include <cstdio>
#include <stdexcept>
#include <tuple>
#include <utility>

#include "io/ffmpeg_common.h"

namespace via::io {
namespace {

using ffmpeg::to_rational;

// Where the frames of the video stream are: built by demuxing the stream once.
struct FrameIndex {
  // Presentation timestamps of the frames in display order: pts[i] is frame i.
  // Empty when the stream lacks usable timestamps ("counting mode": frames are
  // numbered in the order the decoder outputs them and seeks decode from the start).
  std::vector<int64_t> pts;
  // Keyframes in display order: their pts, and the timestamp to seek to for each
  // (min of pts and dts, so a seek never lands after the keyframe).
  std::vector<int64_t> key_pts;
  std::vector<int64_t> key_seek;
  int64_t frame_count = 0;
  int64_t last_duration = 0;  // duration of the last frame in display order, time_base units
  bool counting() const { return pts.empty() && frame_count > 0; }
};

int display_rotation(const AVStream* stream) {
  const int32_t* matrix = nullptr;
#if LIBAVCODEC_VERSION_INT >= AV_VERSION_INT(60, 31, 100)
  const AVPacketSideData* sd = av_packet_side_data_get(stream->codecpar->coded_side_data,
                                                       stream->codecpar->nb_coded_side_data, AV_PKT_DATA_DISPLAYMATRIX);
  if (sd != nullptr && sd->size >= 9 * sizeof(int32_t)) matrix = reinterpret_cast<const int32_t*>(sd->data);
#else
#if LIBAVFORMAT_VERSION_MAJOR >= 59
  size_t size = 0;
#else
  int size = 0;
#endif
  const uint8_t* data = av_stream_get_side_data(stream, AV_PKT_DATA_DISPLAYMATRIX, &size);
  if (data != nullptr && static_cast<size_t>(size) >= 9 * sizeof(int32_t))
    matrix = reinterpret_cast<const int32_t*>(data);
#endif
  if (matrix == nullptr) return 0;
  // av_display_rotation_get() gives the counterclockwise angle the matrix applies;
  // showing the frame upright needs its negation, as in the ffmpeg command's autorotate.
  const double ccw = av_display_rotation_get(matrix);
  if (std::isnan(ccw)) return 0;
  const int quarter_turns = static_cast<int>(std::lround(-ccw / 90.0));
  return ((quarter_turns % 4 + 4) % 4) * 90;
}

int channel_count(const AVCodecParameters* par) {
#if LIBAVCODEC_VERSION_INT >= AV_VERSION_INT(59, 24, 100)
  return par->ch_layout.nb_channels;
#else
  return par->channels;
#endif
}

// The declared fields of a stream's colour description; "" for unspecified.
ColorDescription color_of(const AVCodecParameters* par) {
  const auto name = [](const char* n) { return std::string(n != nullptr ? n : ""); };
  ColorDescription c;
  if (par->color_primaries != AVCOL_PRI_UNSPECIFIED) c.primaries = name(av_color_primaries_name(par->color_primaries));
  if (par->color_trc != AVCOL_TRC_UNSPECIFIED) c.transfer = name(av_color_transfer_name(par->color_trc));
  if (par->color_space != AVCOL_SPC_UNSPECIFIED) c.matrix = name(av_color_space_name(par->color_space));
  if (par->color_range != AVCOL_RANGE_UNSPECIFIED) c.range = name(av_color_range_name(par->color_range));
  return c;
}

int find_video_stream(AVFormatContext* fmt, const std::string& path) {
  const int index = av_find_best_stream(fmt, AVMEDIA_TYPE_VIDEO, -1, -1, nullptr, 0);
  if (index < 0) throw VideoError("no video stream in '" + path + "'", path, index);
  if (fmt->streams[index]->disposition & AV_DISPOSITION_ATTACHED_PIC) {
    throw VideoError("no video stream in '" + path + "' (only a cover picture)", path);
  }
  return index;
}

[[noreturn]] void throw_damaged(const std::string& path, const std::string& detail) {
  throw VideoError("truncated or damaged video '" + path + "'" + (detail.empty() ? "" : " (" + detail + ")"), path,
                   AVERROR_INVALIDDATA);
}

// Demuxes the whole file (no decoding) and returns the video stream's frame
// index; `spans` receives each stream's packet time span, [first pts, last end),
// in its time base ({0, 0} for a stream without packets).
FrameIndex scan_frames(AVFormatContext* fmt, int stream_index, const std::string& path,
                       std::vector<std::pair<int64_t, int64_t>>& spans) {
  spans.assign(fmt->nb_streams, {INT64_MAX, INT64_MIN});
  struct Entry {
    int64_t pts, dts, duration;
    bool key;
  };
  std::vector<Entry> entries;
  bool all_pts = true;
  ffmpeg::PacketPtr packet = ffmpeg::alloc_packet(path);
  const uint64_t errors_before = ffmpeg::format_error_count();
  for (;;) {
    const int rc = av_read_frame(fmt, packet.get());
    if (rc == AVERROR_EOF) break;
    if (rc < 0) ffmpeg::throw_av_error(rc, "cannot read the video", path);
    ffmpeg::PacketUnref unref(packet.get());
    // Short reads (a truncated file) come as packets flagged corrupt, or only as
    // a demuxer's error message followed by a normal end of file.
    if (packet->flags & AV_PKT_FLAG_CORRUPT) {
      const AVStream* s = fmt->streams[packet->stream_index];
      char at[64];
      std::snprintf(at, sizeof(at), "%.3f s", packet->dts == AV_NOPTS_VALUE ? 0.0 : packet->dts * av_q2d(s->time_base));
      throw_damaged(path, "stream " + std::to_string(packet->stream_index) + " has an incomplete packet at " + at);
    }
    if (ffmpeg::format_error_count() != errors_before) throw_damaged(path, ffmpeg::last_format_error());
    if (packet->pts != AV_NOPTS_VALUE && packet->stream_index >= 0 &&
        packet->stream_index < static_cast<int>(spans.size())) {
      auto& span = spans[static_cast<size_t>(packet->stream_index)];
      span.first = std::min(span.first, packet->pts);
      span.second = std::max(span.second, packet->pts + std::max<int64_t>(packet->duration, 0));
    }
    if (packet->stream_index != stream_index) continue;
    // Discarded packets (edit-list pre-roll) feed the decoder but are never shown.
    if (packet->flags & AV_PKT_FLAG_DISCARD) continue;
    if (packet->pts == AV_NOPTS_VALUE) all_pts = false;
    entries.push_back({packet->pts, packet->dts, packet->duration, (packet->flags & AV_PKT_FLAG_KEY) != 0});
  }
  if (ffmpeg::format_error_count() != errors_before) throw_damaged(path, ffmpeg::last_format_error());
  for (auto& span : spans) {
    if (span.first > span.second) span = {0, 0};
  }
  FrameIndex index;
  index.frame_count = static_cast<int64_t>(entries.size());
  if (entries.empty()) return index;
  std::stable_sort(entries.begin(), entries.end(), [](const Entry& a, const Entry& b) { return a.pts < b.pts; });
  bool unique = true;
  for (size_t i = 1; i < entries.size(); ++i) unique = unique && entries[i].pts != entries[i - 1].pts;
  index.last_duration = entries.back().duration;
  if (!all_pts || !unique) return index;  // counting mode
  for (const Entry& e : entries) {
    index.pts.push_back(e.pts);
    if (e.key) {
      index.key_pts.push_back(e.pts);
      index.key_seek.push_back(e.dts == AV_NOPTS_VALUE ? e.pts : std::min(e.pts, e.dts));
    }
  }
  // Without a keyframe flag on frame 0, a seek to the start must still be possible.
  if (index.key_pts.empty() || index.key_pts.front() != index.pts.front()) {
    index.key_pts.insert(index.key_pts.begin(), index.pts.front());
    index.key_seek.insert(index.key_seek.begin(), INT64_MIN);
  }
  return index;
}

// Probes an open input: the facts and the frame index of its video stream.
std::pair<VideoInfo, FrameIndex> probe_open(AVFormatContext* fmt, const std::string& path) {
  VideoInfo info;
  info.path = path;
  info.container = fmt->iformat->name;
  info.stream_index = find_video_stream(fmt, path);
  AVStream* stream = fmt->streams[info.stream_index];
  const AVCodecParameters* par = stream->codecpar;
  info.codec = avcodec_get_name(par->codec_id);
  const char* pix = av_get_pix_fmt_name(static_cast<AVPixelFormat>(par->format));
  info.pixel_format = pix != nullptr ? pix : "unknown";
  info.width = par->width;
  info.height = par->height;
  info.color = color_of(par);
  if (info.width <= 0 || info.height <= 0) {
    throw VideoError("video stream of '" + path + "' has no frame size (unsupported or damaged)", path);
  }
  info.rotation = display_rotation(stream);
  AVRational sar = av_guess_sample_aspect_ratio(fmt, stream, nullptr);
  if (sar.num > 0 && sar.den > 0) {
    av_reduce(&sar.num, &sar.den, sar.num, sar.den, INT_MAX);
    info.sample_aspect = to_rational(sar);
  }
  info.time_base = to_rational(stream->time_base);
  info.header_frame_count = stream->nb_frames;
  if (fmt->duration != AV_NOPTS_VALUE && fmt->duration > 0)
    info.container_duration = fmt->duration / double(AV_TIME_BASE);

  for (unsigned i = 0; i < fmt->nb_streams; ++i) {
    const AVStream* s = fmt->streams[i];
    if (s->codecpar->codec_type != AVMEDIA_TYPE_AUDIO) continue;
    AudioStreamInfo audio;
    audio.stream_index = static_cast<int>(i);
    audio.codec = avcodec_get_name(s->codecpar->codec_id);
    audio.sample_rate = s->codecpar->sample_rate;
    audio.channels = channel_count(s->codecpar);
    audio.bit_rate = s->codecpar->bit_rate;
    audio.mp4_compatible = ffmpeg::format_can_carry(av_guess_format("mp4", nullptr, nullptr), s->codecpar->codec_id);
    info.audio.push_back(audio);
  }

  std::vector<std::pair<int64_t, int64_t>> spans;
  FrameIndex index = scan_frames(fmt, info.stream_index, path, spans);
  for (AudioStreamInfo& audio : info.audio) {
    // The container's own duration where it has one (it accounts for encoder
    // priming); otherwise (Matroska) the span of the stream's packets.
    const AVStream* s = fmt->streams[audio.stream_index];
    const auto& span = spans[static_cast<size_t>(audio.stream_index)];
    const int64_t ticks = s->duration != AV_NOPTS_VALUE && s->duration > 0 ? s->duration : span.second - span.first;
    audio.duration = ticks * av_q2d(s->time_base);
  }
  if (index.frame_count == 0) throw VideoError("video stream of '" + path + "' has no frames", path);
  info.frame_count = index.frame_count;

  AVRational rate = av_guess_frame_rate(fmt, stream, nullptr);
  const double tb = av_q2d(stream->time_base);
  bool constant_times = true;
  if (!index.counting()) {
    info.start_pts = index.pts.front();
    info.start_time = info.start_pts * tb;
    FrameTimes& times = info.frame_times;
    times.time_base = info.time_base;
    times.pts.reserve(index.pts.size());
    for (const int64_t p : index.pts) times.pts.push_back(p - info.start_pts);
    const int64_t n = times.size();
    int64_t last = index.last_duration;
    if (last <= 0 && rate.num > 0 && rate.den > 0) last = av_rescale_q(1, av_inv_q(rate), stream->time_base);
    if (last <= 0) last = n > 1 ? times.pts[n - 1] - times.pts[n - 2] : 1;
    times.end = times.pts.back() + last;
    // Where the container states the stream's end (MP4's edit list), it wins:
    // MP4 sample durations are decode-time steps, so with B-frames the last
    // shown frame's packet duration is another frame's.
    if (fmt->duration_estimation_method == AVFMT_DURATION_FROM_STREAM && stream->duration > 0 &&
        stream->duration != AV_NOPTS_VALUE && stream->start_time != AV_NOPTS_VALUE) {
      const int64_t stream_end = stream->start_time + stream->duration - info.start_pts;
      if (stream_end > times.pts.back()) times.end = stream_end;
    }
    info.duration = times.end * tb;
    // No usable rate from the container: derive it from the timestamps.
    if ((rate.num <= 0 || rate.den <= 0) && info.duration > 0) {
      rate = av_d2q(info.frame_count / info.duration, 1000000);
    }
    // Evenly spaced at `rate`, give or take the time base's rounding (29.97 fps
    // in 1/1000 alternates 33 and 34 ticks)?
    const double nominal = rate.num > 0 ? 1.0 / (av_q2d(rate) * tb) : 0.0;  // ticks per frame
    const auto on_grid = [&](int64_t d) { return std::abs(static_cast<double>(d) - nominal) <= 1.0 + 0.005 * nominal; };
    if (n > 1) {
      int64_t shortest = INT64_MAX, longest = 0;
      for (int64_t i = 0; i + 1 < n; ++i) {
        const int64_t d = times.duration(i);
        shortest = std::min(shortest, d);
        longest = std::max(longest, d);
        if (!on_grid(d)) info.variable_frame_rate = true;
      }
      info.min_frame_interval = shortest * tb;
      info.max_frame_interval = longest * tb;
    }
    if (info.variable_frame_rate) {  // the real average: frames over duration
      av_reduce(&rate.num, &rate.den, n * stream->time_base.den, times.end * stream->time_base.num, INT_MAX);
    }
    // An output of an evenly spaced video whose last frame lasts one frame too
    // is written at the exact rate (30000/1001, not the time base's rounding);
    // any other keeps the stream's own times.
    constant_times = !info.variable_frame_rate && on_grid(times.duration(n - 1));
  } else {
    if (stream->start_time != AV_NOPTS_VALUE) {
      info.start_pts = stream->start_time;
      info.start_time = stream->start_time * tb;
    }
    if ((rate.num <= 0 || rate.den <= 0) && info.container_duration > 0) {
      rate = av_d2q(info.frame_count / info.container_duration, 1000000);
    }
    if (rate.num > 0 && rate.den > 0) info.duration = info.frame_count / av_q2d(rate);
  }
  if (rate.num <= 0 || rate.den <= 0) {
    throw VideoError("cannot tell the frame rate of '" + path + "'", path);
  }
  info.frame_rate = to_rational(rate);
  if (constant_times) info.frame_times = FrameTimes::constant(info.frame_rate, info.frame_count);
  if (index.counting() && info.frame_count > 1) {  // no timestamps: evenly spaced at the rate
    info.min_frame_interval = info.max_frame_interval = 1.0 / info.frame_rate.to_double();
  }
  return {std::move(info), std::move(index)};
}

// A frame of `upright` size (stored pixels turned by `rotation`) as shown: the
// stored width, which is upright's height when turned a quarter, scaled by `sar`.
Size display_of(Size upright, int rotation, Rational sar) {
  if (!sar.positive() || sar.num == sar.den) return upright;
  const auto scaled = [&](int stored_width) {
    return static_cast<int>(std::max<int64_t>(1, av_rescale(stored_width, sar.num, sar.den)));
  };
  return rotation % 180 == 0 ? Size{scaled(upright.width), upright.height}
                             : Size{upright.width, scaled(upright.height)};
}

// `image` (an RgbImage or Rgb48Image) turned clockwise by `degrees` (90, 180 or 270).
template <class Image>
Image rotate_clockwise(const Image& image, int degrees) {
  const int w = image.width, h = image.height;
  Image out = degrees == 180 ? Image(w, h) : Image(h, w);
  for (int y = 0; y < h; ++y) {
    for (int x = 0; x < w; ++x) {
      int ox = x, oy = y;
      if (degrees == 90) {
        ox = h - 1 - y;
        oy = x;
      } else if (degrees == 180) {
        ox = w - 1 - x;
        oy = h - 1 - y;
      } else {  // 270
        ox = y;
        oy = w - 1 - x;
      }
      const auto* s = image.pixel(x, y);
      auto* d = out.pixel(ox, oy);
      d[0] = s[0];
      d[1] = s[1];
      d[2] = s[2];
    }
  }
  return out;
}

// The rectangle `r` of `image` as one side of a swscale conversion.
ffmpeg::Image view(RgbImage& image, const Rect& r) {
  return ffmpeg::rgb_image(image.pixel(r.x, r.y), r.width, r.height, image.width * 3);
}
ffmpeg::Image view(Rgb48Image& image, const Rect& r) {
  return ffmpeg::rgb48_image(image.pixel(r.x, r.y), r.width, r.height, image.width * 3);
}

}  // namespace

Size VideoInfo::display_size() const { return display_of(upright_size(), rotation, sample_aspect); }

VideoInfo probe_video(const std::string& path) {
  ffmpeg::InputFormatPtr fmt = ffmpeg::open_input(path);
  return probe_open(fmt.get(), path).first;
}

// The reader's state. Invariant: next_ is the index of the frame next() returns;
// the decoder is positioned at or before it.
class VideoReader::Impl {
 public:
  Impl(const std::string& path, ReaderOptions options) : options_(options), path_(path) {
    if ((options.size.width == 0) != (options.size.height == 0) || options.size.width < 0 || options.size.height < 0) {
      throw std::invalid_argument("reader size " + std::to_string(options.size.width) + "x" +
                                  std::to_string(options.size.height) + " for '" + path +
                                  "': give both sides, or neither");
    }
    {
      ffmpeg::InputFormatPtr probe_fmt = ffmpeg::open_input(path);
      std::tie(info_, index_) = probe_open(probe_fmt.get(), path);
    }
    rotation_ = options_.apply_rotation ? info_.rotation : 0;
    upright_ = rotation_ % 180 == 0 ? Size{info_.width, info_.height} : Size{info_.height, info_.width};
    output_ = options_.size.width > 0 ? options_.size : shown(upright_);
    plan_ = plan_for(upright_);
    open_decoder();
  }

  const VideoInfo& info() const { return info_; }
  Size frame_size() const { return output_; }
  const ResizePlan& plan() const { return plan_; }

  bool next(Frame& out) {
    if (next_ >= info_.frame_count) return false;
    for (;;) {
      if (!receive()) {
        throw VideoError(
            "frame " + std::to_string(next_) + " of '" + path_ + "' could not be decoded (the stream ends early)",
            path_);
      }
      const int64_t index = index_of(frame_.get());
      if (index < 0 || index < next_) continue;  // not shown, or before the frame sought
      if (index > next_) {
        if (check_seek_) {  // the seek landed after the target: decode from the start instead
          reopen();
          continue;
        }
        throw VideoError("frame " + std::to_string(next_) + " of '" + path_ + "' could not be decoded", path_);
      }
      check_seek_ = false;
      out.index = index;
      out.pts = index_.counting() ? info_.start_pts + av_rescale_q(index, av_inv_q(ffmpeg::to_av(info_.frame_rate)),
                                                                   ffmpeg::to_av(info_.time_base))
                                  : index_.pts[static_cast<size_t>(index)];
      out.seconds = index_.counting() ? index / info_.frame_rate.to_double()
                                      : (out.pts - info_.start_pts) * info_.time_base.to_double();
      if (options_.rgb48) {
        out.image = RgbImage();
        convert(frame_.get(), out.image48);
      } else {
        convert(frame_.get(), out.image);
      }
      ++next_;
      return true;
    }
  }

  void seek(int64_t index) {
    if (index < 0 || index > info_.frame_count) {
      throw std::out_of_range("frame " + std::to_string(index) + " is outside '" + path_ + "' (" +
                              std::to_string(info_.frame_count) + " frames)");
    }
    if (index == next_) return;
    if (index_.counting() || index == info_.frame_count) {
      if (index < next_) reopen();
      next_ = index;
      return;
    }
    const auto key_after = std::upper_bound(index_.key_pts.begin(), index_.key_pts.end(), index_.pts[index]);
    const size_t key = static_cast<size_t>(key_after - index_.key_pts.begin()) - 1;
    // Decoding forward from the current position passes no keyframe we could
    // jump to: keep going. (next_ < frame_count here, since index > next_.)
    if (index > next_ && index_.key_pts[key] <= index_.pts[next_]) {
      next_ = index;
      return;
    }
    const AVStream* stream = fmt_->streams[info_.stream_index];
    const int rc = av_seek_frame(fmt_.get(), stream->index, index_.key_seek[key], AVSEEK_FLAG_BACKWARD);
    if (rc < 0) {
      reopen();  // not seekable: decode from the start
    } else {
      avcodec_flush_buffers(decoder_.get());
      flushing_ = false;
      check_seek_ = true;
    }
    next_ = index;
  }

  std::vector<Frame> read_range(int64_t first, int64_t count) {
    if (first < 0 || count < 0 || first + count > info_.frame_count) {
      throw std::out_of_range("frames [" + std::to_string(first) + ", " + std::to_string(first + count) +
                              ") are outside '" + path_ + "' (" + std::to_string(info_.frame_count) + " frames)");
    }
    seek(first);
    std::vector<Frame> frames(static_cast<size_t>(count));
    for (Frame& f : frames) next(f);
    return frames;
  }

 private:
  void open_decoder() {
    fmt_ = ffmpeg::open_input(path_);
    const AVStream* stream = fmt_->streams[info_.stream_index];
    const AVCodec* codec = avcodec_find_decoder(stream->codecpar->codec_id);
    if (codec == nullptr) {
      throw VideoError("no decoder for the " + info_.codec + " video of '" + path_ + "'", path_);
    }
    decoder_.reset(avcodec_alloc_context3(codec));
    if (!decoder_) ffmpeg::throw_av_error(AVERROR(ENOMEM), "cannot allocate a decoder for", path_);
    VIA_AV_CHECK(avcodec_parameters_to_context(decoder_.get(), stream->codecpar), "cannot set up the decoder of",
                 path_);
    decoder_->pkt_timebase = stream->time_base;
    decoder_->thread_count = options_.threads;
    VIA_AV_CHECK(avcodec_open2(decoder_.get(), codec, nullptr), "cannot open the decoder of", path_);
    packet_ = ffmpeg::alloc_packet(path_);
    frame_ = ffmpeg::alloc_frame(path_);
    scratch_ = ffmpeg::alloc_frame(path_);
    flushing_ = false;
    decoded_ = 0;
  }

  // `upright` (stored pixels turned by rotation_) as displayed: the stored
  // width scaled by the sample aspect ratio.
  Size shown(Size upright) const { return display_of(upright, rotation_, info_.sample_aspect); }
  // How a frame of `upright` size becomes output_: the aspect policy on its
  // displayed shape.
  ResizePlan plan_for(Size upright) const { return plan_resize(upright, shown(upright), output_, options_.resize); }

  // From the very start: for streams that cannot seek, and a seek that overshot.
  void reopen() {
    decoder_.reset();
    fmt_.reset();
    open_decoder();
    check_seek_ = false;
  }

  // The next frame out of the decoder into frame_; false when the stream is exhausted.
  bool receive() {
    for (;;) {
      const int rc = avcodec_receive_frame(decoder_.get(), frame_.get());
      if (rc == 0) {
        ++decoded_;
        return true;
      }
      if (rc == AVERROR_EOF) return false;
      if (rc != AVERROR(EAGAIN)) ffmpeg::throw_av_error(rc, "cannot decode the video", path_);
      if (flushing_) return false;
      const int read = av_read_frame(fmt_.get(), packet_.get());
      if (read == AVERROR_EOF) {
        VIA_AV_CHECK(avcodec_send_packet(decoder_.get(), nullptr), "cannot decode the video", path_);
        flushing_ = true;
        continue;
      }
      if (read < 0) ffmpeg::throw_av_error(read, "cannot read the video", path_);
      ffmpeg::PacketUnref unref(packet_.get());
      if (packet_->stream_index != info_.stream_index) continue;
      VIA_AV_CHECK(avcodec_send_packet(decoder_.get(), packet_.get()), "cannot decode the video", path_);
    }
  }

  // The display index of a decoded frame, or -1 when it is not one of the video's frames.
  int64_t index_of(const AVFrame* frame) const {
    if (index_.counting()) return decoded_ - 1;
    const int64_t pts = frame->best_effort_timestamp;
    const auto it = std::lower_bound(index_.pts.begin(), index_.pts.end(), pts);
    if (it == index_.pts.end() || *it != pts) return -1;
    return it - index_.pts.begin();
  }

  // Decoded frame -> upright, resized RGB24 (RgbImage) or RGB48 (Rgb48Image).
  template <class Image>
  void convert(const AVFrame* frame, Image& out) {
    const Size stored{frame->width, frame->height};
    const Size upright = rotation_ % 180 == 0 ? stored : Size{stored.height, stored.width};
    // A stream may change size midway; its frames still come out at output_.
    const ResizePlan plan = upright == upright_ ? plan_ : plan_for(upright);
    out = Image(output_.width, output_.height);

    ffmpeg::Image src;
    src.format = static_cast<AVPixelFormat>(frame->format);
    src.colorspace = frame->colorspace;
    src.full_range = frame->color_range == AVCOL_RANGE_JPEG;

    if (rotation_ == 0) {
      // One conversion: crop the source rectangle, scale into the target rectangle.
      VIA_AV_CHECK(av_frame_ref(scratch_.get(), frame), "cannot convert a frame of", path_);
      scratch_->crop_left = plan.source.x;
      scratch_->crop_top = plan.source.y;
      scratch_->crop_right = frame->width - plan.source.x - plan.source.width;
      scratch_->crop_bottom = frame->height - plan.source.y - plan.source.height;
      const int rc = av_frame_apply_cropping(scratch_.get(), AV_FRAME_CROP_UNALIGNED);
      if (rc < 0) {
        av_frame_unref(scratch_.get());
        ffmpeg::throw_av_error(rc, "cannot crop a frame of", path_);
      }
      src.width = scratch_->width;
      src.height = scratch_->height;
      std::copy(scratch_->data, scratch_->data + 4, src.data);
      std::copy(scratch_->linesize, scratch_->linesize + 4, src.linesize);
      const Rect& t = plan.target;
      try {
        scaler_.convert(src, view(out, t), path_);
      } catch (...) {
        av_frame_unref(scratch_.get());
        throw;
      }
      av_frame_unref(scratch_.get());
      return;
    }
    // Rotated: convert at the stored size, turn upright, then resize.
    Image stored_rgb(stored.width, stored.height);
    src.width = stored.width;
    src.height = stored.height;
    std::copy(frame->data, frame->data + 4, src.data);
    std::copy(frame->linesize, frame->linesize + 4, src.linesize);
    scaler_.convert(src, view(stored_rgb, {0, 0, stored.width, stored.height}), path_);
    Image turned = rotate_clockwise(stored_rgb, rotation_);
    if (plan.identity(upright)) {
      out = std::move(turned);
      return;
    }
    const Rect& s = plan.source;
    const Rect& t = plan.target;
    resize_scaler_.convert(view(turned, s), view(out, t), path_);
  }

  ReaderOptions options_;
  std::string path_;
  VideoInfo info_;
  FrameIndex index_;
  int rotation_ = 0;  // applied rotation, clockwise degrees
  Size upright_;      // stored size turned by rotation_
  Size output_;
  ResizePlan plan_;

  ffmpeg::InputFormatPtr fmt_;
  ffmpeg::CodecContextPtr decoder_;
  ffmpeg::PacketPtr packet_;
  ffmpeg::FramePtr frame_;
  ffmpeg::FramePtr scratch_;  // a cropped reference to frame_'s data
  ffmpeg::Scaler scaler_;
  ffmpeg::Scaler resize_scaler_;
  int64_t next_ = 0;
  int64_t decoded_ = 0;      // frames out of the decoder since it was opened (counting mode)
  bool flushing_ = false;    // end of file reached; the decoder is being drained
  bool check_seek_ = false;  // the first frame after a seek must not be past the target
};

VideoReader::VideoReader(const std::string& path, ReaderOptions options)
    : impl_(std::make_unique<Impl>(path, options)) {}
VideoReader::~VideoReader() = default;
VideoReader::VideoReader(VideoReader&&) noexcept = default;
VideoReader& VideoReader::operator=(VideoReader&&) noexcept = default;

const VideoInfo& VideoReader::info() const { return impl_->info(); }
Size VideoReader::frame_size() const { return impl_->frame_size(); }
const ResizePlan& VideoReader::plan() const { return impl_->plan(); }
bool VideoReader::next(Frame& frame) { return impl_->next(frame); }
void VideoReader::seek(int64_t index) { impl_->seek(index); }
std::vector<Frame> VideoReader::read_range(int64_t first, int64_t count) { return impl_->read_range(first, count); }
Frame VideoReader::read_frame(int64_t index) {
  std::vector<Frame> frames = impl_->read_range(index, 1);
  return std::move(frames.front());
}

}  // namespace via::io
