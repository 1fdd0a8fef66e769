#include "model/vae.h"

#include <ATen/ATen.h>
#include <c10/util/Exception.h>
#include <nlohmann/json.hpp>
#include <torch/nn/modules/container/modulelist.h>

#include "model/json_file.h"
#include "model/safetensors.h"  // ModelError
#include "model/checkpoint_names.h"
#include "model/weights.h"

namespace via::model {

namespace {

// Fixed by diffusers' Encoder/Decoder for every resnet and norm layer.
constexpr double kVaeEps = 1e-6;

void require_types(const nlohmann::json& config, const std::string& key, const std::string& type, size_t n,
                   const std::string& where) {
  auto it = config.find(key);
  if (it == config.end() || it->is_null()) {
    if (n != 1) throw ModelError(where + ": " + key + " is missing");
    return;
  }
  const auto types = json_value<std::vector<std::string>>(config, key, {}, where);
  if (types.size() != n)
    throw ModelError(where + ": " + key + " has " + std::to_string(types.size()) + " entries for " +
                     std::to_string(n) + " block_out_channels");
  for (const auto& t : types)
    if (t != type) throw ModelError(where + ": unsupported " + key + " entry '" + t + "' (supported: " + type + ")");
}

ResnetSpec vae_resnet(const VaeConfig& c) {
  ResnetSpec r;
  r.temb_channels = 0;
  r.groups = c.norm_num_groups;
  r.eps = kVaeEps;
  r.act = parse_activation(c.act_fn, "VAE config");
  return r;
}

MidBlockOptions vae_mid_block(const VaeConfig& c, const std::string& name) {
  MidBlockOptions o;
  o.name = name;
  o.channels = c.block_out_channels.back();
  o.resnet = vae_resnet(c);
  o.attention = c.mid_block_add_attention ? MidBlockOptions::AttentionKind::Spatial
                                          : MidBlockOptions::AttentionKind::None;
  return o;
}

}  // namespace

VaeConfig VaeConfig::from_json(const nlohmann::json& config, const std::string& where) {
  if (!config.is_object()) throw ModelError(where + ": VAE config is not a JSON object");
  VaeConfig c;
  c.in_channels = json_value<int64_t>(config, "in_channels", 3, where);
  c.out_channels = json_value<int64_t>(config, "out_channels", 3, where);
  c.block_out_channels = json_value<std::vector<int64_t>>(config, "block_out_channels", {64}, where);
  if (c.block_out_channels.empty()) throw ModelError(where + ": block_out_channels is empty");
  require_types(config, "down_block_types", "DownEncoderBlock2D", c.block_out_channels.size(), where);
  require_types(config, "up_block_types", "UpDecoderBlock2D", c.block_out_channels.size(), where);
  c.layers_per_block = json_value<int64_t>(config, "layers_per_block", 1, where);
  c.act_fn = json_value<std::string>(config, "act_fn", "silu", where);
  parse_activation(c.act_fn, where);
  c.latent_channels = json_value<int64_t>(config, "latent_channels", 4, where);
  c.norm_num_groups = json_value<int64_t>(config, "norm_num_groups", 32, where);
  c.scaling_factor = json_value<double>(config, "scaling_factor", 0.18215, where);
  auto shift = config.find("shift_factor");
  if (shift != config.end() && !shift->is_null()) c.shift_factor = json_value<double>(config, "shift_factor", 0.0, where);
  c.force_upcast = json_value<bool>(config, "force_upcast", true, where);
  c.use_quant_conv = json_value<bool>(config, "use_quant_conv", true, where);
  c.use_post_quant_conv = json_value<bool>(config, "use_post_quant_conv", true, where);
  c.mid_block_add_attention = json_value<bool>(config, "mid_block_add_attention", true, where);
  for (const char* key : {"latents_mean", "latents_std"}) {
    auto it = config.find(key);
    if (it != config.end() && !it->is_null())
      throw ModelError(where + ": unsupported setting " + std::string(key) + " = " + it->dump());
  }
  return c;
}

VaeConfig VaeConfig::from_file(const std::string& path) { return from_json(read_json_file(path), path); }

// ---- Encoder ----

VaeEncoderImpl::VaeEncoderImpl(const VaeConfig& c, const ParamInit& init)
    : act_(parse_activation(c.act_fn, "VAE config")) {
  const size_t n = c.block_out_channels.size();
  conv_in_ = register_module("conv_in", Conv2d(c.in_channels, c.block_out_channels[0], 3, 1, 1, init));
  auto list = register_module("down_blocks", torch::nn::ModuleList());
  for (size_t i = 0; i < n; ++i) {
    DownBlockOptions o = down_block_options("encoder.down_blocks.", c.block_out_channels, i, c.layers_per_block,
                                            vae_resnet(c));
    o.downsample_padding = 0;  // the VAE's downsamplers pad one zero row and column instead
    down_blocks_.push_back(DownBlock(o, init));
    list->push_back(down_blocks_.back());
  }
  mid_block_ = register_module("mid_block", MidBlock(vae_mid_block(c, "encoder.mid_block"), init));
  conv_norm_out_ = register_module("conv_norm_out", GroupNorm(c.norm_num_groups, c.block_out_channels.back(), kVaeEps, init));
  conv_out_ = register_module("conv_out", Conv2d(c.block_out_channels.back(), 2 * c.latent_channels, 3, 1, 1, init));
}

at::Tensor VaeEncoderImpl::forward(const at::Tensor& images) {
  static const AttentionContext no_control;
  at::Tensor x = conv_in_(images);
  for (auto& block : down_blocks_) x = block->forward(x, at::Tensor(), at::Tensor(), no_control, nullptr);
  x = mid_block_->forward(x, at::Tensor(), at::Tensor(), no_control);
  return conv_out_(activate(conv_norm_out_(x), act_));
}

// ---- Decoder ----

VaeDecoderImpl::VaeDecoderImpl(const VaeConfig& c, const ParamInit& init)
    : act_(parse_activation(c.act_fn, "VAE config")) {
  const size_t n = c.block_out_channels.size();
  conv_in_ = register_module("conv_in", Conv2d(c.latent_channels, c.block_out_channels.back(), 3, 1, 1, init));
  // Registration order as diffusers': up_blocks (assigned empty first), mid_block.
  auto list = register_module("up_blocks", torch::nn::ModuleList());
  mid_block_ = register_module("mid_block", MidBlock(vae_mid_block(c, "decoder.mid_block"), init));
  int64_t out_ch = c.block_out_channels.back();
  for (size_t i = 0; i < n; ++i) {
    UpBlockOptions o;
    o.name = "decoder.up_blocks." + std::to_string(i);
    o.in_channels = o.prev_output_channels = out_ch;
    o.out_channels = out_ch = c.block_out_channels[n - 1 - i];
    o.num_layers = c.layers_per_block + 1;
    o.skip_connections = false;
    o.resnet = vae_resnet(c);
    o.cross_attention = false;
    o.add_upsample = i + 1 < n;
    up_blocks_.push_back(UpBlock(o, init));
    list->push_back(up_blocks_.back());
  }
  conv_norm_out_ = register_module("conv_norm_out", GroupNorm(c.norm_num_groups, c.block_out_channels[0], kVaeEps, init));
  conv_out_ = register_module("conv_out", Conv2d(c.block_out_channels[0], c.out_channels, 3, 1, 1, init));
}

at::Tensor VaeDecoderImpl::forward(const at::Tensor& latents) {
  static const AttentionContext no_control;
  at::Tensor x = conv_in_(latents);
  x = mid_block_->forward(x, at::Tensor(), at::Tensor(), no_control);
  for (auto& block : up_blocks_) x = block->forward(x, nullptr, at::Tensor(), at::Tensor(), no_control);
  return conv_out_(activate(conv_norm_out_(x), act_));
}

// ---- AutoencoderKL ----

at::Tensor LatentDistribution::std() const { return at::exp(0.5 * logvar); }

at::Tensor LatentDistribution::sample(const at::Tensor& noise) const {
  TORCH_CHECK(noise.sizes() == mean.sizes(), "LatentDistribution::sample: noise ", noise.sizes(),
              " does not match the latent shape ", mean.sizes());
  return mean + std() * noise.to(mean.options());
}

AutoencoderKLImpl::AutoencoderKLImpl(const VaeConfig& config, const ParamInit& init) : config_(config) {
  const auto& c = config_;
  encoder = register_module("encoder", VaeEncoder(c, init));
  decoder = register_module("decoder", VaeDecoder(c, init));
  if (c.use_quant_conv)
    quant_conv_ = register_module("quant_conv", Conv2d(2 * c.latent_channels, 2 * c.latent_channels, 1, 1, 0, init));
  if (c.use_post_quant_conv)
    post_quant_conv_ = register_module("post_quant_conv", Conv2d(c.latent_channels, c.latent_channels, 1, 1, 0, init));
}

int64_t AutoencoderKLImpl::downsampling_factor() const {
  return int64_t{1} << (config_.block_out_channels.size() - 1);
}

at::ScalarType AutoencoderKLImpl::dtype() const { return parameters().front().scalar_type(); }
c10::Device AutoencoderKLImpl::device() const { return parameters().front().device(); }

LatentDistribution AutoencoderKLImpl::encode(const at::Tensor& images) {
  TORCH_CHECK(images.dim() == 4 && images.size(1) == config_.in_channels, "VAE encode: images must be [B, ",
              config_.in_channels, ", H, W], got ", images.sizes());
  const int64_t f = downsampling_factor();
  TORCH_CHECK(images.size(2) % f == 0 && images.size(3) % f == 0, "VAE encode: image size ", images.size(3), "x",
              images.size(2), " is not a multiple of ", f);
  at::Tensor moments = encoder(images.to(at::TensorOptions().dtype(dtype()).device(device())));
  if (quant_conv_) moments = quant_conv_(moments);
  auto halves = moments.chunk(2, 1);
  return LatentDistribution{halves[0], at::clamp(halves[1], -30.0, 20.0)};
}

at::Tensor AutoencoderKLImpl::decode(const at::Tensor& latents) {
  TORCH_CHECK(latents.dim() == 4 && latents.size(1) == config_.latent_channels, "VAE decode: latents must be [B, ",
              config_.latent_channels, ", h, w], got ", latents.sizes());
  at::Tensor z = latents.to(at::TensorOptions().dtype(dtype()).device(device()));
  if (post_quant_conv_) z = post_quant_conv_(z);
  return decoder(z);
}

AutoencoderKL ComponentTraits<AutoencoderKL>::build(const VaeConfig& config, const WeightLoadOptions& options) {
  return AutoencoderKL(config, ParamInit{ParamInit::Fill::Uninitialized, options.dtype, options.device});
}

torch::nn::Module& ComponentTraits<AutoencoderKL>::target(AutoencoderKL& vae, const std::vector<std::string>& /*files*/,
                                                          WeightLoadOptions& options) {
  if (!options.rename)
    options.rename = [](const std::string& name) { return std::optional<std::string>(legacy_vae_name(name)); };
  return *vae;
}

}  // namespace via::model
