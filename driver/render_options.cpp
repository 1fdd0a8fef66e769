#include "driver/render_options.h"

#include <filesystem>

namespace via::driver {
namespace {

std::string absolute(const std::string& path) {
  return path.empty() ? path : std::filesystem::absolute(path).lexically_normal().string();
}

}  // namespace

po::options_description render_options(RenderCommand& cmd) {
  rank::RenderSettings& s = cmd.settings;
  po::options_description io_opts("input and output");
  io_opts.add_options()
      ("input", po::value(&s.input)->required(), "source video")
      ("output", po::value(&s.output)->required(), "edited video (MP4)")
      ("model", po::value(&s.model)->required(), "InstructPix2Pix model: a diffusers folder or an original-layout .safetensors/.ckpt file")
      ("instruction", po::value(&s.instruction)->required(), "the edit, in plain language")
      ("workdir", po::value(&cmd.workdir)->required(), "work directory: settings, adaptation, checkpoints, segments")
      ("resume", po::bool_switch(&cmd.resume), "continue the render in --workdir (starts one if it is empty)")
      ("mask", po::value(&s.mask), "edit only inside a mask: images pattern (masks/%05d.png), mask video or one image")
      ("long-side", po::value(&s.long_side)->default_value(s.long_side), "model size: the longer side (multiple of 8)")
      ("resize", po::value(&s.resize)->default_value(s.resize), "aspect policy: fit | crop | stretch")
      ("crf", po::value(&s.crf)->default_value(s.crf), "H.264 quality (0-51, lower is better)")
      ("preset", po::value(&s.preset)->default_value(s.preset), "x264 preset")
      ("chunk-frames", po::value(&s.chunk_frames)->default_value(s.chunk_frames), "frames per chunk (unit of work and checkpoint)")
      ("threads", po::value(&cmd.threads)->default_value(cmd.threads), "CPU threads per rank (0: this machine's cores shared by its ranks)");
  po::options_description edit("editing");
  edit.add_options()
      ("steps", po::value(&s.steps)->default_value(s.steps), "denoising steps")
      ("scheduler", po::value(&s.scheduler)->default_value(s.scheduler), "auto (the model's own) | euler_a | euler | ddim | dpmpp_2m | dpmpp_2m_karras")
      ("text-guidance", po::value(&s.text_guidance)->default_value(s.text_guidance), "s_T")
      ("image-guidance", po::value(&s.image_guidance)->default_value(s.image_guidance), "s_I")
      ("seed", po::value(&s.seed)->default_value(s.seed), "seed of every random draw")
      ("dtype", po::value(&s.dtype)->default_value(s.dtype), "auto | fp32 | bf16 | fp16");
  po::options_description adapt_opts("test-time editing adaptation");
  adapt_opts.add_options()
      ("root-frame", po::value(&s.root_frame)->default_value(s.root_frame), "root frame (-1: drawn from the seed)")
      ("candidates", po::value(&s.candidates)->default_value(s.candidates), "candidate edits of the root frame")
      ("root-seed", po::value(&s.root_seed)->default_value(s.root_seed), "the chosen candidate (-1: automatic, the medoid)")
      ("augment", po::value(&s.augment)->default_value(s.augment), "tuning pairs (random affine copies)")
      ("finetune", po::value(&s.finetune)->default_value(s.finetune), "lora | full | off")
      ("lora-rank", po::value(&s.lora_rank)->default_value(s.lora_rank), "LoRA rank")
      ("learning-rate", po::value(&s.learning_rate)->default_value(s.learning_rate), "fine-tuning learning rate")
      ("finetune-steps", po::value(&s.finetune_steps)->default_value(s.finetune_steps), "fine-tuning steps")
      ("condition-dropout", po::value(&s.condition_dropout)->default_value(s.condition_dropout), "conditioning dropout");
  po::options_description attn("spatiotemporal attention adaptation");
  attn.add_options()
      ("attention", po::value(&s.attention)->default_value(s.attention), "gather-swap | anchor | own")
      ("group-size", po::value(&s.group_size)->default_value(s.group_size), "key frames in the attention group")
      ("swap-steps", po::value(&s.swap_steps)->default_value(s.swap_steps), "swap during the first N steps (-1: all)")
      ("swap-layers", po::value(&s.swap_layers)->default_value(s.swap_layers), "self | cross | both")
      ("noise", po::value(&s.noise)->default_value(s.noise), "per-frame | shared (one noise for every frame: a baseline)")
      ("mask-feather", po::value(&s.mask_feather)->default_value(s.mask_feather), "mask edge blur (latent pixels)");
  po::options_description all("render options");
  all.add(io_opts).add(edit).add(adapt_opts).add(attn);
  return all;
}

void finish_render_command(RenderCommand& cmd) {
  try {
    cmd.settings.validate();
  } catch (const rank::SettingsError& e) {
    throw UsageError(e.what());
  }
  if (cmd.threads < 0) throw UsageError("--threads must not be negative");
  rank::RenderSettings& s = cmd.settings;
  s.input = absolute(s.input);
  s.model = absolute(s.model);
  s.output = absolute(s.output);
  s.mask = absolute(s.mask);
  cmd.workdir = absolute(cmd.workdir);
}

std::vector<std::string> render_arguments(const RenderCommand& cmd) {
  // Every setting, defaults included: a job script resubmitted after an
  // upgrade that changed a default must still match its work directory.
  std::vector<std::string> args;
  const nlohmann::json settings = cmd.settings.to_json();  // outlives items()
  for (const auto& item : settings.items()) {
    if (item.value().is_string() && item.value().get<std::string>().empty()) continue;  // no --mask
    args.push_back(rank::flag_of(item.key()));
    args.push_back(item.value().is_string() ? item.value().get<std::string>() : item.value().dump());
  }
  args.push_back("--workdir");
  args.push_back(cmd.workdir);
  if (cmd.threads > 0) {
    args.push_back("--threads");
    args.push_back(std::to_string(cmd.threads));
  }
  if (cmd.resume) args.push_back("--resume");
  return args;
}

}  // namespace via::driver
