#include "model/unet_blocks.h"

#include <ATen/ATen.h>
#include <c10/util/Exception.h>
#include <torch/nn/modules/container/modulelist.h>

#include <utility>

#include "model/safetensors.h"  // ModelError

namespace via::model {

namespace {

void append(std::vector<Attention>& to, const std::vector<Attention>& from) {
  to.insert(to.end(), from.begin(), from.end());
}

}  // namespace

// ---- BasicTransformerBlock ----

BasicTransformerBlockImpl::BasicTransformerBlockImpl(const std::string& name, int64_t dim, int64_t dim_head,
                                                     const TransformerSpec& spec, const ParamInit& init)
    : only_cross_attention_(spec.only_cross_attention) {
  constexpr double kNormEps = 1e-5;  // Transformer2DModel's norm_eps; the UNet does not pass its own
  AttentionOptions a;
  a.query_dim = dim;
  a.heads = spec.heads;
  a.dim_head = dim_head;
  a.upcast_attention = spec.upcast_attention;
  a.dropout = spec.dropout;

  norm1_ = register_module("norm1", LayerNorm(dim, kNormEps, init));
  a.name = name + ".attn1";
  a.cross_attention_dim = spec.only_cross_attention ? spec.cross_attention_dim : 0;
  attn1 = register_module("attn1", Attention(a, init));
  norm2_ = register_module("norm2", LayerNorm(dim, kNormEps, init));
  a.name = name + ".attn2";
  a.cross_attention_dim = spec.cross_attention_dim;
  attn2 = register_module("attn2", Attention(a, init));
  norm3_ = register_module("norm3", LayerNorm(dim, kNormEps, init));

  // FeedForward(dim, mult 4, "geglu"): net.0 = GEGLU(proj: dim -> 2 * inner),
  // net.1 = Dropout, net.2 = Linear(inner -> dim).
  const int64_t inner = dim * 4;
  auto geglu = std::make_shared<torch::nn::Module>("GEGLU");
  ff_proj_ = geglu->register_module("proj", Linear(dim, inner * 2, true, init));
  ff_dropout_ = Dropout(spec.dropout);
  ff_out_ = Linear(inner, dim, true, init);
  auto net = torch::nn::ModuleList();
  net->push_back(geglu);
  net->push_back(ff_dropout_);
  net->push_back(ff_out_);
  auto ff = std::make_shared<torch::nn::Module>("FeedForward");
  ff->register_module("net", net);
  register_module("ff", ff);
}

at::Tensor BasicTransformerBlockImpl::forward(const at::Tensor& x, const at::Tensor& context,
                                              const AttentionContext& ctx) {
  at::Tensor h = attn1->forward(norm1_(x), only_cross_attention_ ? context : at::Tensor(), ctx) + x;
  h = attn2->forward(norm2_(h), context, ctx) + h;
  // GEGLU: value * gelu(gate), the projection split in two along channels.
  at::Tensor proj = ff_proj_(norm3_(h));
  auto halves = proj.chunk(2, -1);
  at::Tensor ff = ff_out_(ff_dropout_(halves[0] * at::gelu(halves[1])));
  return ff + h;
}

// ---- Transformer2DModel ----

Transformer2DModelImpl::Transformer2DModelImpl(const std::string& name, int64_t channels, int64_t norm_groups,
                                               const TransformerSpec& spec, const ParamInit& init)
    : linear_projection_(spec.use_linear_projection) {
  if (spec.heads <= 0 || channels % spec.heads != 0)
    throw ModelError(name + ": " + std::to_string(channels) + " channels cannot be split into " +
                     std::to_string(spec.heads) + " attention heads");
  const int64_t dim_head = channels / spec.heads;
  inner_dim_ = spec.heads * dim_head;
  norm_ = register_module("norm", GroupNorm(norm_groups, channels, 1e-6, init));
  if (linear_projection_)
    proj_in_linear_ = register_module("proj_in", Linear(channels, inner_dim_, true, init));
  else
    proj_in_conv_ = register_module("proj_in", Conv2d(channels, inner_dim_, 1, 1, 0, init));
  auto list = register_module("transformer_blocks", torch::nn::ModuleList());
  for (int64_t i = 0; i < spec.layers; ++i) {
    blocks_.push_back(BasicTransformerBlock(name + ".transformer_blocks." + std::to_string(i), inner_dim_,
                                            dim_head, spec, init));
    list->push_back(blocks_.back());
  }
  if (linear_projection_)
    proj_out_linear_ = register_module("proj_out", Linear(inner_dim_, channels, true, init));
  else
    proj_out_conv_ = register_module("proj_out", Conv2d(inner_dim_, channels, 1, 1, 0, init));
}

at::Tensor Transformer2DModelImpl::forward(const at::Tensor& x, const at::Tensor& context,
                                           const AttentionContext& ctx) {
  const int64_t b = x.size(0), c = x.size(1), h = x.size(2), w = x.size(3);
  at::Tensor hs = norm_(x);
  if (linear_projection_) {
    hs = proj_in_linear_(hs.permute({0, 2, 3, 1}).reshape({b, h * w, c}));
  } else {
    hs = proj_in_conv_(hs);
    hs = hs.permute({0, 2, 3, 1}).reshape({b, h * w, inner_dim_});
  }
  for (auto& block : blocks_) hs = block(hs, context, ctx);  // [B, HW, inner]
  if (linear_projection_) {
    hs = proj_out_linear_(hs).reshape({b, h, w, c}).permute({0, 3, 1, 2}).contiguous();
  } else {
    hs = hs.reshape({b, h, w, inner_dim_}).permute({0, 3, 1, 2}).contiguous();
    hs = proj_out_conv_(hs);
  }
  return hs + x;
}

std::vector<Attention> Transformer2DModelImpl::attention_layers() const {
  std::vector<Attention> out;
  for (const auto& block : blocks_) {
    out.push_back(block->attn1);
    out.push_back(block->attn2);
  }
  return out;
}

// ---- BlockLayers ----

BlockLayers::BlockLayers(torch::nn::Module& block, const BlockOptions& options) : options_(options) {
  if (options_.cross_attention) attention_list_ = block.register_module("attentions", torch::nn::ModuleList());
  resnet_list_ = block.register_module("resnets", torch::nn::ModuleList());
}

void BlockLayers::add(int64_t in_channels, const ParamInit& init) {
  const BlockOptions& o = options_;
  resnets_.push_back(ResnetBlock2D(in_channels, o.out_channels, o.resnet, init));
  resnet_list_->push_back(resnets_.back());
  if (o.cross_attention) {
    attentions_.push_back(Transformer2DModel(o.name + ".attentions." + std::to_string(resnets_.size() - 1),
                                             o.out_channels, o.resnet.groups, o.transformer, init));
    attention_list_->push_back(attentions_.back());
  }
}

at::Tensor BlockLayers::forward(size_t i, const at::Tensor& x, const at::Tensor& temb, const at::Tensor& context,
                                const AttentionContext& ctx) {
  at::Tensor h = resnets_[i](x, temb);
  if (!attentions_.empty()) h = attentions_[i](h, context, ctx);
  return h;
}

std::vector<Attention> BlockLayers::attention_layers() const {
  std::vector<Attention> out;
  for (const auto& t : attentions_) append(out, t->attention_layers());
  return out;
}

// ---- DownBlock ----

DownBlockOptions down_block_options(const std::string& prefix, const std::vector<int64_t>& channels, size_t i,
                                    int64_t layers, const ResnetSpec& resnet) {
  DownBlockOptions o;
  o.name = prefix + std::to_string(i);
  o.in_channels = channels[i == 0 ? 0 : i - 1];
  o.out_channels = channels[i];
  o.num_layers = layers;
  o.resnet = resnet;
  o.add_downsample = i + 1 < channels.size();
  return o;
}

DownBlockImpl::DownBlockImpl(const DownBlockOptions& o, const ParamInit& init) : layers_(*this, o) {
  for (int64_t i = 0; i < o.num_layers; ++i) layers_.add(i == 0 ? o.in_channels : o.out_channels, init);
  if (o.add_downsample) {
    downsampler_ = Downsample2D(o.out_channels, o.downsample_padding, init);
    register_module("downsamplers", torch::nn::ModuleList(downsampler_));
  }
}

at::Tensor DownBlockImpl::forward(at::Tensor x, const at::Tensor& temb, const at::Tensor& context,
                                  const AttentionContext& ctx, std::vector<at::Tensor>* skips) {
  for (size_t i = 0; i < layers_.size(); ++i) {
    x = layers_.forward(i, x, temb, context, ctx);
    if (skips) skips->push_back(x);
  }
  if (downsampler_) {
    x = downsampler_(x);
    if (skips) skips->push_back(x);
  }
  return x;
}

// ---- UpBlock ----

UpBlockImpl::UpBlockImpl(const UpBlockOptions& o, const ParamInit& init) : layers_(*this, o) {
  for (int64_t i = 0; i < o.num_layers; ++i) {
    int64_t in = 0;
    if (o.skip_connections) {
      // The last resnet's skip comes from the previous resolution's block.
      const int64_t skip = i == o.num_layers - 1 ? o.in_channels : o.out_channels;
      in = (i == 0 ? o.prev_output_channels : o.out_channels) + skip;
    } else {
      in = i == 0 ? o.in_channels : o.out_channels;
    }
    layers_.add(in, init);
  }
  if (o.add_upsample) {
    upsampler_ = Upsample2D(o.out_channels, init);
    register_module("upsamplers", torch::nn::ModuleList(upsampler_));
  }
}

at::Tensor UpBlockImpl::forward(at::Tensor x, std::vector<at::Tensor>* skips, const at::Tensor& temb,
                                const at::Tensor& context, const AttentionContext& ctx,
                                const std::vector<int64_t>& upsample_size) {
  for (size_t i = 0; i < layers_.size(); ++i) {
    if (skips) {
      TORCH_CHECK(!skips->empty(), "up block: ran out of skip connections");
      x = at::cat({x, skips->back()}, 1);
      skips->pop_back();
    }
    x = layers_.forward(i, x, temb, context, ctx);
  }
  if (upsampler_) x = upsampler_(x, upsample_size);
  return x;
}

// ---- MidBlock ----

MidBlockImpl::MidBlockImpl(const MidBlockOptions& o, const ParamInit& init) {
  using Kind = MidBlockOptions::AttentionKind;
  torch::nn::ModuleList attention_list = register_module("attentions", torch::nn::ModuleList());
  auto resnet_list = register_module("resnets", torch::nn::ModuleList());
  auto add_resnet = [&] {
    resnets_.push_back(ResnetBlock2D(o.channels, o.channels, o.resnet, init));
    resnet_list->push_back(resnets_.back());
  };
  add_resnet();
  for (int64_t i = 0; i < o.num_layers; ++i) {
    if (o.attention == Kind::Transformer) {
      transformers_.push_back(Transformer2DModel(o.name + ".attentions." + std::to_string(i), o.channels,
                                                 o.resnet.groups, o.transformer, init));
      attention_list->push_back(transformers_.back());
    } else if (o.attention == Kind::Spatial) {
      // UNetMidBlock2D: one head of all channels, group norm, residual, bias.
      AttentionOptions a;
      a.name = o.name + ".attentions." + std::to_string(i);
      a.query_dim = o.channels;
      a.heads = 1;
      a.dim_head = o.channels;
      a.qkv_bias = true;
      a.norm_num_groups = o.resnet.groups;
      a.norm_eps = o.resnet.eps;
      a.residual_connection = true;
      a.rescale_output_factor = o.resnet.output_scale_factor;
      spatial_.push_back(Attention(a, init));
      attention_list->push_back(spatial_.back());
    }
    add_resnet();
  }
}

at::Tensor MidBlockImpl::forward(at::Tensor x, const at::Tensor& temb, const at::Tensor& context,
                                 const AttentionContext& ctx) {
  x = resnets_[0](x, temb);
  for (size_t i = 1; i < resnets_.size(); ++i) {
    if (!transformers_.empty()) x = transformers_[i - 1](x, context, ctx);
    if (!spatial_.empty()) x = spatial_[i - 1]->forward_spatial(x);
    x = resnets_[i](x, temb);
  }
  return x;
}

std::vector<Attention> MidBlockImpl::attention_layers() const {
  std::vector<Attention> out;
  for (const auto& t : transformers_) append(out, t->attention_layers());
  return out;
}

}  // namespace via::model
