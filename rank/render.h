#pragma once
// One render, in one process (issue 4): test-time editing adaptation, the
// gather of the attention group, every frame edited with the group swapped
// in (and a mask, when given), segments per chunk, and the output muxed with
// the source's audio. The distributed renderer splits the frame loop of this
// same object over ranks.
#include <ATen/core/Tensor.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "adaptation/attention_group.h"
#include "adaptation/gather.h"
#include "io/video_reader.h"
#include "model/pipeline.h"
#include "rank/settings.h"

namespace via::adapt {
class LoraAdapter;
class MaskSource;
}  // namespace via::adapt

namespace via::rank {

/// Receives one line of progress per event (stage changes, chunks done).
using LogFn = std::function<void(const std::string& line)>;

/// What a render leaves in its work directory (DESIGN.md §7).
struct WorkDir {
  std::string root;
  std::string settings() const { return root + "/settings.json"; }
  std::string contact_sheet() const { return root + "/candidates.png"; }
  std::string root_pair() const { return root + "/root_pair.h5"; }
  std::string adapter() const { return root + "/adapter.h5"; }
  std::string group() const { return root + "/attention_group.h5"; }
  std::string chunk_latents(int64_t chunk) const;
  std::string chunk_segment(int64_t chunk) const;
};

/// Contract: construct (loads the video's facts and the model), adapt() once
/// (or load_adaptation() with the files another process wrote), then render
/// chunks in any order and on any process: a frame's output is a pure
/// function of (video, frame index, settings, model, adapter, group)
/// (DESIGN.md §6). Not thread-safe.
class Renderer {
 public:
  Renderer(RenderSettings settings, std::string workdir, LogFn log = {});
  ~Renderer();

  const RenderSettings& settings() const { return settings_; }
  const io::VideoInfo& video() const { return video_; }
  const WorkDir& workdir() const { return dir_; }
  int64_t num_chunks() const;
  /// [first, first + count) of chunk `chunk`.
  std::pair<int64_t, int64_t> chunk_frames(int64_t chunk) const;

  /// Root candidates and choice, tuning set, fine-tuning and gather; writes
  /// the contact sheet, root pair, adapter and attention group to the work
  /// directory.
  void adapt();
  /// Loads the adapter and the group adapt() wrote (another process's).
  void load_adaptation();

  /// The frame's final latents [1, C, h, w] (fp32, CPU).
  at::Tensor frame_latents(int64_t frame);
  /// The decoded frame as bytes [H, W, 3] (uint8, CPU).
  at::Tensor decode_frame(const at::Tensor& latents) const;

  /// Renders one chunk: its latents checkpoint and its segment.
  void render_chunk(int64_t chunk);
  /// Concatenates every chunk's segment with the source's audio into the output.
  void assemble() const;

  /// The source frame, resized to the model size: [1, 3, H, W] in [0, 1].
  at::Tensor source_frame(int64_t frame);
  /// The source frame's latents, scaled like the generated ones (what a
  /// frame's latents are pinned to outside a mask): [1, C, h, w], CPU.
  at::Tensor source_latents(int64_t frame);

 private:
  void log(const std::string& line) const;
  adapt::SwapSettings swap_settings() const;

  RenderSettings settings_;
  WorkDir dir_;
  LogFn log_;
  io::VideoInfo video_;
  io::Size size_;
  std::unique_ptr<io::VideoReader> reader_;
  std::unique_ptr<model::InstructPix2Pix> model_;
  model::TextEmbeddings text_;
  std::unique_ptr<adapt::LoraAdapter> lora_;
  adapt::AttentionGroup group_;
  std::unique_ptr<adapt::MaskSource> mask_;
};

/// The whole render in this process: adapt, every chunk, assemble.
void render_all(const RenderSettings& settings, const std::string& workdir, const LogFn& log = {});

}  // namespace via::rank
