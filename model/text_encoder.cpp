// Ported from transformers 5.23 `models/clip/modeling_clip.py` (CLIPTextModel,
// CLIPTextTransformer, CLIPEncoderLayer, CLIPAttention, CLIPMLP) and
// `activations.py` (QuickGELUActivation).
#include "model/text_encoder.h"

#include "model/json_file.h"
#include "model/safetensors.h"
#include "model/tensor_file.h"
#include "model/weights.h"

#include <ATen/ATen.h>
#include <torch/version.h>

#include <cmath>
#include <limits>

namespace via::model {
namespace {

int64_t positive(const nlohmann::json& config, const char* key, int64_t fallback, const std::string& where) {
  const int64_t v = json_value<int64_t>(config, key, fallback, where);
  if (v <= 0) throw ModelError(where + ": '" + std::string(key) + "' must be positive (got " + std::to_string(v) + ")");
  return v;
}

}  // namespace

CLIPTextConfig CLIPTextConfig::from_json(const nlohmann::json& config, const std::string& where) {
  if (!config.is_object()) throw ModelError(where + ": expected a JSON object");
  const std::string model_type = json_value<std::string>(config, "model_type", "clip_text_model", where);
  if (model_type != "clip_text_model")
    throw ModelError(where + ": model_type '" + model_type + "' is not a CLIP text model (expected clip_text_model)");
  CLIPTextConfig c;
  c.vocab_size = positive(config, "vocab_size", c.vocab_size, where);
  c.hidden_size = positive(config, "hidden_size", c.hidden_size, where);
  c.intermediate_size = positive(config, "intermediate_size", c.intermediate_size, where);
  c.num_hidden_layers = positive(config, "num_hidden_layers", c.num_hidden_layers, where);
  c.num_attention_heads = positive(config, "num_attention_heads", c.num_attention_heads, where);
  c.max_position_embeddings = positive(config, "max_position_embeddings", c.max_position_embeddings, where);
  c.hidden_act = json_value<std::string>(config, "hidden_act", c.hidden_act, where);
  c.layer_norm_eps = json_value<double>(config, "layer_norm_eps", c.layer_norm_eps, where);
  if (c.hidden_size % c.num_attention_heads != 0)
    throw ModelError(where + ": hidden_size " + std::to_string(c.hidden_size) + " is not divisible by num_attention_heads " +
                     std::to_string(c.num_attention_heads));
  if (c.hidden_act != "quick_gelu" && c.hidden_act != "gelu" && c.hidden_act != "gelu_new" &&
      c.hidden_act != "gelu_pytorch_tanh")
    throw ModelError(where + ": unsupported hidden_act '" + c.hidden_act +
                     "' (supported: quick_gelu, gelu, gelu_new, gelu_pytorch_tanh)");
  if (!(c.layer_norm_eps > 0)) throw ModelError(where + ": layer_norm_eps must be positive");
  return c;
}

CLIPTextConfig CLIPTextConfig::from_file(const std::string& path) { return from_json(read_json_file(path), path); }

CLIPAttentionImpl::CLIPAttentionImpl(const CLIPTextConfig& config) : heads_(config.num_attention_heads) {
  const int64_t d = config.hidden_size;
  // Registration order = the reference's (k, v, q, out): same parameter order.
  k_proj_ = register_module("k_proj", torch::nn::Linear(d, d));
  v_proj_ = register_module("v_proj", torch::nn::Linear(d, d));
  q_proj_ = register_module("q_proj", torch::nn::Linear(d, d));
  out_proj_ = register_module("out_proj", torch::nn::Linear(d, d));
}

at::Tensor CLIPAttentionImpl::forward(const at::Tensor& x) {
  const int64_t b = x.size(0), t = x.size(1), d = x.size(2), head_dim = d / heads_;
  // [B, T, D] -> [B, heads, T, head_dim]
  auto split = [&](const at::Tensor& y) { return y.view({b, t, heads_, head_dim}).transpose(1, 2); };
  const at::Tensor q = split(q_proj_(x)), k = split(k_proj_(x)), v = split(v_proj_(x));
#if TORCH_VERSION_MAJOR >= 2
  const at::Tensor attn = at::scaled_dot_product_attention(q, k, v, /*attn_mask=*/{}, /*dropout_p=*/0.0, /*is_causal=*/true);
#else
  // softmax(q k^T / sqrt(head_dim) + causal mask) v, the softmax in fp32 as the reference's eager path.
  at::Tensor scores = at::matmul(q, k.transpose(-1, -2)) * (1.0 / std::sqrt(static_cast<double>(head_dim)));
  const at::Tensor future = at::ones({t, t}, at::TensorOptions().dtype(at::kBool).device(x.device())).triu(1);
  scores = scores.masked_fill(future, -std::numeric_limits<float>::infinity());
  const at::Tensor attn = at::matmul(at::softmax(scores, -1, at::kFloat).to(q.scalar_type()), v);
#endif
  return out_proj_(attn.transpose(1, 2).reshape({b, t, d}));
}

CLIPMLPImpl::CLIPMLPImpl(const CLIPTextConfig& config) : act_(config.hidden_act) {
  fc1_ = register_module("fc1", torch::nn::Linear(config.hidden_size, config.intermediate_size));
  fc2_ = register_module("fc2", torch::nn::Linear(config.intermediate_size, config.hidden_size));
}

at::Tensor CLIPMLPImpl::forward(const at::Tensor& x) {
  at::Tensor h = fc1_(x);
  if (act_ == "quick_gelu") {
    h = h * at::sigmoid(h * 1.702);  // QuickGELUActivation
  } else if (act_ == "gelu") {
    h = at::gelu(h);
  } else {
    h = at::gelu(h, "tanh");  // gelu_new / gelu_pytorch_tanh
  }
  return fc2_(h);
}

CLIPEncoderLayerImpl::CLIPEncoderLayerImpl(const CLIPTextConfig& config) {
  const auto norm = torch::nn::LayerNormOptions({config.hidden_size}).eps(config.layer_norm_eps);
  self_attn_ = register_module("self_attn", CLIPAttention(config));
  layer_norm1_ = register_module("layer_norm1", torch::nn::LayerNorm(norm));
  mlp_ = register_module("mlp", CLIPMLP(config));
  layer_norm2_ = register_module("layer_norm2", torch::nn::LayerNorm(norm));
}

at::Tensor CLIPEncoderLayerImpl::forward(const at::Tensor& x) {
  const at::Tensor h = x + self_attn_(layer_norm1_(x));
  return h + mlp_(layer_norm2_(h));
}

CLIPTextTransformerImpl::CLIPTextTransformerImpl(const CLIPTextConfig& config) : config_(config) {
  // The reference's `embeddings` and `encoder` are plain containers: nested
  // modules give their tensors the same names.
  auto embeddings = register_module("embeddings", std::make_shared<torch::nn::Module>("CLIPTextEmbeddings"));
  token_embedding_ =
      embeddings->register_module("token_embedding", torch::nn::Embedding(config.vocab_size, config.hidden_size));
  position_embedding_ = embeddings->register_module(
      "position_embedding", torch::nn::Embedding(config.max_position_embeddings, config.hidden_size));
  auto encoder = register_module("encoder", std::make_shared<torch::nn::Module>("CLIPEncoder"));
  layers_ = encoder->register_module("layers", torch::nn::ModuleList());
  for (int64_t i = 0; i < config.num_hidden_layers; ++i) layers_->push_back(CLIPEncoderLayer(config));
  final_layer_norm_ = register_module(
      "final_layer_norm", torch::nn::LayerNorm(torch::nn::LayerNormOptions({config.hidden_size}).eps(config.layer_norm_eps)));
}

at::Tensor CLIPTextTransformerImpl::forward(const at::Tensor& input_ids) {
  const int64_t t = input_ids.size(1);
  // token embedding [B, T, D] + position embedding of positions 0..T-1 [T, D]
  at::Tensor h = token_embedding_(input_ids) + position_embedding_->weight.narrow(0, 0, t);
  for (const auto& layer : *layers_) h = layer->as<CLIPEncoderLayer>()->forward(h);
  return final_layer_norm_(h);
}

CLIPTextModelImpl::CLIPTextModelImpl(const CLIPTextConfig& config) : config_(config) {
  text_model_ = register_module("text_model", CLIPTextTransformer(config));
}

at::Tensor CLIPTextModelImpl::forward(const at::Tensor& input_ids) {
  TORCH_CHECK(input_ids.dim() == 2, "CLIPTextModel: input_ids must be [batch, tokens], got ", input_ids.sizes());
  TORCH_CHECK(input_ids.scalar_type() == at::kLong, "CLIPTextModel: input_ids must be int64");
  if (input_ids.size(1) > config_.max_position_embeddings)
    throw ModelError("text encoder: " + std::to_string(input_ids.size(1)) + " tokens exceed max_position_embeddings " +
                     std::to_string(config_.max_position_embeddings));
  if (input_ids.numel() > 0) {
    const int64_t lo = input_ids.min().item<int64_t>(), hi = input_ids.max().item<int64_t>();
    if (lo < 0 || hi >= config_.vocab_size)
      throw ModelError("text encoder: token id " + std::to_string(lo < 0 ? lo : hi) + " is outside the vocabulary of " +
                       std::to_string(config_.vocab_size) + " (tokenizer and text encoder do not match)");
  }
  return text_model_(input_ids);
}

CLIPTextModel ComponentTraits<CLIPTextModel>::build(const CLIPTextConfig& config, const WeightLoadOptions& options) {
  // Built directly in the target dtype: never holds an fp32 copy of an fp16/bf16 model.
  DefaultDtypeGuard guard(options.dtype);
  return CLIPTextModel(config);
}

torch::nn::Module& ComponentTraits<CLIPTextModel>::target(CLIPTextModel& model, const std::vector<std::string>& files,
                                                          WeightLoadOptions& options) {
  // Published checkpoints (transformers 4.x) name tensors "text_model.*";
  // transformers 5 saves the same tensors without the prefix.
  bool prefixed = false;
  for (const std::string& path : files) {
    const std::unique_ptr<TensorFile> file = open_tensor_file(path);
    for (const std::string& name : file->names()) {
      const std::optional<std::string> as = options.rename ? options.rename(name) : std::optional<std::string>(name);
      prefixed |= as && as->rfind("text_model.", 0) == 0;
    }
  }
  if (prefixed) {
    options.ignore_unexpected = {"text_model.embeddings.position_ids"};
    return *model;
  }
  options.ignore_unexpected = {"embeddings.position_ids"};
  return *model->text_model();
}

}  // namespace via::model
