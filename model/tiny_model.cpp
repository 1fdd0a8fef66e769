// The tiny random model of `via make-tiny-model`. The configs are written
// first and the modules built from them through the same config parsers the
// loader uses, so what is saved is by construction what loads.
#include "model/tiny_model.h"

#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>
#include <nlohmann/json.hpp>
#include <torch/csrc/autograd/grad_mode.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <vector>

#include "model/pipeline_text.h"
#include "model/safetensors.h"
#include "model/text_encoder.h"
#include "model/unet.h"
#include "model/vae.h"

namespace via::model {
namespace fs = std::filesystem;
using nlohmann::ordered_json;
namespace {

// Words whose merge chains the tokenizer learns (left to right), so common
// instruction words become one or a few tokens; BPE's rank order still
// splits some (e.g. "winter" meets the "in" of "into" first).
const char* const kWords[] = {"make", "it",   "the",  "a",    "turn", "into",   "winter", "sunset", "sky",
                              "snow", "cat",  "dog",  "red",  "blue", "green",  "night",  "add",    "like",
                              "look", "painting", "sketch", "pencil", "car", "tiger", "with"};

void write_text(const fs::path& path, const std::string& text) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << text;
  out.close();
  if (!out) throw ModelError(path.string() + ": cannot write");
}

void write_json(const fs::path& path, const ordered_json& j) { write_text(path, j.dump(2) + "\n"); }

// ---- tokenizer: CLIP's vocabulary construction (byte alphabet, the same
// with "</w>", one token per merge, then the two special tokens) ----

struct Vocabulary {
  std::vector<std::string> tokens;                        // by id
  std::vector<std::pair<std::string, std::string>> merges;  // by rank
};

Vocabulary make_vocabulary() {
  Vocabulary v;
  // bytes_to_unicode's order: the printable bytes (which stand for
  // themselves) first, then the others; "!" is id 0 as in every CLIP vocab.
  const auto& alphabet = clip_byte_alphabet();
  std::vector<std::string> order;
  for (int pass = 0; pass < 2; ++pass)
    for (int b = 0; b < 256; ++b) {
      const bool printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
      if (printable == (pass == 0)) order.push_back(alphabet[static_cast<size_t>(b)]);
    }
  for (const auto& c : order) v.tokens.push_back(c);
  for (const auto& c : order) v.tokens.push_back(c + "</w>");
  std::set<std::string> known(v.tokens.begin(), v.tokens.end());
  for (const char* word : kWords) {
    // "make" -> (m a) (ma k) (mak e</w>): left to right, the last symbol with "</w>".
    const std::string w = word;
    std::string left(1, w[0]);
    for (size_t i = 1; i < w.size(); ++i) {
      const std::string right = i + 1 == w.size() ? std::string(1, w[i]) + "</w>" : std::string(1, w[i]);
      const std::string merged = left + right;
      if (known.insert(merged).second) {
        v.merges.emplace_back(left, right);
        v.tokens.push_back(merged);
      }
      left = merged;
    }
  }
  v.tokens.push_back("<|startoftext|>");
  v.tokens.push_back("<|endoftext|>");
  return v;
}

void write_tokenizer(const fs::path& dir, const Vocabulary& v) {
  ordered_json vocab = ordered_json::object();
  for (size_t i = 0; i < v.tokens.size(); ++i) vocab[v.tokens[i]] = i;
  write_json(dir / "vocab.json", vocab);
  std::string merges = "#version: 0.2\n";
  for (const auto& [a, b] : v.merges) merges += a + " " + b + "\n";
  write_text(dir / "merges.txt", merges);
  auto special = [](const std::string& content) {
    return ordered_json{{"content", content}, {"lstrip", false}, {"normalized", true},
                        {"rstrip", false},    {"single_word", false}};
  };
  write_json(dir / "tokenizer_config.json",
             ordered_json{{"add_prefix_space", false},
                          {"bos_token", special("<|startoftext|>")},
                          {"do_lower_case", true},
                          {"eos_token", special("<|endoftext|>")},
                          {"errors", "replace"},
                          {"model_max_length", 77},
                          {"pad_token", "<|endoftext|>"},
                          {"tokenizer_class", "CLIPTokenizer"},
                          {"unk_token", special("<|endoftext|>")}});
  write_json(dir / "special_tokens_map.json", ordered_json{{"bos_token", special("<|startoftext|>")},
                                                            {"eos_token", special("<|endoftext|>")},
                                                            {"pad_token", "<|endoftext|>"},
                                                            {"unk_token", special("<|endoftext|>")}});
}

// ---- configs (diffusers / transformers keys, as their save_pretrained writes them) ----

ordered_json text_encoder_config(int64_t vocab_size) {
  return ordered_json{{"architectures", ordered_json::array({"CLIPTextModel"})},
                      {"attention_dropout", 0.0},
                      {"bos_token_id", vocab_size - 2},
                      {"dropout", 0.0},
                      {"eos_token_id", vocab_size - 1},
                      {"hidden_act", "quick_gelu"},
                      {"hidden_size", 48},
                      {"initializer_factor", 1.0},
                      {"initializer_range", 0.02},
                      {"intermediate_size", 128},
                      {"layer_norm_eps", 1e-5},
                      {"max_position_embeddings", 77},
                      {"model_type", "clip_text_model"},
                      {"num_attention_heads", 4},
                      {"num_hidden_layers", 2},
                      {"pad_token_id", vocab_size - 1},
                      {"projection_dim", 48},
                      {"torch_dtype", "float32"},
                      {"vocab_size", vocab_size}};
}

ordered_json unet_config() {
  return ordered_json{{"_class_name", "UNet2DConditionModel"},
                      {"_diffusers_version", "0.42.1"},
                      {"act_fn", "silu"},
                      {"attention_head_dim", 4},  // SD-1's name for the number of heads
                      {"block_out_channels", {24, 48, 48}},
                      {"center_input_sample", false},
                      {"class_embed_type", nullptr},
                      {"conv_in_kernel", 3},
                      {"conv_out_kernel", 3},
                      {"cross_attention_dim", 48},
                      {"down_block_types", {"CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"}},
                      {"downsample_padding", 1},
                      {"dual_cross_attention", false},
                      {"flip_sin_to_cos", true},
                      {"freq_shift", 0},
                      {"in_channels", 8},
                      {"layers_per_block", 1},
                      {"mid_block_scale_factor", 1},
                      {"mid_block_type", "UNetMidBlock2DCrossAttn"},
                      {"norm_eps", 1e-5},
                      {"norm_num_groups", 8},
                      {"num_class_embeds", nullptr},
                      {"only_cross_attention", false},
                      {"out_channels", 4},
                      {"resnet_time_scale_shift", "default"},
                      {"sample_size", 8},
                      {"time_embedding_type", "positional"},
                      {"up_block_types", {"UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"}},
                      {"upcast_attention", false},
                      {"use_linear_projection", true}};
}

ordered_json vae_config() {
  return ordered_json{{"_class_name", "AutoencoderKL"},
                      {"_diffusers_version", "0.42.1"},
                      {"act_fn", "silu"},
                      {"block_out_channels", {16, 32, 32, 32}},
                      {"down_block_types", std::vector<std::string>(4, "DownEncoderBlock2D")},
                      {"in_channels", 3},
                      {"latent_channels", 4},
                      {"layers_per_block", 1},
                      {"norm_num_groups", 8},
                      {"out_channels", 3},
                      {"sample_size", 64},
                      {"scaling_factor", 0.18215},
                      {"up_block_types", std::vector<std::string>(4, "UpDecoderBlock2D")}};
}

// The published InstructPix2Pix scheduler config (timbrooks/instruct-pix2pix).
ordered_json scheduler_config() {
  return ordered_json{{"_class_name", "EulerAncestralDiscreteScheduler"},
                      {"_diffusers_version", "0.15.0.dev0"},
                      {"beta_end", 0.012},
                      {"beta_schedule", "scaled_linear"},
                      {"beta_start", 0.00085},
                      {"clip_sample", false},
                      {"num_train_timesteps", 1000},
                      {"prediction_type", "epsilon"},
                      {"set_alpha_to_one", false},
                      {"skip_prk_steps", true},
                      {"steps_offset", 1},
                      {"trained_betas", nullptr}};
}

ordered_json model_index() {
  return ordered_json{{"_class_name", "StableDiffusionInstructPix2PixPipeline"},
                      {"_diffusers_version", "0.42.1"},
                      {"feature_extractor", {nullptr, nullptr}},
                      {"image_encoder", {nullptr, nullptr}},
                      {"requires_safety_checker", false},
                      {"safety_checker", {nullptr, nullptr}},
                      {"scheduler", {"diffusers", "EulerAncestralDiscreteScheduler"}},
                      {"text_encoder", {"transformers", "CLIPTextModel"}},
                      {"tokenizer", {"transformers", "CLIPTokenizer"}},
                      {"unet", {"diffusers", "UNet2DConditionModel"}},
                      {"vae", {"diffusers", "AutoencoderKL"}}};
}

// ---- weights ----

// Redraws every parameter so that each one influences the output: matrices
// and kernels N(0, 1/fan_in) (unit gain; PyTorch's default uniform init has
// std 0.58/sqrt(fan_in) and leaves a random UNet's output nearly constant),
// embeddings N(0, 0.5^2), norm weights 1 + N(0, 0.1^2), biases N(0, 0.1^2).
// Returns the tensors to save, by checkpoint name.
std::map<std::string, at::Tensor> randomized_state(torch::nn::Module& module, at::Generator& gen) {
  torch::NoGradGuard no_grad;
  std::map<std::string, at::Tensor> state;
  for (auto& item : module.named_parameters(/*recurse=*/true)) {
    const std::string& name = item.key();
    at::Tensor& p = item.value();
    const at::Tensor n = at::randn(p.sizes(), gen, at::TensorOptions().dtype(at::kFloat));
    const bool is_weight = name.size() >= 7 && name.compare(name.size() - 7, 7, ".weight") == 0;
    const bool is_embedding = name.find("embedding.weight") != std::string::npos &&
                              name.find("time_embedding") == std::string::npos;
    if (is_embedding) {
      p.copy_(n * 0.5);
    } else if (p.dim() >= 2) {
      p.copy_(n / std::sqrt(static_cast<double>(p.numel() / p.size(0))));
    } else if (is_weight) {
      p.copy_(n * 0.1 + 1.0);
    } else {
      p.copy_(n * 0.1);
    }
    state.emplace(name, p.detach().to(at::kFloat).contiguous());
  }
  for (auto& item : module.named_buffers(/*recurse=*/true))
    state.emplace(item.key(), item.value().detach().contiguous());
  return state;
}

void prepare_folder(const fs::path& dir) {
  if (fs::exists(dir)) {
    if (!fs::is_directory(dir)) throw ModelError(dir.string() + ": exists and is not a folder");
    if (!fs::is_empty(dir) && !fs::exists(dir / "model_index.json"))
      throw ModelError(dir.string() + ": folder is not empty and holds no model (model_index.json); "
                       "refusing to write into it");
  }
  for (const char* sub : {"scheduler", "tokenizer", "text_encoder", "unet", "vae"}) fs::create_directories(dir / sub);
}

}  // namespace

void write_tiny_model(const std::string& dir_name, uint64_t seed) {
  const fs::path dir(dir_name);
  prepare_folder(dir);
  // One generator for all weights, drawn in a fixed order: text encoder, UNet, VAE.
  at::Generator gen = at::detail::createCPUGenerator(seed ^ 0x7469'6e79'5f69'7032ull);

  const Vocabulary vocab = make_vocabulary();
  write_tokenizer(dir / "tokenizer", vocab);
  write_json(dir / "scheduler" / "scheduler_config.json", scheduler_config());

  const ordered_json text_json = text_encoder_config(static_cast<int64_t>(vocab.tokens.size()));
  write_json(dir / "text_encoder" / "config.json", text_json);
  CLIPTextModel text_encoder(
      CLIPTextConfig::from_json(nlohmann::json::parse(text_json.dump()), (dir / "text_encoder" / "config.json").string()));
  save_safetensors((dir / "text_encoder" / "model.safetensors").string(), randomized_state(*text_encoder, gen),
                   {{"format", "pt"}});

  const ordered_json unet_json = unet_config();
  write_json(dir / "unet" / "config.json", unet_json);
  UNet2DConditionModel unet(
      UNetConfig::from_json(nlohmann::json::parse(unet_json.dump()), (dir / "unet" / "config.json").string()));
  save_safetensors((dir / "unet" / "diffusion_pytorch_model.safetensors").string(), randomized_state(*unet, gen),
                   {{"format", "pt"}});

  const ordered_json vae_json = vae_config();
  write_json(dir / "vae" / "config.json", vae_json);
  AutoencoderKL vae(VaeConfig::from_json(nlohmann::json::parse(vae_json.dump()), (dir / "vae" / "config.json").string()));
  save_safetensors((dir / "vae" / "diffusion_pytorch_model.safetensors").string(), randomized_state(*vae, gen),
                   {{"format", "pt"}});

  // Last: a folder with model_index.json is complete.
  write_json(dir / "model_index.json", model_index());
}

}  // namespace via::model
