#pragma once
// Spatiotemporal attention adaptation (docs/ARCHITECTURE.md §5): the attention group and
// the attention controls that gather it and swap it in.
#include <ATen/core/Tensor.h>
#include <c10/core/Device.h>

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "adaptation/modes.h"
#include "model/attention_control.h"

namespace via::adapt {

/// The key frames' keys and values for the attention layers and denoising
/// steps the gather acts on: for one (layer, step), K and V are
/// [rows, tokens of all key frames, channels], one row per guidance branch,
/// key frames concatenated along the token axis in key-frame order.
/// Stored in half precision (the group of a full-size model is large), in
/// host memory; get_on() hands a step's entries to a device one step at a
/// time (see DeviceResidency).
///
/// Cross-attention is stored once per layer, not per step and key frame
/// (step kCrossStep, one key frame's K/V): its keys and values come from the
/// text embedding alone, which every frame and step shares, so every key
/// frame computes the same K/V at every step (bit for bit: same inputs, same
/// weights, same shapes). The controls repeat the stored entry once per key
/// frame, which gives exactly what storing every key frame's copy gave.
/// Swapping it changes a frame's cross-attention only by the rounding of K/V
/// to half precision and the summation order (softmax over G identical
/// copies of each key weighs each copy 1/G); it is kept so outputs stay
/// what they were.
/// Not thread-safe; copies share no storage with the tensors appended.
class AttentionGroup {
 public:
  /// The step under which a cross-attention layer's one entry is kept.
  static constexpr int64_t kCrossStep = -1;

  /// Adds one key frame's K/V ([rows, tokens, channels]) for (layer, step).
  /// Frames must be appended in key-frame order. Copied to host memory.
  void append(const std::string& layer, int64_t step, const at::Tensor& k, const at::Tensor& v);

  bool contains(const std::string& layer, int64_t step) const;
  /// The concatenated K/V of all key frames appended for (layer, step), in
  /// storage precision, in host memory. Throws if absent.
  std::pair<at::Tensor, at::Tensor> get(const std::string& layer, int64_t step) const;
  /// How many key frames were appended for (layer, step) in this object (a
  /// group rebuilt by from_named() counts its concatenated entry as one).
  int64_t frames(const std::string& layer, int64_t step) const;

  /// Entries as named tensors ("<layer>@<step>/k", ".../v"; "<layer>@cross/k"
  /// for kCrossStep), for the checkpoint store and broadcasts; from_named()
  /// is its inverse. step_named() gives one step's entries only.
  std::map<std::string, at::Tensor> to_named() const;
  std::map<std::string, at::Tensor> step_named(int64_t step) const;
  static AttentionGroup from_named(const std::map<std::string, at::Tensor>& named);
  /// Adds named entries (one step's, as step_named() gave them): the group
  /// is installed step by step. An entry already present is replaced.
  void add_named(const std::map<std::string, at::Tensor>& named);
  /// Splits "<layer>@<step>/k" (or "/v"); false for any other name.
  static bool parse_name(const std::string& name, std::string* layer, int64_t* step, bool* is_key);
  /// The steps that have entries, increasing (kCrossStep first when present).
  std::vector<int64_t> steps() const;

  /// The number of key frames G the swap repeats a cross-attention entry for
  /// (set by the gather, or by whoever installs a stored group).
  int64_t key_frames() const { return key_frames_; }
  void set_key_frames(int64_t n) { key_frames_ = n; }
  /// True when there is nothing to swap in: no entries and no key frames.
  bool empty() const { return entries_.empty() && key_frames_ == 0; }

  size_t size() const { return entries_.size(); }
  int64_t bytes() const;
  /// Bytes of one step's entries (kCrossStep: the cross-attention entries).
  int64_t step_bytes(int64_t step) const;
  static constexpr at::ScalarType kStorageType = at::kHalf;

  /// How get_on() keeps entries on a device: one step at a time (the step
  /// in use, the next one while it is prefetched on a CUDA device, and the
  /// cross-attention entries), or all of them once copied.
  enum class DeviceResidency { Step, Whole };
  void set_device_residency(DeviceResidency r) { residency_ = r; }
  DeviceResidency device_residency() const { return residency_; }
  /// Keeps host entries in page-locked memory, so the per-step copies to a
  /// CUDA device do not stall the host (needs a CUDA build; call before
  /// entries are added).
  void set_pinned(bool pinned) { pinned_ = pinned; }
  /// Off: get_on() copies each step when it is needed, as on the CPU (to
  /// measure the prefetch: bench/gpu_check.cpp).
  void set_prefetch(bool prefetch) { prefetch_ = prefetch; }
  /// get() on `device`: with residency Step, the first call for a step
  /// copies that step's entries there (non-blocking from pinned memory) and
  /// drops the previous step's; the cross-attention entries stay.
  /// On a CUDA device with pinned entries (a CUDA build), that first call
  /// also starts copying `next_step`'s entries on a side stream, so the copy
  /// overlaps this step's compute; the device then holds up to two steps.
  /// On the CPU `next_step` is not used.
  std::pair<at::Tensor, at::Tensor> get_on(const std::string& layer, int64_t step, const c10::Device& device,
                                           int64_t next_step = kCrossStep) const;
  /// Bytes get_on() holds on its device now, and at most so far.
  int64_t device_bytes() const { return cache_.bytes; }
  int64_t peak_device_bytes() const { return cache_.peak; }

 private:
  struct Entry {
    std::vector<at::Tensor> k, v;  // per key frame until get() concatenates them
    int64_t frames = 0;
  };
  using Key = std::pair<std::string, int64_t>;
  Entry& find(const std::string& layer, int64_t step) const;
  at::Tensor stored(const at::Tensor& t) const;  // fp16, contiguous, host (pinned when asked)
  mutable std::map<Key, Entry> entries_;  // mutable: get() concatenates lazily
  int64_t key_frames_ = 0;
  DeviceResidency residency_ = DeviceResidency::Step;
  bool pinned_ = false, prefetch_ = true;
  struct Prefetch;  // a step's copy in flight on a side stream (CUDA builds; attention_group.cpp)
  struct DeviceCache {
    c10::Device device = c10::Device(c10::kCPU);
    int64_t step = kCrossStep - 1;  // the step held (none yet)
    std::map<Key, std::pair<at::Tensor, at::Tensor>> entries;
    int64_t bytes = 0, peak = 0;  // prefetched entries included
    std::shared_ptr<Prefetch> next, taken;  // the next step's copy; the current step's, until it is done
  };
  void next_step_on_cuda(int64_t step, int64_t next_step) const;
  mutable DeviceCache cache_;
};

/// Gather (rank 0): the `key_index`-th key frame is edited attending to the
/// K/V of key frames 0..key_index-1 from the group (key frame 0 to its own),
/// optionally plus its own; the K/V it computes itself are appended to the
/// group (a cross-attention layer's once, by key frame 0 at its first step;
/// later key frames get key_index copies of it). Acts on steps < swap_steps
/// of layers in `layers`. The group is read and written in host memory.
class GatherControl : public model::AttentionControl {
 public:
  GatherControl(AttentionGroup& group, int64_t key_index, int64_t swap_steps, LayerSet layers,
                bool include_own = false);
  std::pair<at::Tensor, at::Tensor> keys_values(const model::AttentionSite& site, const at::Tensor& q,
                                                const at::Tensor& k, const at::Tensor& v) override;

 private:
  AttentionGroup& group_;
  int64_t key_index_, swap_steps_;
  LayerSet layers_;
  bool include_own_;
};

/// Swap (every frame, key frames included): attend with the frame's own
/// queries to the group's K/V instead of its own, for steps < swap_steps
/// (cross-attention: key_frames() copies of the layer's one entry). The
/// group's entries come through AttentionGroup::get_on(), on the device of
/// the frame's K/V, one step at a time; each call names the step after its
/// own, so that a CUDA device gets that one copied while this one computes.
/// With `include_own` the frame's own K/V are appended to the group's: that is
/// the anchor mode (cross-frame attention to the key frames plus itself, as
/// in Fairy).
class SwapControl : public model::AttentionControl {
 public:
  SwapControl(const AttentionGroup& group, int64_t swap_steps, LayerSet layers, bool include_own = false);
  std::pair<at::Tensor, at::Tensor> keys_values(const model::AttentionSite& site, const at::Tensor& q,
                                                const at::Tensor& k, const at::Tensor& v) override;

 private:
  const AttentionGroup& group_;
  int64_t swap_steps_;
  LayerSet layers_;
  bool include_own_;
};

}  // namespace via::adapt
