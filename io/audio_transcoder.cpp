#include "io/audio_transcoder.h"

extern "C" {
#include <libavutil/audio_fifo.h>
#include <libavutil/channel_layout.h>
#include <libswresample/swresample.h>
}

#include <algorithm>
#include <vector>

namespace via::io::ffmpeg {

void SwrDeleter::operator()(SwrContext* ctx) const { swr_free(&ctx); }
void AudioFifoDeleter::operator()(AVAudioFifo* fifo) const { av_audio_fifo_free(fifo); }

namespace {

// A layout with channel positions: PCM in some containers says only how many.
AVChannelLayout positioned(const AVChannelLayout& layout) {
  AVChannelLayout out{};
  if (layout.order == AV_CHANNEL_ORDER_UNSPEC || layout.order == AV_CHANNEL_ORDER_CUSTOM)
    av_channel_layout_default(&out, layout.nb_channels);
  else
    av_channel_layout_copy(&out, &layout);
  return out;
}

// The source's rate when the encoder takes it, else the lowest it takes above
// (Opus: 44.1 kHz -> 48 kHz), else its highest.
int encoder_rate(const AVCodec* codec, int rate) {
  if (codec->supported_samplerates == nullptr) return rate;
  int above = 0, highest = 0;
  for (const int* r = codec->supported_samplerates; *r != 0; ++r) {
    if (*r == rate) return rate;
    if (*r > rate && (above == 0 || *r < above)) above = *r;
    highest = std::max(highest, *r);
  }
  return above != 0 ? above : highest;
}

}  // namespace

AudioTranscoder::AudioTranscoder(const AVStream* in, const std::string& encoder, int64_t end, bool global_header,
                                 std::string path)
    : path_(std::move(path)), in_tb_(in->time_base), end_(end) {
  const AVCodec* decoder = avcodec_find_decoder(in->codecpar->codec_id);
  if (decoder == nullptr)
    throw VideoError(std::string("no decoder for the ") + avcodec_get_name(in->codecpar->codec_id) + " audio of '" +
                         path_ + "'",
                     path_);
  dec_.reset(avcodec_alloc_context3(decoder));
  if (!dec_) throw_av_error(AVERROR(ENOMEM), "cannot decode the audio of", path_);
  VIA_AV_CHECK(avcodec_parameters_to_context(dec_.get(), in->codecpar), "cannot decode the audio of", path_);
  dec_->pkt_timebase = in->time_base;
  VIA_AV_CHECK(avcodec_open2(dec_.get(), decoder, nullptr), "cannot open the audio decoder for", path_);

  const AVCodec* codec = avcodec_find_encoder_by_name(encoder.c_str());
  if (codec == nullptr) throw VideoError("this FFmpeg has no " + encoder + " encoder", path_);
  enc_.reset(avcodec_alloc_context3(codec));
  if (!enc_) throw_av_error(AVERROR(ENOMEM), "cannot allocate an audio encoder for", path_);
  AVCodecContext* enc = enc_.get();
  enc->sample_rate = encoder_rate(codec, in->codecpar->sample_rate);
  enc->sample_fmt = codec->sample_fmts != nullptr ? codec->sample_fmts[0] : AV_SAMPLE_FMT_FLTP;
  AVChannelLayout layout = positioned(in->codecpar->ch_layout);
  if (codec->ch_layouts != nullptr) {
    bool taken = false;
    for (const AVChannelLayout* l = codec->ch_layouts; l->nb_channels != 0; ++l)
      taken = taken || av_channel_layout_compare(l, &layout) == 0;
    if (!taken) {  // e.g. a layout AAC has no mapping for: its default of that many channels
      const int n = layout.nb_channels;
      av_channel_layout_uninit(&layout);
      av_channel_layout_default(&layout, n);
    }
  }
  const int copied = av_channel_layout_copy(&enc->ch_layout, &layout);
  av_channel_layout_uninit(&layout);
  VIA_AV_CHECK(copied, "cannot set up the audio encoder for", path_);
  enc->bit_rate = 64000LL * std::max(1, enc->ch_layout.nb_channels);  // transparent for AAC and Opus
  enc->time_base = AVRational{1, enc->sample_rate};
  if (global_header) enc->flags |= AV_CODEC_FLAG_GLOBAL_HEADER;
  VIA_AV_CHECK(avcodec_open2(enc, codec, nullptr), "cannot open the " + encoder + " encoder for the audio of", path_);

  fifo_.reset(av_audio_fifo_alloc(enc->sample_fmt, enc->ch_layout.nb_channels, 4096));
  if (!fifo_) throw_av_error(AVERROR(ENOMEM), "cannot re-encode the audio of", path_);
  decoded_ = alloc_frame(path_);
  frame_ = alloc_frame(path_);
}

AudioTranscoder::~AudioTranscoder() = default;

void AudioTranscoder::send(const AVPacket* packet) {
  int rc = avcodec_send_packet(dec_.get(), packet);
  if (rc == AVERROR_INVALIDDATA) return;  // a damaged packet: its samples are lost, the rest plays
  VIA_AV_CHECK(rc, "cannot decode the audio of", path_);
  for (;;) {
    rc = avcodec_receive_frame(dec_.get(), decoded_.get());
    if (rc == AVERROR(EAGAIN) || rc == AVERROR_EOF) return;
    VIA_AV_CHECK(rc, "cannot decode the audio of", path_);
    take(decoded_.get());
    av_frame_unref(decoded_.get());
  }
}

void AudioTranscoder::take(const AVFrame* frame) {
  const int rate = frame->sample_rate;
  const AVRational samples{1, rate};
  const int64_t pts = frame->best_effort_timestamp != AV_NOPTS_VALUE ? frame->best_effort_timestamp : frame->pts;
  // Without a timestamp a frame follows the one before.
  const int64_t start = pts != AV_NOPTS_VALUE ? av_rescale_q(pts, in_tb_, samples) : expected_;
  expected_ = start + frame->nb_samples;
  const int64_t skip = std::max<int64_t>(0, -start);
  const int64_t stop = std::min<int64_t>(frame->nb_samples, av_rescale_q(end_, in_tb_, samples) - start);
  if (stop <= skip) return;

  if (!swr_) {
    AVChannelLayout in_layout = positioned(frame->ch_layout);
    SwrContext* raw = nullptr;
    const int rc = swr_alloc_set_opts2(&raw, &enc_->ch_layout, enc_->sample_fmt, enc_->sample_rate, &in_layout,
                                       static_cast<AVSampleFormat>(frame->format), rate, 0, nullptr);
    av_channel_layout_uninit(&in_layout);
    swr_.reset(raw);
    VIA_AV_CHECK(rc, "cannot convert the audio of", path_);
    VIA_AV_CHECK(swr_init(swr_.get()), "cannot convert the audio of", path_);
    in_rate_ = rate;
    // The first sample kept is where the output's audio starts.
    next_pts_ = av_rescale_q(start + skip, samples, enc_->time_base);
  }
  if (rate != in_rate_) throw VideoError("the audio of '" + path_ + "' changes its sample rate", path_);

  const auto fmt = static_cast<AVSampleFormat>(frame->format);
  const int channels = frame->ch_layout.nb_channels;
  const bool planar = av_sample_fmt_is_planar(fmt);
  const size_t offset = static_cast<size_t>(skip) * av_get_bytes_per_sample(fmt) * (planar ? 1 : channels);
  std::vector<const uint8_t*> in(planar ? channels : 1);
  for (size_t p = 0; p < in.size(); ++p) in[p] = frame->extended_data[p] + offset;
  convert(in.data(), static_cast<int>(stop - skip));
  encode_fifo(false);
}

void AudioTranscoder::convert(const uint8_t** in, int count) {
  const int capacity = swr_get_out_samples(swr_.get(), count);
  if (capacity <= 0) return;
  const int channels = enc_->ch_layout.nb_channels;
  const bool planar = av_sample_fmt_is_planar(enc_->sample_fmt);
  const size_t bytes = static_cast<size_t>(capacity) * av_get_bytes_per_sample(enc_->sample_fmt) * (planar ? 1 : channels);
  std::vector<std::vector<uint8_t>> buffers(planar ? channels : 1, std::vector<uint8_t>(bytes));
  std::vector<uint8_t*> out;
  for (auto& b : buffers) out.push_back(b.data());
  const int got = swr_convert(swr_.get(), out.data(), capacity, in, count);
  VIA_AV_CHECK(got, "cannot convert the audio of", path_);
  if (got > 0 && av_audio_fifo_write(fifo_.get(), reinterpret_cast<void**>(out.data()), got) < got)
    throw_av_error(AVERROR(ENOMEM), "cannot re-encode the audio of", path_);
}

void AudioTranscoder::encode_fifo(bool flush) {
  AVCodecContext* enc = enc_.get();
  const int size = enc->frame_size > 0 ? enc->frame_size : 1024;
  // An encoder that takes only whole frames gets the last one padded with silence.
  const bool whole = !(codec_caps() & (AV_CODEC_CAP_SMALL_LAST_FRAME | AV_CODEC_CAP_VARIABLE_FRAME_SIZE));
  for (int have = av_audio_fifo_size(fifo_.get()); have >= size || (flush && have > 0);
       have = av_audio_fifo_size(fifo_.get())) {
    const int n = std::min(have, size);
    av_frame_unref(frame_.get());
    frame_->nb_samples = whole ? size : n;
    frame_->format = enc->sample_fmt;
    frame_->sample_rate = enc->sample_rate;
    VIA_AV_CHECK(av_channel_layout_copy(&frame_->ch_layout, &enc->ch_layout), "cannot re-encode the audio of", path_);
    VIA_AV_CHECK(av_frame_get_buffer(frame_.get(), 0), "cannot re-encode the audio of", path_);
    av_samples_set_silence(frame_->extended_data, 0, frame_->nb_samples, enc->ch_layout.nb_channels, enc->sample_fmt);
    if (av_audio_fifo_read(fifo_.get(), reinterpret_cast<void**>(frame_->extended_data), n) < n)
      throw_av_error(AVERROR_BUG, "cannot re-encode the audio of", path_);
    frame_->pts = next_pts_;
    next_pts_ += n;
    VIA_AV_CHECK(avcodec_send_frame(enc, frame_.get()), "cannot encode the audio of", path_);
    drain_encoder();
  }
}

int AudioTranscoder::codec_caps() const { return enc_->codec->capabilities; }

void AudioTranscoder::drain_encoder() {
  for (;;) {
    PacketPtr packet = alloc_packet(path_);
    const int rc = avcodec_receive_packet(enc_.get(), packet.get());
    if (rc == AVERROR(EAGAIN) || rc == AVERROR_EOF) return;
    VIA_AV_CHECK(rc, "cannot encode the audio of", path_);
    ready_.push_back(std::move(packet));
  }
}

void AudioTranscoder::finish() {
  if (finished_) return;
  finished_ = true;
  send(nullptr);
  if (swr_) {
    convert(nullptr, 0);  // what the resampler still holds
    encode_fifo(true);
  }
  VIA_AV_CHECK(avcodec_send_frame(enc_.get(), nullptr), "cannot finish encoding the audio of", path_);
  drain_encoder();
}

bool AudioTranscoder::receive(PacketPtr* out) {
  if (ready_.empty()) return false;
  *out = std::move(ready_.front());
  ready_.pop_front();
  return true;
}

}  // namespace via::io::ffmpeg
