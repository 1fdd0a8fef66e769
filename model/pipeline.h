#pragma once
// The InstructPix2Pix edit loop (diffusers 0.42.1
// pipelines/stable_diffusion/pipeline_stable_diffusion_instruct_pix2pix.py),
// split into the pieces a video renderer calls per frame: encode the
// instruction once, encode each frame, denoise with an attention control and
// a per-step hook, decode.
#include <ATen/core/Tensor.h>
#include <c10/core/Device.h>
#include <c10/core/ScalarType.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "model/attention_control.h"
#include "model/scheduler.h"
#include "model/text_encoder.h"
#include "model/tokenizer.h"
#include "model/unet.h"
#include "model/vae.h"

namespace via::model {

/// The instruction's text-encoder output and the empty prompt's, each
/// [1, 77, hidden] in the model's dtype and device.
struct TextEmbeddings {
  at::Tensor cond;    ///< the instruction
  at::Tensor uncond;  ///< "" (the reference's unconditional prompt)
  /// The tokens dropped because the instruction was longer than the text
  /// encoder's 77 positions, decoded back to text; empty when none were.
  std::string truncated_text;
};

/// Sampling settings of one edit.
struct DenoiseSettings {
  int64_t steps = 20;
  SchedulerKind scheduler = SchedulerKind::EulerAncestral;
  double text_guidance = 7.5;   ///< s_T
  double image_guidance = 1.5;  ///< s_I
  /// The reference runs all three guidance branches only when s_T > 1 and
  /// s_I >= 1; otherwise it runs the (text, image) branch alone.
  bool guided() const { return text_guidance > 1.0 && image_guidance >= 1.0; }
};

/// What a step hook is told after step `step` of `num_steps`.
struct StepInfo {
  int64_t step;
  int64_t num_steps;
  const Scheduler& scheduler;  ///< e.g. add_noise(src, noise, step + 1): the level the latents are at now
};

/// Called after every denoising step with the new latents (fp32, [N, C, h, w]);
/// may replace or modify them (mask blending does).
using StepHook = std::function<void(const StepInfo& info, at::Tensor& latents)>;

/// Unit-normal noise for step `step` of the given shape (fp32, any device).
/// Used by the ancestral scheduler only.
using NoiseFn = std::function<at::Tensor(int64_t step, at::IntArrayRef shape)>;

/// The classifier-free guidance of InstructPix2Pix (Brooks et al. 2023,
/// "InstructPix2Pix", Eq. 3): e = e_00 + s_I (e_0I - e_00) + s_T (e_TI - e_0I),
/// evaluated in the reference's order. All tensors of one shape.
at::Tensor combine_guidance(const at::Tensor& text_image, const at::Tensor& image, const at::Tensor& uncond,
                            double text_guidance, double image_guidance);

/// Deterministic unit-normal noise (fp32, CPU) of `shape` for (seed, frame,
/// step): a CPU generator seeded with random::noise_seed (base/random.h),
/// so the draw never depends on call order, thread or process. Step -1 is
/// the initial latent noise, step i >= 0 the ancestral noise of denoising
/// step i (base/random.h names every stream).
at::Tensor make_noise(at::IntArrayRef shape, uint64_t seed, int64_t frame, int64_t step);

/// A NoiseFn for a batch of frames: row k of the batch gets
/// make_noise(shape[1:], seed, frames[k], step). shape[0] must equal frames.size().
NoiseFn frame_noise(uint64_t seed, std::vector<int64_t> frames);

/// Byte images (uint8 [H, W, 3] or [N, H, W, 3], RGB) as float [N, 3, H, W]
/// in [0, 1], as the reference's image processor makes them.
at::Tensor rgb8_to_image(const at::Tensor& rgb);
/// Float images [N, 3, H, W] in [0, 1] as bytes uint8 [N, H, W, 3] (CPU),
/// rounded as the reference does ((x * 255).round()).
at::Tensor image_to_rgb8(const at::Tensor& images);

/// Where and in which precision a model runs.
struct ModelOptions {
  at::ScalarType dtype = at::kFloat;  ///< kFloat, kBFloat16, kHalf (kHalf only on CUDA)
  c10::Device device = c10::Device(c10::kCPU);
  /// The scheduler the caller will run. Unset: the model's own
  /// (default_scheduler()), which must then be one via implements; a model
  /// naming another class is refused before any weights are read.
  std::optional<SchedulerKind> scheduler = std::nullopt;
  /// For a single-file checkpoint: a diffusers folder whose component configs,
  /// tokenizer and scheduler complete it (as diffusers' from_single_file(config=));
  /// its weights are not read. Empty: the built-in configs, sized from the
  /// weights, and the tokenizer/ folder beside the file.
  std::string config_dir = {};
};

/// An InstructPix2Pix model loaded from a folder in the diffusers layout
/// (model_index.json, unet/, vae/, text_encoder/, tokenizer/, scheduler/) or
/// from a single-file checkpoint in the original layout (.safetensors; see
/// model/single_file.h and ModelOptions::config_dir).
///
/// Contract: construction loads everything or throws one ModelError naming
/// the missing or broken file. The methods are const and keep no state
/// between calls (the scheduler is made per denoise()), so one object may
/// edit any number of frames in any order; they are not thread-safe
/// (the modules are shared). Everything runs under no-grad.
class InstructPix2Pix {
 public:
  /// Loads `model_dir` (a folder or a single file). fp16 on a CPU device is
  /// refused (no CPU half matmuls).
  explicit InstructPix2Pix(const std::string& model_dir, const ModelOptions& options = {});

  /// The instruction and the empty prompt through tokenizer and text encoder.
  /// An empty (or all-blank) instruction throws std::invalid_argument.
  TextEmbeddings encode_instruction(const std::string& text) const;

  /// Image latents of images [N, 3, H, W] in [0, 1] (H, W multiples of
  /// vae_scale_factor()): the VAE posterior's mode, NOT multiplied by the
  /// scaling factor (the reference IP2P pipeline conditions on unscaled
  /// latents). Returns fp32 [N, C, H / f, W / f] on the model's device.
  at::Tensor encode_image(const at::Tensor& images) const;

  /// The edit: `steps` denoising steps from `initial_noise` (unit normal,
  /// [N, C, h, w]; scaled by the scheduler's init_noise_sigma here), guided by
  /// `image_latents` ([N, C, h, w], from encode_image) and `text`. The
  /// branches run in one UNet batch of 3N rows in the reference's order:
  /// [text, uncond, uncond] embeddings with [image, image, zeros] latents,
  /// told to the UNet as AttentionContext{control, step, {TextImage, Image,
  /// Uncond}}. `on_step` runs after each step; `step_noise` supplies the
  /// ancestral noise (required for euler_a). Returns the final latents, fp32.
  at::Tensor denoise(const at::Tensor& image_latents, const TextEmbeddings& text, const at::Tensor& initial_noise,
                     const DenoiseSettings& settings, AttentionControl* control = nullptr,
                     const StepHook& on_step = {}, const NoiseFn& step_noise = {}) const;

  /// Latents -> images [N, 3, H, W] in [0, 1] (fp32): VAE decode of
  /// latents / scaling_factor, then (x / 2 + 0.5).clamp(0, 1).
  at::Tensor decode(const at::Tensor& latents) const;

  /// A scheduler of `kind` from the model's scheduler_config.json.
  std::unique_ptr<Scheduler> make_scheduler(SchedulerKind kind) const;
  /// The scheduler class the model names: model_index.json's "scheduler"
  /// entry (what diffusers instantiates), else scheduler_config.json's
  /// `_class_name`; euler_a (the reference pipeline's default) when neither
  /// names one. A class via does not implement (e.g. PNDMScheduler) throws
  /// ModelError naming it, the file and the supported classes.
  SchedulerKind default_scheduler() const;
  /// The class default_scheduler() read ("" when none), and the file naming it.
  const std::string& scheduler_class() const { return scheduler_class_; }

  const std::string& model_dir() const { return model_dir_; }
  /// "diffusers folder" or "original single file".
  const std::string& layout() const { return layout_; }
  const ModelOptions& options() const { return options_; }
  int64_t vae_scale_factor() const;   ///< image pixels per latent pixel (8 for SD)
  int64_t latent_channels() const;    ///< channels of the noisy latent (4)
  const SchedulerConfig& scheduler_config() const { return scheduler_config_; }
  const ClipTokenizer& tokenizer() const { return *tokenizer_; }
  CLIPTextModel& text_encoder() const { return *text_encoder_; }
  UNet2DConditionModel& unet() const { return *unet_; }
  AutoencoderKL& vae() const { return *vae_; }

 private:
  void load_single_file();  // model/pipeline_single_file.cpp
  /// Scheduler config and class from `folder`'s scheduler/ and model_index.json.
  void read_scheduler_choice(const std::string& folder);
  void check_scheduler_choice() const;

  std::string model_dir_;
  ModelOptions options_;
  std::string layout_, unet_config_where_;
  SchedulerConfig scheduler_config_;
  std::string scheduler_class_, scheduler_class_source_;
  std::unique_ptr<ClipTokenizer> tokenizer_;
  std::unique_ptr<CLIPTextModel> text_encoder_;
  std::unique_ptr<UNet2DConditionModel> unet_;
  std::unique_ptr<AutoencoderKL> vae_;
};

/// The files a complete model folder must hold (relative paths); the
/// weights are found per component by find_weight_files(), the tokenizer's
/// vocabulary by tokenizer_files().
const std::vector<std::string>& required_model_files();

/// The vocabulary files of a tokenizer folder: {vocab.json, merges.txt} when
/// vocab.json exists (transformers 4's form), else {tokenizer.json} when that
/// exists (transformers 5's), else the missing {vocab.json, merges.txt}
/// (paths inside `tokenizer_dir`; they may not exist).
std::vector<std::string> tokenizer_files(const std::string& tokenizer_dir);

/// (class, file naming it) of the scheduler a diffusers folder asks for:
/// model_index.json's "scheduler" entry, else `config`'s _class_name (read
/// from the folder's scheduler/scheduler_config.json).
std::pair<std::string, std::string> named_scheduler_class(const std::string& folder, const SchedulerConfig& config);

}  // namespace via::model
