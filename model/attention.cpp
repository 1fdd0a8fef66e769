#include "model/attention.h"

#include <ATen/ATen.h>
#include <c10/util/Exception.h>
#include <torch/version.h>

#include <algorithm>
#include <cmath>
#include <utility>
#include <vector>

namespace via::model {

AttentionImpl::AttentionImpl(AttentionOptions options, const ParamInit& init)
    : torch::nn::Module(options.name), options_(std::move(options)) {
  const auto& o = options_;
  TORCH_CHECK(o.query_dim > 0 && o.heads > 0 && o.dim_head > 0, "Attention ", o.name, ": bad dimensions");
  const int64_t inner = o.heads * o.dim_head;
  const int64_t kv_dim = o.cross_attention_dim > 0 ? o.cross_attention_dim : o.query_dim;
  if (o.norm_num_groups > 0)
    group_norm = register_module("group_norm", GroupNorm(o.norm_num_groups, o.query_dim, o.norm_eps, init));
  to_q = register_module("to_q", Linear(o.query_dim, inner, o.qkv_bias, init));
  to_k = register_module("to_k", Linear(kv_dim, inner, o.qkv_bias, init));
  to_v = register_module("to_v", Linear(kv_dim, inner, o.qkv_bias, init));
  out_proj_ = Linear(inner, o.query_dim, /*bias=*/true, init);
  out_dropout_ = Dropout(o.dropout);
  to_out = register_module("to_out", torch::nn::ModuleList(out_proj_, out_dropout_));
}

at::Tensor AttentionImpl::project(Projection which, const at::Tensor& x, const AttentionContext* ctx) {
  at::Tensor y = base_projection(which, x);
  if (adapter_ == nullptr) return y;
  const auto blocks = ctx ? static_cast<int64_t>(ctx->branches.size()) : 0;
  const int64_t frames = blocks > 0 ? x.size(0) / blocks : 1;
  if (frames <= 1 || !x.is_cpu()) {
    const at::Tensor d = adapter_->delta(which, x);
    return d.defined() ? y + d : y;
  }
  // Several frames per branch ([block 0: frames 0..F-1, block 1: ...]): the
  // adapter's small products run per frame, on the rows that frame has alone
  // (one per branch), because the CPU's BLAS picks its kernels by the
  // matrices' sizes and the adapter's rank-r products come out different in
  // the last bits for another row count; so a frame's edit does not depend
  // on the batch it is in (--batch-frames). The base projections are batched.
  std::vector<at::Tensor> rows(static_cast<size_t>(x.size(0)));
  for (int64_t f = 0; f < frames; ++f) {
    const at::Tensor index = at::arange(f, x.size(0), frames, at::TensorOptions().dtype(at::kLong));
    const at::Tensor d = adapter_->delta(which, x.index_select(0, index));
    if (!d.defined()) return y;
    for (int64_t b = 0; b < blocks; ++b) rows[static_cast<size_t>(b * frames + f)] = d[b];
  }
  return y + at::stack(rows, 0);
}

at::Tensor AttentionImpl::base_projection(Projection which, const at::Tensor& x) {
  switch (which) {
    case Projection::Query:
      return to_q(x);
    case Projection::Key:
      return to_k(x);
    case Projection::Value:
      return to_v(x);
    case Projection::Out:
      return out_proj_(x);
  }
  return x;
}

at::Tensor AttentionImpl::forward(const at::Tensor& hidden, const at::Tensor& context, const AttentionContext& ctx) {
  TORCH_CHECK(hidden.dim() == 3, "Attention ", name(), ": hidden states must be [B, N, C], got ", hidden.sizes());
  TORCH_CHECK(is_cross() == context.defined(), "Attention ", name(),
              is_cross() ? ": cross-attention needs a context" : ": self-attention takes no context");
  const at::Tensor& source = context.defined() ? context : hidden;
  at::Tensor q = project(Projection::Query, hidden, &ctx);  // [B, N, inner]
  at::Tensor k = project(Projection::Key, source, &ctx);    // [B, M, inner]
  at::Tensor v = project(Projection::Value, source, &ctx);
  if (ctx.control != nullptr) {
    auto kv = ctx.control->keys_values(AttentionSite{name(), is_cross(), ctx}, q, k, v);
    const at::Tensor& k2 = kv.first;
    const at::Tensor& v2 = kv.second;
    TORCH_CHECK(k2.defined() && v2.defined() && k2.dim() == 3 && v2.dim() == 3, "attention control at ", name(),
                ": keys and values must be [B, M, C] tensors");
    TORCH_CHECK(k2.size(0) == q.size(0) && v2.size(0) == q.size(0) && k2.size(2) == k.size(2) &&
                    v2.size(2) == v.size(2) && k2.size(1) == v2.size(1),
                "attention control at ", name(), ": keys ", k2.sizes(), " / values ", v2.sizes(),
                " do not fit queries ", q.sizes());
    k = k2.to(q.options());
    v = v2.to(q.options());
  }
  at::Tensor out = scaled_dot_product(q, k, v, options_.heads, options_.upcast_attention);
  return out_dropout_(project(Projection::Out, out, &ctx));
}

at::Tensor AttentionImpl::forward_spatial(const at::Tensor& x) {
  TORCH_CHECK(x.dim() == 4, "Attention ", name(), ": expected [B, C, H, W], got ", x.sizes());
  const int64_t b = x.size(0), c = x.size(1), h = x.size(2), w = x.size(3);
  at::Tensor hs = group_norm ? group_norm(x) : x;
  hs = hs.view({b, c, h * w}).transpose(1, 2);  // [B, HW, C]
  at::Tensor q = project(Projection::Query, hs);
  at::Tensor k = project(Projection::Key, hs);
  at::Tensor v = project(Projection::Value, hs);
  at::Tensor out = scaled_dot_product(q, k, v, options_.heads, options_.upcast_attention);
  out = out_dropout_(project(Projection::Out, out));  // [B, HW, C]
  out = out.transpose(1, 2).reshape({b, c, h, w});
  if (options_.residual_connection) out = out + x;
  if (options_.rescale_output_factor != 1.0) out = out / options_.rescale_output_factor;
  return out;
}

namespace {

// [B, N, H*D] -> [B, H, N, D]
at::Tensor split_heads(const at::Tensor& x, int64_t heads) {
  return x.view({x.size(0), x.size(1), heads, x.size(2) / heads}).transpose(1, 2);
}

#if TORCH_VERSION_MAJOR < 2
// Score matrices of at most this many bytes are computed at once.
constexpr int64_t kScoreBudgetBytes = int64_t{256} << 20;

// The math form, as diffusers' AttnProcessor (get_attention_scores): scores
// = scale * Q K^T, softmax, probabilities times V. (Not baddbmm with an
// empty input and beta = 0: libtorch 1.13 lets the uninitialised input leak
// NaNs into the result for some small shapes.)
at::Tensor math_attention(const at::Tensor& q4, const at::Tensor& k4, const at::Tensor& v4, bool upcast_scores) {
  const int64_t b = q4.size(0), heads = q4.size(1), n = q4.size(2), d = q4.size(3), m = k4.size(2);
  const auto dtype = q4.scalar_type();
  const double scale = 1.0 / std::sqrt(static_cast<double>(d));
  at::Tensor q = q4.reshape({b * heads, n, d});
  at::Tensor k = k4.reshape({b * heads, m, d});
  at::Tensor v = v4.reshape({b * heads, m, d});
  if (upcast_scores) {
    q = q.to(at::kFloat);
    k = k.to(at::kFloat);
  }
  const at::Tensor kt = k.transpose(1, 2);
  const bool fp32_softmax = is_reduced_precision(dtype) || upcast_scores;
  const int64_t per_slice = n * m * 4 * 2;  // fp32 scores + probabilities
  const int64_t slice = std::max<int64_t>(1, kScoreBudgetBytes / std::max<int64_t>(per_slice, 1));
  // Slices are concatenated rather than written into one buffer with bmm_out:
  // out= variants have no autograd, and fine-tuning backpropagates through here.
  std::vector<at::Tensor> parts;
  for (int64_t s = 0; s < b * heads; s += slice) {
    const int64_t len = std::min(slice, b * heads - s);
    const at::Tensor qs = q.narrow(0, s, len);
    const at::Tensor scores = at::bmm(qs, kt.narrow(0, s, len)).mul_(scale);
    const at::Tensor probs = fp32_softmax ? at::softmax(scores, -1, at::kFloat).to(dtype) : at::softmax(scores, -1);
    parts.push_back(at::bmm(probs, v.narrow(0, s, len)));
  }
  const at::Tensor out = parts.size() == 1 ? parts.front() : at::cat(parts, 0);
  return out.view({b, heads, n, d});
}
#endif

}  // namespace

at::Tensor scaled_dot_product(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, int64_t heads,
                              bool upcast_scores) {
  const int64_t b = q.size(0), n = q.size(1), inner = q.size(2);
  TORCH_CHECK(inner % heads == 0, "attention: width ", inner, " is not a multiple of ", heads, " heads");
  const at::Tensor q4 = split_heads(q, heads), k4 = split_heads(k, heads), v4 = split_heads(v, heads);
#if TORCH_VERSION_MAJOR >= 2
  (void)upcast_scores;  // the fused kernels accumulate in fp32, as in the reference's AttnProcessor2_0
  at::Tensor out = at::scaled_dot_product_attention(q4, k4, v4);
#else
  at::Tensor out = math_attention(q4, k4, v4, upcast_scores);
#endif
  return out.transpose(1, 2).reshape({b, n, inner});  // [B, N, H*D]
}

}  // namespace via::model
