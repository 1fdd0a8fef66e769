// `via inspect-model`'s findings; see model_inspect.h.
#include "model/model_inspect.h"

#include <filesystem>
#include <functional>
#include <map>
#include <optional>

#include "model/checkpoint_names.h"
#include "model/json_file.h"
#include "model/pipeline.h"
#include "model/single_file.h"
#include "model/tensor_file.h"
#include "model/text_encoder.h"
#include "model/tokenizer.h"
#include "model/unet.h"
#include "model/vae.h"
#include "model/weights.h"

namespace via::model {
namespace fs = std::filesystem;
namespace {

using Rename = std::function<std::optional<std::string>(const std::string&)>;

// The checkpoint's names and shapes against the modules a config builds
// (meta tensors: no memory): the mismatch loading would report.
void check_names(const UNetConfig& unet, const std::vector<std::string>& unet_files, const Rename& unet_rename,
                 const VaeConfig& vae, const std::vector<std::string>& vae_files, const Rename& vae_rename) {
  const ParamInit shape_only{ParamInit::Fill::ShapeOnly, at::kFloat, c10::Device(c10::kMeta)};
  WeightLoadOptions options;
  options.rename = unet_rename;
  check_weights(*UNet2DConditionModel(unet, shape_only), unet_files, options);
  options.rename = vae_rename;
  options.conv1x1_as_linear = true;
  check_weights(*AutoencoderKL(vae, shape_only), vae_files, options);
}

// Tensor count, parameter count and dtypes of the tensors of `files` that `rename` keeps.
nlohmann::json weight_summary(const std::vector<std::string>& files, const Rename& rename) {
  int64_t tensors = 0, parameters = 0;
  std::map<std::string, int64_t> dtypes;
  for (const std::string& path : files) {
    const std::unique_ptr<TensorFile> file = open_tensor_file(path);
    for (const std::string& name : file->names()) {
      if (rename && !rename(name)) continue;
      const TensorInfo& info = file->info(name);
      ++tensors;
      ++dtypes[c10::toString(info.dtype)];
      if (!at::isFloatingType(info.dtype)) continue;  // position_ids and other index buffers
      int64_t n = 1;
      for (int64_t d : info.shape) n *= d;
      parameters += n;
    }
  }
  return {{"files", files}, {"tensors", tensors}, {"parameters", parameters}, {"dtypes", dtypes}};
}

nlohmann::json unet_summary(const UNetConfig& c) {
  return {{"in_channels", c.in_channels},         {"out_channels", c.out_channels},
          {"block_out_channels", c.block_out_channels}, {"layers_per_block", c.layers_per_block},
          {"down_block_types", c.down_block_types}, {"cross_attention_dim", c.cross_attention_dim},
          {"heads", c.heads},                     {"transformer_layers_per_block", c.transformer_layers_per_block},
          {"use_linear_projection", c.use_linear_projection}, {"norm_num_groups", c.norm_num_groups}};
}

nlohmann::json vae_summary(const VaeConfig& c) {
  return {{"block_out_channels", c.block_out_channels}, {"layers_per_block", c.layers_per_block},
          {"latent_channels", c.latent_channels}, {"scaling_factor", c.scaling_factor},
          {"norm_num_groups", c.norm_num_groups}};
}

nlohmann::json text_summary(const nlohmann::json& j) {
  nlohmann::json out;
  for (const char* key : {"hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size",
                          "vocab_size", "max_position_embeddings", "hidden_act"})
    if (j.contains(key)) out[key] = j[key];
  return out;
}

nlohmann::json scheduler_summary(const std::string& class_name, const std::string& source) {
  const auto kind = scheduler_kind_from_class(class_name);
  nlohmann::json out = {{"class", class_name}, {"source", source}, {"supported", kind.has_value() || class_name.empty()}};
  if (kind) out["default"] = scheduler_name(*kind);
  else if (class_name.empty()) out["default"] = scheduler_name(SchedulerKind::EulerAncestral);
  else
    throw ModelError(source + ": scheduler class '" + class_name + "' is not supported (supported: " +
                     supported_scheduler_classes() + ")");
  return out;
}

nlohmann::json tokenizer_summary(const std::string& dir) {
  const std::vector<std::string> files = tokenizer_files(dir);
  const ClipTokenizer tok(dir);
  return {{"form", files.size() == 1 ? "tokenizer.json" : "vocab.json + merges.txt"},
          {"folder", dir},
          {"vocab_size", tok.vocab_size()},
          {"max_length", tok.max_length()}};
}

}  // namespace

nlohmann::json inspect_model(const std::string& path, const std::string& config_dir) {
  nlohmann::json out = {{"path", path}};
  std::error_code ec;
  UNetConfig unet;
  VaeConfig vae;
  if (fs::is_regular_file(path, ec)) {
    out["layout"] = "original single file";
    ShapeMap shapes;
    {
      const std::unique_ptr<TensorFile> file = open_tensor_file(path);
      for (const std::string& name : file->names()) shapes.emplace(name, file->info(name).shape);
    }
    if (!is_ldm_checkpoint(shapes))
      throw ModelError(path + ": no '" + std::string(kLdmUnetPrefix) + "*' tensors: not a whole model in the original layout");
    nlohmann::json unet_json, vae_json, text_json;
    if (!config_dir.empty()) {
      const fs::path dir(config_dir);
      unet_json = read_json_file((dir / "unet" / "config.json").string());
      vae_json = read_json_file((dir / "vae" / "config.json").string());
      text_json = read_json_file((dir / "text_encoder" / "config.json").string());
      const SchedulerConfig sc = SchedulerConfig::from_file((dir / "scheduler" / "scheduler_config.json").string());
      const auto [cls, source] = named_scheduler_class(config_dir, sc);
      out["scheduler"] = scheduler_summary(cls, source);
      out["tokenizer"] = tokenizer_summary((dir / "tokenizer").string());
      out["configs"] = "from " + config_dir;
    } else {
      const DetectedConfigs d = detect_ldm_configs(shapes, path);
      unet_json = d.unet, vae_json = d.vae, text_json = d.text_encoder;
      out["scheduler"] = scheduler_summary(d.scheduler["_class_name"], "built-in InstructPix2Pix scheduler config");
      const std::string tok = (fs::path(path).parent_path() / "tokenizer").string();
      out["tokenizer"] = fs::is_directory(tok) ? tokenizer_summary(tok) : nlohmann::json("missing (none beside the file)");
      out["configs"] = "built-in SD-1.x InstructPix2Pix, sized from the weights";
    }
    unet = UNetConfig::from_json(unet_json, path + " (UNet config)");
    vae = VaeConfig::from_json(vae_json, path + " (VAE config)");
    CLIPTextConfig::from_json(text_json, path + " (text encoder config)");
    const int64_t layers = unet.layers_per_block.empty() ? 2 : unet.layers_per_block.front();
    const auto blocks = static_cast<int64_t>(vae.block_out_channels.size());
    const std::vector<std::string> files = {path};
    const Rename unet_rename = [layers](const std::string& k) { return ldm_unet_name(k, layers); };
    const Rename vae_rename = [blocks](const std::string& k) { return ldm_vae_name(k, blocks); };
    check_names(unet, files, unet_rename, vae, files, vae_rename);
    out["components"]["unet"] = weight_summary(files, unet_rename);
    out["components"]["vae"] = weight_summary(files, vae_rename);
    out["components"]["text_encoder"] = weight_summary(files, ldm_text_encoder_name);
    int64_t ema = 0;
    for (const auto& [name, shape] : shapes) ema += name.rfind("model_ema.", 0) == 0;
    out["ema_tensors"] = ema;  // EMA copies are not used (diffusers' default, extract_ema=False)
    out["components"]["text_encoder"]["config"] = text_summary(text_json);
  } else {
    if (!fs::is_directory(path, ec)) throw ModelError(path + ": model not found (expected a diffusers folder or a checkpoint file)");
    out["layout"] = "diffusers folder";
    const fs::path dir(path);
    for (const std::string& rel : required_model_files())
      if (!fs::is_regular_file(dir / rel)) throw ModelError((dir / rel).string() + ": missing");
    unet = UNetConfig::from_file((dir / "unet" / "config.json").string());
    vae = VaeConfig::from_file((dir / "vae" / "config.json").string());
    const nlohmann::json text_json = read_json_file((dir / "text_encoder" / "config.json").string());
    CLIPTextConfig::from_json(text_json, (dir / "text_encoder" / "config.json").string());
    const std::vector<std::string> unet_files = find_weight_files((dir / "unet").string());
    const std::vector<std::string> vae_files = find_weight_files((dir / "vae").string());
    check_names(unet, unet_files, {}, vae, vae_files,
                [](const std::string& k) { return std::optional<std::string>(legacy_vae_name(k)); });
    out["components"]["unet"] = weight_summary(unet_files, {});
    out["components"]["vae"] = weight_summary(vae_files, {});
    out["components"]["text_encoder"] = weight_summary(find_weight_files((dir / "text_encoder").string()), {});
    out["components"]["text_encoder"]["config"] = text_summary(text_json);
    const SchedulerConfig sc = SchedulerConfig::from_file((dir / "scheduler" / "scheduler_config.json").string());
    const auto [cls, source] = named_scheduler_class(path, sc);
    out["scheduler"] = scheduler_summary(cls, source);
    out["tokenizer"] = tokenizer_summary((dir / "tokenizer").string());
  }
  out["components"]["unet"]["config"] = unet_summary(unet);
  out["components"]["vae"]["config"] = vae_summary(vae);
  out["unet_in_channels"] = unet.in_channels;
  out["latent_channels"] = vae.latent_channels;
  out["names_checked"] = "unet, vae (the text encoder's are checked when loading)";
  out["instruct_pix2pix"] = unet.in_channels == 2 * vae.latent_channels && unet.out_channels == vae.latent_channels;
  return out;
}

}  // namespace via::model
