// Gather and swap on the real UNet of the reference's tiny model: what each
// key frame attended to, swap against a direct computation, independence of
// a frame's own K/V and of edit order, and the comparison modes.
#include "adaptation/gather.h"
#include "tests/support/tiny_model.h"

#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <cstdio>
#include <cstdlib>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <utility>
#include <vector>

using namespace via;
using via::test::tiny_model;
using adapt::AttentionGroup;
using adapt::AttentionMode;
using adapt::SwapSettings;

namespace {

const model::TextEmbeddings& text() {
  static const model::TextEmbeddings t = tiny_model().encode_instruction("make it look like winter");
  return t;
}

// Frame f of a short synthetic video, [1, 3, 32, 48] in [0, 1]: a gradient
// moving one step right per frame.
at::Tensor video_frame(int64_t f) {
  const at::Tensor y = at::linspace(0, 1, 32).view({1, 1, 32, 1});
  const at::Tensor x = at::linspace(0, 1, 48).view({1, 1, 1, 48}) - 0.05 * static_cast<double>(f);
  const auto full = [](const at::Tensor& t) { return t.expand({1, 1, 32, 48}); };
  return at::cat({full((x.frac() + 1).frac() * y), full(0.6 * y + 0.2), full((1 - x).frac() * 0.9)}, 1).contiguous();
}

SwapSettings settings(AttentionMode mode = AttentionMode::GatherSwap) {
  SwapSettings s;
  s.denoise.steps = 4;
  s.seed = 21;
  s.mode = mode;
  return s;
}

const std::vector<int64_t> kKeys = {1, 4, 7};

at::Tensor key_images() {
  std::vector<at::Tensor> v;
  for (int64_t f : kKeys) v.push_back(video_frame(f));
  return at::cat(v, 0);
}

// What one attention call saw: its own K/V and what the control handed back.
struct Call {
  std::string layer;
  bool cross;
  int64_t step;
  at::Tensor own_k, own_v, used_k, used_v;
};

// Forwards to the inner control and records every call.
class Recorder : public model::AttentionControl {
 public:
  Recorder(model::AttentionControl* inner, std::vector<Call>& calls) : inner_(inner), calls_(calls) {}
  std::pair<at::Tensor, at::Tensor> keys_values(const model::AttentionSite& site, const at::Tensor& q,
                                                const at::Tensor& k, const at::Tensor& v) override {
    auto kv = inner_ ? inner_->keys_values(site, q, k, v) : std::make_pair(k, v);
    calls_.push_back({site.layer, site.cross, site.ctx.step, k.clone(), v.clone(), kv.first.clone(), kv.second.clone()});
    return kv;
  }

 private:
  model::AttentionControl* inner_;
  std::vector<Call>& calls_;
};

// Perturbs the frame's own K/V before the inner control sees them.
class Perturber : public model::AttentionControl {
 public:
  explicit Perturber(model::AttentionControl* inner) : inner_(inner) {}
  std::pair<at::Tensor, at::Tensor> keys_values(const model::AttentionSite& site, const at::Tensor& q,
                                                const at::Tensor& k, const at::Tensor& v) override {
    const at::Tensor pk = k + 0.5 * at::randn_like(k), pv = v * 1.5 - 0.2;
    return inner_ ? inner_->keys_values(site, q, pk, pv) : std::make_pair(pk, pv);
  }

 private:
  model::AttentionControl* inner_;
};

// Replays a fixed K/V per (layer, step), independent of SwapControl.
class Replay : public model::AttentionControl {
 public:
  using Table = std::map<std::pair<std::string, int64_t>, std::pair<at::Tensor, at::Tensor>>;
  explicit Replay(Table table) : table_(std::move(table)) {}
  std::pair<at::Tensor, at::Tensor> keys_values(const model::AttentionSite& site, const at::Tensor&,
                                                const at::Tensor&, const at::Tensor&) override {
    return table_.at({site.layer, site.ctx.step});
  }

 private:
  Table table_;
};

// The gather, recorded: calls[i] are key frame i's attention calls.
struct RecordedGather {
  AttentionGroup group;
  std::vector<std::vector<Call>> calls;
};

const RecordedGather& recorded_gather() {
  static const RecordedGather r = [] {
    RecordedGather out;
    out.calls.resize(kKeys.size());
    out.group = adapt::gather_group(tiny_model(), key_images(), kKeys, text(), settings(),
                                    [&out](model::AttentionControl* inner, int64_t i) {
                                      return std::make_unique<Recorder>(inner, out.calls.at(i));
                                    });
    return out;
  }();
  return r;
}

at::Tensor as_stored(const at::Tensor& t) { return t.to(AttentionGroup::kStorageType).to(at::kFloat); }

double mean_abs_diff(const at::Tensor& a, const at::Tensor& b) { return (a - b).abs().mean().item<double>(); }

}  // namespace

TEST(KeyFrames, AreSpreadEvenly) {
  EXPECT_EQ(adapt::key_frame_indices(10, 4), (std::vector<int64_t>{1, 3, 6, 8}));
  EXPECT_EQ(adapt::key_frame_indices(100, 4), (std::vector<int64_t>{12, 37, 62, 87}));
  EXPECT_EQ(adapt::key_frame_indices(3, 5), (std::vector<int64_t>{0, 1, 2}));
  EXPECT_EQ(adapt::key_frame_indices(1, 1), (std::vector<int64_t>{0}));
  EXPECT_EQ(adapt::key_frame_indices(10, 2, 20), (std::vector<int64_t>{22, 27}));
  EXPECT_THROW(adapt::key_frame_indices(0, 4), std::invalid_argument);
  EXPECT_THROW(adapt::key_frame_indices(10, 0), std::invalid_argument);
  EXPECT_EQ(adapt::attention_mode_from_name("gather-swap"), AttentionMode::GatherSwap);
  EXPECT_EQ(adapt::attention_mode_name(adapt::attention_mode_from_name("anchor")), "anchor");
  EXPECT_THROW(adapt::attention_mode_from_name("swap"), std::invalid_argument);
  EXPECT_THROW(adapt::layer_set_from_name("all"), std::invalid_argument);
}

TEST(Gather, KeyFrameISawExactlyTheKeyFramesBeforeIt) {
  const RecordedGather& r = recorded_gather();
  ASSERT_EQ(r.calls.size(), 3u);
  ASSERT_FALSE(r.calls[0].empty());
  // Key frame 0's own K/V per (layer, step), in call order, index by position.
  for (size_t i = 0; i < 3; ++i) ASSERT_EQ(r.calls[i].size(), r.calls[0].size()) << "key frame " << i;
  int64_t self_calls = 0, cross_calls = 0;
  for (size_t c = 0; c < r.calls[0].size(); ++c) {
    const Call& first = r.calls[0][c];
    EXPECT_TRUE(at::equal(first.used_k, first.own_k)) << "key frame 0 attends to itself at " << first.layer;
    EXPECT_TRUE(at::equal(first.used_v, first.own_v));
    (first.cross ? cross_calls : self_calls)++;
    for (size_t i = 1; i < 3; ++i) {
      const Call& call = r.calls[i][c];
      ASSERT_EQ(call.layer, first.layer);
      ASSERT_EQ(call.step, first.step);
      std::vector<at::Tensor> ks, vs;
      for (size_t j = 0; j < i; ++j) {
        ks.push_back(as_stored(r.calls[j][c].own_k));
        vs.push_back(as_stored(r.calls[j][c].own_v));
      }
      EXPECT_TRUE(at::equal(call.used_k, at::cat(ks, 1))) << "key frame " << i << " at " << call.layer << " step "
                                                          << call.step;
      EXPECT_TRUE(at::equal(call.used_v, at::cat(vs, 1)));
      if (!call.cross) {
        EXPECT_FALSE(at::equal(call.own_k, first.own_k)) << "each key frame computes its own keys";
      }
    }
  }
  EXPECT_GT(self_calls, 0);
  EXPECT_GT(cross_calls, 0);
  // The group holds what every key frame computed, in key-frame order; a
  // cross-attention layer once: every key frame computes the same K/V for
  // it at every step (from the one text embedding), bit for bit.
  std::set<std::string> cross_layers;
  for (size_t c = 0; c < r.calls[0].size(); ++c) {
    const Call& first = r.calls[0][c];
    if (first.cross) {
      cross_layers.insert(first.layer);
      EXPECT_FALSE(r.group.contains(first.layer, first.step)) << first.layer << ": stored once, not per step";
      auto [k, v] = r.group.get(first.layer, AttentionGroup::kCrossStep);
      for (size_t i = 0; i < 3; ++i) {
        EXPECT_TRUE(at::equal(k.to(at::kFloat), as_stored(r.calls[i][c].own_k))) << first.layer << " key frame " << i;
        EXPECT_TRUE(at::equal(v.to(at::kFloat), as_stored(r.calls[i][c].own_v)));
      }
      continue;
    }
    auto [k, v] = r.group.get(first.layer, first.step);
    EXPECT_EQ(r.group.frames(first.layer, first.step), 3);
    EXPECT_TRUE(at::equal(k.to(at::kFloat), at::cat({as_stored(r.calls[0][c].own_k), as_stored(r.calls[1][c].own_k),
                                                     as_stored(r.calls[2][c].own_k)}, 1)));
    EXPECT_TRUE(at::equal(v.to(at::kFloat), at::cat({as_stored(r.calls[0][c].own_v), as_stored(r.calls[1][c].own_v),
                                                     as_stored(r.calls[2][c].own_v)}, 1)));
  }
  EXPECT_EQ(static_cast<int64_t>(r.group.size()), self_calls + static_cast<int64_t>(cross_layers.size()));
  EXPECT_EQ(r.group.key_frames(), 3);
}

TEST(Gather, SwapStepsAndLayersLimitWhatIsGathered) {
  SwapSettings s = settings();
  s.swap_steps = 2;
  s.layers = adapt::LayerSet::Self;
  const AttentionGroup g = adapt::gather_group(tiny_model(), key_images().narrow(0, 0, 2), {1, 4}, text(), s);
  for (const auto& [name, t] : g.to_named()) {
    (void)t;
    EXPECT_NE(name.find(".attn1@"), std::string::npos) << name;
    EXPECT_TRUE(name.find("@0/") != std::string::npos || name.find("@1/") != std::string::npos) << name;
  }
  EXPECT_GT(g.size(), 0u);
  EXPECT_EQ(adapt::gather_group(tiny_model(), key_images(), kKeys, text(), settings(AttentionMode::Own)).size(), 0u);
}

TEST(Swap, EqualsADirectComputationFromTheGroup) {
  const RecordedGather& r = recorded_gather();
  // The group's K/V rebuilt from the recorded gather, outside AttentionGroup.
  Replay::Table table;
  for (size_t c = 0; c < r.calls[0].size(); ++c) {
    std::vector<at::Tensor> ks, vs;
    for (size_t j = 0; j < 3; ++j) {
      ks.push_back(as_stored(r.calls[j][c].own_k));
      vs.push_back(as_stored(r.calls[j][c].own_v));
    }
    table[{r.calls[0][c].layer, r.calls[0][c].step}] = {at::cat(ks, 1), at::cat(vs, 1)};
  }
  const int64_t frame = 5;
  const at::Tensor latents = tiny_model().encode_image(video_frame(frame));
  const SwapSettings s = settings();
  Replay replay(std::move(table));
  const at::Tensor direct =
      tiny_model().denoise(latents, text(), model::make_noise(latents.sizes(), s.seed, frame, -1), s.denoise,
                           &replay, {}, model::frame_noise(s.seed, {frame}));
  const at::Tensor swapped = adapt::swap_denoise(tiny_model(), latents, frame, r.group, text(), s);
  EXPECT_TRUE(at::equal(swapped, direct));
  const at::Tensor own = adapt::swap_denoise(tiny_model(), latents, frame, r.group, text(), settings(AttentionMode::Own));
  EXPECT_GT(mean_abs_diff(swapped, own), 1e-4) << "the swap changes the edit";
}

TEST(Swap, IsIndependentOfTheFramesOwnKeysAndValues) {
  const RecordedGather& r = recorded_gather();
  const at::Tensor latents = tiny_model().encode_image(video_frame(2));
  const auto perturb = [](model::AttentionControl* inner, int64_t) { return std::make_unique<Perturber>(inner); };
  const at::Tensor plain = adapt::swap_denoise(tiny_model(), latents, 2, r.group, text(), settings());
  const at::Tensor perturbed = adapt::swap_denoise(tiny_model(), latents, 2, r.group, text(), settings(), {}, perturb);
  EXPECT_TRUE(at::equal(plain, perturbed));
  // The same perturbation does change an anchor-mode edit, which uses its own K/V.
  const SwapSettings anchor = settings(AttentionMode::Anchor);
  EXPECT_GT(mean_abs_diff(adapt::swap_denoise(tiny_model(), latents, 2, r.group, text(), anchor),
                          adapt::swap_denoise(tiny_model(), latents, 2, r.group, text(), anchor, {}, perturb)),
            1e-5);
}

TEST(Swap, IdenticalFramesWithIdenticalNoiseGiveIdenticalOutput) {
  const RecordedGather& r = recorded_gather();
  const SwapSettings s = settings();
  // Two copies of one frame in one batch, with the same noise: the swapped
  // K/V make no row depend on the other.
  const at::Tensor latents = tiny_model().encode_image(video_frame(3)).repeat({2, 1, 1, 1});
  adapt::SwapControl swap(r.group, s.resolved_swap_steps(), s.layers);
  const at::Tensor noise = model::make_noise(latents.narrow(0, 0, 1).sizes(), s.seed, 3, -1).repeat({2, 1, 1, 1});
  const at::Tensor out =
      tiny_model().denoise(latents, text(), noise, s.denoise, &swap, {}, model::frame_noise(s.seed, {3, 3}));
  EXPECT_LE((out[0] - out[1]).abs().max().item<double>(), 1e-5);
  // A frame's edit is the same alone or after other frames (a pure function).
  const at::Tensor alone = adapt::swap_edit(tiny_model(), video_frame(3), 3, r.group, text(), s);
  adapt::swap_edit(tiny_model(), video_frame(6), 6, r.group, text(), s);
  EXPECT_TRUE(at::equal(alone, adapt::swap_edit(tiny_model(), video_frame(3), 3, r.group, text(), s)));
  // Frame 3's image edited as frame 3 matches the batch row computed with frame 3's noise.
  EXPECT_LE((tiny_model().decode(out.narrow(0, 0, 1)) - alone).abs().max().item<double>(), 1e-4);
}

TEST(Swap, ModesDiffer) {
  const RecordedGather& r = recorded_gather();
  const at::Tensor latents = tiny_model().encode_image(video_frame(5));
  const at::Tensor swap = adapt::swap_denoise(tiny_model(), latents, 5, r.group, text(), settings());
  const at::Tensor anchor =
      adapt::swap_denoise(tiny_model(), latents, 5, r.group, text(), settings(AttentionMode::Anchor));
  const at::Tensor own = adapt::swap_denoise(tiny_model(), latents, 5, AttentionGroup(), text(), settings(AttentionMode::Own));
  EXPECT_GT(mean_abs_diff(swap, anchor), 1e-4);
  EXPECT_GT(mean_abs_diff(swap, own), 1e-4);
  EXPECT_GT(mean_abs_diff(anchor, own), 1e-4);
  EXPECT_THROW(adapt::swap_denoise(tiny_model(), latents, 5, AttentionGroup(), text(), settings()),
               std::invalid_argument);
}

// The shared-noise baseline: the same image as frame 2 and as frame 7 gives
// one output; with per-frame noise (the default) the two differ.
TEST(Swap, SharedNoiseMakesTheFrameIndexIrrelevant) {
  const at::Tensor latents = tiny_model().encode_image(video_frame(3));
  SwapSettings s = settings(AttentionMode::Own);
  EXPECT_GT(mean_abs_diff(adapt::swap_denoise(tiny_model(), latents, 2, AttentionGroup(), text(), s),
                          adapt::swap_denoise(tiny_model(), latents, 7, AttentionGroup(), text(), s)),
            1e-4);
  s.shared_noise = true;
  EXPECT_TRUE(at::equal(adapt::swap_denoise(tiny_model(), latents, 2, AttentionGroup(), text(), s),
                        adapt::swap_denoise(tiny_model(), latents, 7, AttentionGroup(), text(), s)));
}

// --batch-frames: several frames in one UNet call give each frame exactly
// what it gets alone (its own noise streams; no row depends on another).
TEST(Swap, BatchedFramesEqualUnbatched) {
  const RecordedGather& r = recorded_gather();
  const std::vector<int64_t> frames = {2, 5, 7};
  for (const SwapSettings& s : {settings(), settings(AttentionMode::Anchor), settings(AttentionMode::Own)}) {
    std::vector<at::Tensor> latents, alone;
    for (int64_t f : frames) {
      latents.push_back(tiny_model().encode_image(video_frame(f)));
      alone.push_back(adapt::swap_denoise(tiny_model(), latents.back(), f, r.group, text(), s));
    }
    const at::Tensor batch = adapt::swap_denoise_batch(tiny_model(), at::cat(latents, 0), frames, r.group, text(), s);
    for (size_t b = 0; b < frames.size(); ++b)
      EXPECT_TRUE(at::equal(batch.narrow(0, static_cast<int64_t>(b), 1), alone[b]))
          << adapt::attention_mode_name(s.mode) << ": frame " << frames[b] << " differs in a batch, max "
          << (batch.narrow(0, static_cast<int64_t>(b), 1) - alone[b]).abs().max().item<double>();
  }
}

// Swapping cross-attention is a no-op but for rounding: every frame's text
// embedding is the same, so the group's cross-attention K/V are G copies of
// the frame's own (rounded to half precision), and softmax over G copies of
// each key weighs every copy 1/G. Swapping only self-attention then gives
// nearly the same edit; what differs is that rounding.
TEST(Swap, CrossAttentionSwapChangesOnlyRounding) {
  const int64_t frame = 5;
  const at::Tensor latents = tiny_model().encode_image(video_frame(frame));
  SwapSettings self_only = settings();
  self_only.layers = adapt::LayerSet::Self;
  const AttentionGroup self_group = adapt::gather_group(tiny_model(), key_images(), kKeys, text(), self_only);
  const at::Tensor both = adapt::swap_denoise(tiny_model(), latents, frame, recorded_gather().group, text(), settings());
  const at::Tensor self = adapt::swap_denoise(tiny_model(), latents, frame, self_group, text(), self_only);
  const at::Tensor own = adapt::swap_denoise(tiny_model(), latents, frame, AttentionGroup(), text(), settings(AttentionMode::Own));
  const double rounding = (both - self).abs().max().item<double>(), swap = mean_abs_diff(both, own);
  std::printf("cross-attention swap: max |both - self| = %.3g (mean %.3g); the swap itself: mean |both - own| = %.3g\n",
              rounding, mean_abs_diff(both, self), swap);
  EXPECT_LT(mean_abs_diff(both, self), 0.05 * swap);
}

TEST(TemporalConsistency, IsTheMeanConsecutiveDifference) {
  const at::Tensor source = at::stack({at::full({3, 2, 2}, 0.0), at::full({3, 2, 2}, 1.0), at::full({3, 2, 2}, 3.0)});
  const at::Tensor edited = at::stack({at::full({3, 2, 2}, 0.0), at::full({3, 2, 2}, 0.5), at::full({3, 2, 2}, 0.5)});
  const adapt::TemporalConsistency tc = adapt::temporal_consistency(edited, source);
  EXPECT_DOUBLE_EQ(tc.source, 1.5);
  EXPECT_DOUBLE_EQ(tc.edited, 0.25);
  EXPECT_DOUBLE_EQ(tc.ratio, 0.25 / 1.5);
  EXPECT_EQ(adapt::temporal_difference(source.narrow(0, 0, 1)), 0.0);
  EXPECT_THROW(adapt::temporal_consistency(edited, source.narrow(0, 0, 2)), std::invalid_argument);
}
