#pragma once
// CLIP's text transformer (transformers' CLIPTextModel), as Stable Diffusion
// 1.x / InstructPix2Pix use it: token ids -> last_hidden_state.
#include <ATen/core/Tensor.h>
#include <c10/core/Device.h>
#include <c10/core/ScalarType.h>
#include <torch/nn/module.h>
#include <torch/nn/modules/container/modulelist.h>
#include <torch/nn/modules/embedding.h>
#include <torch/nn/modules/linear.h>
#include <torch/nn/modules/normalization.h>
#include <torch/nn/pimpl.h>

#include <nlohmann/json.hpp>

#include <cstdint>
#include <string>
#include <vector>

#include "model/weights.h"

namespace via::model {

/// The hyperparameters of a `text_encoder/config.json` (transformers'
/// CLIPTextConfig). A key absent from the file takes the reference's default,
/// as transformers does; the defaults below are those.
struct CLIPTextConfig {
  int64_t vocab_size = 49408;
  int64_t hidden_size = 512;
  int64_t intermediate_size = 2048;
  int64_t num_hidden_layers = 12;
  int64_t num_attention_heads = 8;
  int64_t max_position_embeddings = 77;
  std::string hidden_act = "quick_gelu";  // quick_gelu | gelu | gelu_new | gelu_pytorch_tanh
  double layer_norm_eps = 1e-5;

  /// Parses and validates a config object; errors name `where`.
  static CLIPTextConfig from_json(const nlohmann::json& config, const std::string& where);
  /// Reads `path` (a config.json).
  static CLIPTextConfig from_file(const std::string& path);
};

/// q/k/v/out projections and causal multi-head attention of one layer.
class CLIPAttentionImpl : public torch::nn::Module {
 public:
  explicit CLIPAttentionImpl(const CLIPTextConfig& config);
  /// x: [B, T, hidden] -> [B, T, hidden], each token attending to itself and earlier tokens.
  at::Tensor forward(const at::Tensor& x);

 private:
  int64_t heads_;
  torch::nn::Linear k_proj_{nullptr}, v_proj_{nullptr}, q_proj_{nullptr}, out_proj_{nullptr};
};
TORCH_MODULE(CLIPAttention);

/// fc1 -> activation -> fc2.
class CLIPMLPImpl : public torch::nn::Module {
 public:
  explicit CLIPMLPImpl(const CLIPTextConfig& config);
  at::Tensor forward(const at::Tensor& x);

 private:
  std::string act_;
  torch::nn::Linear fc1_{nullptr}, fc2_{nullptr};
};
TORCH_MODULE(CLIPMLP);

/// Pre-norm transformer layer: x + attn(ln1(x)), then x + mlp(ln2(x)).
class CLIPEncoderLayerImpl : public torch::nn::Module {
 public:
  explicit CLIPEncoderLayerImpl(const CLIPTextConfig& config);
  at::Tensor forward(const at::Tensor& x);

 private:
  CLIPAttention self_attn_{nullptr};
  torch::nn::LayerNorm layer_norm1_{nullptr};
  CLIPMLP mlp_{nullptr};
  torch::nn::LayerNorm layer_norm2_{nullptr};
};
TORCH_MODULE(CLIPEncoderLayer);

/// The `text_model` submodule: embeddings, encoder layers, final layer norm.
/// Its tensor names are the checkpoints' names below `text_model.`.
class CLIPTextTransformerImpl : public torch::nn::Module {
 public:
  explicit CLIPTextTransformerImpl(const CLIPTextConfig& config);
  at::Tensor forward(const at::Tensor& input_ids);

 private:
  CLIPTextConfig config_;
  torch::nn::Embedding token_embedding_{nullptr}, position_embedding_{nullptr};
  torch::nn::ModuleList layers_{nullptr};
  torch::nn::LayerNorm final_layer_norm_{nullptr};
};
TORCH_MODULE(CLIPTextTransformer);

/// CLIPTextModel with the published checkpoints' tensor names
/// (`text_model.embeddings.token_embedding.weight`,
/// `text_model.encoder.layers.0.self_attn.q_proj.weight`, ...,
/// `text_model.final_layer_norm.bias`). Architecture from the config only.
/// The legacy buffer `text_model.embeddings.position_ids` is not a tensor of
/// the module (positions are 0..T-1; the reference no longer saves it either):
/// checkpoints that carry it load, the loader ignores it.
/// forward() changes no state (one model may serve several threads); call it
/// under at::NoGradGuard or InferenceMode for inference. Attention is the
/// fused at::scaled_dot_product_attention on libtorch 2.x, plain math on 1.x.
class CLIPTextModelImpl : public torch::nn::Module {
 public:
  explicit CLIPTextModelImpl(const CLIPTextConfig& config);
  /// input_ids: int64 [B, T], T <= max_position_embeddings, on the model's
  /// device -> last_hidden_state [B, T, hidden_size] in the model's dtype.
  /// Ids outside [0, vocab_size) throw ModelError (tokenizer/model mismatch).
  at::Tensor forward(const at::Tensor& input_ids);

  const CLIPTextConfig& config() const { return config_; }
  CLIPTextTransformer& text_model() { return text_model_; }

 private:
  CLIPTextConfig config_;
  CLIPTextTransformer text_model_{nullptr};
};
TORCH_MODULE(CLIPTextModel);

/// How load_component (model/weights.h) loads the text encoder: built in
/// the target dtype (its torch::nn layers are made on the CPU and moved to
/// the device as they load). Accepts checkpoints with the published
/// `text_model.` names (with or without `position_ids`) and transformers 5's
/// unprefixed names, after options.rename.
template <>
struct ComponentTraits<CLIPTextModel> {
  using Config = CLIPTextConfig;
  static CLIPTextModel build(const CLIPTextConfig& config, const WeightLoadOptions& options);
  static torch::nn::Module& target(CLIPTextModel& model, const std::vector<std::string>& files,
                                   WeightLoadOptions& options);
};

}  // namespace via::model
