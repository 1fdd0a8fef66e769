#include "rank/render.h"

#include <ATen/ATen.h>
#include <torch/cuda.h>

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <memory>

#include "adaptation/finetune.h"
#include "adaptation/latent_blend.h"
#include "adaptation/lora.h"
#include "adaptation/root.h"
#include "base/random.h"
#include "io/checkpoint.h"
#include "io/image.h"
#include "io/mask_source.h"
#include "io/output_format.h"
#include "io/segments.h"
#include "io/video_writer.h"
#include "model/dtype.h"
#ifdef VIA_HAVE_NCCL
#include "comm/nccl_communicator.h"  // cuda_free_memory
#endif
#include "rank/adapter_file.h"
#include "rank/group_store.h"
#include "rank/output_frames.h"
#include "rank/progress.h"
#include "rank/stop.h"

namespace fs = std::filesystem;

namespace via::rank {

Renderer::Renderer(RenderSettings settings, std::string workdir, LogFn log, int cuda_device, int ranks_on_node)
    : settings_(std::move(settings)), dir_{std::move(workdir)}, log_(std::move(log)) {
  settings_.validate();
  key_ = settings_.hash();
  StageTimer timer(times_, Stage::Startup);
  for (const char* sub : {"/chunks", "/segments", "/frames"}) fs::create_directories(dir_.root + sub);
  video_ = io::probe_video(settings_.input);
  if (video_.frame_count < 1) throw std::runtime_error(settings_.input + ": the video has no frames");
  size_ = io::model_size(video_.display_size(), static_cast<int>(settings_.long_side));
  reader_ = std::make_unique<io::VideoReader>(
      settings_.input, io::ReaderOptions{size_, settings_.resize});
  const bool cuda = torch::cuda::is_available();
  model::ModelOptions options;
  options.dtype = settings_.dtype.value_or(model::auto_compute_dtype(cuda));
  options.device = cuda ? c10::Device(c10::kCUDA, static_cast<c10::DeviceIndex>(std::max(cuda_device, 0)))
                        : c10::Device(c10::kCPU);
  // An explicit --scheduler overrides the model's; with auto, a model naming a
  // scheduler via does not implement is refused here, before any work.
  options.scheduler = settings_.scheduler;
  model_ = std::make_unique<model::InstructPix2Pix>(settings_.model, options);
  scheduler_ = options.scheduler ? *options.scheduler : model_->default_scheduler();
  this->log("scheduler: " + model::scheduler_name(scheduler_) + (options.scheduler ? "" : " (the model's own)"));
  text_ = model_->encode_instruction(settings_.instruction);
  if (!text_.truncated_text.empty())
    log("warning: the instruction is longer than 77 tokens; ignored: \"" + text_.truncated_text + "\"");
  if (!settings_.mask.empty()) {
    mask_ = std::make_unique<io::MaskSource>(settings_.mask, size_, settings_.resize, video_.upright_size(),
                                             video_.display_size());
    mask_->validate(video_.frame_count);
  }

  // The memory plan, before anything is computed: a group that cannot fit
  // is refused now, naming the settings that would.
  PlanInputs in;
  const int64_t f = model_->vae_scale_factor(), lh = size_.height / f, lw = size_.width / f;
  in.layers = group_layers(*model_->unet(), lh, lw, text_.cond.size(1));
  in.frame_count = video_.frame_count;
  in.latent_pixels = lh * lw;
  in.base_channels = model_->unet()->config().block_out_channels.at(0);
  in.element_size = static_cast<int64_t>(c10::elementSize(options.dtype));
  constexpr double kMiB = 1024.0 * 1024.0;
  in.limits.host = settings_.host_memory > 0 ? settings_.host_memory * kMiB : available_host_memory(ranks_on_node);
  in.limits.host_source = settings_.host_memory > 0 ? "--host-memory"
                          : ranks_on_node > 1 ? "free memory / " + std::to_string(ranks_on_node) + " ranks on the node"
                                              : "free memory";
  in.limits.device_is_host = !cuda;
  if (cuda) {
    in.limits.device = settings_.device_memory > 0 ? settings_.device_memory * kMiB : -1;
    in.limits.device_source = "--device-memory";
#ifdef VIA_HAVE_NCCL
    if (settings_.device_memory <= 0) {
      in.limits.device = static_cast<double>(comm::cuda_free_memory(options.device.index()));
      in.limits.device_source = "free device memory";
    }
#endif
  }
  plan_ = checked_memory_plan(in, settings_);
  this->log(plan_.summary());
  configure_group();
}

void Renderer::configure_group() {
  group_.set_device_residency(plan_.whole_on_device ? adapt::AttentionGroup::DeviceResidency::Whole
                                                    : adapt::AttentionGroup::DeviceResidency::Step);
  group_.set_pinned(device().is_cuda());
}

int64_t Renderer::key_frame_count() const {
  return static_cast<int64_t>(adapt::key_frame_indices(video_.frame_count, settings_.group_size).size());
}

std::vector<int64_t> Renderer::group_parts() const {
  if (settings_.attention == adapt::AttentionMode::Own) return {};
  std::vector<int64_t> parts = {adapt::AttentionGroup::kCrossStep};
  for (int64_t s = 0; s < settings_.resolved_swap_steps(); ++s) parts.push_back(s);
  return parts;
}

void Renderer::install_group_part(const std::map<std::string, at::Tensor>& tensors) {
  group_.add_named(tensors);
  group_.set_key_frames(key_frame_count());
}

Renderer::~Renderer() = default;

c10::Device Renderer::device() const { return model_->options().device; }

void Renderer::log(const std::string& line) const {
  if (log_) log_(line);
}

void Renderer::warn(const std::string& line) const {
  if (warn_) warn_(line);
  else log(line);
}

bool Renderer::usable(const std::string& path, io::Verify level, const std::string& what) {
  const std::string problem = artifact_problem(path, key_, level);
  if (problem.empty()) return true;
  if (problem != "missing")
    warn(what + " " + path + " is not used (" + problem + "): moved aside to " + move_aside(dir_, path) +
         "; it is made again");
  return false;
}

model::StepHook Renderer::step_progress(const std::string& stage, const std::string& unit, int64_t count) const {
  auto calls = std::make_shared<int64_t>(0);
  return [this, stage, unit, count, calls](const model::StepInfo& info, at::Tensor&) {
    throw_if_stopped();
    if (!progress_) return;
    const int64_t done = (*calls)++ / std::max<int64_t>(1, info.num_steps);  // edits finished before this one
    char line[160];
    std::snprintf(line, sizeof(line), "%s: %s %lld/%lld, step %lld/%lld", stage.c_str(), unit.c_str(),
                  static_cast<long long>(std::min(done + 1, count)), static_cast<long long>(count),
                  static_cast<long long>(info.step + 1), static_cast<long long>(info.num_steps));
    progress_(stage, line);
  };
}

at::Tensor Renderer::source_frame(int64_t frame) {
  StageTimer timer(times_, Stage::Read);
  return model::rgb8_to_image(io::image_to_tensor(reader_->read_frame(frame).image));
}

at::Tensor Renderer::image_latents(int64_t frame) {
  const auto cached = prefetched_.find(frame);
  if (cached != prefetched_.end()) {
    at::Tensor z = cached->second;
    prefetched_.erase(cached);
    return z;
  }
  const at::Tensor image = source_frame(frame);
  StageTimer timer(times_, Stage::VaeEncode);
  return model_->encode_image(image);
}

at::Tensor Renderer::source_latents(int64_t frame) {
  return (image_latents(frame) * model_->vae()->config().scaling_factor).to(at::kCPU);
}

void Renderer::prefetch(int64_t chunk) {
  const auto [first, count] = chunk_frames(chunk);
  for (int64_t f = first; f < first + count; ++f) {
    throw_if_stopped();
    if (!prefetched_.count(f)) prefetched_[f] = image_latents(f);
  }
}

adapt::SwapSettings Renderer::swap_settings() const {
  adapt::SwapSettings s;
  s.denoise.steps = settings_.steps;
  s.denoise.scheduler = scheduler_;
  s.denoise.text_guidance = settings_.text_guidance;
  s.denoise.image_guidance = settings_.image_guidance;
  s.seed = settings_.seed;
  s.swap_steps = settings_.resolved_swap_steps();
  s.layers = settings_.swap_layers;
  s.mode = settings_.attention;
  s.shared_noise = settings_.noise == NoiseMode::Shared;
  return s;
}

void Renderer::adapt() {
  // Each stage's result is a file; a stage whose file is complete (from an
  // attempt that stopped later) is loaded instead of redone.
  const adapt::SwapSettings swap = swap_settings();
  const adapt::FinetuneMode mode = settings_.finetune;
  // The adapter is read whole before use: a full fine-tune's would otherwise
  // leave the UNet half-loaded when a checksum failed part-way.
  if (mode != adapt::FinetuneMode::Off && usable(dir_.adapter(), io::Verify::Full, "the adapter")) {
    load_adapter();
    log("adaptation: loaded the adapter of an earlier attempt");
  } else if (mode != adapt::FinetuneMode::Off) {
    StageTimer timer(times_, Stage::Adaptation);
    const RootPairImages pair = root_pair();
    throw_if_stopped();
    const auto tuning =
        adapt::make_tuning_set(pair.source, pair.edit, settings_.augment, settings_.seed, pair.edit_latent);
    const adapt::TuningLatents latents = adapt::encode_tuning_set(*model_, tuning, text_);
    adapt::FinetuneOptions ft;
    ft.mode = mode;
    ft.steps = settings_.finetune_steps;
    ft.learning_rate = settings_.learning_rate;
    ft.conditioning_dropout = settings_.condition_dropout;
    ft.seed = settings_.seed;
    if (mode == adapt::FinetuneMode::Lora) {
      adapt::LoraOptions lo;
      lo.rank = settings_.lora_rank;
      lo.seed = settings_.seed;
      lora_ = std::make_unique<adapt::LoraAdapter>(*model_->unet(), lo);
      lora_->attach(*model_->unet());
    }
    const auto on_step = [this](const adapt::StepReport& r) {
      throw_if_stopped();
      if (!progress_) return;
      const double done = static_cast<double>(r.step + 1), rate = r.seconds > 0 ? done / r.seconds : 0.0;
      char line[160];
      std::snprintf(line, sizeof(line), "fine-tuning: step %lld/%lld, loss %.4f, %.2f steps/s, ETA %s",
                    static_cast<long long>(r.step + 1), static_cast<long long>(r.steps), r.loss, rate,
                    rate > 0 ? duration_text((static_cast<double>(r.steps) - done) / rate).c_str() : "?");
      progress_("fine-tuning", line);
    };
    const adapt::FinetuneResult result = adapt::finetune(*model_, latents, ft, lora_.get(), on_step);
    char line[160];
    std::snprintf(line, sizeof(line), "adaptation: fine-tuned (%s) %lld steps in %.1f s, loss %.4f -> %.4f",
                  adapt::finetune_mode_name(mode).c_str(), static_cast<long long>(result.losses.size()), result.seconds,
                  result.losses.empty() ? 0.0 : result.losses.front(),
                  result.losses.empty() ? 0.0 : result.losses.back());
    log(line);
    StageTimer write(times_, Stage::Checkpoint);
    if (lora_) save_lora(dir_.adapter(), *lora_, {{kRenderKeyAttribute, key_}});
    else io::save_checkpoint(dir_.adapter(), result.weights, {{"mode", std::string("full")}, {kRenderKeyAttribute, key_}});
  }

  throw_if_stopped();
  if (swap.mode == adapt::AttentionMode::Own) return;
  // Checksums are checked as the steps are read (a group can be many GiB):
  // a failure part-way drops what was read and gathers again.
  std::string problem = group_file_problem(dir_.group());
  if (problem.empty()) problem = artifact_problem(dir_.group(), key_, io::Verify::Structure);
  if (problem.empty()) {
    try {
      StageTimer timer(times_, Stage::Checkpoint);
      load_group(dir_.group(), group_);
      log("gather: loaded the attention group of an earlier attempt");
      return;
    } catch (const std::exception& e) {
      problem = e.what();
      group_ = adapt::AttentionGroup();
      configure_group();
    }
  }
  if (problem != "missing")
    warn("the attention group " + dir_.group() + " is not used (" + problem + "): moved aside to " +
         move_aside(dir_, dir_.group()) + "; gathering it again");
  StageTimer timer(times_, Stage::Gather);
  const std::vector<int64_t> keys = adapt::key_frame_indices(video_.frame_count, settings_.group_size);
  std::vector<at::Tensor> images;
  for (int64_t k : keys) images.push_back(source_frame(k));
  std::string list;
  for (int64_t k : keys) list += (list.empty() ? "" : ", ") + std::to_string(k);
  log("gather: key frames " + list);
  group_ = adapt::gather_group(*model_, at::cat(images), keys, text_, swap, {}, nullptr,
                               step_progress("gather", "key frame", static_cast<int64_t>(keys.size())));
  configure_group();
  save_group(dir_.group(), group_, keys, {{kRenderKeyAttribute, key_}});
  log("gather: attention group of " + std::to_string(group_.bytes() >> 20) + " MiB");
  if (group_.bytes() != plan_.group_bytes())
    log("warning: the attention group has " + std::to_string(group_.bytes()) + " bytes, the memory plan said " +
        std::to_string(plan_.group_bytes()));
}

Renderer::RootPairImages Renderer::root_pair() {
  if (usable(dir_.root_pair(), io::Verify::Full, "the root pair")) {
    const io::Checkpoint c = io::load_checkpoint(dir_.root_pair());
    log("adaptation: loaded the root pair of an earlier attempt");
    return {c.tensors.at("source"), c.tensors.at("edit"), c.tensors.at("edit_latent")};
  }
  adapt::RootSettings root;
  root.denoise = swap_settings().denoise;
  root.seed = settings_.seed;
  root.frame = settings_.root_frame >= 0 ? settings_.root_frame : random::root_frame(settings_.seed, video_.frame_count);
  root.candidates = settings_.candidates;
  root.root_seed = settings_.root_seed;
  root.on_step = step_progress("candidates", "candidate", settings_.candidates);
  if (root.frame >= video_.frame_count)
    throw SettingsError("--root-frame " + std::to_string(root.frame) + " is past the video's last frame (" +
                        std::to_string(video_.frame_count - 1) + ")");
  log("adaptation: editing root frame " + std::to_string(root.frame) + " with " + std::to_string(root.candidates) +
      " seeds");
  const adapt::RootPair pair = adapt::make_root_pair(*model_, source_frame(root.frame), text_, root);
  io::write_png(dir_.contact_sheet(), io::tensor_to_image(adapt::contact_sheet(pair.source, pair.candidates)));
  log("adaptation: root pair is candidate " + std::to_string(pair.index) +
      (pair.automatic ? " (automatic: the strongest agreed edit)" : " (--root-seed)") + "; contact sheet " +
      dir_.contact_sheet());
  io::save_checkpoint(dir_.root_pair(), {{"source", pair.source}, {"edit", pair.edit}, {"edit_latent", pair.edit_latent}},
                      {{"root_frame", root.frame}, {"candidate", pair.index}, {kRenderKeyAttribute, key_}});
  return {pair.source, pair.edit, pair.edit_latent};
}

void Renderer::load_adapter() {
  StageTimer timer(times_, Stage::Checkpoint);
  const adapt::FinetuneMode mode = settings_.finetune;
  if (mode == adapt::FinetuneMode::Lora) {
    lora_ = std::make_unique<adapt::LoraAdapter>(*model_->unet(), read_lora_options(dir_.adapter()));
    load_lora(dir_.adapter(), *lora_);
    lora_->attach(*model_->unet());
  } else if (mode == adapt::FinetuneMode::Full) {
    adapt::load_unet_state(*model_->unet(), io::load_checkpoint(dir_.adapter()).tensors);
  }
}

std::map<std::string, at::Tensor> Renderer::adapter_tensors() const {
  if (lora_) return lora_->named_tensors();
  if (settings_.finetune != adapt::FinetuneMode::Full) return {};
  std::map<std::string, at::Tensor> state;
  for (const auto& p : model_->unet()->named_parameters()) state[p.key()] = p.value().detach();
  for (const auto& b : model_->unet()->named_buffers()) state[b.key()] = b.value();
  return state;
}

void Renderer::install_adaptation(const std::map<std::string, at::Tensor>& adapter,
                                  const std::map<std::string, at::Tensor>& group) {
  const adapt::FinetuneMode mode = settings_.finetune;
  if (mode == adapt::FinetuneMode::Lora) {
    adapt::LoraOptions lo;
    lo.rank = settings_.lora_rank;
    lo.seed = settings_.seed;
    lora_ = std::make_unique<adapt::LoraAdapter>(*model_->unet(), lo);
    lora_->load_named(adapter);
    lora_->attach(*model_->unet());
  } else if (mode == adapt::FinetuneMode::Full) {
    adapt::load_unet_state(*model_->unet(), adapter);
  }
  if (settings_.attention != adapt::AttentionMode::Own) install_group_part(group);
}

void Renderer::load_adaptation() {
  if (settings_.finetune != adapt::FinetuneMode::Off) load_adapter();
  if (settings_.attention != adapt::AttentionMode::Own) {
    StageTimer timer(times_, Stage::Checkpoint);
    std::string problem = group_file_problem(dir_.group());
    if (problem.empty()) problem = artifact_problem(dir_.group(), key_, io::Verify::Structure);
    if (!problem.empty())
      throw std::runtime_error(dir_.group() + ": " + problem + " (via render --resume gathers it again)");
    load_group(dir_.group(), group_);
  }
}

at::Tensor Renderer::frame_latents(int64_t frame) { return frames_latents({frame}).front(); }

std::vector<at::Tensor> Renderer::frames_latents(const std::vector<int64_t>& frames) {
  const adapt::SwapSettings swap = swap_settings();
  std::vector<at::Tensor> images;
  for (int64_t f : frames) images.push_back(image_latents(f));
  const at::Tensor image_latents = images.size() == 1 ? images.front() : at::cat(images, 0);
  throw_if_stopped();
  StageTimer timer(times_, Stage::Denoise);
  at::Tensor src, m;
  if (mask_) {
    // Local latent adaptation (adaptation/latent_blend.h): the source latent,
    // scaled like the generated one, noised to each step's level.
    src = image_latents * model_->vae()->config().scaling_factor;
    std::vector<at::Tensor> masks;
    for (int64_t f : frames)
      masks.push_back(adapt::feather_mask(adapt::mask_to_latent_grid(mask_->mask(f), src.size(2), src.size(3)),
                                          settings_.mask_feather));
    m = (masks.size() == 1 ? masks.front() : at::cat(masks, 0)).to(src.device());
  }
  // Between steps: stop when asked (the frames are abandoned), then blend.
  const model::StepHook on_step = [&](const model::StepInfo& info, at::Tensor& latents) {
    throw_if_stopped();
    if (!mask_) return;
    // Each frame its own stream, apart from the edit's (base/random.h).
    std::vector<at::Tensor> rows;
    for (int64_t f : frames)
      rows.push_back(model::make_noise(src.narrow(0, 0, 1).sizes(), settings_.seed, f, random::kMaskNoiseStep + info.step));
    const at::Tensor noise = (rows.size() == 1 ? rows.front() : at::cat(rows, 0)).to(src.device());
    const at::Tensor noised = info.scheduler.add_noise(src, noise, info.step + 1);
    latents = adapt::blend_latents(latents, noised, adapt::step_mask(m, info.step, info.num_steps));
  };
  const at::Tensor out =
      adapt::swap_denoise_batch(*model_, image_latents, frames, group_, text_, swap, on_step).to(at::kCPU);
  std::vector<at::Tensor> latents;
  for (int64_t b = 0; b < out.size(0); ++b) latents.push_back(out.size(0) == 1 ? out : out.narrow(0, b, 1).clone());
  return latents;
}

at::Tensor Renderer::decode_frame(const at::Tensor& latents) const {
  return model::image_to_rgb8(model_->decode(latents.to(model_->options().device)))[0];
}

void Renderer::write_segment(int64_t chunk, const std::vector<at::Tensor>& latents) {
  // --codec, --pix-fmt, the source's colour description; --output-size.
  io::EncodeOptions enc = segment_encoding(settings_, video_);
  if (!output_frames_) output_frames_ = std::make_unique<OutputFrames>(settings_, video_, size_, reader_->plan());
  const auto [first, count] = chunk_frames(chunk);
  enc.times = video_.frame_times.slice(first, count);  // the source's own times, variable rates too
  io::VideoWriter segment(dir_.chunk_segment(chunk), output_frames_->size(), video_.frame_rate, enc);
  int64_t frame = first;
  for (const at::Tensor& z : latents) {
    throw_if_stopped();
    at::Tensor rgb;
    {
      StageTimer timer(times_, Stage::VaeDecode);
      rgb = decode_frame(z);
    }
    StageTimer timer(times_, Stage::Encode);
    output_frames_->write(segment, frame++, io::tensor_to_image(rgb));
  }
  StageTimer timer(times_, Stage::Encode);
  segment.finish();
}

int64_t Renderer::render_chunk(int64_t chunk) {
  const auto [first, count] = chunk_frames(chunk);
  const std::string name = "chunk " + std::to_string(chunk);
  std::error_code ec;
  if (usable(dir_.chunk_latents(chunk), io::Verify::Full, name + "'s latents")) {
    if (!chunk_latents_done(dir_, chunk, plan(), key_)) {
      warn(name + "'s latents " + dir_.chunk_latents(chunk) + " hold other frames: moved aside to " +
           move_aside(dir_, dir_.chunk_latents(chunk)) + "; it is made again");
    } else {
      const std::string segment = dir_.chunk_segment(chunk);
      const bool verified = segment_verified(chunk);
      if (verified && segment_codec_fits(segment)) return 0;
      if (!verified && fs::exists(segment, ec))
        warn(name + "'s segment " + segment + " is not the one its latents recorded: moved aside to " +
             move_aside(dir_, segment) + "; it is encoded again");
      // Latents kept, segment lost or damaged (or encoded for another
      // container, when --output changed): decoding is all it takes.
      std::vector<at::Tensor> latents;
      {
        StageTimer timer(times_, Stage::Checkpoint);
        const io::CheckpointReader r(dir_.chunk_latents(chunk));
        for (int64_t f = first; f < first + count; ++f) latents.push_back(r.read("frame_" + std::to_string(f)));
      }
      write_segment(chunk, latents);
      write_chunk_file(chunk, latents);  // records the new segment
      log(name + ": segment re-encoded from its latents");
      return 0;
    }
  }

  // Every frame goes to its own file as soon as it is done, so a stop loses
  // at most the frames in hand (one batch).
  fs::create_directories(dir_.frames_dir(chunk));
  std::vector<at::Tensor> latents(static_cast<size_t>(count));
  std::vector<int64_t> pending;
  for (int64_t f = first; f < first + count; ++f) {
    const std::string path = dir_.frame_latents(chunk, f);
    const std::string what = "frame " + std::to_string(f) + "'s latents";
    if (usable(path, io::Verify::Full, what)) {
      StageTimer timer(times_, Stage::Checkpoint);
      io::Checkpoint c = io::load_checkpoint(path);
      const auto frame = c.attributes.find("frame");
      if (frame != c.attributes.end() && std::get<int64_t>(frame->second) == f && c.tensors.count("latents"))
        latents[static_cast<size_t>(f - first)] = c.tensors.at("latents");
      else
        warn(what + " " + path + " hold another frame: moved aside to " + move_aside(dir_, path) + "; it is made again");
    }
    if (!latents[static_cast<size_t>(f - first)].defined()) pending.push_back(f);
  }
  int64_t denoised = 0;
  const auto batch = static_cast<size_t>(std::max<int64_t>(1, batch_frames()));
  for (size_t i = 0; i < pending.size(); i += batch) {
    const std::vector<int64_t> frames(pending.begin() + static_cast<std::ptrdiff_t>(i),
                                      pending.begin() + static_cast<std::ptrdiff_t>(std::min(i + batch, pending.size())));
    const std::vector<at::Tensor> done = frames_latents(frames);
    for (size_t b = 0; b < frames.size(); ++b) {
      const int64_t f = frames[b];
      ++denoised;
      ++times_.frames;
      StageTimer timer(times_, Stage::Checkpoint);
      io::save_checkpoint(dir_.frame_latents(chunk, f), {{"latents", done[b]}}, {{kRenderKeyAttribute, key_}, {"frame", f}});
      latents[static_cast<size_t>(f - first)] = done[b];
    }
  }
  write_segment(chunk, latents);
  write_chunk_file(chunk, latents);
  fs::remove_all(dir_.frames_dir(chunk), ec);  // merged into the chunk's file
  return denoised;
}

void Renderer::write_chunk_file(int64_t chunk, const std::vector<at::Tensor>& latents) {
  const auto [first, count] = chunk_frames(chunk);
  const Fingerprint segment = fingerprint(dir_.chunk_segment(chunk));
  StageTimer timer(times_, Stage::Checkpoint);
  io::CheckpointWriter out(dir_.chunk_latents(chunk));
  for (int64_t i = 0; i < count; ++i) out.write("frame_" + std::to_string(first + i), latents[static_cast<size_t>(i)]);
  out.set_string(kRenderKeyAttribute, key_);
  out.set_int("first_frame", first);
  out.set_int("frames", count);
  out.set_int("segment_bytes", segment.bytes);
  out.set_string("segment_content", segment.content);
  out.commit();
}

bool Renderer::segment_verified(int64_t chunk) const {
  try {
    const io::CheckpointReader r(dir_.chunk_latents(chunk));
    if (!r.has_attribute("segment_content")) return false;
    const Fingerprint segment = fingerprint(dir_.chunk_segment(chunk));
    return segment.bytes == r.get_int("segment_bytes") && segment.content == r.get_string("segment_content");
  } catch (const std::exception&) {
    return false;  // missing or unreadable
  }
}

bool Renderer::segment_codec_fits(const std::string& segment) const {
  return segment_matches(segment, settings_, video_, size_);  // codec, pixel format and size
}

void Renderer::assemble() {
  StageTimer timer(times_, Stage::Concat);
  std::vector<std::string> segments;
  for (int64_t c = 0; c < num_chunks(); ++c) segments.push_back(dir_.chunk_segment(c));
  const io::OutputPlan plan =
      io::plan_output(settings_.output, video_, settings_.audio, settings_.codec, settings_.pix_fmt);
  io::ConcatOptions options;
  options.audio_source = plan.audio.empty() ? "" : settings_.input;
  for (const io::AudioTrackPlan& a : plan.audio) options.audio_tracks.push_back({a.source_stream, a.encoder});
  options.times = video_.frame_times;
  options.color = io::output_color(video_.color);  // what the segments were encoded with
  const io::ConcatResult r = io::concat_segments(segments, settings_.output, options);
  log("wrote " + settings_.output + ": " + std::to_string(r.frames) + " frames");
}

}  // namespace via::rank
