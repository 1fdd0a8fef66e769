// The checkpoint forms besides the diffusers folder: legacy VAE
// attention names and single-file checkpoints in the original (CompVis/LDM)
// layout (tests/reference/make_model_forms.py wrote the data from the tiny
// model; diffusers' from_single_file loads that file to the folder's weights).
#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <sstream>
#include <string>

#include "model/checkpoint_names.h"
#include "model/json_file.h"
#include "model/pipeline.h"
#include "model/safetensors.h"
#include "model/single_file.h"
#include "model/vae.h"
#include "tests/support/data.h"

namespace fs = std::filesystem;
using namespace via::model;
using via::test::reference_data;

namespace {

class TempDir {
 public:
  TempDir() {
    std::string tmpl = (fs::temp_directory_path() / "via_forms_XXXXXX").string();
    if (::mkdtemp(tmpl.data()) == nullptr) throw std::runtime_error("mkdtemp failed");
    path_ = tmpl;
  }
  ~TempDir() { fs::remove_all(path_); }
  const fs::path& path() const { return path_; }

 private:
  fs::path path_;
};

std::map<std::string, at::Tensor> read_all(const std::string& path) {
  const SafeTensorsFile file(path);
  std::map<std::string, at::Tensor> out;
  for (const std::string& name : file.names()) out.emplace(name, file.tensor(name).clone());
  return out;
}

// Every parameter and buffer of `a` equals `b`'s bit for bit; returns how many were compared.
size_t expect_same_state(const torch::nn::Module& a, const torch::nn::Module& b, const std::string& what) {
  std::map<std::string, at::Tensor> want;
  for (const auto& p : b.named_parameters()) want.emplace(p.key(), p.value());
  for (const auto& p : b.named_buffers()) want.emplace(p.key(), p.value());
  size_t n = 0;
  for (const auto& p : a.named_parameters()) {
    auto it = want.find(p.key());
    EXPECT_TRUE(it != want.end() && at::equal(p.value(), it->second)) << what << ": " << p.key();
    ++n;
  }
  EXPECT_EQ(n, b.named_parameters().size()) << what;
  return n;
}

// ---- legacy VAE attention names ----

TEST(LegacyVaeNames, TableRenamesOnlyAttentionProjections) {
  EXPECT_EQ(legacy_vae_name("encoder.mid_block.attentions.0.query.weight"), "encoder.mid_block.attentions.0.to_q.weight");
  EXPECT_EQ(legacy_vae_name("decoder.mid_block.attentions.0.key.bias"), "decoder.mid_block.attentions.0.to_k.bias");
  EXPECT_EQ(legacy_vae_name("decoder.mid_block.attentions.0.value.weight"), "decoder.mid_block.attentions.0.to_v.weight");
  EXPECT_EQ(legacy_vae_name("encoder.mid_block.attentions.0.proj_attn.bias"),
            "encoder.mid_block.attentions.0.to_out.0.bias");
  EXPECT_EQ(legacy_vae_name("encoder.mid_block.attentions.0.group_norm.weight"),
            "encoder.mid_block.attentions.0.group_norm.weight");
  EXPECT_EQ(legacy_vae_name("encoder.mid_block.attentions.0.to_q.weight"), "encoder.mid_block.attentions.0.to_q.weight");
  EXPECT_EQ(legacy_vae_name("encoder.query.weight"), "encoder.query.weight");  // not in an attention block
}

TEST(LegacyVaeNames, RenamedCheckpointLoadsToTheSameBits) {
  TempDir tmp;
  const fs::path dir = tmp.path() / "vae";
  fs::create_directories(dir);
  fs::copy(reference_data("tiny_ip2p/vae/config.json"), dir / "config.json");
  // The tiny VAE's checkpoint under the names older diffusers uploads carry.
  std::map<std::string, at::Tensor> legacy;
  int renamed = 0;
  for (auto& [name, t] : read_all(reference_data("tiny_ip2p/vae/diffusion_pytorch_model.safetensors"))) {
    std::string n = name;
    for (const auto& [now, old] : std::vector<std::pair<std::string, std::string>>{
             {".to_q.", ".query."}, {".to_k.", ".key."}, {".to_v.", ".value."}, {".to_out.0.", ".proj_attn."}}) {
      const size_t at = n.find(now);
      if (at != std::string::npos && n.find(".attentions.") != std::string::npos) {
        n = n.substr(0, at) + old + n.substr(at + now.size());
        ++renamed;
      }
    }
    legacy.emplace(n, t);
  }
  EXPECT_EQ(renamed, 16);  // q/k/v/out weight + bias in the encoder's and decoder's mid-block attention
  save_safetensors((dir / "diffusion_pytorch_model.safetensors").string(), legacy);

  AutoencoderKL got = load_component<AutoencoderKL>(dir.string(), at::kFloat, at::kCPU);
  AutoencoderKL want = load_component<AutoencoderKL>(reference_data("tiny_ip2p/vae"), at::kFloat, at::kCPU);
  EXPECT_EQ(expect_same_state(*got, *want, "legacy VAE"), want->named_parameters().size());
  const SafeTensorsFile golden(reference_data("goldens/vae.safetensors"));
  at::NoGradGuard no_grad;
  EXPECT_TRUE(at::equal(got->decode(golden.tensor("z")), want->decode(golden.tensor("z"))));
  EXPECT_TRUE(at::equal(got->encode(golden.tensor("x")).mean, want->encode(golden.tensor("x")).mean));

  // Both namings at once is a conflict, named, not a silent pick.
  legacy.emplace("encoder.mid_block.attentions.0.to_q.weight", legacy.at("encoder.mid_block.attentions.0.query.weight"));
  save_safetensors((dir / "diffusion_pytorch_model.safetensors").string(), legacy);
  try {
    load_component<AutoencoderKL>(dir.string(), at::kFloat, at::kCPU);
    FAIL();
  } catch (const ModelError& e) {
    EXPECT_NE(std::string(e.what()).find("also appears"), std::string::npos) << e.what();
  }
}

// ---- the original layout: names ----

// name -> shape lines ("name d0,d1,...") of a params file.
std::map<std::string, std::vector<int64_t>> read_shapes(const std::string& path) {
  std::ifstream in(path);
  EXPECT_TRUE(in.good()) << path;
  std::map<std::string, std::vector<int64_t>> out;
  std::string name, dims;
  while (in >> name >> dims) {
    std::vector<int64_t> shape;
    std::stringstream ss(dims);
    for (std::string d; std::getline(ss, d, ',');) shape.push_back(std::stoll(d));
    out.emplace(name, shape);
  }
  return out;
}

TEST(LdmNames, FullSizeCheckpointMapsOntoTheReferenceModules) {
  // The full-size InstructPix2Pix checkpoint's names and shapes in the original
  // layout against the reference modules' own lists (full_size/*_params.txt).
  const auto ldm = read_shapes(reference_data("model_forms/ldm_full_size_shapes.txt"));
  ASSERT_EQ(ldm.size(), 1130u);
  std::map<std::string, std::map<std::string, std::vector<int64_t>>> got;
  for (const auto& [key, shape] : ldm) {
    int owners = 0;
    if (auto n = ldm_unet_name(key, 2)) got["unet"].emplace(*n, shape), ++owners;
    if (auto n = ldm_vae_name(key, 4)) got["vae"].emplace(*n, shape), ++owners;
    if (auto n = ldm_text_encoder_name(key)) got["text_encoder"].emplace(*n, shape), ++owners;
    EXPECT_EQ(owners, 1) << key;
  }
  for (const char* component : {"unet", "vae", "text_encoder"}) {
    const auto want = read_shapes(reference_data(std::string("full_size/") + component + "_params.txt"));
    auto& mine = got[component];
    mine.erase("text_model.embeddings.position_ids");  // a buffer, not in the parameter list
    EXPECT_EQ(mine.size(), want.size()) << component;
    for (const auto& [name, shape] : want) {
      auto it = mine.find(name);
      if (it == mine.end()) {
        ADD_FAILURE() << component << ": no original key maps to " << name;
        continue;
      }
      std::vector<int64_t> s = it->second;
      if (s.size() == 4 && shape.size() == 2 && s[2] == 1 && s[3] == 1) s.resize(2);  // VAE attention 1x1 convs
      EXPECT_EQ(s, shape) << component << ": " << name;
    }
  }
  EXPECT_EQ(ldm_unet_name("model.diffusion_model.input_blocks.3.0.op.weight", 2), "down_blocks.0.downsamplers.0.conv.weight");
  EXPECT_EQ(ldm_unet_name("model.diffusion_model.output_blocks.2.1.conv.bias", 2), "up_blocks.0.upsamplers.0.conv.bias");
  EXPECT_EQ(ldm_unet_name("model.diffusion_model.output_blocks.5.2.conv.weight", 2), "up_blocks.1.upsamplers.0.conv.weight");
  EXPECT_EQ(ldm_vae_name("first_stage_model.decoder.up.0.block.0.nin_shortcut.weight", 4),
            "decoder.up_blocks.3.resnets.0.conv_shortcut.weight");
  EXPECT_FALSE(ldm_unet_name("first_stage_model.encoder.conv_in.weight", 2).has_value());
  EXPECT_FALSE(ldm_vae_name("first_stage_model.loss.discriminator.main.0.weight", 4).has_value());
  EXPECT_FALSE(ldm_vae_name("model_ema.decay", 4).has_value());
  EXPECT_EQ(ldm_text_encoder_name("cond_stage_model.transformer.embeddings.token_embedding.weight"),
            "text_model.embeddings.token_embedding.weight");
}

TEST(LdmConfigs, DetectedFromTheFullSizeWeightsAreThePublishedConfigs) {
  const auto ldm = read_shapes(reference_data("model_forms/ldm_full_size_shapes.txt"));
  const DetectedConfigs d = detect_ldm_configs(ldm, "full");
  const nlohmann::json unet = read_json_file(reference_data("full_size/unet_config.json"));
  for (const char* key : {"in_channels", "out_channels", "block_out_channels", "layers_per_block", "down_block_types",
                          "up_block_types", "cross_attention_dim", "use_linear_projection", "attention_head_dim",
                          "norm_num_groups"})
    EXPECT_EQ(d.unet[key], unet[key]) << key;
  EXPECT_EQ(d.unet["in_channels"], 8);  // the InstructPix2Pix UNet: noisy latent + image latent
  EXPECT_EQ(d.unet["transformer_layers_per_block"], 1);
  const nlohmann::json vae = read_json_file(reference_data("full_size/vae_config.json"));
  for (const char* key : {"block_out_channels", "layers_per_block", "latent_channels", "in_channels", "out_channels"})
    EXPECT_EQ(d.vae[key], vae[key]) << key;
  const nlohmann::json text = read_json_file(reference_data("full_size/text_encoder_config.json"));
  for (const char* key : {"hidden_size", "num_hidden_layers", "intermediate_size", "vocab_size",
                          "max_position_embeddings", "num_attention_heads", "hidden_act"})
    EXPECT_EQ(d.text_encoder[key], text[key]) << key;
  // The configs parse as the modules' configs.
  EXPECT_NO_THROW(UNetConfig::from_json(d.unet, "detected"));
  EXPECT_NO_THROW(VaeConfig::from_json(d.vae, "detected"));
}

TEST(LdmConfigs, TinyWeightsGiveTheTinyShapes) {
  ShapeMap shapes;
  const SafeTensorsFile file(reference_data("model_forms/tiny_ip2p_ldm.safetensors"));
  for (const std::string& name : file.names()) shapes.emplace(name, file.info(name).shape);
  ASSERT_TRUE(is_ldm_checkpoint(shapes));
  const DetectedConfigs d = detect_ldm_configs(shapes, "tiny");
  const nlohmann::json unet = read_json_file(reference_data("tiny_ip2p/unet/config.json"));
  for (const char* key : {"in_channels", "out_channels", "block_out_channels", "layers_per_block", "down_block_types",
                          "up_block_types", "cross_attention_dim", "use_linear_projection"})
    EXPECT_EQ(d.unet[key], unet[key]) << key;
  const nlohmann::json vae = read_json_file(reference_data("tiny_ip2p/vae/config.json"));
  for (const char* key : {"block_out_channels", "layers_per_block", "latent_channels"}) EXPECT_EQ(d.vae[key], vae[key]) << key;
  const nlohmann::json text = read_json_file(reference_data("tiny_ip2p/text_encoder/config.json"));
  for (const char* key : {"hidden_size", "num_hidden_layers", "intermediate_size", "vocab_size"})
    EXPECT_EQ(d.text_encoder[key], text[key]) << key;
  EXPECT_EQ(d.unet["transformer_layers_per_block"], 1);
  EXPECT_EQ(d.unet["use_linear_projection"], false);
  // Depth 2 and linear projections (SD-2 style) show in the weights.
  ShapeMap deeper = shapes;
  for (const auto& [name, shape] : shapes) {
    const std::string one = ".transformer_blocks.0.";
    const size_t at = name.find(one);
    if (at != std::string::npos) deeper.emplace(name.substr(0, at) + ".transformer_blocks.1." + name.substr(at + one.size()), shape);
  }
  deeper["model.diffusion_model.middle_block.1.proj_in.weight"] = {32, 32};
  const DetectedConfigs d2 = detect_ldm_configs(deeper, "deeper");
  EXPECT_EQ(d2.unet["transformer_layers_per_block"], 2);
  EXPECT_EQ(d2.unet["use_linear_projection"], true);
  // Missing an essential tensor: named.
  shapes.erase("first_stage_model.decoder.conv_in.weight");
  try {
    detect_ldm_configs(shapes, "tiny.safetensors");
    FAIL();
  } catch (const ModelError& e) {
    EXPECT_NE(std::string(e.what()).find("first_stage_model.decoder.conv_in.weight"), std::string::npos) << e.what();
  }
}

// ---- the original layout: whole model ----

TEST(SingleFile, LoadsTheSameBitsAsTheFolderAndEditsIdentically) {
  ModelOptions options;
  options.config_dir = reference_data("tiny_ip2p");
  const InstructPix2Pix single(reference_data("model_forms/tiny_ip2p_ldm.safetensors"), options);
  const InstructPix2Pix folder(reference_data("tiny_ip2p"));
  EXPECT_EQ(single.layout(), "original single file");
  EXPECT_EQ(folder.layout(), "diffusers folder");
  EXPECT_GT(expect_same_state(*single.unet(), *folder.unet(), "unet"), 100u);
  expect_same_state(*single.vae(), *folder.vae(), "vae");
  expect_same_state(*single.text_encoder(), *folder.text_encoder(), "text encoder");

  // A whole 3-step edit, bit for bit.
  const SafeTensorsFile golden(reference_data("goldens/edit_ddim.safetensors"));
  DenoiseSettings settings;
  settings.steps = 3;
  settings.scheduler = SchedulerKind::Ddim;
  auto edit = [&](const InstructPix2Pix& m) {
    const TextEmbeddings text = m.encode_instruction("turn the sky into a sunset");
    return m.decode(m.denoise(m.encode_image(golden.tensor("image")), text, golden.tensor("init_noise"), settings));
  };
  EXPECT_TRUE(at::equal(edit(single), edit(folder)));
}

TEST(SingleFile, WithoutConfigsNeedsATokenizerBesideIt) {
  TempDir tmp;
  const fs::path file = tmp.path() / "tiny.safetensors";
  fs::copy(reference_data("model_forms/tiny_ip2p_ldm.safetensors"), file);
  try {
    InstructPix2Pix m(file.string());
    FAIL();
  } catch (const ModelError& e) {
    EXPECT_NE(std::string(e.what()).find("carries no tokenizer"), std::string::npos) << e.what();
  }
  // With the tokenizer beside it the built-in configs sized from the weights
  // load it; the tiny model's 8 norm groups are not SD-1.x's 32, which the
  // weights cannot show, so the result differs from the folder's.
  fs::copy(reference_data("tiny_ip2p/tokenizer"), tmp.path() / "tokenizer", fs::copy_options::recursive);
  const InstructPix2Pix m(file.string());
  EXPECT_EQ(m.unet()->config().norm_num_groups, 32);
  EXPECT_EQ(m.unet()->config().in_channels, 8);
  EXPECT_EQ(m.default_scheduler(), SchedulerKind::EulerAncestral);
}

TEST(SingleFile, RefusesOtherFiles) {
  TempDir tmp;
  auto error_of = [](const std::string& path) {
    try {
      InstructPix2Pix m(path);
    } catch (const ModelError& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  const fs::path ckpt = tmp.path() / "model.ckpt";
  std::ofstream(ckpt) << "PK";
  EXPECT_NE(error_of(ckpt.string()).find("pickle"), std::string::npos);
  // A single component's diffusers weights are not a whole model.
  const std::string component = reference_data("tiny_ip2p/vae/diffusion_pytorch_model.safetensors");
  EXPECT_NE(error_of(component).find("not a whole model in the original"), std::string::npos) << error_of(component);
  const fs::path truncated = tmp.path() / "cut.safetensors";
  {
    std::ifstream in(reference_data("model_forms/tiny_ip2p_ldm.safetensors"), std::ios::binary);
    std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    std::ofstream(truncated, std::ios::binary) << bytes.substr(0, bytes.size() / 2);
  }
  EXPECT_NE(error_of(truncated.string()).find(truncated.string()), std::string::npos) << error_of(truncated.string());
}

}  // namespace
