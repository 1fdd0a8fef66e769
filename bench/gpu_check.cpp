// The C++ side of scripts/gpu-check.sh: correctness of via's compute on a
// GPU against the CPU, and speed at the published InstructPix2Pix size. It
// needs only the compute core (-DVIA_CORE_ONLY=ON: libtorch and nlohmann
// JSON), so it builds on a GPU machine that has nothing but a CUDA PyTorch.
//
// Prints one table row per result and writes one JSON object per result to
// --json (JSON lines):
//   {"section": "correctness"|"speed", "name": ..., "status": "pass"|"fail"|
//    "measured"|"needs-gpu", "device": ..., ...numbers..., "note": ...}
// "needs-gpu": the part compares or measures a CUDA device and none is here;
// what could run on the CPU instead ran as its own row (named "... (cpu)").
//
// Correctness (the project's toy model, tests/data/toy_ip2p, 64x64, so the
// edits are real): an edit in fp32 on the device against the CPU, fp16 and
// bf16 against fp32, gather and swap (and anchor) on the device against the
// CPU, the swap with the next step prefetched bit-identical to the swap
// without, LoRA fine-tuning lowers the loss, a device tensor through the
// single-process communicator. Speed (random weights in the published
// configs, tests/reference/data/full_size): the UNet's 3-branch step with
// own attention and with a 4-frame group swapped in (held whole; copied per
// step, with and without the next step prefetched), VAE encode and decode,
// frames per second of whole renders, peak device memory.
#include <ATen/ATen.h>
#include <ATen/Context.h>
#include <ATen/Parallel.h>
#include <torch/csrc/autograd/grad_mode.h>
#include <torch/cuda.h>
#include <torch/version.h>
#ifdef VIA_TORCH_CUDA
#include <c10/cuda/CUDACachingAllocator.h>
#endif

#include <nlohmann/json.hpp>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <string>
#include <vector>

#include "adaptation/attention_group.h"
#include "adaptation/finetune.h"
#include "adaptation/gather.h"
#include "adaptation/lora.h"
#include "bench/bench_common.h"
#include "comm/communicator.h"
#include "comm/single_process.h"
#include "model/pipeline.h"
#include "model/safetensors.h"
#include "model/text_encoder.h"

namespace fs = std::filesystem;
using nlohmann::json;
using namespace via;

namespace {

struct Options {
  std::string model = "tests/data/toy_ip2p";                  // correctness model
  std::string config_dir = "tests/reference/data/full_size";  // speed: published configs
  std::string json_path;                                      // JSON lines out
  std::string work;                                           // scratch (the random full-size model)
  std::string device = "auto";                                // auto: cuda:0 when available
  bool correctness = true, speed = true;
  int size = 512;                   // speed: image size
  std::vector<int> render_steps{10, 20};
  int group = 4;                    // speed: key frames
  int frames = 4;                   // speed: frames per render timing
  int reps = 5, warmup = 2;         // speed: UNet / VAE timings
  std::string speed_dtype = "auto"; // auto: fp16 on CUDA, fp32 on the CPU
  std::string label;                // the speed section's label (e.g. "reduced: ...")
};

Options parse(int argc, char** argv) {
  Options o;
  for (int i = 1; i < argc; ++i) {
    const std::string key = argv[i];
    if (key == "--help" || key == "-h") {
      std::cout << "usage: via_gpu_check --json FILE --work DIR [--device auto|cpu|cuda] [--model DIR]\n"
                   "       [--config-dir DIR] [--no-correctness] [--no-speed] [--size 512] [--steps 10,20]\n"
                   "       [--group 4] [--frames 4] [--reps 5] [--warmup 2] [--speed-dtype auto|fp16|bf16|fp32]\n"
                   "       [--label TEXT]\n";
      std::exit(0);
    }
    if (key == "--no-correctness") { o.correctness = false; continue; }
    if (key == "--no-speed") { o.speed = false; continue; }
    if (i + 1 >= argc) throw std::invalid_argument(key + " needs a value");
    const std::string v = argv[++i];
    if (key == "--json") o.json_path = v;
    else if (key == "--work") o.work = v;
    else if (key == "--device") o.device = v;
    else if (key == "--model") o.model = v;
    else if (key == "--config-dir") o.config_dir = v;
    else if (key == "--size") o.size = std::stoi(v);
    else if (key == "--steps") o.render_steps = bench::ints(v);
    else if (key == "--group") o.group = std::stoi(v);
    else if (key == "--frames") o.frames = std::stoi(v);
    else if (key == "--reps") o.reps = std::stoi(v);
    else if (key == "--warmup") o.warmup = std::stoi(v);
    else if (key == "--speed-dtype") o.speed_dtype = v;
    else if (key == "--label") o.label = v;
    else throw std::invalid_argument("unknown option " + key);
  }
  if (o.json_path.empty() || o.work.empty()) throw std::invalid_argument("--json and --work are required");
  if (o.size % 64 != 0 || o.size <= 0) throw std::invalid_argument("--size must be a positive multiple of 64");
  return o;
}

// ---- results ----

class Report {
 public:
  explicit Report(const std::string& path) : out_(path) {
    if (!out_) throw std::runtime_error("cannot write " + path);
  }
  // Prints a table row and appends the record.
  void add(json r) {
    std::string numbers;
    for (const auto& [k, v] : r.items()) {
      if (k == "section" || k == "name" || k == "status" || k == "device" || k == "note" || k == "label") continue;
      numbers += (numbers.empty() ? "" : ", ") + k + " " + (v.is_number_float() ? fmt(v.get<double>()) : v.dump());
    }
    if (r.contains("note")) numbers += (numbers.empty() ? "" : "; ") + r["note"].get<std::string>();
    std::printf("%-11s %-48s %-9s %s\n", r.value("section", "").c_str(), r.value("name", "").c_str(),
                r.value("status", "").c_str(), numbers.c_str());
    std::fflush(stdout);
    out_ << r.dump() << "\n";
    out_.flush();
    if (r.value("status", "") == "fail") ++failures_;
  }
  int failures() const { return failures_; }

 private:
  static std::string fmt(double x) {
    char buf[32];
    std::snprintf(buf, sizeof buf, (x != 0 && (std::abs(x) < 1e-3 || std::abs(x) >= 1e5)) ? "%.3g" : "%.4g", x);
    return buf;
  }
  std::ofstream out_;
  int failures_ = 0;
};

std::string dtype_name(at::ScalarType t) {
  return t == at::kHalf ? "fp16" : t == at::kBFloat16 ? "bf16" : t == at::kFloat ? "fp32" : c10::toString(t);
}

struct Diff {
  double max = 0.0, mean = 0.0;
};
Diff diff(const at::Tensor& a, const at::Tensor& b) {
  const at::Tensor d = (a.to(at::kCPU, at::kDouble) - b.to(at::kCPU, at::kDouble)).abs();
  return {d.max().item<double>(), d.mean().item<double>()};
}

// Peak memory on a CUDA device since the last reset, in bytes (-1 without CUDA).
void reset_peak(const c10::Device& d) {
#ifdef VIA_TORCH_CUDA
  if (d.is_cuda()) c10::cuda::CUDACachingAllocator::resetPeakStats(d.index() < 0 ? 0 : d.index());
#endif
}
double peak_gib(const c10::Device& d) {
#ifdef VIA_TORCH_CUDA
  if (d.is_cuda()) {
    const auto stats = c10::cuda::CUDACachingAllocator::getDeviceStats(d.index() < 0 ? 0 : d.index());
    return static_cast<double>(stats.allocated_bytes[0].peak) / (1 << 30);  // [0]: all pools
  }
#endif
  return -1.0;
}

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

// ---- inputs ----

// A 64x64-style toy-world frame: a smooth background with a disc and a
// square that drift with `frame` ([1, 3, S, S] in [0, 1], CPU).
at::Tensor scene(int64_t size, int64_t frame) {
  const at::Tensor y = at::linspace(0, 1, size).view({1, 1, size, 1}).expand({1, 1, size, size});
  const at::Tensor x = at::linspace(0, 1, size).view({1, 1, 1, size}).expand({1, 1, size, size});
  at::Tensor img = at::cat({0.3 + 0.4 * x, 0.5 + 0.2 * y, 0.7 - 0.3 * x * y}, 1).contiguous();
  const double shift = 0.02 * static_cast<double>(frame);
  const at::Tensor disc = ((x - 0.3 - shift).pow(2) + (y - 0.35).pow(2)).lt(0.02);
  const at::Tensor square = (x - 0.65 + shift).abs().lt(0.12).logical_and((y - 0.65).abs().lt(0.12));
  img = at::where(disc.expand_as(img), at::full_like(img, 0.9), img);
  img = at::where(square.expand_as(img), at::full_like(img, 0.1), img);
  return img.contiguous();
}

const char* kInstruction = "paint the shapes";

model::DenoiseSettings edit_settings(int64_t steps) {
  model::DenoiseSettings s;
  s.steps = steps;
  s.scheduler = model::SchedulerKind::EulerAncestral;
  s.text_guidance = 3.0;  // the toy model's recommended scale
  s.image_guidance = 1.5;
  return s;
}

// One frame's edit: encode, `steps` Euler-a steps with frame 0's noise, decode.
at::Tensor edit(const model::InstructPix2Pix& m, const at::Tensor& image, int64_t steps, uint64_t seed) {
  torch::NoGradGuard no_grad;
  const model::TextEmbeddings text = m.encode_instruction(kInstruction);
  const at::Tensor lat = m.encode_image(image.to(m.options().device));
  const at::Tensor noise = model::make_noise(lat.sizes(), seed, 0, -1);
  const at::Tensor out = m.denoise(lat, text, noise, edit_settings(steps), nullptr, {}, model::frame_noise(seed, {0}));
  return m.decode(out).to(at::kCPU, at::kFloat);
}

model::ModelOptions on(const c10::Device& d, at::ScalarType t) {
  model::ModelOptions o;
  o.device = d;
  o.dtype = t;
  return o;
}

// ---- correctness ----

void check_edits(const Options& o, const c10::Device& dev, Report& report) {
  const bool gpu = dev.is_cuda();
  const at::Tensor image = scene(64, 0);
  const int64_t steps = 10;
  const model::InstructPix2Pix cpu(o.model, on(at::kCPU, at::kFloat));
  const at::Tensor ref = edit(cpu, image, steps, 1);
  // fp32 on the device against the CPU. Bound: TF32 off; rounding and
  // another summation order only, carried through 10 steps.
  // On the CPU the comparison is a repeat, which must be bit-identical.
  const double max_bound = gpu ? 5e-3 : 0.0, mean_bound = gpu ? 5e-4 : 0.0;
  {
    const model::InstructPix2Pix m(o.model, on(dev, at::kFloat));
    const Diff d = diff(edit(m, image, steps, 1), ref);
    const bool ok = d.max <= max_bound && d.mean <= mean_bound;
    report.add({{"section", "correctness"},
                {"name", gpu ? "edit fp32, cuda vs cpu" : "edit fp32, cpu repeat (must be 0)"},
                {"status", ok ? "pass" : "fail"}, {"device", dev.str()}, {"max_abs", d.max}, {"mean_abs", d.mean},
                {"bound_max", max_bound}, {"bound_mean", mean_bound},
                {"note", "toy model, 64x64, 10 Euler-a steps, images in [0, 1]"}});
    if (!gpu)
      report.add({{"section", "correctness"}, {"name", "edit fp32, cuda vs cpu"}, {"status", "needs-gpu"},
                  {"device", "cuda"}});
  }
  // Half precisions against fp32 on the same device (fp16 runs on CUDA only).
  const at::Tensor fp32 = gpu ? edit(model::InstructPix2Pix(o.model, on(dev, at::kFloat)), image, steps, 1) : ref;
  struct Half {
    at::ScalarType type;
    double max_bound, mean_bound;
  };
  for (const Half h : {Half{at::kHalf, 0.1, 0.01}, Half{at::kBFloat16, 0.25, 0.03}}) {
    const std::string name = "edit " + dtype_name(h.type) + " vs fp32";  // on the same device
    if (h.type == at::kHalf && !gpu) {
      report.add({{"section", "correctness"}, {"name", name}, {"status", "needs-gpu"}, {"device", "cuda"},
                  {"note", "fp16 is refused on the CPU"}});
      continue;
    }
    const model::InstructPix2Pix m(o.model, on(dev, h.type));
    const Diff d = diff(edit(m, image, steps, 1), fp32);
    const bool ok = d.max <= h.max_bound && d.mean <= h.mean_bound;
    report.add({{"section", "correctness"}, {"name", name + (gpu ? ", cuda" : ", cpu")}, {"status", ok ? "pass" : "fail"},
                {"device", dev.str()}, {"max_abs", d.max}, {"mean_abs", d.mean}, {"bound_max", h.max_bound},
                {"bound_mean", h.mean_bound}});
  }
  if (!gpu)
    report.add({{"section", "correctness"}, {"name", "edit bf16 vs fp32, cuda"}, {"status", "needs-gpu"},
                {"device", "cuda"}});
}

void check_gather_swap(const Options& o, const c10::Device& dev, Report& report) {
  const bool gpu = dev.is_cuda();
  const model::InstructPix2Pix cpu(o.model, on(at::kCPU, at::kFloat));
  const model::InstructPix2Pix m(o.model, on(dev, at::kFloat));
  const std::vector<int64_t> frames{0, 5, 10};
  std::vector<at::Tensor> imgs;
  for (int64_t f : frames) imgs.push_back(scene(64, f));
  const at::Tensor keys = at::cat(imgs, 0);
  const at::Tensor frame7 = scene(64, 7);
  const std::string vs = gpu ? "cuda vs cpu" : "cpu repeat (must be 0)";
  for (const adapt::AttentionMode mode : {adapt::AttentionMode::GatherSwap, adapt::AttentionMode::Anchor}) {
    torch::NoGradGuard no_grad;
    adapt::SwapSettings st;
    st.denoise = edit_settings(6);
    st.seed = 3;
    st.mode = mode;
    const model::TextEmbeddings tc = cpu.encode_instruction(kInstruction), tm = m.encode_instruction(kInstruction);
    const adapt::AttentionGroup gc = adapt::gather_group(cpu, keys, frames, tc, st);
    const adapt::AttentionGroup gm = adapt::gather_group(m, keys.to(dev), frames, tm, st);
    // The group is stored in fp16: the bound allows one half-precision
    // rounding step (2^-10 relative) on top of fp32 differences.
    double worst = 0.0, worst_ratio = 0.0;
    bool ok = gc.size() == gm.size() && gc.size() > 0;
    const auto named_c = gc.to_named(), named_m = gm.to_named();
    for (const auto& [name, t] : named_c) {
      const auto it = named_m.find(name);
      if (it == named_m.end()) { ok = false; continue; }
      const at::Tensor a = t.to(at::kCPU, at::kFloat), b = it->second.to(at::kCPU, at::kFloat);
      const at::Tensor d = (a - b).abs(), allowed = a.abs() * 2e-3 + 1e-4;
      worst = std::max(worst, d.max().item<double>());
      worst_ratio = std::max(worst_ratio, (d / allowed).max().item<double>());
    }
    ok = ok && worst_ratio <= 1.0;
    const std::string mode_name = adapt::attention_mode_name(mode);
    report.add({{"section", "correctness"}, {"name", "gather " + mode_name + ", group, " + vs},
                {"status", ok ? "pass" : "fail"}, {"device", dev.str()}, {"tensors", named_c.size()},
                {"max_abs", worst}, {"max_over_bound", worst_ratio},
                {"note", "bound per element: 2e-3 |x| + 1e-4 (one fp16 rounding of the stored K/V)"}});
    const at::Tensor lc = adapt::swap_denoise(cpu, cpu.encode_image(frame7), 7, gc, tc, st);
    const at::Tensor lm = adapt::swap_denoise(m, m.encode_image(frame7.to(dev)), 7, gm, tm, st);
    const Diff d = diff(lm, lc);
    const double max_bound = gpu ? 1e-2 : 0.0, mean_bound = gpu ? 1e-3 : 0.0;
    report.add({{"section", "correctness"}, {"name", "swap " + mode_name + ", latents, " + vs},
                {"status", d.max <= max_bound && d.mean <= mean_bound ? "pass" : "fail"}, {"device", dev.str()},
                {"max_abs", d.max}, {"mean_abs", d.mean}, {"bound_max", max_bound}, {"bound_mean", mean_bound}});
    if (gpu && mode == adapt::AttentionMode::GatherSwap) {
      // The group pinned, as a render on a GPU keeps it: each step's entries
      // are copied on a side stream while the step before computes
      // (AttentionGroup::get_on). The same data through the same kernels
      // gives the same bits; a step read before its copy finished would
      // not. Two frames in a row: the second starts on a step prefetched at
      // the end of the first.
      adapt::AttentionGroup pinned;
      pinned.set_pinned(true);
      pinned.add_named(gm.to_named());
      pinned.set_key_frames(gm.key_frames());
      const at::Tensor image = m.encode_image(frame7.to(dev));
      const at::Tensor ref = adapt::swap_denoise(m, image, 7, gm, tm, st);
      double most = 0.0;
      for (int frame = 0; frame < 2; ++frame)
        most = std::max(most, diff(adapt::swap_denoise(m, image, 7, pinned, tm, st), ref).max);
      int64_t steps = 0;
      for (const int64_t step : pinned.steps()) steps += step >= 0;
      const int64_t expected = std::min<int64_t>(steps, 2) * pinned.step_bytes(0) +
                               pinned.step_bytes(adapt::AttentionGroup::kCrossStep);
      report.add({{"section", "correctness"}, {"name", "swap with the next step prefetched, latents, cuda vs cuda"},
                  {"status", most == 0.0 && pinned.peak_device_bytes() == expected ? "pass" : "fail"},
                  {"device", dev.str()}, {"max_abs", most}, {"bound_max", 0.0},
                  {"device_bytes", pinned.peak_device_bytes()}, {"expected_device_bytes", expected},
                  {"note", "bit-identical to the copy when needed; the device holds two steps and cross-attention"}});
    }
  }
  if (!gpu) {
    report.add({{"section", "correctness"}, {"name", "gather, swap, anchor, cuda vs cpu"}, {"status", "needs-gpu"},
                {"device", "cuda"}});
    report.add({{"section", "correctness"}, {"name", "swap with the next step prefetched, cuda"},
                {"status", "needs-gpu"}, {"device", "cuda"}});
  }
}

void check_lora(const Options& o, const c10::Device& dev, Report& report) {
  const model::InstructPix2Pix m(o.model, on(dev, at::kFloat));
  const at::Tensor source = scene(64, 0);
  const at::Tensor edited = edit(m, source, 10, 1);
  const model::TextEmbeddings text = m.encode_instruction(kInstruction);
  adapt::LoraOptions lo;
  lo.seed = 1;
  adapt::LoraAdapter adapter(*m.unet(), lo);
  adapter.attach(*m.unet());
  const adapt::TuningLatents data =
      adapt::encode_tuning_set(m, adapt::make_tuning_set(source, edited, 4, /*seed=*/5), text);
  const double before = adapt::evaluate_loss(m, data, 11, 8);
  adapt::FinetuneOptions fo;
  fo.steps = 30;
  fo.learning_rate = 1e-3;
  fo.seed = 2;
  const auto t0 = std::chrono::steady_clock::now();
  const adapt::FinetuneResult r = adapt::finetune(m, data, fo, &adapter);
  const double seconds = seconds_since(t0);
  const double after = adapt::evaluate_loss(m, data, 11, 8);
  adapter.detach(*m.unet());
  report.add({{"section", "correctness"}, {"name", std::string("LoRA fine-tuning lowers the loss") + (dev.is_cuda() ? ", cuda" : ", cpu")},
              {"status", after < before ? "pass" : "fail"}, {"device", dev.str()}, {"loss_before", before},
              {"loss_after", after}, {"steps", fo.steps}, {"steps_per_s", fo.steps / seconds},
              {"note", "toy model, rank 4, lr 1e-3, the same evaluation batch before and after"}});
  if (!dev.is_cuda())
    report.add({{"section", "correctness"}, {"name", "LoRA fine-tuning lowers the loss, cuda"}, {"status", "needs-gpu"},
                {"device", "cuda"}});
}

void check_comm(const c10::Device& dev, Report& report) {
  comm::SingleProcessCommunicator c;
  at::Tensor t = at::arange(4096, at::TensorOptions().dtype(at::kFloat)).to(dev);
  const at::Tensor expected = t.clone();
  const void* ptr = t.data_ptr();
  std::vector<at::Tensor> ts{t};
  c.broadcast(ts, 0);
  const auto named = comm::broadcast_named(c, {{"x", t.to(at::kHalf)}}, 0, dev);
  const bool ok = ts[0].device() == dev && ts[0].data_ptr() == ptr && at::equal(ts[0].cpu(), expected.cpu()) &&
                  named.at("x").device() == dev && at::equal(named.at("x").cpu(), expected.to(at::kHalf).cpu());
  report.add({{"section", "correctness"},
              {"name", std::string("single-process broadcast of a ") + (dev.is_cuda() ? "cuda" : "cpu") + " tensor"},
              {"status", ok ? "pass" : "fail"}, {"device", dev.str()},
              {"note", "broadcast in place and broadcast_named; the MPI and NCCL backends need MPI (full build)"}});
  if (!dev.is_cuda())
    report.add({{"section", "correctness"}, {"name", "single-process broadcast of a cuda tensor"},
                {"status", "needs-gpu"}, {"device", "cuda"}});
}

// ---- speed ----

// Every parameter and buffer by checkpoint name; floating ones as `floats`.
std::map<std::string, at::Tensor> state(torch::nn::Module& module, at::ScalarType floats) {
  std::map<std::string, at::Tensor> out;
  for (const auto& p : module.named_parameters(true)) out.emplace(p.key(), p.value().detach().to(floats).contiguous());
  for (const auto& b : module.named_buffers(true)) {
    const at::Tensor t = b.value().detach();
    out.emplace(b.key(), (at::isFloatingType(t.scalar_type()) ? t.to(floats) : t).contiguous());
  }
  return out;
}

// The published InstructPix2Pix components (config_dir's configs) with the
// modules' own random initialisation, saved in fp16 as a diffusers folder;
// tokenizer, scheduler and model_index.json from `like` (the toy model).
void write_random_model(const std::string& dir, const std::string& config_dir, const std::string& like) {
  torch::NoGradGuard no_grad;
  fs::remove_all(dir);
  for (const char* sub : {"scheduler", "tokenizer", "text_encoder", "unet", "vae"}) fs::create_directories(dir + "/" + sub);
  fs::copy(like + "/tokenizer", dir + "/tokenizer", fs::copy_options::recursive);
  fs::copy_file(like + "/scheduler/scheduler_config.json", dir + "/scheduler/scheduler_config.json");
  fs::copy_file(config_dir + "/text_encoder_config.json", dir + "/text_encoder/config.json");
  fs::copy_file(config_dir + "/unet_config.json", dir + "/unet/config.json");
  fs::copy_file(config_dir + "/vae_config.json", dir + "/vae/config.json");
  at::manual_seed(0);
  {
    model::CLIPTextModel te(model::CLIPTextConfig::from_file(config_dir + "/text_encoder_config.json"));
    model::save_safetensors(dir + "/text_encoder/model.safetensors", state(*te, at::kHalf), {{"format", "pt"}});
  }
  {
    model::UNet2DConditionModel unet(bench::full_unet_config(config_dir));
    model::save_safetensors(dir + "/unet/diffusion_pytorch_model.safetensors", state(*unet, at::kHalf),
                            {{"format", "pt"}});
  }
  {
    model::AutoencoderKL vae(bench::full_vae_config(config_dir));
    model::save_safetensors(dir + "/vae/diffusion_pytorch_model.safetensors", state(*vae, at::kHalf),
                            {{"format", "pt"}});
  }
  fs::copy_file(like + "/model_index.json", dir + "/model_index.json");  // last: the folder is complete
}

void speed(const Options& o, const c10::Device& dev, Report& report) {
  const at::ScalarType dt = o.speed_dtype == "fp16"   ? at::kHalf
                            : o.speed_dtype == "bf16" ? at::kBFloat16
                            : o.speed_dtype == "fp32" ? at::kFloat
                            : dev.is_cuda()           ? at::kHalf
                                                      : at::kFloat;
  const std::string where = dev.str() + ", " + dtype_name(dt);
  if (!o.label.empty())
    report.add({{"section", "speed"}, {"name", "every speed row below:"}, {"status", "-"}, {"device", where},
                {"note", o.label}});
  auto row = [&](const std::string& name, json numbers) {
    numbers["section"] = "speed";
    numbers["name"] = name;
    numbers["status"] = "measured";
    numbers["device"] = where;
    if (!o.label.empty()) numbers["label"] = o.label;
    const double peak = peak_gib(dev);
    if (peak >= 0) numbers["peak_gib"] = peak;
    report.add(numbers);
  };

  auto t0 = std::chrono::steady_clock::now();
  const std::string dir = o.work + "/full_random_model";
  write_random_model(dir, o.config_dir, o.model);
  row("write the random full-size model (fp16 files)", {{"seconds", seconds_since(t0)}});
  t0 = std::chrono::steady_clock::now();
  const model::InstructPix2Pix m(dir, on(dev, dt));
  row("load it", {{"seconds", seconds_since(t0)}});
  torch::NoGradGuard no_grad;

  const int s = o.size;
  const model::UNetConfig& uc = m.unet()->config();
  const bench::UNetInputs in = bench::unet_inputs(uc, s);
  const at::Tensor lat = in.latents.to(dev, dt), emb = in.embeddings.to(dev, dt);
  const std::vector<model::Branch> branches{model::Branch::TextImage, model::Branch::Image, model::Branch::Uncond};
  const std::string px = std::to_string(s) + "x" + std::to_string(s);

  reset_peak(dev);
  bench::Timing t = bench::timed([&] { m.unet()->forward(lat, 500.0, emb, {nullptr, 0, branches}); }, o.reps,
                                 o.warmup, dev);
  row("UNet step, 3 branches, " + px + ", own attention",
      {{"seconds", t.best}, {"median", t.median}});

  const model::TextEmbeddings text = m.encode_instruction(kInstruction);
  std::vector<at::Tensor> key_images;
  std::vector<int64_t> key_frames;
  for (int i = 0; i < o.group; ++i) {
    key_images.push_back(scene(s, i));
    key_frames.push_back(i);
  }
  const at::Tensor keys = at::cat(key_images, 0).to(dev);
  {
    adapt::SwapSettings one;
    one.denoise = edit_settings(1);
    one.swap_steps = 1;
    const adapt::AttentionGroup group = adapt::gather_group(m, keys, key_frames, text, one);
    adapt::SwapControl swap(group, 1, adapt::LayerSet::Both);
    reset_peak(dev);
    t = bench::timed([&] { m.unet()->forward(lat, 500.0, emb, {&swap, 0, branches}); }, o.reps, o.warmup, dev);
    row("UNet step, 3 branches, " + px + ", swap of a " + std::to_string(o.group) + "-frame group",
        {{"seconds", t.best}, {"median", t.median},
         {"group_step_gib", static_cast<double>(group.bytes()) / (1 << 30)}});
  }
  // A group the GPU holds step by step (pinned, as a render on a GPU keeps
  // it): each timed call is two UNet steps, each needing a step the device
  // does not hold, copied when needed or prefetched on a side stream while
  // the step before computes (AttentionGroup::get_on). Per UNet step.
  const std::string per_step =
      "UNet step, 3 branches, " + px + ", " + std::to_string(o.group) + "-frame group copied per step, ";
  if (dev.is_cuda()) {
    adapt::SwapSettings two;
    two.denoise = edit_settings(2);
    two.swap_steps = 2;
    const adapt::AttentionGroup gathered = adapt::gather_group(m, keys, key_frames, text, two);
    for (const bool prefetch : {false, true}) {
      adapt::AttentionGroup group;
      group.set_pinned(true);
      group.add_named(gathered.to_named());
      group.set_key_frames(gathered.key_frames());
      group.set_prefetch(prefetch);
      adapt::SwapControl swap(group, 2, adapt::LayerSet::Both);
      reset_peak(dev);
      t = bench::timed(
          [&] {
            for (const int64_t step : {0, 1}) m.unet()->forward(lat, 500.0, emb, {&swap, step, branches});
          },
          o.reps, o.warmup, dev);
      row(per_step + (prefetch ? "next step prefetched" : "copied when needed"),
          {{"seconds", t.best / 2}, {"median", t.median / 2},
           {"group_step_gib", static_cast<double>(group.step_bytes(0)) / (1 << 30)},
           {"group_on_device_gib", static_cast<double>(group.peak_device_bytes()) / (1 << 30)}});
    }
  } else {
    report.add({{"section", "speed"}, {"name", per_step + "with and without prefetch"},
                {"status", "needs-gpu"}, {"device", "cuda"}});
  }

  const at::Tensor image = scene(s, 0).to(dev);
  const at::Tensor z = at::randn({1, m.latent_channels(), s / 8, s / 8}, at::detail::createCPUGenerator(8)).to(dev);
  reset_peak(dev);
  t = bench::timed([&] { m.encode_image(image); }, o.reps, o.warmup, dev);
  row("VAE encode, " + px, {{"seconds", t.best}, {"median", t.median}});
  reset_peak(dev);
  t = bench::timed([&] { m.decode(z); }, o.reps, o.warmup, dev);
  row("VAE decode, " + px, {{"seconds", t.best}, {"median", t.median}});

  // Whole renders: the gather of the key frames once, then frames edited one
  // by one (encode, denoise with the group swapped in, decode), and the same
  // frames with their own attention.
  for (int steps : o.render_steps) {
    adapt::SwapSettings st;
    st.denoise = edit_settings(steps);
    st.seed = 1;
    reset_peak(dev);
    t0 = std::chrono::steady_clock::now();
    const adapt::AttentionGroup group = adapt::gather_group(m, keys, key_frames, text, st);
    bench::synchronize(dev);
    const double gather_s = seconds_since(t0);
    const double group_gib = static_cast<double>(group.bytes()) / (1 << 30);
    double fps[2];
    for (int own = 0; own < 2; ++own) {
      adapt::SwapSettings mode = st;
      if (own) mode.mode = adapt::AttentionMode::Own;
      const adapt::AttentionGroup empty;
      adapt::swap_edit(m, image.narrow(0, 0, 1), 0, own ? empty : group, text, mode);  // warm-up
      bench::synchronize(dev);
      t0 = std::chrono::steady_clock::now();
      for (int f = 0; f < o.frames; ++f)
        adapt::swap_edit(m, scene(s, f + 1).to(dev), f + 1, own ? empty : group, text, mode);
      bench::synchronize(dev);
      fps[own] = o.frames / seconds_since(t0);
    }
    row(std::to_string(steps) + "-step render, " + px + ", " + std::to_string(o.group) + "-frame group",
        {{"frames_per_s", fps[0]}, {"frames_per_s_own", fps[1]}, {"gather_s", gather_s}, {"group_gib", group_gib},
         {"frames", o.frames}});
  }
  if (!dev.is_cuda())
    report.add({{"section", "speed"}, {"name", "the same at 512x512 in fp16, peak GPU memory"}, {"status", "needs-gpu"},
                {"device", "cuda"}});
}

}  // namespace

int main(int argc, char** argv) {
  try {
    const Options o = parse(argc, argv);
    const bool cuda = torch::cuda::is_available();
    c10::Device dev(c10::kCPU);
    if (o.device == "cuda" || (o.device == "auto" && cuda)) dev = c10::Device(c10::kCUDA, 0);
    if (dev.is_cuda() && !cuda) throw std::runtime_error("--device cuda: no CUDA device is visible");
    if (dev.is_cuda()) {
      // fp32 means fp32 in the comparisons: no TF32 in matrix products or convolutions.
      at::globalContext().setAllowTF32CuBLAS(false);
      at::globalContext().setAllowTF32CuDNN(false);
    }
    fs::create_directories(o.work);
    Report report(o.json_path);
    report.add({{"section", "info"}, {"name", "libtorch " TORCH_VERSION}, {"status", "-"}, {"device", dev.str()},
                {"cuda_devices", cuda ? static_cast<int64_t>(torch::cuda::device_count()) : 0},
                {"threads", at::get_num_threads()}});
    if (o.correctness) {
      check_edits(o, dev, report);
      check_gather_swap(o, dev, report);
      check_lora(o, dev, report);
      check_comm(dev, report);
    }
    if (o.speed) speed(o, dev, report);
    return report.failures() == 0 ? 0 : 1;
  } catch (const std::exception& e) {
    std::cerr << "via_gpu_check: " << e.what() << "\n";
    return 2;
  }
}
