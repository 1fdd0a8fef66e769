// via's side of the model benchmark (bench/run_model_bench.sh runs it next to
// bench/reference_model_bench.py, which measures the same things with the
// reference library). Prints one JSON object per measurement:
//   {"impl": "via", "model": "tiny"|"full", "what": ..., "size": S, "threads": T,
//    "seconds": best, "median": median, "reps": R}
// what: unet_step (one UNet call on the pipeline's 3-branch batch),
// vae_encode, vae_decode (one image), edit (instruction, image encode,
// `steps` Euler-a steps, decode, bytes out), unet_build_meta (the full-size
// UNet built shape-only on meta tensors, as inspect-model and the parameter
// list test build it; size 0). The full-size models are built from the
// published configs with random weights.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/csrc/autograd/grad_mode.h>
#include <torch/version.h>

#include <cstdio>
#include <iostream>
#include <string>
#include <vector>

#include "bench/bench_common.h"
#include "model/pipeline.h"

using namespace via::model;
using via::bench::ints;
using via::bench::timed;
using via::bench::Timing;

namespace {

struct Options {
  std::string tiny;
  std::string full_config_dir;
  std::vector<int> threads{1, 2};
  int tiny_size = 64;
  std::vector<int> full_sizes{256, 512};
  std::vector<int> full_vae_sizes{256};
  int steps = 10;
  int reps_tiny = 5;
  int reps_full = 1;
  int warmup_full = 0;
};

Options parse(int argc, char** argv) {
  Options o;
  for (int i = 1; i < argc; ++i) {
    const std::string key = argv[i];
    if (key == "--help" || key == "-h") {
      std::cout << "usage: via_model_bench --tiny DIR --full-config-dir DIR [--threads 1,2] [--tiny-size 64]\n"
                   "       [--full-sizes 256,512] [--full-vae-sizes 256] [--steps 10] [--reps-tiny 5]\n"
                   "       [--reps-full 1] [--warmup-full 0]\n";
      std::exit(0);
    }
    if (i + 1 >= argc) throw std::invalid_argument(key + " needs a value");
    const std::string v = argv[++i];
    if (key == "--tiny") o.tiny = v;
    else if (key == "--full-config-dir") o.full_config_dir = v;
    else if (key == "--threads") o.threads = ints(v);
    else if (key == "--tiny-size") o.tiny_size = std::stoi(v);
    else if (key == "--full-sizes") o.full_sizes = ints(v);
    else if (key == "--full-vae-sizes") o.full_vae_sizes = ints(v);
    else if (key == "--steps") o.steps = std::stoi(v);
    else if (key == "--reps-tiny") o.reps_tiny = std::stoi(v);
    else if (key == "--reps-full") o.reps_full = std::stoi(v);
    else if (key == "--warmup-full") o.warmup_full = std::stoi(v);
    else throw std::invalid_argument("unknown option " + key);
  }
  if (o.tiny.empty() || o.full_config_dir.empty()) throw std::invalid_argument("--tiny and --full-config-dir are required");
  return o;
}

void emit(const char* model, const char* what, int size, int threads, Timing t, int reps) {
  std::printf("{\"impl\": \"via\", \"model\": \"%s\", \"what\": \"%s\", \"size\": %d, \"threads\": %d, "
              "\"seconds\": %.6f, \"median\": %.6f, \"reps\": %d}\n",
              model, what, size, threads, t.best, t.median, reps);
  std::fflush(stdout);
}

void bench_tiny(const Options& o) {
  const InstructPix2Pix m(o.tiny);
  const int s = o.tiny_size;
  const int64_t f = m.vae_scale_factor(), c = m.latent_channels();
  const TextEmbeddings text = m.encode_instruction("make it winter");
  const at::Tensor emb = at::cat({text.cond, text.uncond, text.uncond}, 0);
  const at::Tensor lat = at::randn({3, 2 * c, s / f, s / f}, at::detail::createCPUGenerator(1));
  const at::Tensor img = at::rand({1, 3, s, s}, at::detail::createCPUGenerator(2));
  const at::Tensor z = at::randn({1, c, s / f, s / f}, at::detail::createCPUGenerator(3));
  const at::Tensor bytes = at::randint(0, 256, {s, s, 3}, at::detail::createCPUGenerator(4),
                                       at::TensorOptions().dtype(at::kByte));
  DenoiseSettings settings;
  settings.steps = o.steps;
  settings.scheduler = SchedulerKind::EulerAncestral;
  torch::NoGradGuard no_grad;
  const int r = o.reps_tiny, w = 1;
  for (int t : o.threads) {
    at::set_num_threads(t);
    emit("tiny", "unet_step", s, t, timed([&] { m.unet()->forward(lat, 500.0, emb); }, r, w), r);
    emit("tiny", "vae_encode", s, t, timed([&] { m.encode_image(img); }, r, w), r);
    emit("tiny", "vae_decode", s, t, timed([&] { m.decode(z); }, r, w), r);
    auto edit = [&] {
      const TextEmbeddings e = m.encode_instruction("make it winter");
      const at::Tensor il = m.encode_image(rgb8_to_image(bytes));
      const at::Tensor out = m.decode(m.denoise(il, e, make_noise(il.sizes(), 0, 0, -1), settings, nullptr, {},
                                                frame_noise(0, {0})));
      image_to_rgb8(out);
    };
    emit("tiny", "edit", s, t, timed(edit, r, w), r);
  }
}

void bench_full(const Options& o) {
  torch::NoGradGuard no_grad;
  at::manual_seed(0);
  const UNetConfig uc = via::bench::full_unet_config(o.full_config_dir);
  emit("full", "unet_build_meta", 0, 1,
       timed([&] { UNet2DConditionModel meta(uc, ParamInit{ParamInit::Fill::ShapeOnly}); }, o.reps_full, o.warmup_full),
       o.reps_full);
  UNet2DConditionModel unet(uc);  // random weights (the values do not change the work)
  unet->eval();
  for (int s : o.full_sizes) {
    const via::bench::UNetInputs in = via::bench::unet_inputs(uc, s);
    for (int t : o.threads) {
      at::set_num_threads(t);
      emit("full", "unet_step", s, t,
           timed([&] { unet->forward(in.latents, 500.0, in.embeddings); }, o.reps_full, o.warmup_full), o.reps_full);
    }
  }
  if (o.full_vae_sizes.empty()) return;
  AutoencoderKL vae(via::bench::full_vae_config(o.full_config_dir));
  vae->eval();
  for (int s : o.full_vae_sizes) {
    const at::Tensor img = at::rand({1, 3, s, s}, at::detail::createCPUGenerator(7)) * 2 - 1;
    const at::Tensor z = at::randn({1, 4, s / 8, s / 8}, at::detail::createCPUGenerator(8));
    for (int t : o.threads) {
      at::set_num_threads(t);
      emit("full", "vae_encode", s, t, timed([&] { vae->encode(img); }, o.reps_full, o.warmup_full), o.reps_full);
      emit("full", "vae_decode", s, t, timed([&] { vae->decode(z); }, o.reps_full, o.warmup_full), o.reps_full);
    }
  }
}

}  // namespace

int main(int argc, char** argv) {
  try {
    const Options o = parse(argc, argv);
    std::printf("{\"impl\": \"via\", \"info\": \"libtorch %s, %s\"}\n", TORCH_VERSION,
                at::get_parallel_info().find("OpenMP") != std::string::npos ? "OpenMP" : "native threads");
    bench_tiny(o);
    bench_full(o);
  } catch (const std::exception& e) {
    std::cerr << "via_model_bench: " << e.what() << "\n";
    return 1;
  }
  return 0;
}
