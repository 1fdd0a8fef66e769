#pragma once
// The memory plan of a render (docs/ARCHITECTURE.md §5): how large the
// attention group is, what each rank holds of it in host and device memory,
// and how many frames one UNet call takes; checked against the memory there
// is before anything is computed, so a render that cannot fit is refused
// with the settings that would.
#include <cstdint>
#include <string>
#include <vector>

#include "rank/settings.h"

namespace via::model {
class UNet2DConditionModelImpl;
}  // namespace via::model

namespace via::rank {

/// "1.5 GiB", "37 bytes": a size for people (the memory and disk plans).
std::string size_text(double bytes);

/// One attention layer the group stores: its tokens per key frame and channels.
struct GroupLayer {
  std::string name;
  bool cross = false;
  int64_t tokens = 0;    ///< per key frame: h*w at the layer's resolution, or the text's tokens
  int64_t channels = 0;  ///< K and V width (heads x head size)
};

/// The attention layers of `unet` for latents of h x w and a text of
/// `text_tokens` tokens, in forward order. The resolution of a layer follows
/// from its block (down_blocks.i at level i, the mid block at the last
/// level, up_blocks.j at level n-1-j); each downsampler is a 3x3 stride-2
/// convolution with the config's padding.
std::vector<GroupLayer> group_layers(const model::UNet2DConditionModelImpl& unet, int64_t latent_h, int64_t latent_w,
                                     int64_t text_tokens);

/// Memory available to one rank, in bytes; < 0 when unknown.
struct MemoryLimits {
  double host = -1, device = -1;
  std::string host_source, device_source;  ///< "--host-memory", "free memory / 2 ranks", ...
  bool device_is_host = true;              ///< the model runs on the CPU
};

/// The plan. Sizes are exact for the group (what AttentionGroup::bytes()
/// will report) and an estimate for a frame's activations.
struct MemoryPlan {
  int64_t key_frames = 0;   ///< G
  int64_t steps = 0;        ///< steps with a stored group (--swap-steps)
  int64_t rows = 0;         ///< guidance branches per frame (3, or 1 unguided)
  int64_t step_bytes = 0;   ///< self-attention entries of one step, G key frames
  int64_t cross_bytes = 0;  ///< cross-attention entries: one key frame's, stored once for every step
  /// What cross-attention would take if it were stored per step and key frame.
  int64_t cross_bytes_per_step_and_frame = 0;
  int64_t frame_bytes = 0;   ///< a frame's activations in one UNet call (estimate)
  int64_t batch_frames = 1;  ///< frames per UNet call (resolved)
  bool whole_on_device = false;  ///< the whole group is kept on the device (else one step at a time)
  MemoryLimits limits;

  int64_t group_bytes() const { return steps * step_bytes + cross_bytes; }
  /// Per rank in host memory: the group, and one step in transit (broadcast, load).
  int64_t host_bytes() const { return group_bytes() + step_bytes; }
  /// Per rank on the device beyond the model's weights: the group's resident
  /// part and the batch's activations (0 on the CPU: the host holds it).
  /// A GPU holds two steps: the one in use and the next, copied while it
  /// computes (AttentionGroup::get_on); the CPU's swap holds one.
  int64_t device_steps() const { return limits.device_is_host || steps < 2 ? 1 : 2; }
  int64_t device_group_bytes() const {
    return whole_on_device ? group_bytes() : device_steps() * step_bytes + cross_bytes;
  }
  int64_t device_bytes() const {
    return limits.device_is_host ? 0 : device_group_bytes() + batch_frames * frame_bytes;
  }
  /// One line: "attention group 11.3 GiB (20 steps x 560 MiB + cross 2 MiB; 4 key frames, 3 rows); per rank:
  /// host 11.8 GiB of 900 GiB (free memory / 4 ranks), device ..."
  std::string summary() const;
  /// "" when it fits, else what does not ("the attention group needs ...").
  std::string problem() const;
};

/// What a plan is made from, apart from the settings: the model's attention
/// layers at the render's size, the video and the memory there is.
struct PlanInputs {
  std::vector<GroupLayer> layers;
  int64_t frame_count = 1;     ///< the video's (key frames are chosen among them)
  int64_t latent_pixels = 0;   ///< latent h x w
  int64_t base_channels = 0;   ///< the UNet's first block width
  int64_t element_size = 4;    ///< bytes per activation value (the model's dtype)
  MemoryLimits limits;
};

/// The plan for `settings`. settings.batch_frames 0 (auto) becomes 1 on the
/// CPU and, on a device, as many frames as fit in the device memory left
/// after the group (1 to 16; 1 when the device's memory is unknown).
MemoryPlan plan_memory(const PlanInputs& in, const RenderSettings& settings);

/// plan_memory(), or SettingsError when the plan does not fit: one line
/// naming what is needed, what there is and the settings that would fit
/// (the largest --swap-steps and --group-size below the current ones,
/// --swap-layers self or cross, each found by planning again).
MemoryPlan checked_memory_plan(const PlanInputs& in, const RenderSettings& settings);

/// The host memory this process may use: MemAvailable of /proc/meminfo
/// shared among the node's ranks; < 0 when unknown.
double available_host_memory(int ranks_on_node);

}  // namespace via::rank
