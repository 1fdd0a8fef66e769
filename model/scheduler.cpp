// Scheduler settings, the shared training schedule and timestep spacing, and
// the factory. Numerics follow diffusers 0.42.1 step by step (which arithmetic
// runs in fp32 tensors and which in float64 NumPy) so results agree to
// rounding.
#include "model/scheduler.h"

#include <ATen/ATen.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <cfenv>
#include <cmath>

#include "model/json_file.h"
#include "model/safetensors.h"  // ModelError

namespace via::model {
namespace {

// The reference class names (`_class_name` in scheduler_config.json).
constexpr const char* kEulerAncestralClass = "EulerAncestralDiscreteScheduler";
constexpr const char* kEulerClass = "EulerDiscreteScheduler";
constexpr const char* kDdimClass = "DDIMScheduler";
constexpr const char* kDpmSolverClass = "DPMSolverMultistepScheduler";

[[noreturn]] void unsupported(const SchedulerConfig& c, const std::string& key, const std::string& value,
                              const std::string& supported) {
  throw ModelError(c.where() + ": scheduler setting '" + key + "' = " + value + " is not supported (supported: " +
                   supported + ")");
}

// Round half to even, as NumPy's round does.
double round_half_even(double x) {
  const int saved = std::fegetround();
  std::fesetround(FE_TONEAREST);
  const double r = std::nearbyint(x);
  std::fesetround(saved);
  return r;
}

// The reference's betas_for_alpha_bar with the cosine transform (Nichol &
// Dhariwal 2021, "Improved Denoising Diffusion Probabilistic Models", Eq. 17),
// capped at 0.999.
std::vector<double> squaredcos_cap_v2_betas(int64_t n) {
  auto alpha_bar = [](double t) {
    const double c = std::cos((t + 0.008) / 1.008 * M_PI / 2);
    return c * c;
  };
  std::vector<double> betas(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) {
    const double t1 = static_cast<double>(i) / n, t2 = static_cast<double>(i + 1) / n;
    betas[static_cast<size_t>(i)] = std::min(1 - alpha_bar(t2) / alpha_bar(t1), 0.999);
  }
  return betas;
}

}  // namespace

SchedulerConfig SchedulerConfig::from_json(const nlohmann::json& j, const std::string& source) {
  if (!j.is_object()) throw ModelError(source + ": scheduler config is not a JSON object");
  SchedulerConfig c;
  c.source = source;
  c.class_name = json_value<std::string>(j, "_class_name", "", source);
  c.num_train_timesteps = json_value<int64_t>(j, "num_train_timesteps", c.num_train_timesteps, source);
  c.beta_start = json_value<double>(j, "beta_start", c.beta_start, source);
  c.beta_end = json_value<double>(j, "beta_end", c.beta_end, source);
  c.beta_schedule = json_value<std::string>(j, "beta_schedule", c.beta_schedule, source);
  c.trained_betas = json_value<std::vector<double>>(j, "trained_betas", {}, source);
  c.prediction_type = json_value<std::string>(j, "prediction_type", c.prediction_type, source);
  c.timestep_spacing = json_value<std::string>(j, "timestep_spacing", "", source);
  c.steps_offset = json_value<int64_t>(j, "steps_offset", c.steps_offset, source);
  c.set_alpha_to_one = json_value<bool>(j, "set_alpha_to_one", c.set_alpha_to_one, source);
  c.clip_sample = json_value<bool>(j, "clip_sample", c.clip_sample, source);
  c.clip_sample_range = json_value<double>(j, "clip_sample_range", c.clip_sample_range, source);
  c.interpolation_type = json_value<std::string>(j, "interpolation_type", c.interpolation_type, source);
  c.rescale_betas_zero_snr = json_value<bool>(j, "rescale_betas_zero_snr", false, source);
  c.use_karras_sigmas = json_value<bool>(j, "use_karras_sigmas", false, source);
  c.use_exponential_sigmas = json_value<bool>(j, "use_exponential_sigmas", false, source);
  c.use_beta_sigmas = json_value<bool>(j, "use_beta_sigmas", false, source);
  c.thresholding = json_value<bool>(j, "thresholding", false, source);
  c.timestep_type = json_value<std::string>(j, "timestep_type", c.timestep_type, source);
  c.final_sigmas_type = json_value<std::string>(j, "final_sigmas_type", c.final_sigmas_type, source);
  c.solver_order = json_value<int64_t>(j, "solver_order", c.solver_order, source);
  c.algorithm_type = json_value<std::string>(j, "algorithm_type", c.algorithm_type, source);
  c.solver_type = json_value<std::string>(j, "solver_type", c.solver_type, source);
  c.lower_order_final = json_value<bool>(j, "lower_order_final", c.lower_order_final, source);
  c.euler_at_final = json_value<bool>(j, "euler_at_final", c.euler_at_final, source);
  c.lambda_min_clipped = json_value<double>(j, "lambda_min_clipped", c.lambda_min_clipped, source);
  c.variance_type = json_value<std::string>(j, "variance_type", c.variance_type, source);
  c.use_lu_lambdas = json_value<bool>(j, "use_lu_lambdas", false, source);
  c.use_flow_sigmas = json_value<bool>(j, "use_flow_sigmas", false, source);
  c.use_dynamic_shifting = json_value<bool>(j, "use_dynamic_shifting", false, source);
  return c;
}

SchedulerConfig SchedulerConfig::from_file(const std::string& path) { return from_json(read_json_file(path), path); }

SchedulerKind scheduler_kind_from_name(const std::string& name) {
  for (const SchedulerKind kind : kSchedulerKinds)
    if (scheduler_name(kind) == name) return kind;
  throw ModelError("unsupported scheduler '" + name + "' (supported: " + supported_scheduler_names() + ")");
}

std::string supported_scheduler_names() {
  std::string names;
  for (const SchedulerKind kind : kSchedulerKinds) names += (names.empty() ? "" : ", ") + scheduler_name(kind);
  return names;
}

std::string supported_scheduler_classes() {
  return std::string(kEulerAncestralClass) + ", " + kEulerClass + ", " + kDdimClass + ", " + kDpmSolverClass;
}

std::string scheduler_name(SchedulerKind kind) {
  switch (kind) {
    case SchedulerKind::EulerAncestral: return "euler_a";
    case SchedulerKind::Euler: return "euler";
    case SchedulerKind::Ddim: return "ddim";
    case SchedulerKind::DpmSolver: return "dpmpp_2m";
    case SchedulerKind::DpmSolverKarras: return "dpmpp_2m_karras";
  }
  return "unknown";
}

std::optional<SchedulerKind> scheduler_kind_from_class(const std::string& class_name) {
  if (class_name == kEulerAncestralClass) return SchedulerKind::EulerAncestral;
  if (class_name == kEulerClass) return SchedulerKind::Euler;
  if (class_name == kDdimClass) return SchedulerKind::Ddim;
  if (class_name == kDpmSolverClass) return SchedulerKind::DpmSolver;
  return std::nullopt;
}

Scheduler::Scheduler(SchedulerConfig config) : config_(std::move(config)) {
  const auto& c = config_;
  if (c.num_train_timesteps < 1) unsupported(c, "num_train_timesteps", std::to_string(c.num_train_timesteps), ">= 1");
  if (c.prediction_type != "epsilon" && c.prediction_type != "v_prediction")
    unsupported(c, "prediction_type", "'" + c.prediction_type + "'", "epsilon, v_prediction");
  if (c.rescale_betas_zero_snr) unsupported(c, "rescale_betas_zero_snr", "true", "false");
  if (!c.timestep_spacing.empty() && c.timestep_spacing != "linspace" && c.timestep_spacing != "leading" &&
      c.timestep_spacing != "trailing")
    unsupported(c, "timestep_spacing", "'" + c.timestep_spacing + "'", "linspace, leading, trailing");

  // betas in fp32 exactly as the reference makes them (torch.linspace in fp32).
  const auto f32 = at::TensorOptions().dtype(at::kFloat);
  at::Tensor betas;
  if (!c.trained_betas.empty()) {
    if (static_cast<int64_t>(c.trained_betas.size()) != c.num_train_timesteps)
      unsupported(c, "trained_betas", std::to_string(c.trained_betas.size()) + " values",
                  "num_train_timesteps = " + std::to_string(c.num_train_timesteps) + " values");
    betas = at::tensor(c.trained_betas, at::TensorOptions().dtype(at::kDouble)).to(at::kFloat);
  } else if (c.beta_schedule == "linear") {
    betas = at::linspace(c.beta_start, c.beta_end, c.num_train_timesteps, f32);
  } else if (c.beta_schedule == "scaled_linear") {
    // Latent diffusion's schedule: linear in sqrt(beta).
    betas = at::linspace(std::sqrt(c.beta_start), std::sqrt(c.beta_end), c.num_train_timesteps, f32).pow(2);
  } else if (c.beta_schedule == "squaredcos_cap_v2") {
    betas = at::tensor(squaredcos_cap_v2_betas(c.num_train_timesteps), at::TensorOptions().dtype(at::kDouble))
                .to(at::kFloat);
  } else {
    unsupported(c, "beta_schedule", "'" + c.beta_schedule + "'", "linear, scaled_linear, squaredcos_cap_v2");
  }
  alphas_cumprod_ = at::cumprod(1.0 - betas, 0);
}

double Scheduler::timestep(int64_t step_index) const {
  check_step_index(step_index);
  return timesteps_[step_index].item<double>();
}

void Scheduler::check_step_index(int64_t step_index) const {
  TORCH_CHECK(num_inference_steps_ > 0, "scheduler: set_timesteps() was not called");
  TORCH_CHECK(step_index >= 0 && step_index < num_inference_steps_, "scheduler: step index ", step_index,
              " outside [0, ", num_inference_steps_, ")");
}

std::vector<double> Scheduler::spaced_timesteps(int64_t n, const std::string& default_spacing,
                                                bool round_linspace) const {
  const auto& c = config_;
  if (n < 1 || n > c.num_train_timesteps)
    throw ModelError(c.where() + ": " + std::to_string(n) + " inference steps requested; the schedule has " +
                     std::to_string(c.num_train_timesteps) + " training timesteps (need 1.." +
                     std::to_string(c.num_train_timesteps) + ")");
  const std::string spacing = c.timestep_spacing.empty() ? default_spacing : c.timestep_spacing;
  const double T = static_cast<double>(c.num_train_timesteps);
  std::vector<double> t;
  // "linspace", "leading", "trailing": Table 2 of Lin et al. 2024, "Common
  // Diffusion Noise Schedules and Sample Steps are Flawed" (arXiv:2305.08891).
  if (spacing == "linspace") {
    // np.linspace(0, T - 1, n): i * step + start, the last value set to stop.
    const double step = n > 1 ? (T - 1) / static_cast<double>(n - 1) : 0.0;
    for (int64_t i = 0; i < n; ++i) t.push_back(i == n - 1 && n > 1 ? T - 1 : static_cast<double>(i) * step);
    if (round_linspace)
      for (auto& v : t) v = round_half_even(v);
    std::reverse(t.begin(), t.end());
  } else if (spacing == "leading") {
    const int64_t ratio = c.num_train_timesteps / n;
    for (int64_t i = n - 1; i >= 0; --i) t.push_back(static_cast<double>(i * ratio + c.steps_offset));
  } else {  // trailing: np.round(np.arange(T, 0, -T / n)) - 1
    const double ratio = T / static_cast<double>(n);
    const double first = T, delta = (T - ratio) - first;  // NumPy fills start + i * (a[1] - a[0])
    const auto len = static_cast<int64_t>(std::ceil((0.0 - T) / -ratio));
    for (int64_t i = 0; i < len; ++i) t.push_back(round_half_even(first + static_cast<double>(i) * delta) - 1);
  }
  return t;
}

std::unique_ptr<Scheduler> make_scheduler(SchedulerKind kind, const SchedulerConfig& config) {
  switch (kind) {
    case SchedulerKind::EulerAncestral: return std::make_unique<EulerAncestralScheduler>(config);
    case SchedulerKind::Euler: return std::make_unique<EulerScheduler>(config);
    case SchedulerKind::Ddim: return std::make_unique<DdimScheduler>(config);
    case SchedulerKind::DpmSolver: return std::make_unique<DpmSolverScheduler>(config, false);
    case SchedulerKind::DpmSolverKarras: return std::make_unique<DpmSolverScheduler>(config, true);
  }
  throw ModelError("unknown scheduler kind");
}

}  // namespace via::model
