#include "adaptation/finetune.h"

#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>
#include <ATen/Parallel.h>
#include <c10/util/irange.h>
#include <torch/nn/utils/clip_grad.h>
#include <torch/optim/adamw.h>

#include <chrono>
#include <stdexcept>
#include <utility>

#include "base/random.h"

namespace via::adapt {

namespace {

// The generator of iteration `iteration` of a run seeded with `seed`.
at::Generator iteration_generator(uint64_t seed, int64_t iteration) {
  return at::detail::createCPUGenerator(random::finetune_seed(seed, iteration));
}

// The schedule and target the objective needs, read once per run.
struct Objective {
  at::Tensor alphas_cumprod;  // fp32 CPU [num_train_timesteps]
  bool v_prediction = false;
};

Objective make_objective(const model::InstructPix2Pix& model) {
  Objective o;
  // Every scheduler computes the same training schedule (betas -> alphabar).
  o.alphas_cumprod = model.make_scheduler(model.default_scheduler())->alphas_cumprod().to(at::kFloat);
  o.v_prediction = model.scheduler_config().prediction_type == "v_prediction";
  return o;
}

// The loss of one iteration (module docs in finetune.h), a fp32 scalar; with
// autograd when grad mode is on.
at::Tensor iteration_loss(model::UNet2DConditionModelImpl& unet, const TuningLatents& data, const Objective& obj,
                          uint64_t seed, int64_t iteration, int64_t batch, double dropout) {
  at::Generator gen = iteration_generator(seed, iteration);
  const auto fp32 = at::TensorOptions().dtype(at::kFloat);
  const auto latent_shape = data.source.sizes().slice(1);
  std::vector<int64_t> shape{batch};
  shape.insert(shape.end(), latent_shape.begin(), latent_shape.end());
  // Draw order is part of the reproducibility contract: pair, posterior noise, t, eps, u.
  const at::Tensor pick = at::randint(data.size(), {batch}, gen, at::TensorOptions().dtype(at::kLong));
  const at::Tensor posterior_noise = at::randn(shape, gen, fp32);
  const at::Tensor t = at::randint(obj.alphas_cumprod.size(0), {batch}, gen, at::TensorOptions().dtype(at::kLong));
  const at::Tensor eps_cpu = at::randn(shape, gen, fp32);
  const at::Tensor u = at::rand({batch}, gen, fp32);

  const c10::Device device = data.source.device();
  const at::Tensor idx = pick.to(device);
  const at::Tensor z = (data.edit_mean.index_select(0, idx) +
                        data.edit_std.index_select(0, idx) * posterior_noise.to(device)) *
                       data.scaling_factor;
  at::Tensor cond = data.source.index_select(0, idx);
  const at::Tensor eps = eps_cpu.to(device);
  const at::Tensor abar = obj.alphas_cumprod.index_select(0, t).to(device).view({batch, 1, 1, 1});
  const at::Tensor sqrt_abar = abar.sqrt(), sqrt_one_minus = (1.0 - abar).sqrt();
  const at::Tensor noisy = sqrt_abar * z + sqrt_one_minus * eps;

  // Conditioning dropout, the reference script's masks: text dropped for
  // u < 2p, image for p <= u < 3p (both for p <= u < 2p).
  at::Tensor text = data.text.expand({batch, -1, -1});
  if (dropout > 0.0) {
    const at::Tensor drop_text = (u < 2.0 * dropout).to(device).view({batch, 1, 1});
    text = at::where(drop_text, data.null_text.expand({batch, -1, -1}), text);
    const at::Tensor keep_image = 1.0 - ((u >= dropout).to(at::kFloat) * (u < 3.0 * dropout).to(at::kFloat));
    cond = cond * keep_image.to(device).view({batch, 1, 1, 1});
  }
  const at::Tensor pred = unet.forward(at::cat({noisy, cond}, 1), t.to(device), text).to(at::kFloat);
  const at::Tensor target = obj.v_prediction ? sqrt_abar * eps - sqrt_one_minus * z : eps;
  return (pred - target).pow(2).mean();
}

// Sets requires_grad on every UNet parameter for its lifetime, then restores it.
class RequiresGradScope {
 public:
  RequiresGradScope(model::UNet2DConditionModelImpl& unet, bool value) {
    for (auto& p : unet.parameters()) {
      saved_.emplace_back(p, p.requires_grad());
      p.set_requires_grad(value);
    }
  }
  ~RequiresGradScope() {
    for (auto& [p, flag] : saved_) p.set_requires_grad(flag);
  }
  RequiresGradScope(const RequiresGradScope&) = delete;
  RequiresGradScope& operator=(const RequiresGradScope&) = delete;

 private:
  std::vector<std::pair<at::Tensor, bool>> saved_;
};

// Puts the UNet in training mode for its lifetime.
class TrainModeScope {
 public:
  explicit TrainModeScope(model::UNet2DConditionModelImpl& unet) : unet_(unet), was_training_(unet.is_training()) {
    unet_.train(true);
  }
  ~TrainModeScope() { unet_.train(was_training_); }
  TrainModeScope(const TrainModeScope&) = delete;
  TrainModeScope& operator=(const TrainModeScope&) = delete;

 private:
  model::UNet2DConditionModelImpl& unet_;
  bool was_training_;
};

std::map<std::string, at::Tensor> unet_state(const model::UNet2DConditionModelImpl& unet) {
  std::map<std::string, at::Tensor> out;
  for (const auto& item : unet.named_parameters()) out.emplace(item.key(), item.value().detach().clone());
  for (const auto& item : unet.named_buffers()) out.emplace(item.key(), item.value().detach().clone());
  return out;
}

}  // namespace

std::vector<TuningPair> make_tuning_set(const at::Tensor& source, const at::Tensor& edit, int64_t count,
                                        uint64_t seed, const at::Tensor& edit_latent, const AffineLimits& limits) {
  if (count < 0) throw std::invalid_argument("tuning set size must be >= 0, got " + std::to_string(count));
  if (source.dim() != 4 || source.size(0) != 1 || source.size(1) != 3 || !at::isFloatingType(source.scalar_type()))
    throw std::invalid_argument("tuning set: source must be a float image [1, 3, H, W], got " +
                                c10::str(source.sizes()));
  if (edit.sizes() != source.sizes())
    throw std::invalid_argument("tuning set: edit " + c10::str(edit.sizes()) + " and source " +
                                c10::str(source.sizes()) + " differ in shape");
  if (edit_latent.defined() && (edit_latent.dim() != 4 || edit_latent.size(0) != 1))
    throw std::invalid_argument("tuning set: the edit's latent must be [1, C, h, w], got " +
                                c10::str(edit_latent.sizes()));
  if (count == 0) return {TuningPair{source, edit.to(source.options()), edit_latent, AffineParams{}}};
  const at::Tensor both = at::cat({source, edit.to(source.options())}, 0);
  std::vector<TuningPair> pairs;
  pairs.reserve(static_cast<size_t>(count));
  for (const auto i : c10::irange(count)) {
    const AffineParams p = sample_affine(seed, i, limits);
    const at::Tensor out = apply_affine(both, p);
    const at::Tensor latent = edit_latent.defined() ? apply_affine(edit_latent, p).contiguous() : at::Tensor();
    pairs.push_back(TuningPair{out.narrow(0, 0, 1).contiguous(), out.narrow(0, 1, 1).contiguous(), latent, p});
  }
  return pairs;
}

FinetuneMode finetune_mode_from_name(const std::string& name) {
  if (name == "lora") return FinetuneMode::Lora;
  if (name == "full") return FinetuneMode::Full;
  if (name == "off") return FinetuneMode::Off;
  throw std::invalid_argument("unknown fine-tuning mode '" + name + "' (expected lora, full or off)");
}

std::string finetune_mode_name(FinetuneMode mode) {
  switch (mode) {
    case FinetuneMode::Lora:
      return "lora";
    case FinetuneMode::Full:
      return "full";
    case FinetuneMode::Off:
      return "off";
  }
  return "off";
}

TuningLatents encode_tuning_set(const model::InstructPix2Pix& model, const std::vector<TuningPair>& pairs,
                                const model::TextEmbeddings& text) {
  if (pairs.empty()) throw std::invalid_argument("tuning set is empty");
  if (!text.cond.defined() || !text.uncond.defined())
    throw std::invalid_argument("tuning set: text embeddings are missing");
  at::NoGradGuard no_grad;
  std::vector<at::Tensor> means, stds, sources;
  auto& vae = model.vae();
  for (const auto& pair : pairs) {
    if (!pair.edit.defined() || !pair.source.defined() || pair.edit.sizes() != pair.source.sizes())
      throw std::invalid_argument("tuning set: a pair's source and edit differ in shape");
    sources.push_back(model.encode_image(pair.source));  // validates the image; mode, unscaled
    if (pair.edit_latent.defined()) {
      if (pair.edit_latent.sizes() != sources.back().sizes())
        throw std::invalid_argument("tuning set: the edit's latent " + c10::str(pair.edit_latent.sizes()) +
                                    " does not match the source's " + c10::str(sources.back().sizes()));
      means.push_back(pair.edit_latent.to(model.options().device, at::kFloat) / vae->config().scaling_factor);
      stds.push_back(at::zeros_like(means.back()));
      continue;
    }
    const at::Tensor x = pair.edit.to(model.options().device, at::kFloat) * 2.0 - 1.0;
    const model::LatentDistribution dist = vae->encode(x);
    means.push_back(dist.mean.to(at::kFloat));
    stds.push_back(dist.std().to(at::kFloat));
  }
  TuningLatents out;
  out.edit_mean = at::cat(means, 0);
  out.edit_std = at::cat(stds, 0);
  out.source = at::cat(sources, 0);
  out.text = text.cond;
  out.null_text = text.uncond;
  out.scaling_factor = vae->config().scaling_factor;
  return out;
}

FinetuneResult finetune(const model::InstructPix2Pix& model, const TuningLatents& data,
                        const FinetuneOptions& options, LoraAdapter* adapter, const StepCallback& on_step) {
  FinetuneResult result;
  result.mode = options.mode;
  if (options.mode == FinetuneMode::Off) return result;
  if (options.steps < 0) throw std::invalid_argument("fine-tuning steps must be >= 0");
  if (options.batch_size < 1) throw std::invalid_argument("fine-tuning batch size must be >= 1");
  if (!(options.learning_rate > 0.0)) throw std::invalid_argument("fine-tuning learning rate must be > 0");
  if (!(options.conditioning_dropout >= 0.0 && options.conditioning_dropout <= 1.0 / 3.0))
    throw std::invalid_argument("conditioning dropout must be in [0, 1/3]");
  if (data.size() < 1) throw std::invalid_argument("fine-tuning needs a non-empty tuning set");
  auto& unet = *model.unet();
  const bool lora = options.mode == FinetuneMode::Lora;
  if (lora && (adapter == nullptr || !adapter->attached_to(unet)))
    throw std::invalid_argument("LoRA fine-tuning needs an adapter attached to the model's UNet");
  if (!lora && adapter != nullptr) throw std::invalid_argument("full fine-tuning takes no LoRA adapter");

  const Objective obj = make_objective(model);
  // On the CPU, group norm's backward pass, layer norm's and oneDNN
  // convolutions' weight gradients and the sums of the loss and the gradient
  // norm give other bits for another intra-op thread count
  // (bench/thread_determinism.cpp); the adapter is made
  // once for every rank, so fine-tuning runs on one thread and its result
  // does not depend on --threads or on the number of ranks.
  struct OneThread {
    int previous = at::get_num_threads();
    bool on;
    explicit OneThread(bool on) : on(on) {
      if (on) at::set_num_threads(1);
    }
    ~OneThread() {
      if (on) at::set_num_threads(previous);
    }
  } one_thread(model.options().device.is_cpu());
  RequiresGradScope grad_scope(unet, /*value=*/!lora);
  TrainModeScope train_scope(unet);
  at::AutoGradMode grad_mode(true);
  std::vector<at::Tensor> params = lora ? adapter->parameters() : unet.parameters();
  torch::optim::AdamW optimizer(params, torch::optim::AdamWOptions(options.learning_rate)
                                            .betas({options.adam_beta1, options.adam_beta2})
                                            .eps(options.adam_eps)
                                            .weight_decay(options.weight_decay));
  const auto start = std::chrono::steady_clock::now();
  const auto elapsed = [&] { return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count(); };
  for (const auto step : c10::irange(options.steps)) {
    optimizer.zero_grad();
    const at::Tensor loss =
        iteration_loss(unet, data, obj, options.seed, step, options.batch_size, options.conditioning_dropout);
    loss.backward();
    if (options.max_grad_norm > 0.0) torch::nn::utils::clip_grad_norm_(params, options.max_grad_norm);
    optimizer.step();
    const double value = loss.item<double>();
    result.losses.push_back(value);
    if (on_step) on_step(StepReport{step, options.steps, value, elapsed()});
  }
  // Drop the gradients so the trained tensors hold no autograd memory.
  for (auto& p : params) p.mutable_grad() = at::Tensor();
  result.seconds = elapsed();
  if (lora) {
    for (const auto& [name, t] : adapter->named_tensors()) result.weights.emplace(name, t.detach().clone());
  } else {
    result.weights = unet_state(unet);
  }
  return result;
}

double evaluate_loss(const model::InstructPix2Pix& model, const TuningLatents& data, uint64_t seed, int64_t count) {
  if (count < 1) throw std::invalid_argument("evaluation needs at least one draw");
  if (data.size() < 1) throw std::invalid_argument("evaluation needs a non-empty tuning set");
  at::NoGradGuard no_grad;
  const Objective obj = make_objective(model);
  double sum = 0.0;
  for (const auto i : c10::irange(count))
    sum += iteration_loss(*model.unet(), data, obj, seed, i, /*batch=*/1, /*dropout=*/0.0).item<double>();
  return sum / static_cast<double>(count);
}

void load_unet_state(model::UNet2DConditionModelImpl& unet, const std::map<std::string, at::Tensor>& state) {
  std::map<std::string, at::Tensor> own;
  for (const auto& item : unet.named_parameters()) own.emplace(item.key(), item.value());
  for (const auto& item : unet.named_buffers()) own.emplace(item.key(), item.value());
  for (const auto& [name, t] : own) {
    const auto it = state.find(name);
    if (it == state.end()) throw std::invalid_argument("UNet state: tensor '" + name + "' is missing");
    if (!it->second.defined() || it->second.sizes() != t.sizes())
      throw std::invalid_argument("UNet state: tensor '" + name + "' has shape " +
                                  (it->second.defined() ? c10::str(it->second.sizes()) : std::string("(undefined)")) +
                                  ", expected " + c10::str(t.sizes()));
  }
  for (const auto& [name, t] : state)
    if (own.count(name) == 0) throw std::invalid_argument("UNet state: unexpected tensor '" + name + "'");
  at::NoGradGuard no_grad;
  for (auto& [name, t] : own) t.copy_(state.at(name));
}

}  // namespace via::adapt
