// DPM-Solver++ multistep (diffusers 0.42.1 scheduling_dpmsolver_multistep.py,
// algorithm_type "dpmsolver++"). The per-step scalars are 0-d fp32 tensors,
// as in the reference, so every operation rounds as it does there.
#include <ATen/ATen.h>

#include <algorithm>
#include <cmath>

#include "model/safetensors.h"  // ModelError
#include "model/scheduler.h"

namespace via::model {
namespace {

void require(bool ok, const SchedulerConfig& c, const std::string& key, const std::string& value,
             const std::string& supported) {
  if (!ok)
    throw ModelError(c.where() + ": scheduler setting '" + key + "' = " + value +
                     " is not supported by the DPM-Solver++ scheduler (supported: " + supported + ")");
}

// NumPy's round: half to even (the default rounding mode of nearbyint).
double round_even(double x) { return std::nearbyint(x); }

// np.linspace(start, stop, num) element i.
double linspace_at(double start, double stop, int64_t num, int64_t i) {
  if (num == 1) return start;
  if (i == num - 1) return stop;
  const double step = (stop - start) / static_cast<double>(num - 1);
  return static_cast<double>(i) * step + start;
}

// The reference's _sigma_to_t: the fractional timestep whose log-sigma
// (linearly interpolated in the float32 table) equals log(sigma).
double sigma_to_t(double sigma, const std::vector<float>& log_sigmas) {
  const double log_sigma = std::log(std::max(sigma, 1e-10));
  const auto n = static_cast<int64_t>(log_sigmas.size());
  int64_t low = 0;  // the last index with log_sigma >= log_sigmas[i] (0 if none), at most n - 2
  for (int64_t i = 0; i < n; ++i)
    if (log_sigma - static_cast<double>(log_sigmas[static_cast<size_t>(i)]) >= 0) low = i;
  low = std::min(low, n - 2);
  const float lo = log_sigmas[static_cast<size_t>(low)], hi = log_sigmas[static_cast<size_t>(low + 1)];
  const float denom = lo - hi;  // float32 - float32 stays float32 in NumPy
  double w = (static_cast<double>(lo) - log_sigma) / static_cast<double>(denom);
  w = std::clamp(w, 0.0, 1.0);
  return (1 - w) * static_cast<double>(low) + w * static_cast<double>(low + 1);
}

// (alpha_t, sigma_t) of the VP process for a VE sigma: alpha = 1 / sqrt(sigma^2 + 1).
std::pair<at::Tensor, at::Tensor> alpha_sigma(const at::Tensor& sigma) {
  const at::Tensor alpha = 1 / (sigma.pow(2) + 1).pow(0.5);
  return {alpha, sigma * alpha};
}

at::Tensor lambda_of(const std::pair<at::Tensor, at::Tensor>& as) { return at::log(as.first) - at::log(as.second); }

}  // namespace

DpmSolverScheduler::DpmSolverScheduler(const SchedulerConfig& config, bool force_karras)
    : Scheduler(config), karras_(force_karras || config.use_karras_sigmas) {
  const auto& c = config_;
  // diffusers maps "deis" to dpmsolver++ and the UniPC solver types to midpoint; so do we.
  require(c.algorithm_type == "dpmsolver++" || c.algorithm_type == "deis", c, "algorithm_type",
          "'" + c.algorithm_type + "'", "dpmsolver++");
  require(c.solver_order == 1 || c.solver_order == 2, c, "solver_order", std::to_string(c.solver_order), "1, 2");
  require(c.solver_type == "midpoint" || c.solver_type == "heun" || c.solver_type == "logrho" ||
              c.solver_type == "bh1" || c.solver_type == "bh2",
          c, "solver_type", "'" + c.solver_type + "'", "midpoint, heun");
  require(c.variance_type.empty(), c, "variance_type", "'" + c.variance_type + "'", "null");
  require(!c.thresholding, c, "thresholding", "true", "false");
  require(!c.use_exponential_sigmas, c, "use_exponential_sigmas", "true", "false");
  require(!c.use_beta_sigmas, c, "use_beta_sigmas", "true", "false");
  require(!c.use_lu_lambdas, c, "use_lu_lambdas", "true", "false");
  require(!c.use_flow_sigmas, c, "use_flow_sigmas", "true", "false");
  require(!c.use_dynamic_shifting, c, "use_dynamic_shifting", "true", "false");
  require(c.final_sigmas_type == "zero" || c.final_sigmas_type == "sigma_min", c, "final_sigmas_type",
          "'" + c.final_sigmas_type + "'", "zero, sigma_min");
  require(!std::isnan(c.lambda_min_clipped), c, "lambda_min_clipped", "NaN", "a number or -Infinity");
}

void DpmSolverScheduler::set_timesteps(int64_t n) {
  const auto& c = config_;
  if (n < 1 || n > c.num_train_timesteps)
    throw ModelError(c.where() + ": " + std::to_string(n) + " inference steps requested; the schedule has " +
                     std::to_string(c.num_train_timesteps) + " training timesteps (need 1.." +
                     std::to_string(c.num_train_timesteps) + ")");
  // The last usable training timestep: lambda(t) clipped from below (for cosine schedules).
  const at::Tensor lambda_t = at::log(alphas_cumprod_.sqrt()) - at::log((1 - alphas_cumprod_).sqrt());
  const int64_t clipped =
      at::searchsorted(at::flip(lambda_t, {0}), at::Scalar(c.lambda_min_clipped)).item<int64_t>();
  const int64_t last = c.num_train_timesteps - clipped;

  std::vector<double> t;
  const std::string spacing = c.timestep_spacing.empty() ? "linspace" : c.timestep_spacing;
  if (spacing == "linspace") {  // linspace(0, last - 1, n + 1).round()[::-1][:-1]
    for (int64_t i = n; i >= 1; --i) t.push_back(round_even(linspace_at(0, static_cast<double>(last - 1), n + 1, i)));
  } else if (spacing == "leading") {
    const int64_t ratio = last / (n + 1);
    for (int64_t i = n; i >= 1; --i) t.push_back(static_cast<double>(i * ratio + c.steps_offset));
  } else {  // trailing: np.arange(last, 0, -T / n).round() - 1
    const double ratio = static_cast<double>(c.num_train_timesteps) / static_cast<double>(n);
    const double first = static_cast<double>(last), delta = (first - ratio) - first;
    const auto len = static_cast<int64_t>(std::ceil((0.0 - first) / -ratio));
    for (int64_t i = 0; i < len; ++i) t.push_back(round_even(first + static_cast<double>(i) * delta) - 1);
  }

  const at::Tensor full = ((1.0 - alphas_cumprod_) / alphas_cumprod_).pow(0.5).contiguous();
  const float* fp = full.data_ptr<float>();
  const std::vector<float> table(fp, fp + full.numel());
  std::vector<float> sig;
  std::vector<int64_t> steps;
  if (karras_) {
    // Karras et al. 2022 Eq. 5 between the table's extremes, then each sigma's timestep.
    std::vector<float> log_sigmas;
    for (float s : table) log_sigmas.push_back(std::log(s));
    const double sigma_min = table.front(), sigma_max = table.back(), rho = 7.0;
    const double min_inv = std::pow(sigma_min, 1 / rho), max_inv = std::pow(sigma_max, 1 / rho);
    for (int64_t i = 0; i < n; ++i) {
      const double s = std::pow(max_inv + linspace_at(0, 1, n, i) * (min_inv - max_inv), rho);
      sig.push_back(static_cast<float>(s));
      const double ts = sigma_to_t(s, log_sigmas);
      // The reference rounds except for the cosine schedule, where the int64 cast truncates.
      steps.push_back(static_cast<int64_t>(c.beta_schedule == "squaredcos_cap_v2" ? ts : round_even(ts)));
    }
  } else {
    for (double v : t) {
      const auto ti = static_cast<int64_t>(v);
      steps.push_back(ti);
      sig.push_back(table[static_cast<size_t>(std::clamp<int64_t>(ti, 0, static_cast<int64_t>(table.size()) - 1))]);
    }
  }
  sig.push_back(c.final_sigmas_type == "sigma_min" ? table.front() : 0.0f);
  num_inference_steps_ = static_cast<int64_t>(steps.size());
  timesteps_ = at::tensor(steps, at::TensorOptions().dtype(at::kLong));
  sigmas_ = at::tensor(sig, at::TensorOptions().dtype(at::kFloat));
  history_.clear();
}

at::Tensor DpmSolverScheduler::scale_model_input(const at::Tensor& sample, int64_t step_index) const {
  check_step_index(step_index);
  return sample;
}

at::Tensor DpmSolverScheduler::add_noise(const at::Tensor& original, const at::Tensor& noise,
                                         int64_t step_index) const {
  TORCH_CHECK(step_index >= 0 && step_index <= num_inference_steps_, "scheduler: add_noise step index ",
              step_index, " outside [0, ", num_inference_steps_, "]");
  const auto [alpha, sigma] = alpha_sigma(sigmas_[step_index].to(original.scalar_type()));
  return alpha * original + sigma * noise;
}

at::Tensor DpmSolverScheduler::step(const at::Tensor& model_output, int64_t i, const at::Tensor& sample_in,
                                    const at::Tensor& /*noise*/) const {
  check_step_index(i);
  const auto& c = config_;
  const int64_t n = num_inference_steps_;
  const at::Tensor sample = sample_in.to(at::kFloat);
  const at::Tensor out = model_output.to(at::kFloat);

  // convert_model_output: the data prediction x0.
  const auto s0 = alpha_sigma(sigmas_[i]);
  const at::Tensor x0 = c.prediction_type == "v_prediction" ? s0.first * sample - s0.second * out
                                                              : (sample - s0.second * out) / s0.first;

  const bool last_is_first_order = i == n - 1 && (c.euler_at_final || (c.lower_order_final && n < 15) ||
                                                  c.final_sigmas_type == "zero");
  const auto t = alpha_sigma(sigmas_[i + 1]);
  const at::Tensor h = lambda_of(t) - lambda_of(s0);
  const at::Tensor phi = t.first * (at::exp(-h) - 1.0);  // alpha_t (e^-h - 1)
  at::Tensor prev;
  if (c.solver_order == 1 || i == 0 || last_is_first_order) {
    prev = (t.second / s0.second) * sample - phi * x0;
  } else {
    const at::Tensor* m1 = nullptr;
    for (const auto& [index, x] : history_)
      if (index == i - 1) m1 = &x;
    TORCH_CHECK(m1 != nullptr, "DPM-Solver++: step ", i, " needs the data prediction of step ", i - 1,
                "; run the steps of a trajectory in order on one scheduler");
    const auto s1 = alpha_sigma(sigmas_[i - 1]);
    const at::Tensor r0 = (lambda_of(s0) - lambda_of(s1)) / h;
    const at::Tensor d1 = (1.0 / r0) * (x0 - *m1);
    if (c.solver_type == "heun")
      prev = (t.second / s0.second) * sample - phi * x0 + (t.first * ((at::exp(-h) - 1.0) / h + 1.0)) * d1;
    else
      prev = (t.second / s0.second) * sample - phi * x0 - 0.5 * phi * d1;
  }
  // Keep x0 for step i + 1 (and for a repeat of step i).
  history_.erase(std::remove_if(history_.begin(), history_.end(),
                                [&](const auto& e) { return e.first == i || e.first < i - 1; }),
                 history_.end());
  history_.emplace_back(i, x0);
  return prev;
}

}  // namespace via::model
