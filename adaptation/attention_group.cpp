#include "adaptation/attention_group.h"

#include <ATen/ops/cat.h>
#include <c10/util/Exception.h>

#include <stdexcept>

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

std::string entry_name(const std::string& layer, int64_t step) { return layer + "@" + std::to_string(step); }

}  // namespace

AttentionGroup::Entry& AttentionGroup::find(const std::string& layer, int64_t step) const {
  auto it = entries_.find({layer, step});
  if (it == entries_.end())
    throw std::out_of_range("attention group has no entry for layer " + layer + " at step " + std::to_string(step));
  return it->second;
}

void AttentionGroup::append(const std::string& layer, int64_t step, const at::Tensor& k, const at::Tensor& v) {
  TORCH_CHECK(k.dim() == 3 && v.dim() == 3, "attention group expects [rows, tokens, channels]");
  Entry& e = entries_[{layer, step}];
  if (!e.k.empty()) {
    TORCH_CHECK(e.k[0].size(0) == k.size(0) && e.k[0].size(2) == k.size(2), "attention group: layer ", layer,
                " step ", step, " gets K of shape ", k.sizes(), " after ", e.k[0].sizes());
  }
  e.k.push_back(k.detach().to(kStorageType).contiguous());
  e.v.push_back(v.detach().to(kStorageType).contiguous());
  ++e.frames;
}

bool AttentionGroup::contains(const std::string& layer, int64_t step) const {
  return entries_.count({layer, step}) != 0;
}

std::pair<at::Tensor, at::Tensor> AttentionGroup::get(const std::string& layer, int64_t step) const {
  Entry& e = find(layer, step);
  if (e.k.size() > 1) {  // concatenate once; later calls reuse it
    e.k = {at::cat(e.k, 1)};
    e.v = {at::cat(e.v, 1)};
  }
  return {e.k[0], e.v[0]};
}

int64_t AttentionGroup::frames(const std::string& layer, int64_t step) const {
  return find(layer, step).frames;
}

std::map<std::string, at::Tensor> AttentionGroup::to_named() const {
  std::map<std::string, at::Tensor> named;
  for (const auto& [key, e] : entries_) {
    (void)e;
    auto [k, v] = get(key.first, key.second);
    const std::string base = entry_name(key.first, key.second);
    named.emplace(base + "/k", k);
    named.emplace(base + "/v", v);
  }
  return named;
}

AttentionGroup AttentionGroup::from_named(const std::map<std::string, at::Tensor>& named) {
  AttentionGroup group;
  for (const auto& [name, tensor] : named) {
    const auto slash = name.rfind('/'), at_sign = name.rfind('@');
    if (slash == std::string::npos || at_sign == std::string::npos || at_sign > slash ||
        name.compare(slash, std::string::npos, "/k") != 0)
      continue;  // "/v" entries are read together with their "/k"
    const std::string base = name.substr(0, slash);
    auto v = named.find(base + "/v");
    if (v == named.end()) throw std::invalid_argument("attention group: " + name + " has no matching /v");
    group.append(name.substr(0, at_sign), std::stoll(name.substr(at_sign + 1, slash - at_sign - 1)), tensor,
                 v->second);
  }
  return group;
}

int64_t AttentionGroup::bytes() const {
  int64_t total = 0;
  for (const auto& [key, e] : entries_) {
    (void)key;
    for (const auto& t : e.k) total += t.numel() * t.element_size();
    for (const auto& t : e.v) total += t.numel() * t.element_size();
  }
  return total;
}

GatherControl::GatherControl(AttentionGroup& group, int64_t key_index, int64_t swap_steps, LayerSet layers,
                             bool include_own)
    : group_(group), key_index_(key_index), swap_steps_(swap_steps), layers_(layers), include_own_(include_own) {}

std::pair<at::Tensor, at::Tensor> GatherControl::keys_values(const model::AttentionSite& site, const at::Tensor& q,
                                                             const at::Tensor& k, const at::Tensor& v) {
  (void)q;
  const int64_t step = site.ctx.step;
  if (step < 0 || step >= swap_steps_ || !acts_on(layers_, site.cross)) return {k, v};
  std::pair<at::Tensor, at::Tensor> result{k, v};
  if (key_index_ > 0) {
    TORCH_CHECK(group_.frames(site.layer, step) == key_index_, "gather: key frame ", key_index_, " expects ",
                key_index_, " earlier key frames at ", site.layer, " step ", step, ", group has ",
                group_.frames(site.layer, step));
    auto [gk, gv] = group_.get(site.layer, step);
    gk = match_rows(gk.to(k.scalar_type()), k.size(0));
    gv = match_rows(gv.to(v.scalar_type()), v.size(0));
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
  auto [gk, gv] = group_.get(site.layer, step);
  gk = match_rows(gk.to(k.scalar_type()), k.size(0));
  gv = match_rows(gv.to(v.scalar_type()), v.size(0));
  if (include_own_) return {at::cat({gk, k}, 1), at::cat({gv, v}, 1)};
  return {gk, gv};
}

}  // namespace via::adapt
