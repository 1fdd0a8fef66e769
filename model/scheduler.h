#pragma once
// Noise schedulers for the denoising loop: Euler-ancestral (the reference
// InstructPix2Pix pipeline's default), Euler and DDIM, built from a model's
// `scheduler/scheduler_config.json` and numerically equal to the reference
// library (diffusers 0.42.1, `schedulers/scheduling_{euler_ancestral_discrete,
// euler_discrete,ddim}.py`).
//
// Unlike the reference, a scheduler is stateless between steps: the caller
// passes the step index and, for ancestral sampling, the noise tensor, so a
// frame's result never depends on call order or on a shared generator. The
// exception is DPM-Solver++ (multistep: it keeps the previous step's data
// prediction; see DpmSolverScheduler), also diffusers 0.42.1
// (scheduling_dpmsolver_multistep.py).
#include <ATen/core/Tensor.h>
#include <nlohmann/json_fwd.hpp>

#include <cstdint>
#include <limits>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "model/scheduler_kind.h"

namespace via::model {

/// The scheduler settings of scheduler_config.json. Keys missing from the
/// file take the reference's defaults; `timestep_spacing` has a per-class
/// default (linspace for the Euler ones, leading for DDIM), so it stays empty
/// when absent. Values this code does not implement are rejected by
/// make_scheduler(), not here.
struct SchedulerConfig {
  std::string class_name;  // "_class_name", e.g. "EulerAncestralDiscreteScheduler"
  int64_t num_train_timesteps = 1000;
  double beta_start = 0.0001;
  double beta_end = 0.02;
  std::string beta_schedule = "linear";   // linear | scaled_linear | squaredcos_cap_v2
  std::vector<double> trained_betas;      // non-empty: used instead of the beta schedule
  std::string prediction_type = "epsilon";  // epsilon | v_prediction
  std::string timestep_spacing;           // linspace | leading | trailing; empty: the class default
  int64_t steps_offset = 0;
  bool set_alpha_to_one = true;           // DDIM
  bool clip_sample = true;                // DDIM
  double clip_sample_range = 1.0;         // DDIM
  std::string interpolation_type = "linear";  // Euler
  // Options of the reference that change the schedule and are not
  // implemented; make_scheduler() refuses a config that turns one on.
  bool rescale_betas_zero_snr = false;
  bool use_karras_sigmas = false;
  bool use_exponential_sigmas = false;
  bool use_beta_sigmas = false;
  bool thresholding = false;
  std::string timestep_type = "discrete";
  std::string final_sigmas_type = "zero";
  // DPMSolverMultistepScheduler's settings (its defaults).
  int64_t solver_order = 2;
  std::string algorithm_type = "dpmsolver++";
  std::string solver_type = "midpoint";   // midpoint | heun
  bool lower_order_final = true;
  bool euler_at_final = false;
  double lambda_min_clipped = -std::numeric_limits<double>::infinity();
  std::string variance_type;              // empty (null) | learned | learned_range
  bool use_lu_lambdas = false;
  bool use_flow_sigmas = false;
  bool use_dynamic_shifting = false;
  std::string source;  // where it was read from, for error messages

  /// Reads the settings from parsed JSON; `source` names it in errors.
  static SchedulerConfig from_json(const nlohmann::json& config, const std::string& source);
  /// Reads `path` (a scheduler_config.json).
  static SchedulerConfig from_file(const std::string& path);
  /// `source`, or "scheduler config" when unnamed: how errors name this config.
  std::string where() const { return source.empty() ? "scheduler config" : source; }
};

/// The kind a reference class name stands for ("EulerAncestralDiscreteScheduler",
/// "EulerDiscreteScheduler", "DDIMScheduler", "DPMSolverMultistepScheduler"),
/// or nullopt for other classes.
std::optional<SchedulerKind> scheduler_kind_from_class(const std::string& class_name);
/// "EulerAncestralDiscreteScheduler, ...": the classes scheduler_kind_from_class knows, for messages.
std::string supported_scheduler_classes();

/// One sampling method over a fixed list of timesteps.
///
/// Contract: call set_timesteps(n) first; then, for step index i = 0..n-1,
/// scale_model_input(x, i) gives the UNet input and step(eps, i, x, noise)
/// the next sample. Steps are pure functions of their arguments (no hidden
/// step counter, no generator), so any step may be recomputed or run on
/// another process with the same result. Tensors may live on any device; the
/// step arithmetic runs in fp32 and returns fp32. Not thread-safe against a
/// concurrent set_timesteps().
class Scheduler {
 public:
  virtual ~Scheduler() = default;

  /// Chooses `num_inference_steps` timesteps (>= 1, <= num_train_timesteps).
  virtual void set_timesteps(int64_t num_inference_steps) = 0;
  int64_t num_inference_steps() const { return num_inference_steps_; }
  /// The timesteps, in the reference's dtype (fp32 for Euler, int64 for DDIM), CPU.
  const at::Tensor& timesteps() const { return timesteps_; }
  /// Timestep of step `step_index`, as the UNet's time embedding takes it.
  double timestep(int64_t step_index) const;
  /// Standard deviation of the initial noise: the starting latents are
  /// unit-variance noise times this.
  virtual double init_noise_sigma() const = 0;
  /// The UNet input for `sample` at step `step_index`.
  virtual at::Tensor scale_model_input(const at::Tensor& sample, int64_t step_index) const = 0;
  /// The sample after step `step_index` from the model's prediction.
  /// `noise` (unit normal, sample's shape) is used only when needs_noise();
  /// otherwise it may be an undefined tensor.
  virtual at::Tensor step(const at::Tensor& model_output, int64_t step_index, const at::Tensor& sample,
                          const at::Tensor& noise) const = 0;
  /// True when step() consumes fresh noise (ancestral sampling).
  virtual bool needs_noise() const { return false; }
  /// `original` noised to the level the sample has at the START of step
  /// `step_index` (the reference's add_noise at timesteps[step_index]); the
  /// level after the last step is step_index = num_inference_steps().
  virtual at::Tensor add_noise(const at::Tensor& original, const at::Tensor& noise, int64_t step_index) const = 0;

  const SchedulerConfig& config() const { return config_; }
  /// The training schedule's cumulative products of (1 - beta), fp32 CPU.
  const at::Tensor& alphas_cumprod() const { return alphas_cumprod_; }

 protected:
  explicit Scheduler(SchedulerConfig config);
  void check_step_index(int64_t step_index) const;
  /// Timesteps for the configured spacing, computed as the reference does.
  std::vector<double> spaced_timesteps(int64_t n, const std::string& default_spacing, bool round_linspace) const;

  SchedulerConfig config_;
  at::Tensor alphas_cumprod_;
  at::Tensor timesteps_;
  int64_t num_inference_steps_ = 0;
};

/// Base of the Euler schedulers (Karras et al. 2022, "Elucidating the Design
/// Space of Diffusion-Based Generative Models", arXiv:2206.00364): the
/// variance-exploding view x = x0 + sigma * eps with sigma_t = sqrt((1 -
/// alphabar_t) / alphabar_t), sampled at the timesteps by linear
/// interpolation, and a final sigma of 0.
class SigmaScheduler : public Scheduler {
 public:
  void set_timesteps(int64_t num_inference_steps) override;
  double init_noise_sigma() const override;
  /// x / sqrt(sigma^2 + 1): the VE sample brought back to the VP scale the UNet was trained on.
  at::Tensor scale_model_input(const at::Tensor& sample, int64_t step_index) const override;
  at::Tensor add_noise(const at::Tensor& original, const at::Tensor& noise, int64_t step_index) const override;
  /// sigma of each step, then a final 0: num_inference_steps() + 1 values, fp32 CPU.
  const at::Tensor& sigmas() const { return sigmas_tensor_; }

 protected:
  using Scheduler::Scheduler;
  /// The denoised estimate x0 from the model output (epsilon or v prediction).
  at::Tensor predict_original(const at::Tensor& model_output, const at::Tensor& sample, float sigma) const;

  std::vector<float> sigmas_;
  at::Tensor sigmas_tensor_;
};

/// Euler-ancestral sampling: an Euler step of the probability-flow ODE down
/// to sigma_down, then fresh noise of std sigma_up (k-diffusion's
/// `sample_euler_ancestral`, Karras et al. 2022 Alg. 2 with the DDPM
/// ancestral split sigma_up = sqrt(s_to^2 (s_from^2 - s_to^2) / s_from^2),
/// sigma_down = sqrt(s_to^2 - sigma_up^2)). The reference pipeline's default.
class EulerAncestralScheduler : public SigmaScheduler {
 public:
  explicit EulerAncestralScheduler(const SchedulerConfig& config);
  at::Tensor step(const at::Tensor& model_output, int64_t step_index, const at::Tensor& sample,
                  const at::Tensor& noise) const override;
  bool needs_noise() const override { return true; }
};

/// Deterministic Euler sampling of the probability-flow ODE
/// dx/dsigma = (x - x0) / sigma (Karras et al. 2022, Alg. 2 with S_churn = 0).
class EulerScheduler : public SigmaScheduler {
 public:
  explicit EulerScheduler(const SchedulerConfig& config);
  at::Tensor step(const at::Tensor& model_output, int64_t step_index, const at::Tensor& sample,
                  const at::Tensor& noise) const override;
};

/// DDIM with eta = 0 (Song et al. 2021, "Denoising Diffusion Implicit
/// Models", arXiv:2010.02502, Eq. 12 with sigma_t = 0):
/// x_prev = sqrt(a_prev) x0 + sqrt(1 - a_prev) eps, x0 = (x - sqrt(1 - a_t) eps) / sqrt(a_t).
class DdimScheduler : public Scheduler {
 public:
  explicit DdimScheduler(const SchedulerConfig& config);
  void set_timesteps(int64_t num_inference_steps) override;
  double init_noise_sigma() const override { return 1.0; }
  at::Tensor scale_model_input(const at::Tensor& sample, int64_t step_index) const override;
  at::Tensor step(const at::Tensor& model_output, int64_t step_index, const at::Tensor& sample,
                  const at::Tensor& noise) const override;
  at::Tensor add_noise(const at::Tensor& original, const at::Tensor& noise, int64_t step_index) const override;

 private:
  /// alphabar at the start of step `step_index` (index n: after the last step).
  float alpha_prod(int64_t step_index) const;

  float final_alpha_cumprod_ = 1.0f;
};

/// DPM-Solver++ multistep (Lu et al. 2022, "DPM-Solver++: Fast Solver for
/// Guided Sampling of Diffusion Probabilistic Models", arXiv:2211.01095,
/// Alg. 2), as diffusers' DPMSolverMultistepScheduler with algorithm_type
/// dpmsolver++, solver_order 1 or 2, midpoint or heun, optional Karras sigmas
/// (Karras et al. 2022, Eq. 5, rho = 7).
///
/// Exception to the stateless contract: a second-order step i needs the data
/// prediction of step i - 1, which step() keeps (the last two steps' x0). So
/// the steps of one trajectory must run in order on one object (a step may
/// be repeated); step i > 0 without step i - 1 before it throws. One
/// scheduler per trajectory, as InstructPix2Pix::denoise makes it.
class DpmSolverScheduler : public Scheduler {
 public:
  DpmSolverScheduler(const SchedulerConfig& config, bool force_karras);
  void set_timesteps(int64_t num_inference_steps) override;
  double init_noise_sigma() const override { return 1.0; }
  at::Tensor scale_model_input(const at::Tensor& sample, int64_t step_index) const override;
  at::Tensor step(const at::Tensor& model_output, int64_t step_index, const at::Tensor& sample,
                  const at::Tensor& noise) const override;
  at::Tensor add_noise(const at::Tensor& original, const at::Tensor& noise, int64_t step_index) const override;
  /// sigma of each step, then the final one: num_inference_steps() + 1 values, fp32 CPU.
  const at::Tensor& sigmas() const { return sigmas_; }
  bool karras() const { return karras_; }

 private:
  bool karras_;
  at::Tensor sigmas_;
  // (step index, data prediction x0) of the latest two steps run.
  mutable std::vector<std::pair<int64_t, at::Tensor>> history_;
};

/// The scheduler of `kind` for `config`. An unsupported setting (beta
/// schedule, prediction type, spacing, interpolation, Karras sigmas, ...)
/// throws ModelError naming the setting, its value and config.source.
std::unique_ptr<Scheduler> make_scheduler(SchedulerKind kind, const SchedulerConfig& config);

}  // namespace via::model
