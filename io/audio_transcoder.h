#pragma once
// Internal to io/: re-encodes one audio stream while segments are joined
// (io/segments.cpp), for audio the output's container cannot hold as it is
// (PCM in MP4, AAC in WebM) or when --audio reencode asks for it.
//
// Packets go in with timestamps already moved to output time (0 = the first
// frame) and come out encoded, timed in 1/sample_rate from that same origin:
// samples before 0 or at and after `end` are cut exactly, so the audio starts
// and ends with the video. The sample rate and channel layout are kept where
// the encoder takes them (Opus always runs at 48 kHz); libswresample converts
// the sample format (and the rate, where needed).
#include <deque>
#include <string>

#include "io/ffmpeg_common.h"

struct SwrContext;
struct AVAudioFifo;

namespace via::io::ffmpeg {

struct SwrDeleter {
  void operator()(SwrContext* ctx) const;
};
struct AudioFifoDeleter {
  void operator()(AVAudioFifo* fifo) const;
};

class AudioTranscoder {
 public:
  /// `in`: the source stream; `encoder`: an FFmpeg encoder name ("aac",
  /// "libopus"); `end`: the video's end, in `in`'s time base after the shift;
  /// `global_header`: the muxer wants codec headers out of band (MP4, Matroska).
  AudioTranscoder(const AVStream* in, const std::string& encoder, int64_t end, bool global_header,
                  std::string path);
  ~AudioTranscoder();
  AudioTranscoder(const AudioTranscoder&) = delete;
  AudioTranscoder& operator=(const AudioTranscoder&) = delete;

  /// The encoder, for the output stream's parameters and time base.
  const AVCodecContext* encoder() const { return enc_.get(); }
  /// Decodes one source packet (timestamps in output time, `in`'s time base).
  void send(const AVPacket* packet);
  /// Flushes the decoder, the resampler and the encoder.
  void finish();
  /// The next encoded packet (time base: encoder()->time_base); false when none is ready.
  bool receive(PacketPtr* out);

 private:
  void take(const AVFrame* frame);  // trims, resamples into the FIFO, encodes whole frames
  void convert(const uint8_t** in, int count);  // into the FIFO; null: flush the resampler
  void encode_fifo(bool flush);                  // flush: the last, partial frame too
  void drain_encoder();
  int codec_caps() const;

  std::string path_;
  AVRational in_tb_;
  int64_t end_;  // in in_tb_
  CodecContextPtr dec_;
  CodecContextPtr enc_;
  std::unique_ptr<SwrContext, SwrDeleter> swr_;
  std::unique_ptr<AVAudioFifo, AudioFifoDeleter> fifo_;
  FramePtr decoded_;
  FramePtr frame_;  // one encoder frame
  int64_t next_pts_ = AV_NOPTS_VALUE;  // of the FIFO's first sample, in the encoder's time base
  int64_t expected_ = 0;               // where the next decoded frame starts, in source samples
  int in_rate_ = 0;
  std::deque<PacketPtr> ready_;
  bool finished_ = false;
};

}  // namespace via::io::ffmpeg
