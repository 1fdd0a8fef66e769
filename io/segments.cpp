#include "io/segments.h"

#include <algorithm>
#include <climits>
#include <cstring>
#include <deque>
#include <filesystem>
#include <memory>
#include <system_error>

#include "io/audio_transcoder.h"
#include "io/ffmpeg_common.h"

namespace via::io {
namespace {

struct CodecParametersDeleter {
  void operator()(AVCodecParameters* par) const { avcodec_parameters_free(&par); }
};
using CodecParametersPtr = std::unique_ptr<AVCodecParameters, CodecParametersDeleter>;

std::string seconds_text(int64_t ts, AVRational tb) {
  char text[32];
  std::snprintf(text, sizeof(text), "%.3f s", ts * av_q2d(tb));
  return text;
}

int only_video_stream(AVFormatContext* fmt, const std::string& path) {
  const int index = av_find_best_stream(fmt, AVMEDIA_TYPE_VIDEO, -1, -1, nullptr, 0);
  if (index < 0) throw VideoError("no video stream in segment '" + path + "'", path, index);
  return index;
}

// What joining needs to know of one segment, from demuxing it.
struct SegmentScan {
  std::string path;
  AVRational time_base{0, 1};
  CodecParametersPtr codecpar;
  int64_t frames = 0;
  int64_t start = 0;         // lowest pts
  int64_t end = 0;           // highest pts + that packet's duration
  std::vector<int64_t> pts;  // of every video packet, in decode (file) order
};

SegmentScan scan_segment(const std::string& path) {
  ffmpeg::InputFormatPtr fmt = ffmpeg::open_input(path);
  const int vi = only_video_stream(fmt.get(), path);
  const AVStream* stream = fmt->streams[vi];
  SegmentScan scan;
  scan.path = path;
  scan.time_base = stream->time_base;
  scan.codecpar.reset(avcodec_parameters_alloc());
  if (!scan.codecpar) ffmpeg::throw_av_error(AVERROR(ENOMEM), "cannot read", path);
  VIA_AV_CHECK(avcodec_parameters_copy(scan.codecpar.get(), stream->codecpar), "cannot read", path);
  ffmpeg::PacketPtr packet = ffmpeg::alloc_packet(path);
  for (;;) {
    const int rc = av_read_frame(fmt.get(), packet.get());
    if (rc == AVERROR_EOF) break;
    if (rc < 0) ffmpeg::throw_av_error(rc, "cannot read segment", path);
    ffmpeg::PacketUnref unref(packet.get());
    if (packet->stream_index != vi) continue;
    if (packet->pts == AV_NOPTS_VALUE) throw VideoError("segment '" + path + "' has a frame without a timestamp", path);
    const int64_t end = packet->pts + std::max<int64_t>(packet->duration, 0);
    if (scan.frames == 0 || packet->pts < scan.start) scan.start = packet->pts;
    if (scan.frames == 0 || end > scan.end) scan.end = end;
    scan.pts.push_back(packet->pts);
    ++scan.frames;
  }
  if (scan.frames == 0) throw VideoError("segment '" + path + "' has no frames", path);
  return scan;
}

// The declared fields of `color` into `par`.
void set_color(AVCodecParameters* par, const ColorDescription& color, const std::string& output) {
  const ffmpeg::AvColor c = ffmpeg::to_av(color, output);
  if (!color.primaries.empty()) par->color_primaries = c.primaries;
  if (!color.transfer.empty()) par->color_trc = c.transfer;
  if (!color.matrix.empty()) par->color_space = c.matrix;
  if (!color.range.empty()) par->color_range = c.range;
}

// Throws unless `b` can follow `a` in one stream-copied video.
void check_same_encoding(const SegmentScan& a, const SegmentScan& b) {
  const AVCodecParameters* pa = a.codecpar.get();
  const AVCodecParameters* pb = b.codecpar.get();
  std::string difference;
  if (pa->codec_id != pb->codec_id) {
    difference = std::string("codec ") + avcodec_get_name(pb->codec_id) + " vs " + avcodec_get_name(pa->codec_id);
  } else if (pa->width != pb->width || pa->height != pb->height) {
    difference = "size " + std::to_string(pb->width) + "x" + std::to_string(pb->height) + " vs " +
                 std::to_string(pa->width) + "x" + std::to_string(pa->height);
  } else if (av_cmp_q(a.time_base, b.time_base) != 0) {
    difference = "time base " + std::to_string(b.time_base.num) + "/" + std::to_string(b.time_base.den) + " vs " +
                 std::to_string(a.time_base.num) + "/" + std::to_string(a.time_base.den);
  } else if (pa->extradata_size != pb->extradata_size ||
             (pa->extradata_size > 0 && std::memcmp(pa->extradata, pb->extradata, pa->extradata_size) != 0)) {
    difference = "codec headers (encoder settings)";
  }
  if (!difference.empty()) {
    throw VideoError("segment '" + b.path + "' is encoded differently from '" + a.path + "' (" + difference +
                         "); segments of one output must share one encoding",
                     b.path);
  }
}

// The joined video's timestamps, one per packet in decode (file) order, in the
// segments' common time base, and the time its last frame ends.
struct Timeline {
  std::vector<int64_t> pts;
  std::vector<int64_t> duration;  // 0: keep the packet's own
  int64_t end = 0;
};

// Without frame times: the segments follow each other from time 0, each
// starting where the one before ends (its packets' pts + duration).
Timeline joined_by_span(const std::vector<SegmentScan>& scans) {
  Timeline t;
  for (const SegmentScan& s : scans) {
    for (int64_t p : s.pts) t.pts.push_back(p - s.start + t.end);
    t.end += s.end - s.start;
  }
  t.duration.assign(t.pts.size(), 0);
  return t;
}

// With frame times: frame i of the output is at times.pts[i] and lasts until
// the next. Each segment's own timestamps must be its frames' times (within a
// tick): MP4 keeps no presentation duration per frame (its sample durations
// are decode-time steps), so a segment's span cannot tell where it ends.
Timeline joined_by_times(const std::vector<SegmentScan>& scans, const FrameTimes& times, AVRational tb) {
  const AVRational ttb = ffmpeg::to_av(times.time_base);
  Timeline t;
  int64_t first = 0;  // the current segment's first frame
  for (const SegmentScan& s : scans) {
    if (first + s.frames > times.size()) {
      throw VideoError("the segments hold more frames than the " + std::to_string(times.size()) +
                           " their times are given for (at segment '" + s.path + "')",
                       s.path);
    }
    std::vector<int64_t> sorted = s.pts;
    std::sort(sorted.begin(), sorted.end());
    for (const int64_t p : s.pts) {
      const int64_t k = std::lower_bound(sorted.begin(), sorted.end(), p) - sorted.begin();
      const int64_t frame = first + k;
      const int64_t want = av_rescale_q(times.pts[static_cast<size_t>(frame)], ttb, tb);
      if (std::abs(p - want) > 1) {
        throw VideoError("segment '" + s.path + "' has a frame at " + seconds_text(p, tb) + " where frame " +
                             std::to_string(frame) + " is at " + seconds_text(want, tb) +
                             ": the segments do not follow the frames' times",
                         s.path);
      }
      t.pts.push_back(want);
      t.duration.push_back(av_rescale_q(times.pts[static_cast<size_t>(frame)] + times.duration(frame), ttb, tb) -
                           want);
    }
    first += s.frames;
  }
  if (first != times.size()) {
    throw VideoError("the segments hold " + std::to_string(first) + " frames, their times " +
                         std::to_string(times.size()) + " (last segment '" + scans.back().path + "')",
                     scans.back().path);
  }
  t.end = av_rescale_q(times.end, ttb, tb);
  return t;
}

// Decode timestamps for the joined video, one per packet in decode order.
//
// x264 delays decode timestamps by its B-frame depth, except in segments too
// short to hold B-frames (one or two frames), which start with dts == pts; the
// segments' own dts therefore do not join into a rising sequence. The output's
// dts are derived from the presentation timestamps alone: packet i gets the
// (i - D)-th smallest pts, with D the smallest delay that keeps every dts at or
// below its packet's pts (extrapolated one frame per step below the first).
std::vector<int64_t> joined_dts(const std::vector<int64_t>& pts, const std::string& first_path) {
  std::vector<int64_t> sorted = pts;
  std::sort(sorted.begin(), sorted.end());
  for (size_t i = 1; i < sorted.size(); ++i) {
    if (sorted[i] == sorted[i - 1]) {
      throw VideoError("two frames of the joined segments have the same timestamp (first segment '" + first_path +
                           "')",
                       first_path);
    }
  }
  int64_t delay = 0;
  for (size_t i = 0; i < pts.size(); ++i) {
    const int64_t rank = std::lower_bound(sorted.begin(), sorted.end(), pts[i]) - sorted.begin();
    delay = std::max<int64_t>(delay, static_cast<int64_t>(i) - rank);
  }
  const int64_t step = sorted.size() > 1 ? sorted[1] - sorted[0] : 1;
  std::vector<int64_t> dts(pts.size());
  for (size_t i = 0; i < pts.size(); ++i) {
    const int64_t j = static_cast<int64_t>(i) - delay;
    dts[i] = j >= 0 ? sorted[static_cast<size_t>(j)] : sorted.front() + j * step;
  }
  return dts;
}

// Packets of the segments in order, with the timeline's timestamps and decode
// timestamps from joined_dts().
class SegmentPackets {
 public:
  SegmentPackets(const std::vector<SegmentScan>& scans, const Timeline& timeline)
      : scans_(scans), timeline_(timeline), dts_(joined_dts(timeline.pts, scans.front().path)) {}

  // The next video packet (timestamps in the segments' common time base); false at the end.
  bool next(AVPacket* out) {
    for (;;) {
      if (!fmt_) {
        if (current_ == scans_.size()) return false;
        fmt_ = ffmpeg::open_input(scans_[current_].path);
        stream_ = only_video_stream(fmt_.get(), scans_[current_].path);
      }
      const std::string& path = scans_[current_].path;
      const int rc = av_read_frame(fmt_.get(), out);
      if (rc == AVERROR_EOF) {
        fmt_.reset();
        ++current_;
        continue;
      }
      if (rc < 0) ffmpeg::throw_av_error(rc, "cannot read segment", path);
      if (out->stream_index != stream_) {
        av_packet_unref(out);
        continue;
      }
      if (next_ == dts_.size()) {
        throw VideoError("segment '" + path + "' changed while it was being joined", path);
      }
      out->pts = timeline_.pts[next_];
      if (timeline_.duration[next_] > 0) out->duration = timeline_.duration[next_];
      out->dts = dts_[next_++];
      return true;
    }
  }
  const std::string& current_path() const { return scans_[std::min(current_, scans_.size() - 1)].path; }

 private:
  const std::vector<SegmentScan>& scans_;
  const Timeline& timeline_;
  std::vector<int64_t> dts_;
  size_t next_ = 0;  // index into dts_ and the timeline
  size_t current_ = 0;
  ffmpeg::InputFormatPtr fmt_;
  int stream_ = -1;
};

// Audio packets for the output, in file order, with timestamps moved so that
// output time 0 is the first segment's first frame, and cut at the video's
// end. Copied streams: per stream, the last packet that ends at or before
// time 0 is kept too: codecs overlap frames (AAC decodes its first frame
// against the one before; encoders put a priming frame there), and the
// output's edit list hides it as it hid it in the source. Re-encoded streams:
// their packets go through the stream's AudioTranscoder, which cuts to the
// sample.
class AudioPackets {
 public:
  /// `map`: source stream index -> output stream index (-1: not written);
  /// `transcoders`: per source stream, its re-encoder (null: copied);
  /// `origin` and `end` in `tb`.
  AudioPackets(AVFormatContext* in, std::vector<int> map,
               std::vector<std::unique_ptr<ffmpeg::AudioTranscoder>>* transcoders, int64_t origin, int64_t end,
               AVRational tb, std::string path)
      : in_(in), map_(std::move(map)), transcoders_(transcoders), origin_(origin), end_(end), tb_(tb),
        path_(std::move(path)) {
    preroll_.resize(map_.size());
    started_.assign(map_.size(), false);
    if (in_ != nullptr) packet_ = ffmpeg::alloc_packet(path_);
  }

  /// The next packet into `out`: stream_index the output's, timestamps in `*tb`; false at the end.
  bool next(AVPacket* out, AVRational* tb) {
    for (;;) {
      if (!ready_.empty()) {
        av_packet_move_ref(out, ready_.front().packet.get());
        *tb = ready_.front().tb;
        ready_.pop_front();
        return true;
      }
      if (in_ == nullptr || done_) return false;
      AVPacket* pkt = packet_.get();
      const int rc = av_read_frame(in_, pkt);
      if (rc == AVERROR_EOF) {
        done_ = true;
        for (size_t src = 0; src < map_.size(); ++src)
          if (ffmpeg::AudioTranscoder* t = transcoder(src)) {
            t->finish();
            collect(src);
          }
        continue;
      }
      if (rc < 0) ffmpeg::throw_av_error(rc, "cannot read the audio of", path_);
      ffmpeg::PacketUnref unref(pkt);
      const size_t src = static_cast<size_t>(pkt->stream_index);
      if (src >= map_.size() || map_[src] < 0 || pkt->pts == AV_NOPTS_VALUE) continue;
      const AVRational stream_tb = in_->streams[src]->time_base;
      const int64_t shift = av_rescale_q(origin_, tb_, stream_tb);
      pkt->pts -= shift;
      if (pkt->dts != AV_NOPTS_VALUE) pkt->dts -= shift;
      if (pkt->pts >= av_rescale_q(end_, tb_, stream_tb)) continue;  // after the video's end
      if (ffmpeg::AudioTranscoder* t = transcoder(src)) {
        t->send(pkt);
        collect(src);
        continue;
      }
      if (pkt->pts + std::max<int64_t>(pkt->duration, 0) <= 0) {  // before the first frame
        if (!preroll_[src]) preroll_[src] = ffmpeg::alloc_packet(path_);
        av_packet_unref(preroll_[src].get());
        av_packet_move_ref(preroll_[src].get(), pkt);
        continue;
      }
      if (!started_[src]) {
        started_[src] = true;
        if (preroll_[src] && preroll_[src]->data != nullptr) push(std::move(preroll_[src]), src, stream_tb);
      }
      ffmpeg::PacketPtr copy = ffmpeg::alloc_packet(path_);
      av_packet_move_ref(copy.get(), pkt);
      push(std::move(copy), src, stream_tb);
    }
  }

 private:
  ffmpeg::AudioTranscoder* transcoder(size_t src) const {
    return transcoders_ != nullptr && src < transcoders_->size() ? (*transcoders_)[src].get() : nullptr;
  }
  void push(ffmpeg::PacketPtr packet, size_t src, AVRational tb) {
    packet->stream_index = map_[src];
    ready_.push_back({std::move(packet), tb});
  }
  void collect(size_t src) {
    ffmpeg::AudioTranscoder* t = transcoder(src);
    for (ffmpeg::PacketPtr p; t->receive(&p);) push(std::move(p), src, t->encoder()->time_base);
  }

  struct Ready {
    ffmpeg::PacketPtr packet;
    AVRational tb;
  };
  AVFormatContext* in_;  // not owned; null for no audio
  std::vector<int> map_;
  std::vector<std::unique_ptr<ffmpeg::AudioTranscoder>>* transcoders_;  // not owned
  int64_t origin_;
  int64_t end_;
  AVRational tb_;
  std::string path_;
  ffmpeg::PacketPtr packet_;
  bool done_ = false;
  std::vector<ffmpeg::PacketPtr> preroll_;
  std::vector<bool> started_;
  std::deque<Ready> ready_;
};

}  // namespace

ConcatResult concat_segments(const std::vector<std::string>& segments, const std::string& output,
                             const ConcatOptions& options) {
  if (segments.empty()) throw VideoError("no segments to join into '" + output + "'", output);

  // 1. Scan the segments: frame counts, time spans, encodings; check they tile.
  std::vector<SegmentScan> scans;
  scans.reserve(segments.size());
  int64_t total_frames = 0;
  for (const std::string& path : segments) {
    scans.push_back(scan_segment(path));
    const SegmentScan& s = scans.back();
    if (scans.size() > 1) {
      const SegmentScan& prev = scans[scans.size() - 2];
      check_same_encoding(scans.front(), s);
      const int64_t half_frame = (prev.end - prev.start) / prev.frames / 2;
      if (options.times.empty() && (s.start < prev.end - half_frame || s.start > prev.end + half_frame)) {
        throw VideoError("segment '" + s.path + "' starts at " + seconds_text(s.start, s.time_base) + " but '" +
                             prev.path + "' ends at " + seconds_text(prev.end, prev.time_base) +
                             ": the segments are not contiguous",
                         s.path);
      }
    }
    total_frames += s.frames;
  }
  const SegmentScan& first = scans.front();
  const AVRational video_tb = first.time_base;
  const Timeline timeline =
      options.times.empty() ? joined_by_span(scans) : joined_by_times(scans, options.times, video_tb);
  const int64_t total_span = timeline.end;

  const std::string part = output + ".part";
  std::error_code ignored;
  ConcatResult result;
  try {
    // 2. The output's streams: the segments' video, then the source's audio.
    ffmpeg::OutputFormatPtr out = ffmpeg::open_output(output, part);
    AVStream* video = avformat_new_stream(out.get(), nullptr);
    if (video == nullptr) ffmpeg::throw_av_error(AVERROR(ENOMEM), "cannot add a video stream to", output);
    VIA_AV_CHECK(avcodec_parameters_copy(video->codecpar, first.codecpar.get()), "cannot set up the video of", output);
    video->codecpar->codec_tag = 0;  // let the output's muxer pick its own tag
    // HEVC in MP4/MOV as hvc1 (parameter sets in the sample description), as Apple's players need.
    if (video->codecpar->codec_id == AV_CODEC_ID_HEVC && ffmpeg::is_mov_family(out->oformat))
      video->codecpar->codec_tag = MKTAG('h', 'v', 'c', '1');
    video->time_base = video_tb;
    set_color(video->codecpar, options.color, output);
    // The real average (a variable rate's too): Matroska derives its default
    // frame duration from it.
    av_reduce(&video->avg_frame_rate.num, &video->avg_frame_rate.den, total_frames * video_tb.den,
              total_span * video_tb.num, INT_MAX);

    ffmpeg::InputFormatPtr audio_in;
    std::vector<std::unique_ptr<ffmpeg::AudioTranscoder>> transcoders;  // per source stream; null: copied
    std::vector<int> audio_map;  // source stream index -> output stream index, -1 = not copied
    int64_t audio_origin = 0;    // in video_tb
    if (!options.audio_source.empty()) {
      const std::string& src = options.audio_source;
      audio_in = ffmpeg::open_input(src);
      audio_map.assign(audio_in->nb_streams, -1);
      // Output time 0 is the source's frame `first`: the source's first video
      // timestamp plus the first segment's start.
      const int src_video = av_find_best_stream(audio_in.get(), AVMEDIA_TYPE_VIDEO, -1, -1, nullptr, 0);
      if (src_video >= 0 && audio_in->streams[src_video]->start_time != AV_NOPTS_VALUE) {
        const AVStream* sv = audio_in->streams[src_video];
        audio_origin = av_rescale_q(sv->start_time, sv->time_base, video_tb);
      }
      if (options.times.empty()) audio_origin += first.start;  // with times, output time is source time
      std::vector<ConcatOptions::AudioTrack> tracks = options.audio_tracks;
      if (tracks.empty()) {
        for (unsigned i = 0; i < audio_in->nb_streams; ++i)
          if (audio_in->streams[i]->codecpar->codec_type == AVMEDIA_TYPE_AUDIO) tracks.push_back({static_cast<int>(i), ""});
      }
      transcoders.resize(audio_in->nb_streams);
      for (const ConcatOptions::AudioTrack& track : tracks) {
        const int i = track.source_stream;
        if (i < 0 || i >= static_cast<int>(audio_in->nb_streams) ||
            audio_in->streams[i]->codecpar->codec_type != AVMEDIA_TYPE_AUDIO) {
          throw VideoError("stream " + std::to_string(i) + " of '" + src + "' is not an audio stream", src);
        }
        const AVStream* in = audio_in->streams[i];
        AVStream* st = avformat_new_stream(out.get(), nullptr);
        if (st == nullptr) ffmpeg::throw_av_error(AVERROR(ENOMEM), "cannot add an audio stream to", output);
        if (track.encoder.empty()) {
          if (!ffmpeg::format_can_carry(out->oformat, in->codecpar->codec_id)) {
            throw VideoError(std::string("the ") + avcodec_get_name(in->codecpar->codec_id) + " audio of '" + src +
                                 "' cannot be copied into the " + out->oformat->name + " file '" + output +
                                 "' without re-encoding; write a .mkv or .mov output, or leave out the audio",
                             src);
          }
          VIA_AV_CHECK(avcodec_parameters_copy(st->codecpar, in->codecpar), "cannot set up the audio of", output);
          st->codecpar->codec_tag = 0;
          st->time_base = in->time_base;
        } else {
          const int64_t end = av_rescale_q(total_span, video_tb, in->time_base);
          const bool global_header = (out->oformat->flags & AVFMT_GLOBALHEADER) != 0;
          transcoders[i] = std::make_unique<ffmpeg::AudioTranscoder>(in, track.encoder, end, global_header, src);
          const AVCodecContext* enc = transcoders[i]->encoder();
          VIA_AV_CHECK(avcodec_parameters_from_context(st->codecpar, enc), "cannot set up the audio of", output);
          st->time_base = enc->time_base;
        }
        st->disposition = in->disposition;
        av_dict_copy(&st->metadata, in->metadata, 0);  // language, title
        audio_map[static_cast<size_t>(i)] = st->index;
        ++result.audio_streams;
      }
    }

    AVDictionary* mux_opts = nullptr;  // freed right below; nothing in between can throw
    if (options.faststart && ffmpeg::is_mov_family(out->oformat)) av_dict_set(&mux_opts, "movflags", "+faststart", 0);
    const int header_rc = avformat_write_header(out.get(), &mux_opts);
    av_dict_free(&mux_opts);
    VIA_AV_CHECK(header_rc, "cannot write the header of", part);

    // 3. Copy packets, video and audio interleaved by time.
    SegmentPackets video_packets(scans, timeline);
    ffmpeg::PacketPtr vpkt = ffmpeg::alloc_packet(output);
    ffmpeg::PacketPtr apkt = ffmpeg::alloc_packet(output);
    AudioPackets audio_packets(audio_in.get(), audio_map, &transcoders, audio_origin, total_span, video_tb,
                               options.audio_source);
    AVRational audio_tb{1, 1};
    bool have_video = video_packets.next(vpkt.get());
    bool have_audio = audio_packets.next(apkt.get(), &audio_tb);
    while (have_video || have_audio) {
      const bool take_video =
          have_video &&
          (!have_audio ||
           av_compare_ts(vpkt->dts, video_tb, apkt->dts != AV_NOPTS_VALUE ? apkt->dts : apkt->pts, audio_tb) <= 0);
      if (take_video) {
        vpkt->stream_index = video->index;
        vpkt->pos = -1;
        av_packet_rescale_ts(vpkt.get(), video_tb, video->time_base);
        const int rc = av_interleaved_write_frame(out.get(), vpkt.get());  // takes the packet's data
        if (rc < 0)
          ffmpeg::throw_av_error(rc, "cannot write segment '" + video_packets.current_path() + "' into", part);
        have_video = video_packets.next(vpkt.get());
      } else {
        const AVStream* st = out->streams[apkt->stream_index];
        apkt->pos = -1;
        av_packet_rescale_ts(apkt.get(), audio_tb, st->time_base);
        VIA_AV_CHECK(av_interleaved_write_frame(out.get(), apkt.get()), "cannot write the audio into", part);
        have_audio = audio_packets.next(apkt.get(), &audio_tb);
      }
    }
    VIA_AV_CHECK(av_write_trailer(out.get()), "cannot finish writing", part);
    out.reset();  // closes the file
    std::error_code ec;
    std::filesystem::rename(part, output, ec);
    if (ec) throw VideoError("cannot rename '" + part + "' to '" + output + "': " + ec.message(), output);
  } catch (...) {
    std::filesystem::remove(part, ignored);
    throw;
  }
  result.frames = total_frames;
  result.duration = total_span * av_q2d(video_tb);
  return result;
}

}  // namespace via::io
