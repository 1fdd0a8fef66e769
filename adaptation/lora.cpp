#include "adaptation/lora.h"

#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>
#include <c10/util/irange.h>

#include <array>
#include <cmath>
#include <sstream>
#include <stdexcept>
#include <utility>

#include "base/random.h"
#include "model/adapter.h"

namespace via::adapt {

namespace {

constexpr std::array<const char*, 4> kProjectionNames{"to_q", "to_k", "to_v", "to_out.0"};

// (in, out) of each projection of a layer, from its options.
std::array<std::pair<int64_t, int64_t>, 4> projection_widths(const model::AttentionOptions& o) {
  const int64_t inner = o.heads * o.dim_head;
  const int64_t kv = o.cross_attention_dim > 0 ? o.cross_attention_dim : o.query_dim;
  return {{{o.query_dim, inner}, {kv, inner}, {kv, inner}, {inner, o.query_dim}}};
}

}  // namespace

/// One attention layer's matrices; the LinearAdapter installed in the layer.
/// A[i] undefined: projection i is not a target.
struct LoraLayer : public model::LinearAdapter {
  LoraLayer(std::string layer, std::array<std::pair<int64_t, int64_t>, 4> in_out, double factor)
      : name(std::move(layer)), widths(in_out), scale(factor) {}

  at::Tensor delta(model::Projection which, const at::Tensor& x) override {
    const auto i = static_cast<size_t>(which);
    if (!a[i].defined()) return {};
    const auto dtype = x.scalar_type();
    return at::linear(at::linear(x, a[i].to(dtype)), b[i].to(dtype)) * scale;
  }

  const std::string name;  // the attention layer's checkpoint path
  const std::array<std::pair<int64_t, int64_t>, 4> widths;  // (in, out)
  const double scale;
  std::array<at::Tensor, 4> a, b;
};

LoraAdapter::LoraAdapter(const model::UNet2DConditionModelImpl& unet, LoraOptions options)
    : options_(std::move(options)) {
  if (options_.rank < 1) throw std::invalid_argument("LoRA rank must be >= 1, got " + std::to_string(options_.rank));
  if (options_.targets.empty()) throw std::invalid_argument("LoRA needs at least one target projection");
  std::array<bool, 4> wanted{};
  for (const auto& t : options_.targets) {
    size_t i = 0;
    while (i < kProjectionNames.size() && t != kProjectionNames[i]) ++i;
    if (i == kProjectionNames.size())
      throw std::invalid_argument("unknown LoRA target '" + t + "' (expected to_q, to_k, to_v or to_out.0)");
    wanted[i] = true;
  }
  const auto& attention = unet.attention_layers();
  if (attention.empty()) throw std::invalid_argument("LoRA: the UNet has no attention layers");
  const at::TensorOptions fp32 = at::TensorOptions().dtype(at::kFloat);
  const c10::Device device = unet.device();
  const double scale = options_.effective_alpha() / static_cast<double>(options_.rank);
  for (const auto li : c10::irange(attention.size())) {
    const auto& attn = attention[li];
    auto layer = std::make_shared<LoraLayer>(attn->name(), projection_widths(attn->options()), scale);
    for (const auto p : c10::irange(kProjectionNames.size())) {
      if (!wanted[p]) continue;
      const auto [in, out] = layer->widths[p];
      at::Generator gen = at::detail::createCPUGenerator(
          random::lora_init_seed(options_.seed, static_cast<int64_t>(li), static_cast<int64_t>(p)));
      const double bound = 1.0 / std::sqrt(static_cast<double>(in));
      at::Tensor a = at::rand({options_.rank, in}, gen, fp32).mul_(2.0 * bound).sub_(bound).to(device);
      layer->a[p] = a.set_requires_grad(true);
      layer->b[p] = at::zeros({out, options_.rank}, fp32.device(device)).set_requires_grad(true);
    }
    layer_names_.push_back(attn->name());
    layers_.push_back(std::move(layer));
  }
}

LoraAdapter::~LoraAdapter() = default;

double LoraAdapter::scale() const { return options_.effective_alpha() / static_cast<double>(options_.rank); }

std::map<std::string, at::Tensor> LoraAdapter::named_tensors() const {
  std::map<std::string, at::Tensor> out;
  for (const auto& layer : layers_)
    for (const auto p : c10::irange(kProjectionNames.size())) {
      if (!layer->a[p].defined()) continue;
      const std::string base = layer->name + "." + kProjectionNames[p];
      out.emplace(base + ".lora_A", layer->a[p]);
      out.emplace(base + ".lora_B", layer->b[p]);
    }
  return out;
}

std::vector<at::Tensor> LoraAdapter::parameters() const {
  std::vector<at::Tensor> out;
  for (const auto& layer : layers_)
    for (const auto p : c10::irange(kProjectionNames.size())) {
      if (!layer->a[p].defined()) continue;
      out.push_back(layer->a[p]);
      out.push_back(layer->b[p]);
    }
  return out;
}

int64_t LoraAdapter::numel() const {
  int64_t n = 0;
  for (const auto& t : parameters()) n += t.numel();
  return n;
}

void LoraAdapter::load_named(const std::map<std::string, at::Tensor>& tensors) {
  const auto own = named_tensors();
  for (const auto& [name, t] : own) {
    const auto it = tensors.find(name);
    if (it == tensors.end()) throw std::invalid_argument("LoRA adapter: tensor '" + name + "' is missing");
    if (!it->second.defined() || it->second.sizes() != t.sizes()) {
      std::ostringstream msg;
      msg << "LoRA adapter: tensor '" << name << "' has shape "
          << (it->second.defined() ? c10::str(it->second.sizes()) : std::string("(undefined)")) << ", expected "
          << t.sizes();
      throw std::invalid_argument(msg.str());
    }
  }
  for (const auto& [name, t] : tensors)
    if (own.count(name) == 0)
      throw std::invalid_argument("LoRA adapter: unexpected tensor '" + name + "' (rank, targets or model differ?)");
  at::NoGradGuard no_grad;
  for (const auto& [name, t] : own) t.copy_(tensors.at(name));
}

void LoraAdapter::attach(model::UNet2DConditionModelImpl& unet) const {
  const auto& attention = unet.attention_layers();
  if (attention.size() != layers_.size())
    throw std::invalid_argument("LoRA adapter has " + std::to_string(layers_.size()) +
                                " attention layers, the UNet " + std::to_string(attention.size()));
  for (const auto i : c10::irange(attention.size())) {
    const auto& attn = attention[i];
    if (attn->name() != layer_names_[i] || projection_widths(attn->options()) != layers_[i]->widths)
      throw std::invalid_argument("LoRA adapter layer '" + layer_names_[i] + "' does not fit the UNet's layer '" +
                                  attn->name() + "'");
  }
  for (const auto i : c10::irange(attention.size())) attention[i].ptr()->set_adapter(layers_[i]);
}

void LoraAdapter::detach(model::UNet2DConditionModelImpl& unet) const {
  const auto& attention = unet.attention_layers();
  for (const auto i : c10::irange(std::min(attention.size(), layers_.size())))
    if (attention[i]->adapter() == layers_[i]) attention[i].ptr()->set_adapter(nullptr);
}

bool LoraAdapter::attached_to(const model::UNet2DConditionModelImpl& unet) const {
  const auto& attention = unet.attention_layers();
  if (attention.size() != layers_.size()) return false;
  for (const auto i : c10::irange(attention.size()))
    if (attention[i]->adapter() != layers_[i]) return false;
  return true;
}

ScopedLora::ScopedLora(const LoraAdapter& adapter, model::UNet2DConditionModelImpl& unet)
    : adapter_(adapter), unet_(unet) {
  adapter_.attach(unet_);
}

ScopedLora::~ScopedLora() { adapter_.detach(unet_); }

}  // namespace via::adapt
