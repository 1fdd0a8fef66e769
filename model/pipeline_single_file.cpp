// InstructPix2Pix from one original-layout checkpoint file (see
// model/single_file.h): configs from ModelOptions::config_dir or built in and
// sized from the weights, weights renamed on load (model/checkpoint_names.h).
#include <filesystem>

#include "model/checkpoint_names.h"
#include "model/json_file.h"
#include "model/pipeline.h"
#include "model/safetensors.h"
#include "model/single_file.h"
#include "model/tensor_file.h"
#include "model/weights.h"

namespace via::model {
namespace fs = std::filesystem;

void InstructPix2Pix::load_single_file() {
  const std::string& path = model_dir_;
  if (fs::path(path).extension() != ".safetensors" && !is_pickle_checkpoint_name(path))
    throw ModelError(path + ": not a model folder or a checkpoint file (.safetensors, .ckpt, .bin, .pt, .pth)");
  layout_ = "original single file";

  ShapeMap shapes;
  {
    // The header (or pickle) only; tensors are read by the loaders.
    const std::unique_ptr<TensorFile> file = open_tensor_file(path);
    for (const std::string& name : file->names()) shapes.emplace(name, file->info(name).shape);
  }
  if (!is_ldm_checkpoint(shapes))
    throw ModelError(path + ": no '" + std::string(kLdmUnetPrefix) +
                     "*' tensors: not a whole model in the original (CompVis/LDM) layout (a single "
                     "component's weights belong in a diffusers folder)");

  nlohmann::json unet_json, vae_json, text_json;
  std::string tokenizer_dir;
  const std::string& config_dir = options_.config_dir;
  if (!config_dir.empty()) {
    const fs::path dir(config_dir);
    if (!fs::is_directory(dir)) throw ModelError(config_dir + ": config folder not found");
    unet_config_where_ = (dir / "unet" / "config.json").string();
    unet_json = read_json_file(unet_config_where_);
    vae_json = read_json_file((dir / "vae" / "config.json").string());
    text_json = read_json_file((dir / "text_encoder" / "config.json").string());
    tokenizer_dir = (dir / "tokenizer").string();
    read_scheduler_choice(config_dir);
  } else {
    const DetectedConfigs detected = detect_ldm_configs(shapes, path);
    unet_config_where_ = path + " (UNet config detected from the weights)";
    unet_json = detected.unet;
    vae_json = detected.vae;
    text_json = detected.text_encoder;
    scheduler_config_ = SchedulerConfig::from_json(detected.scheduler, "built-in InstructPix2Pix scheduler config");
    scheduler_class_ = scheduler_config_.class_name;
    scheduler_class_source_ = scheduler_config_.source;
    check_scheduler_choice();
    // The file has no vocabulary; a tokenizer/ folder beside it supplies one.
    tokenizer_dir = (fs::path(path).parent_path() / "tokenizer").string();
    if (!fs::is_directory(tokenizer_dir))
      throw ModelError(path + ": a single-file checkpoint carries no tokenizer; put the CLIP tokenizer in " +
                       tokenizer_dir + " or give a diffusers config folder (--model-config)");
  }
  const UNetConfig unet_config = UNetConfig::from_json(unet_json, unet_config_where_);
  const VaeConfig vae_config = VaeConfig::from_json(vae_json, path + " (VAE config)");
  const CLIPTextConfig text_config = CLIPTextConfig::from_json(text_json, path + " (text encoder config)");

  tokenizer_ = std::make_unique<ClipTokenizer>(tokenizer_dir);
  const std::vector<std::string> files = {path};
  WeightLoadOptions load;  // each component takes its own tensors from the file, renamed
  load.dtype = options_.dtype;
  load.device = options_.device;
  load.rename = ldm_text_encoder_name;
  text_encoder_ = std::make_unique<CLIPTextModel>(load_component<CLIPTextModel>(text_config, files, load));

  // All blocks have the same count in the configs this layout comes with.
  const int64_t layers = unet_config.layers_per_block.empty() ? 2 : unet_config.layers_per_block.front();
  for (int64_t l : unet_config.layers_per_block)
    if (l != layers)
      throw ModelError(unet_config_where_ + ": per-block layers_per_block differ; the original layout numbers "
                       "its blocks with one count");
  load.rename = [layers](const std::string& key) { return ldm_unet_name(key, layers); };
  unet_ = std::make_unique<UNet2DConditionModel>(load_component<UNet2DConditionModel>(unet_config, files, load));

  const auto blocks = static_cast<int64_t>(vae_config.block_out_channels.size());
  load.rename = [blocks](const std::string& key) { return ldm_vae_name(key, blocks); };
  load.conv1x1_as_linear = true;  // the original VAE attention's q/k/v/proj_out are 1x1 convolutions
  vae_ = std::make_unique<AutoencoderKL>(load_component<AutoencoderKL>(vae_config, files, load));
}

}  // namespace via::model
