#include "adaptation/attention_group.h"

#include <ATen/ops/cat.h>
#include <c10/util/Exception.h>
#ifdef VIA_TORCH_CUDA
#include <ATen/cuda/CUDAEvent.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#endif

#include <algorithm>
#include <set>
#include <stdexcept>
#include <tuple>

namespace via::adapt {
namespace {

bool acts_on(LayerSet set, bool cross) {
  return set == LayerSet::Both || (set == LayerSet::Cross) == cross;
}

// The group holds one row per guidance branch of one frame; a batch may hold
// several frames per branch ([rows * n, ...]): repeat each row n times.
at::Tensor match_rows(const at::Tensor& t, int64_t batch) {
  if (t.size(0) == batch) return t;
  TORCH_CHECK(batch % t.size(0) == 0, "attention group has ", t.size(0), " rows, batch has ", batch);
  return t.repeat_interleave(batch / t.size(0), 0);
}

std::string entry_name(const std::string& layer, int64_t step) {
  return layer + "@" + (step == AttentionGroup::kCrossStep ? std::string("cross") : std::to_string(step));
}

int64_t nbytes(const at::Tensor& t) { return t.numel() * static_cast<int64_t>(t.element_size()); }

// A cross-attention entry (one key frame's K/V) as the concatenation of
// `copies` key frames' identical K/V, in `like`'s dtype and rows.
at::Tensor repeated(const at::Tensor& stored, int64_t copies, const at::Tensor& like) {
  const at::Tensor t = stored.to(like.scalar_type());
  return match_rows(copies == 1 ? t : t.repeat({1, copies, 1}), like.size(0));
}

}  // namespace

// The next step's entries, copied to a CUDA device on a side stream while the
// current step computes (get_on()). Written against libtorch 2.x's CUDA API
// and compiled by scripts/check-torch2.sh; it has never run on a GPU (none
// here): scripts/gpu-check.sh's "swapped UNet step" rows measure it.
#ifdef VIA_TORCH_CUDA
struct AttentionGroup::Prefetch {
  int64_t step = kCrossStep;
  std::map<Key, std::pair<at::Tensor, at::Tensor>> device, host;
  at::cuda::CUDAEvent copied;  // recorded on the side stream after the last copy
  // The host tensors are the copies' sources: they go only once the copies are done.
  ~Prefetch() {
    try {
      copied.synchronize();
    } catch (...) {  // a failed CUDA call was reported where it happened
    }
  }
};

void AttentionGroup::next_step_on_cuda(int64_t step, int64_t next_step) const {
  DeviceCache& c = cache_;
  const c10::cuda::CUDAStream compute = c10::cuda::getCurrentCUDAStream(c.device.index());
  if (c.next && c.next->step == step) {
    c.next->copied.block(compute);  // the compute stream waits for the copy; the host does not
    for (auto& [key, kv] : c.next->device) {
      // Allocated on the side stream: not reused before this stream is done with them.
      kv.first.record_stream(compute);
      kv.second.record_stream(compute);
      c.entries.emplace(key, kv);
    }
    c.next->device.clear();  // c.entries owns them now: the step after drops them
    c.taken = std::move(c.next);
  } else if (c.next) {  // another step came: the prefetch was for nothing
    for (const auto& [key, kv] : c.next->device) c.bytes -= nbytes(kv.first) + nbytes(kv.second);
    c.next.reset();
  }
  if (next_step == step || next_step == kCrossStep) return;
  auto p = std::make_shared<Prefetch>();
  p->step = next_step;
  const c10::cuda::CUDAStream side = c10::cuda::getStreamFromPool(false, c.device.index());
  c10::cuda::CUDAStreamGuard on_side(side);
  for (const auto& [key, e] : entries_) {
    (void)e;
    if (key.second != next_step) continue;
    const auto [k, v] = get(key.first, key.second);
    std::pair<at::Tensor, at::Tensor> kv{k.to(c.device, k.scalar_type(), true), v.to(c.device, v.scalar_type(), true)};
    c.bytes += nbytes(kv.first) + nbytes(kv.second);
    p->device.emplace(key, std::move(kv));
    p->host.emplace(key, std::make_pair(k, v));
  }
  if (p->device.empty()) return;
  p->copied.record(side);
  c.peak = std::max(c.peak, c.bytes);
  c.next = std::move(p);
}
#else
struct AttentionGroup::Prefetch {};
#endif

AttentionGroup::Entry& AttentionGroup::find(const std::string& layer, int64_t step) const {
  auto it = entries_.find({layer, step});
  if (it == entries_.end())
    throw std::out_of_range("attention group has no entry for layer " + layer + " at step " + std::to_string(step));
  return it->second;
}

at::Tensor AttentionGroup::stored(const at::Tensor& t) const {
  at::Tensor s = t.detach().to(at::kCPU, kStorageType).contiguous();
  if (pinned_ && !s.is_pinned()) s = s.pin_memory();
  return s;
}

void AttentionGroup::append(const std::string& layer, int64_t step, const at::Tensor& k, const at::Tensor& v) {
  TORCH_CHECK(k.dim() == 3 && v.dim() == 3, "attention group expects [rows, tokens, channels]");
  Entry& e = entries_[{layer, step}];
  if (!e.k.empty()) {
    TORCH_CHECK(e.k[0].size(0) == k.size(0) && e.k[0].size(2) == k.size(2), "attention group: layer ", layer,
                " step ", step, " gets K of shape ", k.sizes(), " after ", e.k[0].sizes());
  }
  e.k.push_back(stored(k));
  e.v.push_back(stored(v));
  ++e.frames;
}

bool AttentionGroup::contains(const std::string& layer, int64_t step) const {
  return entries_.count({layer, step}) != 0;
}

std::pair<at::Tensor, at::Tensor> AttentionGroup::get(const std::string& layer, int64_t step) const {
  Entry& e = find(layer, step);
  if (e.k.size() > 1) {  // concatenate once; later calls reuse it
    e.k = {stored(at::cat(e.k, 1))};
    e.v = {stored(at::cat(e.v, 1))};
  }
  return {e.k[0], e.v[0]};
}

int64_t AttentionGroup::frames(const std::string& layer, int64_t step) const {
  return find(layer, step).frames;
}

std::map<std::string, at::Tensor> AttentionGroup::step_named(int64_t step) const {
  std::map<std::string, at::Tensor> named;
  for (const auto& [key, e] : entries_) {
    (void)e;
    if (key.second != step) continue;
    auto [k, v] = get(key.first, key.second);
    const std::string base = entry_name(key.first, key.second);
    named.emplace(base + "/k", k);
    named.emplace(base + "/v", v);
  }
  return named;
}

std::map<std::string, at::Tensor> AttentionGroup::to_named() const {
  std::map<std::string, at::Tensor> named;
  for (int64_t step : steps()) named.merge(step_named(step));
  return named;
}

bool AttentionGroup::parse_name(const std::string& name, std::string* layer, int64_t* step, bool* is_key) {
  const auto slash = name.rfind('/'), at_sign = name.rfind('@');
  if (slash == std::string::npos || at_sign == std::string::npos || at_sign > slash) return false;
  const std::string kind = name.substr(slash + 1), when = name.substr(at_sign + 1, slash - at_sign - 1);
  if ((kind != "k" && kind != "v") || when.empty()) return false;
  int64_t s = kCrossStep;
  if (when != "cross") {
    if (when.find_first_not_of("0123456789") != std::string::npos || when.size() > 9) return false;
    s = std::stoll(when);
  }
  if (layer) *layer = name.substr(0, at_sign);
  if (step) *step = s;
  if (is_key) *is_key = kind == "k";
  return true;
}

void AttentionGroup::add_named(const std::map<std::string, at::Tensor>& named) {
  for (const auto& [name, tensor] : named) {
    std::string layer;
    int64_t step = 0;
    bool is_key = false;
    if (!parse_name(name, &layer, &step, &is_key) || !is_key) continue;  // "/v" is read with its "/k"
    auto v = named.find(name.substr(0, name.size() - 1) + "v");
    if (v == named.end()) throw std::invalid_argument("attention group: " + name + " has no matching /v");
    entries_.erase({layer, step});
    append(layer, step, tensor, v->second);
  }
}

AttentionGroup AttentionGroup::from_named(const std::map<std::string, at::Tensor>& named) {
  AttentionGroup group;
  group.add_named(named);
  return group;
}

std::vector<int64_t> AttentionGroup::steps() const {
  std::set<int64_t> steps;
  for (const auto& [key, e] : entries_) {
    (void)e;
    steps.insert(key.second);
  }
  return {steps.begin(), steps.end()};
}

int64_t AttentionGroup::step_bytes(int64_t step) const {
  int64_t total = 0;
  for (const auto& [key, e] : entries_) {
    if (key.second != step) continue;
    for (const auto& t : e.k) total += nbytes(t);
    for (const auto& t : e.v) total += nbytes(t);
  }
  return total;
}

int64_t AttentionGroup::bytes() const {
  int64_t total = 0;
  for (int64_t step : steps()) total += step_bytes(step);
  return total;
}

std::pair<at::Tensor, at::Tensor> AttentionGroup::get_on(const std::string& layer, int64_t step,
                                                         const c10::Device& device, int64_t next_step) const {
  DeviceCache& c = cache_;
  if (c.device != device) {
    c.entries.clear();
    c.next.reset();
    c.taken.reset();
    c.bytes = 0;
    c.device = device;
  }
  const Key key{layer, step};
  if (auto it = c.entries.find(key); it != c.entries.end()) return it->second;
  if (step != kCrossStep && step != c.step && residency_ == DeviceResidency::Step) {
    // A new step: the previous step's entries go (cross-attention's stay).
    for (auto it = c.entries.begin(); it != c.entries.end();) {
      if (it->first.second == kCrossStep) {
        ++it;
        continue;
      }
      c.bytes -= nbytes(it->second.first) + nbytes(it->second.second);
      it = c.entries.erase(it);
    }
    c.step = step;
#ifdef VIA_TORCH_CUDA
    if (pinned_ && prefetch_ && device.is_cuda()) {
      next_step_on_cuda(step, next_step);
      if (auto it = c.entries.find(key); it != c.entries.end()) return it->second;  // prefetched
    }
#endif
  }
  const auto [k, v] = get(layer, step);
  // From page-locked memory the copy is queued without waiting for it.
  const bool non_blocking = pinned_ && device.is_cuda();
  std::pair<at::Tensor, at::Tensor> kv{k.to(device, k.scalar_type(), non_blocking), v.to(device, v.scalar_type(), non_blocking)};
  c.entries.emplace(key, kv);
  c.bytes += nbytes(kv.first) + nbytes(kv.second);
  c.peak = std::max(c.peak, c.bytes);
  return kv;
}

GatherControl::GatherControl(AttentionGroup& group, int64_t key_index, int64_t swap_steps, LayerSet layers,
                             bool include_own)
    : group_(group), key_index_(key_index), swap_steps_(swap_steps), layers_(layers), include_own_(include_own) {}

std::pair<at::Tensor, at::Tensor> GatherControl::keys_values(const model::AttentionSite& site, const at::Tensor& q,
                                                             const at::Tensor& k, const at::Tensor& v) {
  (void)q;
  const int64_t step = site.ctx.step;
  if (step < 0 || step >= swap_steps_ || !acts_on(layers_, site.cross)) return {k, v};
  if (site.cross) {
    // Every key frame computes these K/V at every step (AttentionGroup): the
    // first one's are kept, and key frame i sees i copies of them.
    if (!group_.contains(site.layer, AttentionGroup::kCrossStep))
      group_.append(site.layer, AttentionGroup::kCrossStep, k, v);
    if (key_index_ == 0) return {k, v};
    auto [ck, cv] = group_.get(site.layer, AttentionGroup::kCrossStep);
    const at::Tensor gk = repeated(ck, key_index_, k).to(k.device()), gv = repeated(cv, key_index_, v).to(v.device());
    if (include_own_) return {at::cat({gk, k}, 1), at::cat({gv, v}, 1)};
    return {gk, gv};
  }
  std::pair<at::Tensor, at::Tensor> result{k, v};
  if (key_index_ > 0) {
    TORCH_CHECK(group_.frames(site.layer, step) == key_index_, "gather: key frame ", key_index_, " expects ",
                key_index_, " earlier key frames at ", site.layer, " step ", step, ", group has ",
                group_.frames(site.layer, step));
    auto [gk, gv] = group_.get(site.layer, step);
    gk = match_rows(gk.to(k.device(), k.scalar_type()), k.size(0));
    gv = match_rows(gv.to(v.device(), v.scalar_type()), v.size(0));
    result = include_own_ ? std::make_pair(at::cat({gk, k}, 1), at::cat({gv, v}, 1)) : std::make_pair(gk, gv);
  }
  group_.append(site.layer, step, k, v);  // what this key frame computed
  return result;
}

SwapControl::SwapControl(const AttentionGroup& group, int64_t swap_steps, LayerSet layers, bool include_own)
    : group_(group), swap_steps_(swap_steps), layers_(layers), include_own_(include_own) {}

std::pair<at::Tensor, at::Tensor> SwapControl::keys_values(const model::AttentionSite& site, const at::Tensor& q,
                                                           const at::Tensor& k, const at::Tensor& v) {
  (void)q;
  const int64_t step = site.ctx.step;
  if (step < 0 || step >= swap_steps_ || !acts_on(layers_, site.cross)) return {k, v};
  at::Tensor gk, gv;
  if (site.cross) {  // one key frame's K/V, repeated for the G key frames (AttentionGroup)
    auto [ck, cv] = group_.get_on(site.layer, AttentionGroup::kCrossStep, k.device());
    TORCH_CHECK(group_.key_frames() > 0, "swap: the attention group does not say how many key frames it has");
    gk = repeated(ck, group_.key_frames(), k);
    gv = repeated(cv, group_.key_frames(), v);
  } else {
    // The next call's step: this frame's next swapped step, after the last one the next frame's first.
    const int64_t next = step + 1 < swap_steps_ ? step + 1 : 0;
    std::tie(gk, gv) = group_.get_on(site.layer, step, k.device(), next);
    gk = match_rows(gk.to(k.scalar_type()), k.size(0));
    gv = match_rows(gv.to(v.scalar_type()), v.size(0));
  }
  if (include_own_) return {at::cat({gk, k}, 1), at::cat({gv, v}, 1)};
  return {gk, gv};
}

}  // namespace via::adapt
