#pragma once
// Spatiotemporal attention adaptation (docs/ARCHITECTURE.md §5): the attention group and
// the attention controls that gather it and swap it in.
#include <ATen/core/Tensor.h>

#include <cstdint>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "adaptation/modes.h"
#include "model/attention_control.h"

namespace via::adapt {

/// The key frames' keys and values for every attention layer and denoising
/// step, as the gather computed them: for one (layer, step), K and V are
/// [rows, tokens of all key frames, channels], one row per guidance branch,
/// key frames concatenated along the token axis in key-frame order.
/// Stored in half precision (the group of a full-size model is large).
/// Not thread-safe; copies share no storage with the tensors appended.
class AttentionGroup {
 public:
  /// Adds one key frame's K/V ([rows, tokens, channels]) for (layer, step).
  /// Frames must be appended in key-frame order.
  void append(const std::string& layer, int64_t step, const at::Tensor& k, const at::Tensor& v);

  bool contains(const std::string& layer, int64_t step) const;
  /// The concatenated K/V of all key frames appended for (layer, step), in
  /// storage precision. Throws if absent.
  std::pair<at::Tensor, at::Tensor> get(const std::string& layer, int64_t step) const;
  /// How many key frames were appended for (layer, step) in this object (a
  /// group rebuilt by from_named() counts its concatenated entry as one).
  int64_t frames(const std::string& layer, int64_t step) const;

  /// Entries as named tensors ("<layer>@<step>/k", ".../v"), for the
  /// checkpoint store and broadcasts; from_named() is its inverse.
  std::map<std::string, at::Tensor> to_named() const;
  static AttentionGroup from_named(const std::map<std::string, at::Tensor>& named);

  size_t size() const { return entries_.size(); }
  int64_t bytes() const;
  static constexpr at::ScalarType kStorageType = at::kHalf;

 private:
  struct Entry {
    std::vector<at::Tensor> k, v;  // per key frame until get() concatenates them
    int64_t frames = 0;
  };
  using Key = std::pair<std::string, int64_t>;
  Entry& find(const std::string& layer, int64_t step) const;
  mutable std::map<Key, Entry> entries_;  // mutable: get() concatenates lazily
};

/// Gather (rank 0): the `key_index`-th key frame is edited attending to the
/// K/V of key frames 0..key_index-1 from the group (key frame 0 to its own),
/// optionally plus its own; the K/V it computes itself are appended to the
/// group. Acts on steps < swap_steps of layers in `layers`.
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
/// queries to the group's K/V instead of its own, for steps < swap_steps.
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
