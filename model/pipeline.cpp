// The InstructPix2Pix edit loop; see model/pipeline.h. Every numerical step
// follows StableDiffusionInstructPix2PixPipeline.__call__ (diffusers 0.42.1)
// in order, so the fp32 result matches the reference to rounding.
#include "model/pipeline.h"

#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>
#include <torch/csrc/autograd/grad_mode.h>

#include <algorithm>
#include <cctype>
#include <filesystem>
#include <stdexcept>
#include <tuple>

#include "base/random.h"
#include "model/json_file.h"
#include "model/pipeline_text.h"
#include "model/safetensors.h"  // ModelError
#include "model/weights.h"

namespace via::model {
namespace fs = std::filesystem;
namespace {

std::string describe_dtype(at::ScalarType t) { return c10::toString(t); }

// Checks the folder before anything is loaded, so a broken download gives
// one message listing every missing file instead of the first failure deep
// inside a component.
void check_model_folder(const std::string& dir) {
  if (!fs::is_directory(dir)) throw ModelError(dir + ": model folder not found");
  std::vector<std::string> missing;
  for (const std::string& rel : required_model_files())
    if (!fs::is_regular_file(fs::path(dir) / rel)) missing.push_back((fs::path(dir) / rel).string());
  for (const std::string& path : tokenizer_files((fs::path(dir) / "tokenizer").string()))
    if (!fs::is_regular_file(path)) missing.push_back(path);
  if (!missing.empty()) {
    std::string list;
    for (const auto& m : missing) list += (list.empty() ? "" : ", ") + m;
    throw ModelError(dir + ": incomplete InstructPix2Pix model folder (diffusers layout), missing " + list);
  }
  for (const char* component : {"unet", "vae", "text_encoder"}) find_weight_files((fs::path(dir) / component).string());
}

}  // namespace

const std::vector<std::string>& required_model_files() {
  static const std::vector<std::string> files = {
      "model_index.json",          "unet/config.json",          "vae/config.json",
      "text_encoder/config.json",  "scheduler/scheduler_config.json",
  };
  return files;
}

std::vector<std::string> tokenizer_files(const std::string& tokenizer_dir) {
  const fs::path dir(tokenizer_dir);
  std::error_code ec;
  if (!fs::exists(dir / "vocab.json", ec) && fs::exists(dir / "tokenizer.json", ec))
    return {(dir / "tokenizer.json").string()};
  return {(dir / "vocab.json").string(), (dir / "merges.txt").string()};
}

// ---- guidance, noise, image conversions ----

at::Tensor combine_guidance(const at::Tensor& text_image, const at::Tensor& image, const at::Tensor& uncond,
                            double text_guidance, double image_guidance) {
  return uncond + text_guidance * (text_image - image) + image_guidance * (image - uncond);
}

at::Tensor make_noise(at::IntArrayRef shape, uint64_t seed, int64_t frame, int64_t step) {
  at::Generator gen = at::detail::createCPUGenerator(random::noise_seed(seed, frame, step));
  return at::randn(shape, gen, at::TensorOptions().dtype(at::kFloat));
}

NoiseFn frame_noise(uint64_t seed, std::vector<int64_t> frames) {
  return [seed, frames = std::move(frames)](int64_t step, at::IntArrayRef shape) {
    TORCH_CHECK(!shape.empty() && shape[0] == static_cast<int64_t>(frames.size()), "frame_noise: batch of ",
                shape.empty() ? 0 : shape[0], " rows for ", frames.size(), " frames");
    std::vector<at::Tensor> rows;
    rows.reserve(frames.size());
    std::vector<int64_t> row_shape(shape.begin(), shape.end());
    row_shape[0] = 1;
    for (int64_t f : frames) rows.push_back(make_noise(row_shape, seed, f, step));
    return at::cat(rows, 0);
  };
}

at::Tensor rgb8_to_image(const at::Tensor& rgb) {
  if (rgb.scalar_type() != at::kByte || (rgb.dim() != 3 && rgb.dim() != 4) || rgb.size(-1) != 3)
    throw std::invalid_argument("expected RGB bytes uint8 [H, W, 3] or [N, H, W, 3], got " +
                                describe_dtype(rgb.scalar_type()) + " " + c10::str(rgb.sizes()));
  const at::Tensor batch = rgb.dim() == 3 ? rgb.unsqueeze(0) : rgb;
  return batch.permute({0, 3, 1, 2}).to(at::kFloat).div(255.0).contiguous();
}

at::Tensor image_to_rgb8(const at::Tensor& images) {
  if (images.dim() != 4 || images.size(1) != 3 || !at::isFloatingType(images.scalar_type()))
    throw std::invalid_argument("expected float images [N, 3, H, W], got " + describe_dtype(images.scalar_type()) +
                                " " + c10::str(images.sizes()));
  return images.to(at::kCPU, at::kFloat).mul(255.0).round().clamp(0, 255).to(at::kByte).permute({0, 2, 3, 1})
      .contiguous();
}

// ---- the model ----

InstructPix2Pix::InstructPix2Pix(const std::string& model_dir, const ModelOptions& options)
    : model_dir_(model_dir), options_(options) {
  if (options.dtype != at::kFloat && options.dtype != at::kBFloat16 && options.dtype != at::kHalf)
    throw ModelError(model_dir + ": unsupported model dtype " + describe_dtype(options.dtype) +
                     " (supported: fp32, bf16, fp16)");
  if (options.dtype == at::kHalf && options.device.is_cpu())
    throw ModelError(model_dir + ": fp16 needs a CUDA device (CPU matrix products in fp16 are not available); "
                     "use bf16 or fp32 on the CPU");
  std::error_code ec;
  if (fs::is_regular_file(model_dir, ec)) {
    load_single_file();
  } else {
    check_model_folder(model_dir);
    const fs::path dir(model_dir);
    layout_ = "diffusers folder";
    unet_config_where_ = (dir / "unet" / "config.json").string();
    read_scheduler_choice(model_dir);
    tokenizer_ = std::make_unique<ClipTokenizer>((dir / "tokenizer").string());
    text_encoder_ = std::make_unique<CLIPTextModel>(
        load_component<CLIPTextModel>((dir / "text_encoder").string(), options.dtype, options.device));
    unet_ = std::make_unique<UNet2DConditionModel>(
        load_component<UNet2DConditionModel>((dir / "unet").string(), options.dtype, options.device));
    vae_ = std::make_unique<AutoencoderKL>(
        load_component<AutoencoderKL>((dir / "vae").string(), options.dtype, options.device));
  }

  const int64_t latent = (*vae_)->config().latent_channels;
  if ((*unet_)->config().in_channels != 2 * latent)
    throw ModelError(unet_config_where_ + ": in_channels = " +
                     std::to_string((*unet_)->config().in_channels) + ", but an InstructPix2Pix UNet takes the " +
                     "noisy latent and the image latent, 2 x latent_channels = " + std::to_string(2 * latent));
  if ((*unet_)->config().out_channels != latent)
    throw ModelError(unet_config_where_ + ": out_channels = " +
                     std::to_string((*unet_)->config().out_channels) + " differs from the VAE's latent_channels = " +
                     std::to_string(latent));
}

void InstructPix2Pix::read_scheduler_choice(const std::string& folder) {
  const fs::path dir(folder);
  scheduler_config_ = SchedulerConfig::from_file((dir / "scheduler" / "scheduler_config.json").string());
  std::tie(scheduler_class_, scheduler_class_source_) = named_scheduler_class(folder, scheduler_config_);
  check_scheduler_choice();
}

std::pair<std::string, std::string> named_scheduler_class(const std::string& folder, const SchedulerConfig& config) {
  // diffusers builds the class model_index.json names, with scheduler_config.json's settings.
  const std::string index_path = (fs::path(folder) / "model_index.json").string();
  std::error_code ec;
  if (fs::exists(index_path, ec)) {
    const nlohmann::json index = read_json_file(index_path);  // a corrupt index is an error too
    const auto entry = index.is_object() ? index.find("scheduler") : index.end();
    if (entry != index.end() && entry->is_array() && entry->size() == 2 && (*entry)[1].is_string())
      return {(*entry)[1].get<std::string>(), index_path};
  }
  return {config.class_name, config.source};
}

void InstructPix2Pix::check_scheduler_choice() const {
  // An unsupported scheduler class or setting is refused now, before any weights are read.
  make_scheduler(options_.scheduler ? *options_.scheduler : default_scheduler());
}

std::unique_ptr<Scheduler> InstructPix2Pix::make_scheduler(SchedulerKind kind) const {
  return via::model::make_scheduler(kind, scheduler_config_);
}

SchedulerKind InstructPix2Pix::default_scheduler() const {
  if (scheduler_class_.empty()) return SchedulerKind::EulerAncestral;
  if (auto kind = scheduler_kind_from_class(scheduler_class_)) return *kind;
  throw ModelError(scheduler_class_source_ + ": scheduler class '" + scheduler_class_ +
                   "' is not supported (supported: " + supported_scheduler_classes() +
                   "); choose another explicitly (--scheduler: " + supported_scheduler_names() + ")");
}

int64_t InstructPix2Pix::vae_scale_factor() const { return (*vae_)->downsampling_factor(); }
int64_t InstructPix2Pix::latent_channels() const { return (*vae_)->config().latent_channels; }

TextEmbeddings InstructPix2Pix::encode_instruction(const std::string& text) const {
  if (std::all_of(text.begin(), text.end(), [](unsigned char c) { return std::isspace(c); }))
    throw std::invalid_argument("the instruction is empty");
  torch::NoGradGuard no_grad;
  const TokenizedText cond = tokenizer_->encode_padded(text);
  TextEmbeddings out;
  if (cond.truncated) {
    // The reference's warning: the tokens past position max_length - 1 of
    // the untruncated sequence, end token excluded.
    const std::vector<int64_t> all = tokenizer_->encode(text);
    const auto first = all.begin() + (tokenizer_->max_length() - 1);
    out.truncated_text = decode_clip_tokens(tokenizer_->tokens(std::vector<int64_t>(first, all.end() - 1)));
  }
  const at::Tensor ids = tokenizer_->input_ids({text, ""}).to(options_.device);
  const at::Tensor hidden = (*text_encoder_)->forward(ids);  // [2, 77, hidden]
  out.cond = hidden.narrow(0, 0, 1).to(options_.dtype);
  out.uncond = hidden.narrow(0, 1, 1).to(options_.dtype);
  return out;
}

at::Tensor InstructPix2Pix::encode_image(const at::Tensor& images) const {
  const int64_t f = vae_scale_factor();
  if (images.dim() != 4 || images.size(1) != 3 || !at::isFloatingType(images.scalar_type()))
    throw std::invalid_argument("encode_image: expected float images [N, 3, H, W] in [0, 1], got " +
                                describe_dtype(images.scalar_type()) + " " + c10::str(images.sizes()));
  if (images.size(2) % f != 0 || images.size(3) % f != 0)
    throw std::invalid_argument("image size " + std::to_string(images.size(3)) + "x" +
                                std::to_string(images.size(2)) + " is not a multiple of " + std::to_string(f) +
                                " (the model's VAE downsampling factor)");
  torch::NoGradGuard no_grad;
  const at::Tensor x = images.to(options_.device, at::kFloat) * 2.0 - 1.0;
  return (*vae_)->encode(x).mean.to(at::kFloat);
}

at::Tensor InstructPix2Pix::decode(const at::Tensor& latents) const {
  torch::NoGradGuard no_grad;
  const double scaling = (*vae_)->config().scaling_factor;
  const at::Tensor images = (*vae_)->decode(latents.to(options_.device, at::kFloat) / scaling).to(at::kFloat);
  return (images / 2 + 0.5).clamp(0, 1);
}

at::Tensor InstructPix2Pix::denoise(const at::Tensor& image_latents, const TextEmbeddings& text,
                                    const at::Tensor& initial_noise, const DenoiseSettings& settings,
                                    AttentionControl* control, const StepHook& on_step,
                                    const NoiseFn& step_noise) const {
  TORCH_CHECK(initial_noise.dim() == 4 && initial_noise.size(1) == latent_channels(),
              "denoise: initial noise must be [N, ", latent_channels(), ", h, w], got ", initial_noise.sizes());
  TORCH_CHECK(image_latents.sizes() == initial_noise.sizes(), "denoise: image latents ", image_latents.sizes(),
              " and initial noise ", initial_noise.sizes(), " differ in shape");
  TORCH_CHECK(text.cond.defined() && text.uncond.defined(), "denoise: text embeddings missing");
  torch::NoGradGuard no_grad;
  const auto scheduler = make_scheduler(settings.scheduler);
  scheduler->set_timesteps(settings.steps);
  if (scheduler->needs_noise() && !step_noise)
    throw std::invalid_argument("denoise: the " + scheduler_name(settings.scheduler) +
                                " scheduler adds noise at every step and needs a noise function");

  const int64_t n = initial_noise.size(0);
  const auto f32 = at::TensorOptions().dtype(at::kFloat).device(options_.device);
  at::Tensor latents = initial_noise.to(f32) * scheduler->init_noise_sigma();
  const at::Tensor image = image_latents.to(f32);
  const at::Tensor cond = text.cond.to(options_.device).expand({n, -1, -1});
  const at::Tensor uncond = text.uncond.to(options_.device).expand({n, -1, -1});
  const bool guided = settings.guided();
  // The reference's batch: [text, uncond, uncond] embeddings, [image, image, 0] image latents.
  const at::Tensor embeddings = guided ? at::cat({cond, uncond, uncond}, 0) : cond.contiguous();
  const at::Tensor image_cond = guided ? at::cat({image, image, at::zeros_like(image)}, 0) : image;
  AttentionContext ctx;
  ctx.control = control;
  ctx.branches = guided ? std::vector<Branch>{Branch::TextImage, Branch::Image, Branch::Uncond}
                        : std::vector<Branch>{Branch::TextImage};

  for (int64_t i = 0; i < settings.steps; ++i) {
    const at::Tensor batch = guided ? at::cat({latents, latents, latents}, 0) : latents;
    const at::Tensor model_in = at::cat({scheduler->scale_model_input(batch, i), image_cond}, 1);
    ctx.step = i;
    at::Tensor eps = (*unet_)->forward(model_in, scheduler->timestep(i), embeddings, ctx).to(at::kFloat);
    if (guided) {
      const auto parts = eps.chunk(3, 0);
      eps = combine_guidance(parts[0], parts[1], parts[2], settings.text_guidance, settings.image_guidance);
    }
    at::Tensor noise;
    if (scheduler->needs_noise()) noise = step_noise(i, latents.sizes()).to(f32);
    latents = scheduler->step(eps, i, latents, noise);
    if (on_step) on_step(StepInfo{i, settings.steps, *scheduler}, latents);
  }
  return latents;
}

}  // namespace via::model
