#pragma once
// Pieces the model benchmarks share (bench/model_bench.cpp, bench/gpu_check.cpp):
// option lists, timing with a device synchronisation, the published
// InstructPix2Pix configs (tests/reference/data/full_size) built with random
// weights. Header-only: each benchmark is one translation unit.
#include <ATen/ATen.h>
#include <torch/cuda.h>

#include <algorithm>
#include <chrono>
#include <functional>
#include <sstream>
#include <string>
#include <vector>

#include "model/unet.h"
#include "model/vae.h"

namespace via::bench {

/// "1,2,3" -> {1, 2, 3} (empty items skipped).
inline std::vector<int> ints(const std::string& text) {
  std::vector<int> out;
  std::stringstream ss(text);
  for (std::string item; std::getline(ss, item, ',');)
    if (!item.empty()) out.push_back(std::stoi(item));
  return out;
}

struct Timing {
  double best;    ///< the fastest call: the least disturbed by other load on the machine
  double median;
};

/// Waits for `device`'s queued work (CUDA runs asynchronously); nothing on the CPU.
inline void synchronize(const c10::Device& device) {
  if (device.is_cuda()) torch::cuda::synchronize(device.index() < 0 ? -1 : device.index());
}

/// Times `reps` calls after `warmup` unmeasured ones; each call is measured
/// to the end of its work on `device`.
inline Timing timed(const std::function<void()>& fn, int reps, int warmup,
                    const c10::Device& device = c10::Device(c10::kCPU)) {
  for (int i = 0; i < warmup; ++i) fn();
  synchronize(device);
  std::vector<double> t;
  for (int i = 0; i < std::max(reps, 1); ++i) {
    const auto start = std::chrono::steady_clock::now();
    fn();
    synchronize(device);
    t.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
  }
  std::sort(t.begin(), t.end());
  const double median = t.size() % 2 ? t[t.size() / 2] : (t[t.size() / 2 - 1] + t[t.size() / 2]) / 2;
  return {t.front(), median};
}

/// The published InstructPix2Pix UNet and VAE configs (diffusers' unet/ and
/// vae/ config.json), as bench/run_model_bench.sh and the reference use them.
inline model::UNetConfig full_unet_config(const std::string& config_dir) {
  return model::UNetConfig::from_file(config_dir + "/unet_config.json");
}
inline model::VaeConfig full_vae_config(const std::string& config_dir) {
  return model::VaeConfig::from_file(config_dir + "/vae_config.json");
}

/// A UNet's 3-branch batch as the pipeline runs it: latents [3, in, s/8, s/8]
/// and text embeddings [3, 77, D], random (fixed seeds), fp32 on the CPU.
struct UNetInputs {
  at::Tensor latents, embeddings;
};
inline UNetInputs unet_inputs(const model::UNetConfig& config, int size) {
  return {at::randn({3, config.in_channels, size / 8, size / 8}, at::detail::createCPUGenerator(6)),
          at::randn({3, 77, config.cross_attention_dim.front()}, at::detail::createCPUGenerator(5))};
}

}  // namespace via::bench
