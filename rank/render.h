#pragma once
// One render, in one process: test-time editing adaptation, the
// gather of the attention group, every frame edited with the group swapped
// in (and a mask, when given), segments per chunk, and the output muxed with
// the source's audio. The distributed renderer splits the frame loop of this
// same object over ranks.
#include <ATen/core/Tensor.h>

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "adaptation/attention_group.h"
#include "adaptation/gather.h"
#include "io/video_reader.h"
#include "model/pipeline.h"
#include "rank/memory_plan.h"
#include "rank/settings.h"
#include "rank/timings.h"
#include "rank/workdir.h"

namespace via::adapt {
class LoraAdapter;
}  // namespace via::adapt

namespace via::io {
class MaskSource;
}  // namespace via::io

namespace via::rank {

class OutputFrames;

/// Receives one line of progress per event (stage changes, chunks done).
using LogFn = std::function<void(const std::string& line)>;
/// Receives the adaptation's progress as it goes: the stage ("candidates",
/// "fine-tuning", "gather") and a line ("fine-tuning: step 3/100, loss ...")
/// after every denoising or optimizer step; the receiver decides what to show.
using ProgressFn = std::function<void(const std::string& stage, const std::string& line)>;

/// Contract: construct (loads the video's facts and the model), adapt() once
/// (or load_adaptation() with the files another process wrote, or
/// install_adaptation() with tensors broadcast from another rank), then
/// render chunks in any order and on any process: a frame's output is a pure
/// function of (video, frame index, settings, model, adapter, group)
/// (docs/ARCHITECTURE.md §7). Long calls stop at the next denoising step once a stop
/// signal arrived (rank/stop.h: they throw Stopped); what they finished is
/// on disk. Not thread-safe.
class Renderer {
 public:
  /// `cuda_device`: the CUDA device to run on; -1 picks device 0 when CUDA
  /// is available, the CPU otherwise. `ranks_on_node`: the ranks sharing
  /// this node's host memory (for the memory plan). Throws SettingsError,
  /// before anything is computed, when the memory plan does not fit.
  Renderer(RenderSettings settings, std::string workdir, LogFn log = {}, int cuda_device = -1,
           int ranks_on_node = 1);
  ~Renderer();

  const RenderSettings& settings() const { return settings_; }
  const io::VideoInfo& video() const { return video_; }
  const WorkDir& workdir() const { return dir_; }
  /// Where the model runs (and received tensors go).
  c10::Device device() const;
  /// The scheduler every edit runs: --scheduler, or with auto the model's own.
  model::SchedulerKind scheduler() const { return scheduler_; }
  ChunkPlan plan() const { return {video_.frame_count, settings_.chunk_frames}; }
  int64_t num_chunks() const { return plan().chunks(); }
  /// [first, first + count) of chunk `chunk`.
  std::pair<int64_t, int64_t> chunk_frames(int64_t chunk) const { return plan().range(chunk); }
  /// Time spent so far, per stage.
  StageTimes& times() { return times_; }
  /// The memory plan, made (and logged) when the model was loaded.
  const MemoryPlan& memory_plan() const { return plan_; }
  /// Frames per UNet call (--batch-frames, resolved by the plan).
  int64_t batch_frames() const { return plan_.batch_frames; }
  /// The attention group as adapt(), load_adaptation() or the installs left it.
  const adapt::AttentionGroup& group() const { return group_; }
  /// Where adapt() reports its steps (nothing by default).
  void set_progress(ProgressFn progress) { progress_ = std::move(progress); }
  /// The render key every file this renderer writes carries, and every file
  /// it reads must carry (prepare_workdir()'s; the settings hash until set).
  void set_render_key(std::string key) { key_ = std::move(key); }
  /// Where a rank that logs nothing reports a damaged file it moved aside
  /// (the log by default).
  void set_warnings(LogFn warn) { warn_ = std::move(warn); }
  const std::string& render_key() const { return key_; }

  /// Root candidates and choice, tuning set, fine-tuning and gather; writes
  /// the contact sheet, root pair, adapter and attention group to the work
  /// directory.
  void adapt();
  /// Loads the adapter and the group adapt() wrote (another process's).
  void load_adaptation();
  /// The adapter's tensors (LoRA or the fine-tuned UNet's; empty when
  /// fine-tuning is off) and the group's (empty for --attention own), as
  /// adapt() or load_adaptation() left them: for broadcasting to other ranks.
  std::map<std::string, at::Tensor> adapter_tensors() const;
  std::map<std::string, at::Tensor> group_tensors() const { return group_.to_named(); }
  /// Installs tensors another rank's adapter_tensors() / group_tensors() gave.
  void install_adaptation(const std::map<std::string, at::Tensor>& adapter,
                          const std::map<std::string, at::Tensor>& group);
  /// The group in parts, for broadcasting one step at a time: the same list
  /// on every rank (from the settings alone): AttentionGroup::kCrossStep,
  /// then the steps 0..swap_steps-1; empty for --attention own.
  std::vector<int64_t> group_parts() const;
  std::map<std::string, at::Tensor> group_part_tensors(int64_t part) const { return group_.step_named(part); }
  /// Installs one part another rank's group_part_tensors() gave.
  void install_group_part(const std::map<std::string, at::Tensor>& tensors);
  /// Reads and encodes the source frames of `chunk` ahead of time (what a
  /// rank does while rank 0 adapts); render_chunk() uses them.
  void prefetch(int64_t chunk);

  /// The frame's final latents [1, C, h, w] (fp32, CPU).
  at::Tensor frame_latents(int64_t frame);
  /// Several frames' final latents, denoised in one batch (B frames per UNet
  /// call): each equals frame_latents() of its frame.
  std::vector<at::Tensor> frames_latents(const std::vector<int64_t>& frames);
  /// The decoded frame as bytes [H, W, 3] (uint8, CPU).
  at::Tensor decode_frame(const at::Tensor& latents) const;

  /// Renders one chunk: each frame's latents to its own file as it finishes,
  /// then the chunk's segment and latents file (the frame files go; the
  /// latents file records the segment's size and checksum). Frames already
  /// on disk are not redone; a chunk already done is left as is (its segment
  /// is re-encoded from its latents if it is missing or does not match its
  /// checksum). A file that is damaged or made for another render is moved
  /// aside (WorkDir::damaged_dir()) and its work redone. Returns the frames denoised.
  int64_t render_chunk(int64_t chunk);
  /// Concatenates every chunk's segment with the source's audio into the output.
  void assemble();

  /// The source frame, resized to the model size: [1, 3, H, W] in [0, 1].
  at::Tensor source_frame(int64_t frame);
  /// The source frame's latents, scaled like the generated ones (what a
  /// frame's latents are pinned to outside a mask): [1, C, h, w], CPU.
  at::Tensor source_latents(int64_t frame);

 private:
  void log(const std::string& line) const;
  void warn(const std::string& line) const;  // a file moved aside: on every rank
  /// After each denoising step of `count` edits run one after another: the
  /// stop check (a stop in adaptation loses at most the stage in hand) and
  /// the progress ("candidates: candidate 2/4, step 7/20").
  model::StepHook step_progress(const std::string& stage, const std::string& unit, int64_t count) const;
  adapt::SwapSettings swap_settings() const;
  int64_t key_frame_count() const;
  void configure_group();  // the plan's device residency, pinned memory on CUDA
  at::Tensor image_latents(int64_t frame);
  struct RootPairImages {
    at::Tensor source, edit, edit_latent;
  };
  RootPairImages root_pair();  // made, or loaded from an earlier attempt
  void load_adapter();
  /// True when the checkpoint `path` is intact and carries this render's key;
  /// otherwise a file there is moved aside, with one log line naming it and `what`.
  bool usable(const std::string& path, io::Verify level, const std::string& what);
  /// Whether chunk `chunk`'s segment is the one its latents file recorded.
  bool segment_verified(int64_t chunk) const;
  /// The chunk's latents file, recording its segment's size and checksum.
  void write_chunk_file(int64_t chunk, const std::vector<at::Tensor>& latents);
  void write_segment(int64_t chunk, const std::vector<at::Tensor>& latents);
  bool segment_codec_fits(const std::string& segment) const;  // codec, pixel format and size the settings ask for

  RenderSettings settings_;
  WorkDir dir_;
  LogFn log_, warn_;
  ProgressFn progress_;
  io::VideoInfo video_;
  io::Size size_;
  std::unique_ptr<io::VideoReader> reader_;
  std::unique_ptr<model::InstructPix2Pix> model_;
  model::SchedulerKind scheduler_ = model::SchedulerKind::EulerAncestral;  // resolved --scheduler
  model::TextEmbeddings text_;
  std::unique_ptr<adapt::LoraAdapter> lora_;
  adapt::AttentionGroup group_;
  MemoryPlan plan_;
  std::string key_;  // the render key (set_render_key)
  std::unique_ptr<io::MaskSource> mask_;
  std::unique_ptr<OutputFrames> output_frames_;  // --output-size's frames, made with the first segment
  std::map<int64_t, at::Tensor> prefetched_;  // frame -> image latents (unscaled)
  StageTimes times_;
};

}  // namespace via::rank
