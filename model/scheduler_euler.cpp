// The Euler schedulers (diffusers 0.42.1 scheduling_euler_discrete.py and
// scheduling_euler_ancestral_discrete.py, S_churn = 0, linear sigma
// interpolation, final sigma 0).
#include <ATen/ATen.h>

#include <algorithm>
#include <cmath>

#include "model/safetensors.h"  // ModelError
#include "model/scheduler.h"

namespace via::model {
namespace {

// np.interp(x, [0, 1, ..., n-1], fp) in float64, as the reference samples sigmas.
double interp_unit_grid(double x, const std::vector<double>& fp) {
  const auto n = static_cast<int64_t>(fp.size());
  if (x <= 0) return fp.front();
  if (x >= static_cast<double>(n - 1)) return fp.back();
  const auto j = static_cast<int64_t>(std::floor(x));
  const double slope = fp[static_cast<size_t>(j + 1)] - fp[static_cast<size_t>(j)];
  return slope * (x - static_cast<double>(j)) + fp[static_cast<size_t>(j)];
}

void require(bool ok, const SchedulerConfig& c, const std::string& key, const std::string& value,
             const std::string& supported) {
  if (!ok)
    throw ModelError(c.where() + ": scheduler setting '" + key + "' = " + value +
                     " is not supported by the Euler scheduler (supported: " + supported + ")");
}

}  // namespace

void SigmaScheduler::set_timesteps(int64_t num_inference_steps) {
  const std::vector<double> t = spaced_timesteps(num_inference_steps, "linspace", /*round_linspace=*/false);
  std::vector<float> t32(t.begin(), t.end());  // the reference keeps them as float32
  // sigma_t = sqrt((1 - alphabar_t) / alphabar_t), computed in fp32 as the reference does.
  const at::Tensor full = ((1.0 - alphas_cumprod_) / alphas_cumprod_).pow(0.5).contiguous();
  const float* fp = full.data_ptr<float>();
  const std::vector<double> table(fp, fp + full.numel());
  sigmas_.clear();
  for (float ti : t32) sigmas_.push_back(static_cast<float>(interp_unit_grid(ti, table)));
  sigmas_.push_back(0.0f);
  num_inference_steps_ = static_cast<int64_t>(t32.size());
  timesteps_ = at::tensor(t32, at::TensorOptions().dtype(at::kFloat));
  sigmas_tensor_ = at::tensor(sigmas_, at::TensorOptions().dtype(at::kFloat));
}

double SigmaScheduler::init_noise_sigma() const {
  TORCH_CHECK(!sigmas_.empty(), "scheduler: set_timesteps() was not called");
  const float max_sigma = *std::max_element(sigmas_.begin(), sigmas_.end());
  const std::string& spacing = config_.timestep_spacing;
  if (spacing.empty() || spacing == "linspace" || spacing == "trailing") return max_sigma;
  return std::sqrt(max_sigma * max_sigma + 1.0f);
}

at::Tensor SigmaScheduler::scale_model_input(const at::Tensor& sample, int64_t step_index) const {
  check_step_index(step_index);
  const float sigma = sigmas_[static_cast<size_t>(step_index)];
  return sample / std::sqrt(sigma * sigma + 1.0f);
}

at::Tensor SigmaScheduler::add_noise(const at::Tensor& original, const at::Tensor& noise,
                                     int64_t step_index) const {
  TORCH_CHECK(step_index >= 0 && step_index <= num_inference_steps_, "scheduler: add_noise step index ",
              step_index, " outside [0, ", num_inference_steps_, "]");
  return original + noise * sigmas_[static_cast<size_t>(step_index)];
}

at::Tensor SigmaScheduler::predict_original(const at::Tensor& model_output, const at::Tensor& sample,
                                            float sigma) const {
  if (config_.prediction_type == "v_prediction")
    // Salimans & Ho 2022, "Progressive Distillation", v = alpha eps - sigma_vp x0, in VE form.
    return model_output * (-sigma / std::sqrt(sigma * sigma + 1.0f)) + sample / (sigma * sigma + 1.0f);
  return sample - sigma * model_output;  // x = x0 + sigma eps
}

EulerAncestralScheduler::EulerAncestralScheduler(const SchedulerConfig& config) : SigmaScheduler(config) {}

at::Tensor EulerAncestralScheduler::step(const at::Tensor& model_output, int64_t step_index,
                                         const at::Tensor& sample, const at::Tensor& noise) const {
  check_step_index(step_index);
  const at::Tensor x = sample.to(at::kFloat);
  const at::Tensor eps = model_output.to(at::kFloat);
  const float sigma_from = sigmas_[static_cast<size_t>(step_index)];
  const float sigma_to = sigmas_[static_cast<size_t>(step_index + 1)];
  const at::Tensor x0 = predict_original(eps, x, sigma_from);
  const float from2 = sigma_from * sigma_from, to2 = sigma_to * sigma_to;
  const float sigma_up = std::sqrt(to2 * (from2 - to2) / from2);
  const float sigma_down = std::sqrt(std::max(0.0f, to2 - sigma_up * sigma_up));
  const at::Tensor derivative = (x - x0) / sigma_from;
  at::Tensor prev = x + derivative * (sigma_down - sigma_from);
  if (sigma_up > 0.0f) {
    TORCH_CHECK(noise.defined() && noise.sizes() == sample.sizes(),
                "EulerAncestralScheduler::step needs noise of the sample's shape ", sample.sizes());
    prev = prev + noise.to(prev.device(), at::kFloat) * sigma_up;
  }
  return prev;
}

EulerScheduler::EulerScheduler(const SchedulerConfig& config) : SigmaScheduler(config) {
  const auto& c = config_;
  require(c.interpolation_type == "linear", c, "interpolation_type", "'" + c.interpolation_type + "'", "linear");
  require(!c.use_karras_sigmas, c, "use_karras_sigmas", "true", "false");
  require(!c.use_exponential_sigmas, c, "use_exponential_sigmas", "true", "false");
  require(!c.use_beta_sigmas, c, "use_beta_sigmas", "true", "false");
  require(c.timestep_type == "discrete", c, "timestep_type", "'" + c.timestep_type + "'", "discrete");
  require(c.final_sigmas_type == "zero", c, "final_sigmas_type", "'" + c.final_sigmas_type + "'", "zero");
}

at::Tensor EulerScheduler::step(const at::Tensor& model_output, int64_t step_index, const at::Tensor& sample,
                                const at::Tensor&) const {
  check_step_index(step_index);
  const at::Tensor x = sample.to(at::kFloat);
  const float sigma = sigmas_[static_cast<size_t>(step_index)];
  const at::Tensor x0 = predict_original(model_output.to(at::kFloat), x, sigma);
  const at::Tensor derivative = (x - x0) / sigma;
  return x + derivative * (sigmas_[static_cast<size_t>(step_index + 1)] - sigma);
}

}  // namespace via::model
