// Original-layout single-file checkpoints: built-in configs and detection
// from the weights (see single_file.h).
#include "model/single_file.h"

#include <algorithm>
#include <cctype>
#include <set>

#include "model/checkpoint_names.h"
#include "model/safetensors.h"  // ModelError

namespace via::model {
namespace {

// timbrooks/instruct-pix2pix's published component configs (unet/, vae/,
// text_encoder/, scheduler/ of the diffusers upload; written from SD-1.5 and
// the InstructPix2Pix paper's 8-channel UNet). tests/reference/data/full_size
// holds the same files.
const char* const kUnetConfig = R"json({"_class_name":"UNet2DConditionModel","_diffusers_version":"0.15.0.dev0","act_fn":"silu","attention_head_dim":8,"block_out_channels":[320,640,1280,1280],"center_input_sample":false,"class_embed_type":null,"conv_in_kernel":3,"conv_out_kernel":3,"cross_attention_dim":768,"down_block_types":["CrossAttnDownBlock2D","CrossAttnDownBlock2D","CrossAttnDownBlock2D","DownBlock2D"],"downsample_padding":1,"dual_cross_attention":false,"flip_sin_to_cos":true,"freq_shift":0,"in_channels":8,"layers_per_block":2,"mid_block_scale_factor":1,"mid_block_type":"UNetMidBlock2DCrossAttn","norm_eps":1e-05,"norm_num_groups":32,"num_class_embeds":null,"only_cross_attention":false,"out_channels":4,"projection_class_embeddings_input_dim":null,"resnet_time_scale_shift":"default","sample_size":64,"time_cond_proj_dim":null,"time_embedding_type":"positional","timestep_post_act":null,"up_block_types":["UpBlock2D","CrossAttnUpBlock2D","CrossAttnUpBlock2D","CrossAttnUpBlock2D"],"upcast_attention":false,"use_linear_projection":false})json";
const char* const kVaeConfig = R"json({"_class_name":"AutoencoderKL","_diffusers_version":"0.15.0.dev0","act_fn":"silu","block_out_channels":[128,256,512,512],"down_block_types":["DownEncoderBlock2D","DownEncoderBlock2D","DownEncoderBlock2D","DownEncoderBlock2D"],"in_channels":3,"latent_channels":4,"layers_per_block":2,"norm_num_groups":32,"out_channels":3,"sample_size":512,"up_block_types":["UpDecoderBlock2D","UpDecoderBlock2D","UpDecoderBlock2D","UpDecoderBlock2D"]})json";
const char* const kTextConfig = R"json({"_name_or_path":"openai/clip-vit-large-patch14","architectures":["CLIPTextModel"],"attention_dropout":0.0,"bos_token_id":0,"dropout":0.0,"eos_token_id":2,"hidden_act":"quick_gelu","hidden_size":768,"initializer_factor":1.0,"initializer_range":0.02,"intermediate_size":3072,"layer_norm_eps":1e-05,"max_position_embeddings":77,"model_type":"clip_text_model","num_attention_heads":12,"num_hidden_layers":12,"pad_token_id":1,"projection_dim":768,"torch_dtype":"float32","transformers_version":"4.25.0.dev0","vocab_size":49408})json";
const char* const kSchedulerConfig = R"json({"_class_name":"EulerAncestralDiscreteScheduler","beta_end":0.012,"beta_schedule":"scaled_linear","beta_start":0.00085,"clip_sample":false,"num_train_timesteps":1000,"prediction_type":"epsilon","set_alpha_to_one":false,"skip_prk_steps":true,"steps_offset":1,"trained_betas":null})json";

class Shapes {
 public:
  Shapes(const ShapeMap& shapes, std::string prefix, std::string where)
      : shapes_(shapes), prefix_(std::move(prefix)), where_(std::move(where)) {}
  bool has(const std::string& key) const { return shapes_.count(prefix_ + key) != 0; }
  const std::vector<int64_t>& at(const std::string& key) const {
    auto it = shapes_.find(prefix_ + key);
    if (it == shapes_.end())
      throw ModelError(where_ + ": tensor '" + prefix_ + key + "' is missing (not a complete original-layout checkpoint)");
    return it->second;
  }
  int64_t dim(const std::string& key, size_t d) const {
    const auto& s = at(key);
    if (s.size() <= d) throw ModelError(where_ + ": tensor '" + prefix_ + key + "' has too few dimensions");
    return s[d];
  }
  // The distinct values of the number after `head` in keys starting with prefix + head.
  std::set<int64_t> indices(const std::string& head) const {
    std::set<int64_t> out;
    const std::string full = prefix_ + head;
    for (auto it = shapes_.lower_bound(full); it != shapes_.end() && it->first.rfind(full, 0) == 0; ++it) {
      size_t pos = full.size(), end = pos;
      while (end < it->first.size() && std::isdigit(static_cast<unsigned char>(it->first[end]))) ++end;
      if (end > pos && end < it->first.size() && it->first[end] == '.') out.insert(std::stoll(it->first.substr(pos, end - pos)));
    }
    return out;
  }
  bool any_with(const std::string& head) const {
    const std::string full = prefix_ + head;
    auto it = shapes_.lower_bound(full);
    return it != shapes_.end() && it->first.rfind(full, 0) == 0;
  }

 private:
  const ShapeMap& shapes_;
  std::string prefix_, where_;
};

int64_t count(const std::set<int64_t>& s) { return s.empty() ? 0 : *s.rbegin() + 1; }

nlohmann::json detect_unet(const ShapeMap& shapes, const std::string& where) {
  const Shapes w(shapes, kLdmUnetPrefix, where);
  nlohmann::json c = nlohmann::json::parse(kUnetConfig);
  c["in_channels"] = w.dim("input_blocks.0.0.weight", 1);
  c["out_channels"] = w.dim("out.2.weight", 0);
  // input_blocks: 0 is conv_in, then per block layers_per_block resnets and a
  // downsampler (op) except after the last block.
  const int64_t n_in = count(w.indices("input_blocks."));
  std::vector<int64_t> downsamplers;
  for (int64_t i = 1; i < n_in; ++i)
    if (w.has("input_blocks." + std::to_string(i) + ".0.op.weight")) downsamplers.push_back(i);
  const int64_t layers = downsamplers.empty() ? n_in - 1 : downsamplers.front() - 1;
  if (layers < 1) throw ModelError(where + ": cannot read the UNet's layers per block from its input blocks");
  const int64_t per = layers + 1;
  const int64_t blocks = n_in / per;  // n_in - 1 = blocks * per - 1: the last block has no downsampler
  std::vector<int64_t> channels;
  nlohmann::json down = nlohmann::json::array(), up = nlohmann::json::array();
  int64_t depth = 1;
  for (int64_t b = 0; b < blocks; ++b) {
    const std::string first = "input_blocks." + std::to_string(1 + b * per);
    channels.push_back(w.dim(first + ".0.out_layers.3.weight", 0));
    const bool attn = w.any_with(first + ".1.");
    down.push_back(attn ? "CrossAttnDownBlock2D" : "DownBlock2D");
    if (attn) depth = count(w.indices(first + ".1.transformer_blocks."));
  }
  for (int64_t b = 0; b < blocks; ++b) {
    const std::string first = "output_blocks." + std::to_string(b * per) + ".1.";
    up.push_back(w.any_with(first) && !w.any_with(first + "conv.") ? "CrossAttnUpBlock2D" : "UpBlock2D");
  }
  c["block_out_channels"] = channels;
  c["layers_per_block"] = layers;
  c["down_block_types"] = down;
  c["up_block_types"] = up;
  c["transformer_layers_per_block"] = depth;
  const std::string mid_attn = "middle_block.1.transformer_blocks.0.attn2.to_k.weight";
  if (w.has(mid_attn)) {
    c["cross_attention_dim"] = w.dim(mid_attn, 1);
    // SD-2's OpenCLIP text width 1024 comes with 64-wide heads (its published
    // configs: attention_head_dim [5, 10, 20, 20] for channels [320, 640, 1280, 1280]).
    if (w.dim(mid_attn, 1) == 1024) {
      std::vector<int64_t> heads;
      for (int64_t ch : channels) heads.push_back(std::max<int64_t>(1, ch / 64));
      c["attention_head_dim"] = heads;
    }
    c["use_linear_projection"] = w.at("middle_block.1.proj_in.weight").size() == 2;
  }
  return c;
}

nlohmann::json detect_vae(const ShapeMap& shapes, const std::string& where) {
  const Shapes w(shapes, kLdmVaePrefix, where);
  nlohmann::json c = nlohmann::json::parse(kVaeConfig);
  c["in_channels"] = w.dim("encoder.conv_in.weight", 1);
  c["out_channels"] = w.dim("decoder.conv_out.weight", 0);
  c["latent_channels"] = w.dim("decoder.conv_in.weight", 1);
  const int64_t blocks = count(w.indices("encoder.down."));
  if (blocks < 1) throw ModelError(where + ": the VAE encoder has no down blocks");
  std::vector<int64_t> channels;
  for (int64_t b = 0; b < blocks; ++b) channels.push_back(w.dim("encoder.down." + std::to_string(b) + ".block.0.conv1.weight", 0));
  c["block_out_channels"] = channels;
  c["layers_per_block"] = count(w.indices("encoder.down.0.block."));
  c["down_block_types"] = std::vector<std::string>(static_cast<size_t>(blocks), "DownEncoderBlock2D");
  c["up_block_types"] = std::vector<std::string>(static_cast<size_t>(blocks), "UpDecoderBlock2D");
  c["use_quant_conv"] = w.has("quant_conv.weight");
  c["use_post_quant_conv"] = w.has("post_quant_conv.weight");
  return c;
}

nlohmann::json detect_text(const ShapeMap& shapes, const std::string& where) {
  // transformers < 4.22 wrote the CLIP keys without "text_model.".
  const bool nested = std::any_of(shapes.begin(), shapes.end(), [](const auto& e) {
    return e.first.rfind(std::string(kLdmTextPrefix) + "text_model.", 0) == 0;
  });
  const Shapes w(shapes, std::string(kLdmTextPrefix) + (nested ? "text_model." : ""), where);
  nlohmann::json c = nlohmann::json::parse(kTextConfig);
  const int64_t hidden = w.dim("embeddings.token_embedding.weight", 1);
  c["vocab_size"] = w.dim("embeddings.token_embedding.weight", 0);
  c["hidden_size"] = hidden;
  c["max_position_embeddings"] = w.dim("embeddings.position_embedding.weight", 0);
  c["num_hidden_layers"] = count(w.indices("encoder.layers."));
  c["intermediate_size"] = w.dim("encoder.layers.0.mlp.fc1.weight", 0);
  // CLIP's heads are 64 wide (12 in SD-1.x's 768); narrower test models get one head.
  c["num_attention_heads"] = hidden % 64 == 0 ? hidden / 64 : 1;
  return c;
}

}  // namespace

bool is_ldm_checkpoint(const ShapeMap& shapes) {
  auto it = shapes.lower_bound(kLdmUnetPrefix);
  return it != shapes.end() && it->first.rfind(kLdmUnetPrefix, 0) == 0;
}

DetectedConfigs detect_ldm_configs(const ShapeMap& shapes, const std::string& where) {
  return {detect_unet(shapes, where), detect_vae(shapes, where), detect_text(shapes, where),
          builtin_ip2p_scheduler_config()};
}

nlohmann::json builtin_ip2p_scheduler_config() { return nlohmann::json::parse(kSchedulerConfig); }

}  // namespace via::model
