#pragma once
// The LoRA tests' shared inputs (adaptation/test_lora, rank/test_adapter_file):
// the tiny model's UNet, a test image, a short deterministic edit of it, and
// random adapter weights.
#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>

#include <cstdint>
#include <map>
#include <string>

#include "adaptation/lora.h"
#include "model/pipeline.h"
#include "tests/support/tiny_model.h"

namespace via::test {

inline model::UNet2DConditionModelImpl& tiny_unet() { return *tiny_model().unet(); }

/// A deterministic 32x48 test image with structure in every channel.
inline at::Tensor test_image() {
  const at::Tensor y = at::linspace(0, 1, 32).view({1, 1, 32, 1});
  const at::Tensor x = at::linspace(0, 1, 48).view({1, 1, 1, 48});
  return at::cat({(x * 6.0).sin() * 0.4 + 0.5 + 0 * y, y.expand({1, 1, 32, 48}), (x * y * 9.0).cos() * 0.5 + 0.5}, 1)
      .contiguous();
}

/// A short deterministic edit of the test image (Euler: no ancestral noise),
/// through whatever adapter is attached to the tiny model's UNet.
inline at::Tensor edit_latents() {
  const auto& m = tiny_model();
  static const model::TextEmbeddings text = m.encode_instruction("make it snowy");
  static const at::Tensor latents = m.encode_image(test_image());
  const at::Tensor noise = model::make_noise({1, 4, 8, 12}, /*seed=*/7, /*frame=*/0, /*step=*/-1);
  model::DenoiseSettings s;
  s.steps = 3;
  s.scheduler = model::SchedulerKind::Euler;
  return m.denoise(latents, text, noise, s);
}

/// Same sizes, dtype and values.
inline bool bit_equal(const at::Tensor& a, const at::Tensor& b) {
  return a.sizes() == b.sizes() && a.scalar_type() == b.scalar_type() && at::equal(a, b);
}

/// Random values for every tensor of `adapter` (B included, so it changes the output).
inline std::map<std::string, at::Tensor> random_weights(const adapt::LoraAdapter& adapter, uint64_t seed) {
  at::Generator gen = at::detail::createCPUGenerator(seed);
  std::map<std::string, at::Tensor> out;
  for (const auto& [name, t] : adapter.named_tensors()) out.emplace(name, at::randn(t.sizes(), gen) * 0.2);
  return out;
}

}  // namespace via::test
