#include "model/unet.h"

#include <ATen/ATen.h>
#include <c10/util/Exception.h>
#include <nlohmann/json.hpp>
#include <torch/nn/modules/container/modulelist.h>

#include <cmath>
#include <utility>

#include "model/json_file.h"
#include "model/safetensors.h"  // ModelError
#include "model/weights.h"

namespace via::model {

namespace {

std::string dump(const nlohmann::json& value) { return value.dump(); }

// A setting that must be absent or null (features this UNet does not have).
void require_null(const nlohmann::json& config, const std::string& key, const std::string& where) {
  auto it = config.find(key);
  if (it != config.end() && !it->is_null())
    throw ModelError(where + ": unsupported setting " + key + " = " + dump(*it));
}

// A setting that must be absent or equal `expected`.
template <typename T>
void require_value(const nlohmann::json& config, const std::string& key, const T& expected, const std::string& where) {
  auto it = config.find(key);
  if (it == config.end() || it->is_null()) return;
  bool same = false;
  try {
    same = it->template get<T>() == expected;
  } catch (const nlohmann::json::exception&) {
  }
  if (!same) throw ModelError(where + ": unsupported setting " + key + " = " + dump(*it));
}

// A per-block setting: one value for all `n` blocks, or a list of `n`.
template <typename T>
std::vector<T> per_block(const nlohmann::json& config, const std::string& key, const T& fallback, size_t n,
                         const std::string& where) {
  auto it = config.find(key);
  if (it == config.end() || it->is_null()) return std::vector<T>(n, fallback);
  try {
    if (it->is_array()) {
      auto values = it->template get<std::vector<T>>();
      if (values.size() != n)
        throw ModelError(where + ": setting " + key + " has " + std::to_string(values.size()) + " entries for " +
                         std::to_string(n) + " down blocks");
      return values;
    }
    return std::vector<T>(n, it->template get<T>());
  } catch (const nlohmann::json::exception&) {
    throw ModelError(where + ": unsupported setting " + key + " = " + dump(*it));
  }
}

bool is_cross_attention_block(const std::string& type) {
  return type == "CrossAttnDownBlock2D" || type == "CrossAttnUpBlock2D";
}

}  // namespace

UNetConfig UNetConfig::from_json(const nlohmann::json& config, const std::string& where) {
  if (!config.is_object()) throw ModelError(where + ": UNet config is not a JSON object");
  UNetConfig c;
  c.in_channels = json_value<int64_t>(config, "in_channels", 4, where);
  c.out_channels = json_value<int64_t>(config, "out_channels", 4, where);
  c.center_input_sample = json_value<bool>(config, "center_input_sample", false, where);
  c.flip_sin_to_cos = json_value<bool>(config, "flip_sin_to_cos", true, where);
  c.freq_shift = json_value<double>(config, "freq_shift", 0.0, where);
  c.down_block_types = json_value<std::vector<std::string>>(
      config, "down_block_types",
      {"CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"}, where);
  c.up_block_types = json_value<std::vector<std::string>>(
      config, "up_block_types", {"UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"},
      where);
  // An explicit null means "no mid block" in diffusers; absent means the default.
  auto mid = config.find("mid_block_type");
  if (mid == config.end()) {
    c.mid_block_type = "UNetMidBlock2DCrossAttn";
  } else if (!mid->is_null()) {
    c.mid_block_type = json_value<std::string>(config, "mid_block_type", "", where);
    if (c.mid_block_type != "UNetMidBlock2DCrossAttn")
      throw ModelError(where + ": unsupported setting mid_block_type = " + dump(*mid));
  }
  const size_t n = c.down_block_types.size();
  if (n == 0) throw ModelError(where + ": down_block_types is empty");
  for (const auto& t : c.down_block_types)
    if (t != "CrossAttnDownBlock2D" && t != "DownBlock2D")
      throw ModelError(where + ": unsupported down block type '" + t + "' (supported: CrossAttnDownBlock2D, DownBlock2D)");
  for (const auto& t : c.up_block_types)
    if (t != "CrossAttnUpBlock2D" && t != "UpBlock2D")
      throw ModelError(where + ": unsupported up block type '" + t + "' (supported: CrossAttnUpBlock2D, UpBlock2D)");
  if (c.up_block_types.size() != n)
    throw ModelError(where + ": " + std::to_string(c.up_block_types.size()) + " up blocks for " + std::to_string(n) +
                     " down blocks");

  c.block_out_channels = json_value<std::vector<int64_t>>(config, "block_out_channels", {320, 640, 1280, 1280}, where);
  if (c.block_out_channels.size() != n)
    throw ModelError(where + ": block_out_channels has " + std::to_string(c.block_out_channels.size()) +
                     " entries for " + std::to_string(n) + " down blocks");
  c.only_cross_attention = per_block<bool>(config, "only_cross_attention", false, n, where);
  c.layers_per_block = per_block<int64_t>(config, "layers_per_block", 2, n, where);
  c.cross_attention_dim = per_block<int64_t>(config, "cross_attention_dim", 1280, n, where);
  c.transformer_layers_per_block = per_block<int64_t>(config, "transformer_layers_per_block", 1, n, where);
  // num_attention_heads, when given, is the head count; otherwise SD1's
  // attention_head_dim is (diffusers: num_attention_heads or attention_head_dim).
  auto heads = config.find("num_attention_heads");
  if (heads != config.end() && !heads->is_null())
    c.heads = per_block<int64_t>(config, "num_attention_heads", 8, n, where);
  else
    c.heads = per_block<int64_t>(config, "attention_head_dim", 8, n, where);
  c.downsample_padding = json_value<int64_t>(config, "downsample_padding", 1, where);
  c.mid_block_scale_factor = json_value<double>(config, "mid_block_scale_factor", 1.0, where);
  c.dropout = json_value<double>(config, "dropout", 0.0, where);
  c.act_fn = json_value<std::string>(config, "act_fn", "silu", where);
  parse_activation(c.act_fn, where);
  auto groups = config.find("norm_num_groups");
  if (groups != config.end() && groups->is_null())
    throw ModelError(where + ": unsupported setting norm_num_groups = null");
  c.norm_num_groups = json_value<int64_t>(config, "norm_num_groups", 32, where);
  c.norm_eps = json_value<double>(config, "norm_eps", 1e-5, where);
  c.use_linear_projection = json_value<bool>(config, "use_linear_projection", false, where);
  c.upcast_attention = json_value<bool>(config, "upcast_attention", false, where);
  c.time_embedding_dim = json_value<int64_t>(config, "time_embedding_dim", 0, where);
  c.conv_in_kernel = json_value<int64_t>(config, "conv_in_kernel", 3, where);
  c.conv_out_kernel = json_value<int64_t>(config, "conv_out_kernel", 3, where);
  if (c.conv_in_kernel % 2 == 0 || c.conv_out_kernel % 2 == 0)
    throw ModelError(where + ": conv_in_kernel / conv_out_kernel must be odd");

  // Features of other diffusers UNets that SD-1.x / InstructPix2Pix do not use.
  require_value<std::string>(config, "time_embedding_type", "positional", where);
  require_value<std::string>(config, "resnet_time_scale_shift", "default", where);
  require_value<std::string>(config, "attention_type", "default", where);
  require_value<bool>(config, "dual_cross_attention", false, where);
  for (const char* key : {"class_embed_type", "num_class_embeds", "addition_embed_type", "encoder_hid_dim",
                          "encoder_hid_dim_type", "time_cond_proj_dim", "time_embedding_act_fn", "timestep_post_act",
                          "cross_attention_norm", "reverse_transformer_layers_per_block"})
    require_null(config, key, where);
  return c;
}

UNetConfig UNetConfig::from_file(const std::string& path) { return from_json(read_json_file(path), path); }

// ---- the model ----

UNet2DConditionModelImpl::UNet2DConditionModelImpl(const UNetConfig& config, const ParamInit& init)
    : config_(config), act_(parse_activation(config.act_fn, "UNet config")) {
  const auto& c = config_;
  const size_t n = c.block_out_channels.size();
  TORCH_CHECK(n > 0 && c.down_block_types.size() == n && c.up_block_types.size() == n && c.heads.size() == n &&
                  c.layers_per_block.size() == n && c.cross_attention_dim.size() == n &&
                  c.transformer_layers_per_block.size() == n && c.only_cross_attention.size() == n,
              "UNetConfig: per-block settings must have one entry per down block");
  const int64_t time_embed_dim = c.time_embedding_dim > 0 ? c.time_embedding_dim : c.block_out_channels[0] * 4;

  conv_in_ = register_module(
      "conv_in", Conv2d(c.in_channels, c.block_out_channels[0], c.conv_in_kernel, 1, (c.conv_in_kernel - 1) / 2, init));
  auto time_embedding = std::make_shared<torch::nn::Module>("TimestepEmbedding");
  time_linear_1_ = time_embedding->register_module("linear_1", Linear(c.block_out_channels[0], time_embed_dim, true, init));
  time_linear_2_ = time_embedding->register_module("linear_2", Linear(time_embed_dim, time_embed_dim, true, init));
  register_module("time_embedding", time_embedding);

  ResnetSpec resnet;
  resnet.temb_channels = time_embed_dim;
  resnet.groups = c.norm_num_groups;
  resnet.eps = c.norm_eps;
  resnet.dropout = c.dropout;
  resnet.act = act_;
  auto transformer = [&](size_t i) {
    TransformerSpec t;
    t.heads = c.heads[i];
    t.cross_attention_dim = c.cross_attention_dim[i];
    t.layers = c.transformer_layers_per_block[i];
    t.use_linear_projection = c.use_linear_projection;
    t.only_cross_attention = c.only_cross_attention[i];
    t.upcast_attention = c.upcast_attention;
    t.dropout = 0.0;  // the cross-attention blocks do not pass `dropout` on to Transformer2DModel
    return t;
  };

  // Registration order as diffusers': down_blocks, up_blocks, mid_block.
  auto down_list = register_module("down_blocks", torch::nn::ModuleList());
  auto up_list = register_module("up_blocks", torch::nn::ModuleList());

  for (size_t i = 0; i < n; ++i) {
    DownBlockOptions o = down_block_options("down_blocks.", c.block_out_channels, i, c.layers_per_block[i], resnet);
    o.cross_attention = is_cross_attention_block(c.down_block_types[i]);
    o.transformer = transformer(i);
    o.downsample_padding = c.downsample_padding;
    down_blocks_.push_back(DownBlock(o, init));
    down_list->push_back(down_blocks_.back());
    for (const auto& a : down_blocks_.back()->attention_layers()) attention_layers_.push_back(a);
  }

  if (!c.mid_block_type.empty()) {
    MidBlockOptions o;
    o.name = "mid_block";
    o.channels = c.block_out_channels.back();
    o.resnet = resnet;
    o.resnet.output_scale_factor = c.mid_block_scale_factor;
    o.attention = MidBlockOptions::AttentionKind::Transformer;
    o.transformer = transformer(n - 1);
    o.transformer.only_cross_attention = false;  // UNetMidBlock2DCrossAttn does not take it
    mid_block_ = register_module("mid_block", MidBlock(o, init));
    for (const auto& a : mid_block_->attention_layers()) attention_layers_.push_back(a);
  }

  // Up blocks mirror the down blocks; only_cross_attention, heads, layers and
  // cross_attention_dim are reversed (diffusers reverses all but
  // attention_head_dim, which its cross-attention blocks do not use).
  int64_t out_ch = c.block_out_channels[n - 1];
  for (size_t i = 0; i < n; ++i) {
    const size_t r = n - 1 - i;
    UpBlockOptions o;
    o.name = "up_blocks." + std::to_string(i);
    o.prev_output_channels = out_ch;
    o.out_channels = out_ch = c.block_out_channels[r];
    o.in_channels = c.block_out_channels[r == 0 ? 0 : r - 1];
    o.num_layers = c.layers_per_block[r] + 1;
    o.resnet = resnet;
    o.cross_attention = is_cross_attention_block(c.up_block_types[i]);
    o.transformer = transformer(r);
    o.add_upsample = i + 1 < n;
    up_blocks_.push_back(UpBlock(o, init));
    up_list->push_back(up_blocks_.back());
    for (const auto& a : up_blocks_.back()->attention_layers()) attention_layers_.push_back(a);
  }

  conv_norm_out_ = register_module("conv_norm_out", GroupNorm(c.norm_num_groups, c.block_out_channels[0], c.norm_eps, init));
  conv_out_ = register_module("conv_out", Conv2d(c.block_out_channels[0], c.out_channels, c.conv_out_kernel, 1,
                                                 (c.conv_out_kernel - 1) / 2, init));
}

at::ScalarType UNet2DConditionModelImpl::dtype() const { return conv_in_->weight.scalar_type(); }
c10::Device UNet2DConditionModelImpl::device() const { return conv_in_->weight.device(); }

at::Tensor UNet2DConditionModelImpl::time_embed(const at::Tensor& timestep, int64_t batch, at::ScalarType dtype) {
  TORCH_CHECK(timestep.dim() == 0 || (timestep.dim() == 1 && (timestep.size(0) == 1 || timestep.size(0) == batch)),
              "UNet: timestep must be a scalar, [1] or [", batch, "], got ", timestep.sizes());
  at::Tensor t = timestep.to(device()).reshape({-1}).expand({batch});
  at::Tensor emb = timestep_embedding(t, config_.block_out_channels[0], config_.flip_sin_to_cos, config_.freq_shift);
  emb = emb.to(dtype);
  return time_linear_2_(activate(time_linear_1_(emb), act_));  // [B, time_embed_dim]
}

at::Tensor UNet2DConditionModelImpl::forward(const at::Tensor& sample_in, const at::Tensor& timestep,
                                             const at::Tensor& encoder_hidden_states, const AttentionContext& ctx) {
  const auto options = at::TensorOptions().dtype(dtype()).device(device());
  TORCH_CHECK(sample_in.dim() == 4 && sample_in.size(1) == config_.in_channels, "UNet: sample must be [B, ",
              config_.in_channels, ", h, w], got ", sample_in.sizes());
  const int64_t batch = sample_in.size(0);
  TORCH_CHECK(encoder_hidden_states.dim() == 3 && encoder_hidden_states.size(0) == batch,
              "UNet: encoder_hidden_states must be [", batch, ", tokens, channels], got ",
              encoder_hidden_states.sizes());
  TORCH_CHECK(ctx.branches.empty() || batch % static_cast<int64_t>(ctx.branches.size()) == 0, "UNet: batch ", batch,
              " is not a multiple of the ", ctx.branches.size(), " guidance branches");
  at::Tensor sample = sample_in.to(options);
  const at::Tensor context = encoder_hidden_states.to(options);
  if (config_.center_input_sample) sample = 2 * sample - 1.0;

  const at::Tensor emb = time_embed(timestep, batch, dtype());
  at::Tensor x = conv_in_(sample);

  std::vector<at::Tensor> skips{x};
  for (auto& block : down_blocks_) x = block->forward(x, emb, context, ctx, &skips);
  if (mid_block_) x = mid_block_(x, emb, context, ctx);

  // A size not divisible by the total upsampling factor makes each upsampler
  // target the matching skip's size instead of exactly 2x (diffusers'
  // forward_upsample_size).
  const int64_t factor = int64_t{1} << (up_blocks_.size() - 1);
  const bool forward_upsample_size = sample.size(2) % factor != 0 || sample.size(3) % factor != 0;
  for (size_t i = 0; i < up_blocks_.size(); ++i) {
    std::vector<int64_t> upsample_size;
    const size_t used = static_cast<size_t>(up_blocks_[i]->num_resnets());
    if (forward_upsample_size && i + 1 < up_blocks_.size() && skips.size() > used)
      upsample_size = skips[skips.size() - used - 1].sizes().slice(2).vec();
    x = up_blocks_[i]->forward(x, &skips, emb, context, ctx, upsample_size);
  }
  x = activate(conv_norm_out_(x), act_);
  return conv_out_(x);
}

at::Tensor UNet2DConditionModelImpl::forward(const at::Tensor& sample, double timestep,
                                             const at::Tensor& encoder_hidden_states, const AttentionContext& ctx) {
  return forward(sample, at::scalar_tensor(timestep, at::kDouble), encoder_hidden_states, ctx);
}

UNet2DConditionModel ComponentTraits<UNet2DConditionModel>::build(const UNetConfig& config,
                                                                   const WeightLoadOptions& options) {
  return UNet2DConditionModel(config, ParamInit{ParamInit::Fill::Uninitialized, options.dtype, options.device});
}

torch::nn::Module& ComponentTraits<UNet2DConditionModel>::target(UNet2DConditionModel& unet,
                                                                 const std::vector<std::string>& /*files*/,
                                                                 WeightLoadOptions& /*options*/) {
  return *unet;
}

// ---- time embedding ----

at::Tensor timestep_embedding(const at::Tensor& timesteps, int64_t dim, bool flip_sin_to_cos,
                              double downscale_freq_shift, double scale, double max_period) {
  TORCH_CHECK(timesteps.dim() == 1, "timestep_embedding: timesteps must be 1-D, got ", timesteps.sizes());
  const int64_t half = dim / 2;
  // Same operation order and fp32 arithmetic as diffusers, for bitwise-close results.
  at::Tensor exponent = at::arange(0, half, at::TensorOptions().dtype(at::kFloat).device(timesteps.device())) *
                        (-std::log(max_period));
  exponent = exponent / (static_cast<double>(half) - downscale_freq_shift);
  at::Tensor emb = timesteps.unsqueeze(1).to(at::kFloat) * at::exp(exponent).unsqueeze(0);  // [N, half]
  if (scale != 1.0) emb = emb * scale;
  emb = flip_sin_to_cos ? at::cat({at::cos(emb), at::sin(emb)}, -1) : at::cat({at::sin(emb), at::cos(emb)}, -1);
  if (dim % 2 == 1) emb = at::constant_pad_nd(emb, {0, 1, 0, 0}, 0);
  return emb;
}

}  // namespace via::model
