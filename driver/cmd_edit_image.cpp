// `via edit-image`: one InstructPix2Pix edit of one still image, as the
// reference pipeline does it (same conditioning, guidance and schedulers).
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/cuda.h>

#include <algorithm>
#include <cctype>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <iostream>
#include <optional>
#include <string>

#include "driver/options.h"
#include "io/image.h"
#include "io/resize.h"
#include "model/dtype.h"
#include "model/pipeline.h"
#include "model/safetensors.h"

namespace via::driver {
namespace {

const char* kUsage =
    "via edit-image --model DIR --input IMG --output OUT.png --instruction TEXT [options]\n\n"
    "Edits IMG (PNG, JPEG, or any still image FFmpeg reads) following TEXT with an\n"
    "InstructPix2Pix model in the diffusers folder layout and writes OUT.png.\n"
    "Size: without --size the input keeps its size, rounded down to a multiple of the\n"
    "model's VAE factor (8 for real models) as the reference pipeline does; --size WxH\n"
    "must itself be a multiple of that factor (else an error) and resizes with --resize.\n"
    "An instruction longer than the text encoder's 77 tokens is truncated with a warning.";

struct SizeArg {
  int width = 0;
  int height = 0;
};

SizeArg parse_size(const std::string& text) {
  const auto x = text.find('x');
  try {
    size_t used_w = 0, used_h = 0;
    if (x == std::string::npos) throw std::invalid_argument("no x");
    const int w = std::stoi(text.substr(0, x), &used_w);
    const int h = std::stoi(text.substr(x + 1), &used_h);
    if (used_w != x || used_h != text.size() - x - 1 || w <= 0 || h <= 0) throw std::invalid_argument("bad");
    return {w, h};
  } catch (const std::exception&) {
    throw UsageError("--size '" + text + "' is not WIDTHxHEIGHT with positive integers (e.g. 512x512)");
  }
}

at::ScalarType parse_dtype(const std::string& name) {
  if (const auto dtype = model::compute_dtype_from_name(name)) return *dtype;
  throw UsageError("--dtype '" + name + "' is not one of fp32, bf16, fp16");
}

c10::Device parse_device(const std::string& name) {
  if (name == "auto") return torch::cuda::is_available() ? c10::Device(c10::kCUDA, 0) : c10::Device(c10::kCPU);
  try {
    const c10::Device d(name);
    if (d.is_cuda() && !torch::cuda::is_available())
      throw UsageError("--device " + name + ": CUDA is not available in this build or on this machine");
    if (!d.is_cpu() && !d.is_cuda()) throw UsageError("--device '" + name + "' is not one of auto, cpu, cuda[:N]");
    return d;
  } catch (const c10::Error&) {
    throw UsageError("--device '" + name + "' is not one of auto, cpu, cuda[:N]");
  }
}

bool has_png_extension(const std::string& path) {
  std::string ext = std::filesystem::path(path).extension().string();
  for (char& c : ext) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return ext == ".png";
}

// The initial latent noise from --init-noise: tensor "latents", [1, C, h, w] or [C, h, w].
at::Tensor read_init_noise(const std::string& path, const std::vector<int64_t>& shape) {
  const model::SafeTensorsFile file(path);
  if (!file.contains("latents"))
    throw model::ModelError(path + ": no tensor named 'latents' (the initial noise must be stored as 'latents')");
  at::Tensor t = file.tensor("latents");
  if (!at::isFloatingType(t.scalar_type()))
    throw model::ModelError(path + ": tensor 'latents' is " + std::string(c10::toString(t.scalar_type())) +
                            ", expected a floating-point type");
  if (t.dim() == 3) t = t.unsqueeze(0);
  if (t.sizes() != at::IntArrayRef(shape))
    throw model::ModelError(path + ": tensor 'latents' has shape " + c10::str(file.tensor("latents").sizes()) +
                            ", this edit needs " + c10::str(at::IntArrayRef(shape)));
  return t.to(at::kFloat).clone();
}

}  // namespace

int cmd_edit_image(const Args& args) {
  std::string model_dir, model_config, input, output, instruction, scheduler_name, size_text, init_noise, dtype_name, device_name,
      resize_name;
  int64_t steps = 20;
  uint64_t seed = 0;
  double text_guidance = 7.5, image_guidance = 1.5;
  int threads = 0;
  po::options_description desc("options");
  desc.add_options()
      ("model", po::value(&model_dir)->required(), "model: a diffusers folder (model_index.json, unet/, vae/, text_encoder/, tokenizer/, scheduler/) or an original-layout .safetensors file")
      ("model-config", po::value(&model_config), "for a single-file --model: a diffusers folder whose configs, tokenizer and scheduler to use (default: built-in SD-1.x InstructPix2Pix configs sized from the weights, tokenizer/ beside the file)")
      ("input", po::value(&input)->required(), "image to edit")
      ("output", po::value(&output)->required(), "where to write the edited image (.png)")
      ("instruction", po::value(&instruction)->required(), "what to change, in plain language")
      ("steps", po::value(&steps)->default_value(20), "denoising steps")
      ("seed", po::value(&seed)->default_value(0), "seed of the initial and the ancestral noise")
      ("scheduler", po::value(&scheduler_name), "euler_a | euler | ddim | dpmpp_2m | dpmpp_2m_karras (default: the one the model names)")
      ("text-guidance", po::value(&text_guidance)->default_value(7.5), "text guidance scale s_T")
      ("image-guidance", po::value(&image_guidance)->default_value(1.5), "image guidance scale s_I")
      ("size", po::value(&size_text), "WIDTHxHEIGHT of the edit (multiples of the VAE factor)")
      ("resize", po::value(&resize_name)->default_value("stretch"), "how --size is reached: stretch | fit | crop")
      ("init-noise", po::value(&init_noise), "initial latent noise: a .safetensors file with tensor 'latents' [1, C, H/f, W/f]")
      ("dtype", po::value(&dtype_name)->default_value("fp32"), "fp32 | bf16 | fp16 (fp16 on CUDA only)")
      ("device", po::value(&device_name)->default_value("auto"), "auto | cpu | cuda[:N]")
      ("threads", po::value(&threads)->default_value(0), "CPU threads (0: libtorch's default)");
  if (!parse_options(kUsage, desc, args)) return 0;

  // Cheap checks first: a real model takes a while to load.
  if (std::all_of(instruction.begin(), instruction.end(), [](unsigned char c) { return std::isspace(c); }))
    throw UsageError("--instruction is empty: say what to change, e.g. --instruction \"make it winter\"");
  if (steps < 1) throw UsageError("--steps must be at least 1");
  if (!std::isfinite(text_guidance) || !std::isfinite(image_guidance))
    throw UsageError("--text-guidance and --image-guidance must be finite numbers");
  if (threads < 0) throw UsageError("--threads must be 0 (default) or positive");
  if (!has_png_extension(output)) throw UsageError("--output '" + output + "' must end in .png (PNG is the output format)");
  std::optional<model::SchedulerKind> scheduler;
  if (!scheduler_name.empty()) {
    try {
      scheduler = model::scheduler_kind_from_name(scheduler_name);
    } catch (const model::ModelError& e) {
      throw UsageError(std::string("--scheduler: ") + e.what());
    }
  }
  std::optional<SizeArg> size;
  if (!size_text.empty()) size = parse_size(size_text);
  io::ResizeMode resize_mode;
  try {
    resize_mode = io::parse_resize_mode(resize_name);
  } catch (const std::invalid_argument& e) {
    throw UsageError(std::string("--resize: ") + e.what());
  }
  const model::ModelOptions options{parse_dtype(dtype_name), parse_device(device_name), scheduler, model_config};
  if (threads > 0) at::set_num_threads(threads);

  const auto start = std::chrono::steady_clock::now();
  io::RgbImage image = io::read_image(input);
  const model::InstructPix2Pix model(model_dir, options);
  const int f = static_cast<int>(model.vae_scale_factor());
  io::Size target{image.width - image.width % f, image.height - image.height % f};
  if (size) {
    if (size->width % f != 0 || size->height % f != 0)
      throw UsageError("--size " + size_text + ": width and height must be multiples of " + std::to_string(f) +
                       " (this model's VAE factor)");
    target = {size->width, size->height};
  } else if (target.width == 0 || target.height == 0) {
    throw UsageError(input + " is " + std::to_string(image.width) + "x" + std::to_string(image.height) +
                     ", smaller than the model's " + std::to_string(f) + "-pixel grid; give --size");
  }
  if (target.width != image.width || target.height != image.height)
    image = io::resize_rgb(image, target, size ? resize_mode : io::ResizeMode::stretch);

  const model::TextEmbeddings text = model.encode_instruction(instruction);
  if (!text.truncated_text.empty())
    std::cerr << "via edit-image: warning: the instruction is longer than the text encoder's "
              << model.tokenizer().max_length() << " tokens; this part was dropped: \"" << text.truncated_text
              << "\"\n";
  const at::Tensor image_latents = model.encode_image(model::rgb8_to_image(io::image_to_tensor(image)));
  const std::vector<int64_t> latent_shape(image_latents.sizes().begin(), image_latents.sizes().end());
  // Frame 0 of a one-frame "video": the same noise a render of this image as frame 0 would draw.
  const at::Tensor noise =
      init_noise.empty() ? model::make_noise(latent_shape, seed, 0, -1) : read_init_noise(init_noise, latent_shape);

  model::DenoiseSettings settings;
  settings.steps = steps;
  settings.scheduler = scheduler.value_or(model.default_scheduler());
  settings.text_guidance = text_guidance;
  settings.image_guidance = image_guidance;
  const at::Tensor latents =
      model.denoise(image_latents, text, noise, settings, nullptr, {}, model::frame_noise(seed, {0}));
  const at::Tensor rgb = model::image_to_rgb8(model.decode(latents))[0];
  io::write_png(output, io::tensor_to_image(rgb));

  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  std::printf("wrote %s (%dx%d, %lld %s steps, %.2f s)\n", output.c_str(), target.width, target.height,
              static_cast<long long>(steps), model::scheduler_name(settings.scheduler).c_str(), seconds);
  return 0;
}

}  // namespace via::driver
