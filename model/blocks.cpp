#include "model/blocks.h"

#include <ATen/ATen.h>

#include <cmath>

#include "model/safetensors.h"  // ModelError

namespace via::model {

at::Tensor ParamInit::allocate(const std::vector<int64_t>& shape) const {
  const auto options = at::TensorOptions().dtype(dtype);
  switch (fill) {
    case Fill::ShapeOnly:
      return at::empty(shape, options.device(c10::kMeta));
    case Fill::Uninitialized:
      return at::empty(shape, options.device(device));
    case Fill::Random:
      break;
  }
  return at::Tensor();
}

// Random fills are drawn in fp32 on the CPU and then converted, so that a
// seed gives the same values whatever the target dtype and device.
at::Tensor ParamInit::uniform(std::vector<int64_t> shape, int64_t fan_in) const {
  if (fill != Fill::Random) return allocate(shape);
  const double bound = 1.0 / std::sqrt(static_cast<double>(fan_in));
  return at::empty(shape, at::kFloat).uniform_(-bound, bound).to(at::TensorOptions().dtype(dtype).device(device));
}

at::Tensor ParamInit::constant(std::vector<int64_t> shape, double value) const {
  if (fill != Fill::Random) return allocate(shape);
  return at::full(shape, value, at::TensorOptions().dtype(dtype).device(device));
}

Activation parse_activation(const std::string& name, const std::string& where) {
  if (name == "silu" || name == "swish") return Activation::SiLU;
  if (name == "mish") return Activation::Mish;
  if (name == "gelu") return Activation::GELU;
  if (name == "relu") return Activation::ReLU;
  throw ModelError(where + ": unsupported act_fn '" + name + "' (supported: silu, swish, mish, gelu, relu)");
}

at::Tensor activate(const at::Tensor& x, Activation act) {
  switch (act) {
    case Activation::SiLU:
      return at::silu(x);
    case Activation::Mish:
      return at::mish(x);
    case Activation::GELU:
      return at::gelu(x);
    case Activation::ReLU:
      return at::relu(x);
  }
  return x;
}

bool is_reduced_precision(at::ScalarType dtype) { return dtype == at::kHalf || dtype == at::kBFloat16; }

namespace {

// Whether a norm layer should compute its statistics in fp32 (see GroupNormImpl).
bool upcast_norm(const at::Tensor& x) { return is_reduced_precision(x.scalar_type()) && x.is_cpu(); }

}  // namespace

// ---- Linear ----

LinearImpl::LinearImpl(int64_t in_features, int64_t out_features, bool with_bias, const ParamInit& init)
    : in_features_(in_features), out_features_(out_features) {
  weight = register_parameter("weight", init.uniform({out_features, in_features}, in_features));
  if (with_bias) bias = register_parameter("bias", init.uniform({out_features}, in_features));
}

at::Tensor LinearImpl::forward(const at::Tensor& x) const { return at::linear(x, weight, bias); }

// ---- Conv2d ----

Conv2dImpl::Conv2dImpl(int64_t in_channels, int64_t out_channels, int64_t kernel, int64_t stride,
                       int64_t padding, const ParamInit& init)
    : stride_(stride), padding_(padding) {
  const int64_t fan_in = in_channels * kernel * kernel;
  weight = register_parameter("weight", init.uniform({out_channels, in_channels, kernel, kernel}, fan_in));
  bias = register_parameter("bias", init.uniform({out_channels}, fan_in));
}

at::Tensor Conv2dImpl::forward(const at::Tensor& x) const {
  // On the CPU, libtorch's oneDNN 1x1 convolution gives other bits for
  // another thread count (bench/thread_determinism.cpp); ATen's own (a GEMM
  // split over the outputs only) does not, at about the same speed. oneDNN's
  // 3x3 forward is the same for any count and up to 5x faster, so it stays.
  // (oneDNN's weight gradients depend on the count too: fine-tuning runs on
  // one thread, adaptation/finetune.cpp.)
  if (x.device().is_cpu() && weight.size(-1) == 1)
    return at::thnn_conv2d(x, weight, {1, 1}, bias, {stride_, stride_}, {padding_, padding_});
  return at::conv2d(x, weight, bias, {stride_, stride_}, {padding_, padding_});
}

// ---- GroupNorm / LayerNorm ----

GroupNormImpl::GroupNormImpl(int64_t groups, int64_t channels, double eps, const ParamInit& init)
    : groups_(groups), eps_(eps) {
  if (groups <= 0 || channels % groups != 0)
    throw ModelError("GroupNorm: " + std::to_string(channels) + " channels cannot be split into " +
                     std::to_string(groups) + " groups (norm_num_groups)");
  weight = register_parameter("weight", init.constant({channels}, 1.0));
  bias = register_parameter("bias", init.constant({channels}, 0.0));
}

at::Tensor GroupNormImpl::forward(const at::Tensor& x) const {
  if (upcast_norm(x))
    return at::group_norm(x.to(at::kFloat), groups_, weight.to(at::kFloat), bias.to(at::kFloat), eps_)
        .to(x.scalar_type());
  return at::group_norm(x, groups_, weight, bias, eps_);
}

LayerNormImpl::LayerNormImpl(int64_t dim, double eps, const ParamInit& init) : dim_(dim), eps_(eps) {
  weight = register_parameter("weight", init.constant({dim}, 1.0));
  bias = register_parameter("bias", init.constant({dim}, 0.0));
}

at::Tensor LayerNormImpl::forward(const at::Tensor& x) const {
  if (upcast_norm(x))
    return at::layer_norm(x.to(at::kFloat), {dim_}, weight.to(at::kFloat), bias.to(at::kFloat), eps_)
        .to(x.scalar_type());
  return at::layer_norm(x, {dim_}, weight, bias, eps_);
}

at::Tensor DropoutImpl::forward(const at::Tensor& x) {
  if (p_ > 0 && is_training()) return at::dropout(x, p_, /*train=*/true);
  return x;
}

// ---- ResnetBlock2D ----

ResnetBlock2DImpl::ResnetBlock2DImpl(int64_t in, int64_t out, const ResnetSpec& spec, const ParamInit& init)
    : spec_(spec) {
  norm1_ = register_module("norm1", GroupNorm(spec.groups, in, spec.eps, init));
  conv1_ = register_module("conv1", Conv2d(in, out, 3, 1, 1, init));
  if (spec.temb_channels > 0)
    time_emb_proj_ = register_module("time_emb_proj", Linear(spec.temb_channels, out, true, init));
  norm2_ = register_module("norm2", GroupNorm(spec.groups, out, spec.eps, init));
  dropout_ = register_module("dropout", Dropout(spec.dropout));
  conv2_ = register_module("conv2", Conv2d(out, out, 3, 1, 1, init));
  if (in != out) conv_shortcut_ = register_module("conv_shortcut", Conv2d(in, out, 1, 1, 0, init));
}

at::Tensor ResnetBlock2DImpl::forward(const at::Tensor& x, const at::Tensor& temb) {
  at::Tensor h = conv1_(activate(norm1_(x), spec_.act));
  if (time_emb_proj_ && temb.defined()) {
    // temb: [B, T] -> [B, out, 1, 1]
    h = h + time_emb_proj_(activate(temb, spec_.act)).unsqueeze(-1).unsqueeze(-1);
  }
  h = conv2_(dropout_(activate(norm2_(h), spec_.act)));
  at::Tensor shortcut = conv_shortcut_ ? conv_shortcut_(x) : x;
  at::Tensor out = shortcut + h;
  if (spec_.output_scale_factor != 1.0) out = out / spec_.output_scale_factor;
  return out;
}

// ---- Downsample2D / Upsample2D ----

Downsample2DImpl::Downsample2DImpl(int64_t channels, int64_t padding, const ParamInit& init) : padding_(padding) {
  conv_ = register_module("conv", Conv2d(channels, channels, 3, 2, padding, init));
}

at::Tensor Downsample2DImpl::forward(const at::Tensor& x) {
  if (padding_ == 0) return conv_(at::constant_pad_nd(x, {0, 1, 0, 1}, 0));
  return conv_(x);
}

Upsample2DImpl::Upsample2DImpl(int64_t channels, const ParamInit& init) {
  conv_ = register_module("conv", Conv2d(channels, channels, 3, 1, 1, init));
}

at::Tensor Upsample2DImpl::forward(const at::Tensor& x, const std::vector<int64_t>& size) {
  std::vector<int64_t> out_size = size;
  if (out_size.empty()) out_size = {x.size(2) * 2, x.size(3) * 2};
  const at::IntArrayRef sizes(out_size);
  return conv_(at::upsample_nearest2d(x, sizes));
}

}  // namespace via::model
