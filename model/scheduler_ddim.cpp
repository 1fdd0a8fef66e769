// DDIM, eta = 0 (diffusers 0.42.1 scheduling_ddim.py).
#include <ATen/ATen.h>

#include <cmath>

#include "model/safetensors.h"  // ModelError
#include "model/scheduler.h"

namespace via::model {

DdimScheduler::DdimScheduler(const SchedulerConfig& config) : Scheduler(config) {
  if (config_.thresholding)
    throw ModelError(config_.where() +
                     ": scheduler setting 'thresholding' = true is not supported by the DDIM scheduler "
                     "(supported: false)");
  // With set_alpha_to_one the step into t < 0 lands on a clean sample.
  final_alpha_cumprod_ = config_.set_alpha_to_one ? 1.0f : alphas_cumprod_[0].item<float>();
}

void DdimScheduler::set_timesteps(int64_t num_inference_steps) {
  const std::vector<double> t = spaced_timesteps(num_inference_steps, "leading", /*round_linspace=*/true);
  std::vector<int64_t> t64(t.begin(), t.end());
  for (int64_t v : t64)
    if (v < 0 || v >= config_.num_train_timesteps)
      throw ModelError(config_.where() + ": DDIM timestep " + std::to_string(v) + " for " +
                       std::to_string(num_inference_steps) + " steps lies outside the training schedule [0, " +
                       std::to_string(config_.num_train_timesteps) + ") (check steps_offset)");
  num_inference_steps_ = static_cast<int64_t>(t64.size());
  timesteps_ = at::tensor(t64, at::TensorOptions().dtype(at::kLong));
}

float DdimScheduler::alpha_prod(int64_t step_index) const {
  const int64_t* t = timesteps_.data_ptr<int64_t>();
  const float* ac = alphas_cumprod_.data_ptr<float>();
  if (step_index < num_inference_steps_) return ac[t[step_index]];
  // After the last step: the reference's prev_timestep of the last step.
  const int64_t prev = t[num_inference_steps_ - 1] - config_.num_train_timesteps / num_inference_steps_;
  return prev >= 0 ? ac[prev] : final_alpha_cumprod_;
}

at::Tensor DdimScheduler::scale_model_input(const at::Tensor& sample, int64_t step_index) const {
  check_step_index(step_index);
  return sample;
}

at::Tensor DdimScheduler::step(const at::Tensor& model_output, int64_t step_index, const at::Tensor& sample,
                               const at::Tensor&) const {
  check_step_index(step_index);
  const at::Tensor x = sample.to(at::kFloat);
  const at::Tensor out = model_output.to(at::kFloat);
  // The reference steps to t - T / n whatever the spacing (prev_timestep).
  const int64_t t = timesteps_.data_ptr<int64_t>()[step_index];
  const int64_t prev_t = t - config_.num_train_timesteps / num_inference_steps_;
  const float alpha_t = alphas_cumprod_.data_ptr<float>()[t];
  const float alpha_prev = prev_t >= 0 ? alphas_cumprod_.data_ptr<float>()[prev_t] : final_alpha_cumprod_;
  const float beta_t = 1.0f - alpha_t;

  at::Tensor x0, eps;
  if (config_.prediction_type == "v_prediction") {
    x0 = std::sqrt(alpha_t) * x - std::sqrt(beta_t) * out;
    eps = std::sqrt(alpha_t) * out + std::sqrt(beta_t) * x;
  } else {
    x0 = (x - std::sqrt(beta_t) * out) / std::sqrt(alpha_t);
    eps = out;
  }
  if (config_.clip_sample) x0 = x0.clamp(-config_.clip_sample_range, config_.clip_sample_range);
  // Eq. 12 with sigma_t = 0: the "direction pointing to x_t" plus the rescaled x0.
  const at::Tensor direction = std::sqrt(1.0f - alpha_prev) * eps;
  return std::sqrt(alpha_prev) * x0 + direction;
}

at::Tensor DdimScheduler::add_noise(const at::Tensor& original, const at::Tensor& noise, int64_t step_index) const {
  TORCH_CHECK(num_inference_steps_ > 0 && step_index >= 0 && step_index <= num_inference_steps_,
              "scheduler: add_noise step index ", step_index, " outside [0, ", num_inference_steps_, "]");
  const float a = alpha_prod(step_index);
  return std::sqrt(a) * original + std::sqrt(1.0f - a) * noise;
}

}  // namespace via::model
