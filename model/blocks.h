#pragma once
// Building blocks shared by the UNet and the VAE: the parameter-owning layers
// (Linear, Conv2d, GroupNorm, LayerNorm) and the diffusers blocks made of them
// (ResnetBlock2D, Downsample2D, Upsample2D). Submodule and parameter names
// equal the diffusers checkpoint's names, so loading weights is a lookup.
//
// The layers are our own rather than torch::nn's because torch::nn layers
// always allocate and randomly initialise fp32 CPU parameters when built: a
// full-size UNet would cost 3.4 GB and seconds of initialisation before its
// weights are loaded over it. Ours allocate exactly what ParamInit asks for:
// random (the PyTorch defaults), uninitialised in the target dtype and device
// (for loading), or shape-only on the meta device (for name/shape checks).
#include <ATen/core/Tensor.h>
#include <c10/core/Device.h>
#include <c10/core/ScalarType.h>
#include <torch/nn/module.h>
#include <torch/nn/pimpl.h>

#include <cstdint>
#include <string>
#include <vector>

namespace via::model {

/// How a model's parameters are created when it is built.
struct ParamInit {
  enum class Fill {
    Random,         ///< PyTorch's default initialisation (uses the global generator)
    Uninitialized,  ///< allocated, contents undefined: every parameter is loaded afterwards
    ShapeOnly,      ///< meta-device tensors: names and shapes only, no memory, no forward
  };
  Fill fill = Fill::Random;
  at::ScalarType dtype = at::kFloat;
  c10::Device device = c10::Device(c10::kCPU);

  /// A new weight of `shape` as this spec says; the random fill is
  /// U(-1/sqrt(fan_in), 1/sqrt(fan_in)), what torch.nn.Linear/Conv2d do.
  at::Tensor uniform(std::vector<int64_t> shape, int64_t fan_in) const;
  /// A new parameter of `shape`; the random fill is `value` (norm layers:
  /// weights 1, biases 0).
  at::Tensor constant(std::vector<int64_t> shape, double value) const;

 private:
  at::Tensor allocate(const std::vector<int64_t>& shape) const;  // undefined for Fill::Random
};

/// The activation functions diffusers configs name (`act_fn`).
enum class Activation { SiLU, Mish, GELU, ReLU };

/// Parses an `act_fn` value ("silu"/"swish", "mish", "gelu", "relu"); any
/// other value throws ModelError naming it and `where`.
Activation parse_activation(const std::string& name, const std::string& where);
at::Tensor activate(const at::Tensor& x, Activation act);

/// y = x W^T + b. Parameters `weight` [out, in] and optional `bias` [out].
class LinearImpl : public torch::nn::Module {
 public:
  LinearImpl(int64_t in_features, int64_t out_features, bool bias, const ParamInit& init);
  at::Tensor forward(const at::Tensor& x) const;

  int64_t in_features() const { return in_features_; }
  int64_t out_features() const { return out_features_; }
  at::Tensor weight, bias;  // bias undefined when built without one

 private:
  int64_t in_features_, out_features_;
};
TORCH_MODULE(Linear);

/// 2-D convolution with square kernel, stride and zero padding; parameters
/// `weight` [out, in, k, k] and `bias` [out].
class Conv2dImpl : public torch::nn::Module {
 public:
  Conv2dImpl(int64_t in_channels, int64_t out_channels, int64_t kernel, int64_t stride, int64_t padding,
             const ParamInit& init);
  at::Tensor forward(const at::Tensor& x) const;  // x: [B, in, H, W]

  at::Tensor weight, bias;

 private:
  int64_t stride_, padding_;
};
TORCH_MODULE(Conv2d);

/// GroupNorm with affine `weight`/`bias` [channels]. Reduced-precision inputs
/// on CPU are normalised in fp32 (this libtorch's CPU kernels accumulate
/// bf16 statistics in bf16; CUDA kernels accumulate in fp32 already).
class GroupNormImpl : public torch::nn::Module {
 public:
  GroupNormImpl(int64_t groups, int64_t channels, double eps, const ParamInit& init);
  at::Tensor forward(const at::Tensor& x) const;  // x: [B, C, ...]

  at::Tensor weight, bias;

 private:
  int64_t groups_;
  double eps_;
};
TORCH_MODULE(GroupNorm);

/// LayerNorm over the last dimension, affine `weight`/`bias` [dim]; fp32
/// statistics for reduced-precision CPU inputs, as GroupNorm.
class LayerNormImpl : public torch::nn::Module {
 public:
  LayerNormImpl(int64_t dim, double eps, const ParamInit& init);
  at::Tensor forward(const at::Tensor& x) const;

  at::Tensor weight, bias;

 private:
  int64_t dim_;
  double eps_;
};
TORCH_MODULE(LayerNorm);

/// Dropout with no parameters; it holds a slot in a ModuleList so that the
/// following layer's index matches the checkpoint (`ff.net.2`, `to_out.0`).
/// Active only in training mode with p > 0.
class DropoutImpl : public torch::nn::Module {
 public:
  explicit DropoutImpl(double p) : p_(p) {}
  at::Tensor forward(const at::Tensor& x);

 private:
  double p_;
};
TORCH_MODULE(Dropout);

/// The settings of a ResnetBlock2D other than its channels, shared by the
/// resnets of one block.
struct ResnetSpec {
  int64_t temb_channels = 0;  ///< 0: no time embedding (VAE)
  int64_t groups = 32;
  double eps = 1e-5;
  double dropout = 0.0;
  double output_scale_factor = 1.0;
  Activation act = Activation::SiLU;
};

/// diffusers `ResnetBlock2D` with time_embedding_norm "default" (resnet.py):
/// norm1 -> act -> conv1 (+ time_emb_proj(act(temb))) -> norm2 -> act ->
/// dropout -> conv2, plus the input (through the 1x1 `conv_shortcut` when the
/// channel count changes), divided by output_scale_factor.
class ResnetBlock2DImpl : public torch::nn::Module {
 public:
  ResnetBlock2DImpl(int64_t in_channels, int64_t out_channels, const ResnetSpec& spec, const ParamInit& init);
  /// x: [B, in, H, W]; temb: [B, temb_channels] or undefined -> [B, out, H, W].
  at::Tensor forward(const at::Tensor& x, const at::Tensor& temb);

 private:
  ResnetSpec spec_;
  GroupNorm norm1_{nullptr}, norm2_{nullptr};
  Conv2d conv1_{nullptr}, conv2_{nullptr}, conv_shortcut_{nullptr};
  Linear time_emb_proj_{nullptr};
  Dropout dropout_{nullptr};
};
TORCH_MODULE(ResnetBlock2D);

/// diffusers `Downsample2D` with a convolution (downsampling.py): a 3x3
/// stride-2 conv named `conv`; padding 0 pads one zero row/column at the
/// bottom/right first (the VAE encoder's form).
class Downsample2DImpl : public torch::nn::Module {
 public:
  Downsample2DImpl(int64_t channels, int64_t padding, const ParamInit& init);
  at::Tensor forward(const at::Tensor& x);

 private:
  int64_t padding_;
  Conv2d conv_{nullptr};
};
TORCH_MODULE(Downsample2D);

/// diffusers `Upsample2D` with a convolution (upsampling.py): nearest 2x (or
/// to `size`) then a 3x3 conv named `conv`.
class Upsample2DImpl : public torch::nn::Module {
 public:
  Upsample2DImpl(int64_t channels, const ParamInit& init);
  /// size: output [H, W], or empty for exactly twice the input.
  at::Tensor forward(const at::Tensor& x, const std::vector<int64_t>& size = {});

 private:
  Conv2d conv_{nullptr};
};
TORCH_MODULE(Upsample2D);

/// True for the dtypes this libtorch's CPU kernels reduce imprecisely.
bool is_reduced_precision(at::ScalarType dtype);

}  // namespace via::model
