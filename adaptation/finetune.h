#pragma once
// Test-time fine-tuning of the UNet on one edit (docs/ARCHITECTURE.md §4) with the
// model's own objective, InstructPix2Pix training (Brooks et al. 2023,
// "InstructPix2Pix: Learning to Follow Image Editing Instructions",
// arXiv:2211.09800; diffusers examples/instruct_pix2pix/
// train_instruct_pix2pix.py). One iteration, for each row of the batch:
//
//   pair k          uniform over the tuning set
//   z  = (mu_edit + sigma_edit * n) * scaling_factor   VAE posterior SAMPLE of the edit
//   c  = mode of the source's posterior, unscaled        (as encode_image conditions)
//   t  ~ U{0, ..., num_train_timesteps - 1},  eps ~ N(0, I)
//   x_t = sqrt(abar_t) z + sqrt(1 - abar_t) eps          (DDPM forward process)
//   u ~ U[0, 1), p = conditioning_dropout:
//     text -> "" embedding   when u < 2p
//     c    -> 0              when p <= u < 3p            (the reference's masking rule)
//   loss = mean((UNet(cat(x_t, c), t, text) - target)^2) in fp32,
//   target = eps (epsilon prediction) or sqrt(abar_t) eps - sqrt(1 - abar_t) z (v prediction)
//
// and an AdamW step on the trained parameters (gradients clipped to a
// global norm). Every random draw of iteration i (pair, posterior noise, t,
// eps, u) comes from one CPU generator seeded by (seed, i), so a run is
// reproducible and iteration i does not depend on the ones before it.
//
// Full mode trains the UNet's own parameters in the model's dtype; its
// "adapter" is the whole UNet state (hundreds of MB to several GB for a
// full-size model), so broadcasting it is far heavier than a LoRA adapter.
#include <ATen/core/Tensor.h>

#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "adaptation/augment.h"
#include "adaptation/lora.h"
#include "adaptation/modes.h"
#include "model/pipeline.h"

namespace via::adapt {

/// One (source, edit) training pair; both [1, 3, H, W] in [0, 1], aligned.
struct TuningPair {
  at::Tensor source;
  at::Tensor edit;
  /// [1, C, h, w] the edit's own latent under the same transform (scaled, as
  /// denoise returns it), or undefined: then the VAE encodes `edit`.
  at::Tensor edit_latent;
  AffineParams transform;  ///< how both were made from the root pair
};

/// `count` pairs: pair i is sample_affine(seed, i, limits) applied to source
/// and edit together (one apply_affine call on the stacked pair, so they stay
/// aligned). source and edit: [1, 3, H, W] float images of one shape.
/// `edit_latent` ([1, C, h, w], optional): the edit's own latent, warped by
/// the same transform (apply_affine works in normalised coordinates, so the
/// latent and the image move alike) and learned instead of a re-encoding of
/// the warped edit (root.h: a VAE round trip washes colours out).
/// count 0: one pair, the root pair itself, unwarped. Every warp resamples
/// (bilinear), and the tuned model learns the softness: on the toy model,
/// full fine-tuning on 10 affine copies left the render 2.5 dB further from
/// the source outside the shapes and the shapes' colour paler (0.13-0.16
/// from the palette colour against 0.11-0.13) than on the root pair alone
/// (3 training seeds each; tests/data/toy_ip2p/README.md).
/// Throws std::invalid_argument for mismatched shapes or count < 0.
std::vector<TuningPair> make_tuning_set(const at::Tensor& source, const at::Tensor& edit, int64_t count,
                                        uint64_t seed, const at::Tensor& edit_latent = {},
                                        const AffineLimits& limits = {});

/// Settings of one fine-tuning run. Defaults follow the reference training
/// script (AdamW betas 0.9 / 0.999, eps 1e-8, weight decay 1e-2, gradient
/// norm clipped to 1, conditioning dropout 0.05) except the learning rate
/// (1e-4, for LoRA).
struct FinetuneOptions {
  FinetuneMode mode = FinetuneMode::Lora;
  int64_t steps = 100;         ///< optimizer steps
  int64_t batch_size = 1;      ///< rows per step, each with its own pair, t, noise and dropout
  double learning_rate = 1e-4;
  double weight_decay = 1e-2;
  double adam_beta1 = 0.9;
  double adam_beta2 = 0.999;
  double adam_eps = 1e-8;
  double conditioning_dropout = 0.05;  ///< p in [0, 1/3]
  double max_grad_norm = 1.0;          ///< clip the gradients' global L2 norm to this; <= 0: no clipping
  uint64_t seed = 0;
};

/// The tuning set as the UNet sees it, computed once without gradients:
/// fp32 on the model's device, [T, C, h, w] each.
struct TuningLatents {
  at::Tensor edit_mean;    ///< posterior mean of each edit, unscaled
  at::Tensor edit_std;     ///< posterior std of each edit, unscaled
  at::Tensor source;       ///< posterior mode of each source, unscaled (the conditioning)
  at::Tensor text;         ///< [1, 77, D] the instruction, model dtype
  at::Tensor null_text;    ///< [1, 77, D] the "" embedding, model dtype
  double scaling_factor = 1.0;
  int64_t size() const { return source.defined() ? source.size(0) : 0; }
};

/// Encodes every pair with the model's VAE (no gradients) and keeps the text
/// embeddings. A pair with an `edit_latent` takes it as the edit's posterior
/// mean, with zero spread. Throws std::invalid_argument for an empty set or images the
/// VAE cannot take (sizes not a multiple of its factor).
TuningLatents encode_tuning_set(const model::InstructPix2Pix& model, const std::vector<TuningPair>& pairs,
                                const model::TextEmbeddings& text);

/// Told after every optimizer step.
struct StepReport {
  int64_t step;       ///< 0-based
  int64_t steps;      ///< total
  double loss;        ///< the step's training loss (before the update)
  double seconds;     ///< since the run started
};
using StepCallback = std::function<void(const StepReport&)>;

/// What a run leaves.
struct FinetuneResult {
  FinetuneMode mode = FinetuneMode::Off;
  std::vector<double> losses;  ///< per step
  double seconds = 0.0;
  /// The weights to store or broadcast: lora: the adapter's tensors (clones);
  /// full: every parameter and buffer of the UNet by checkpoint name (clones);
  /// off: empty. Apply with LoraAdapter::load_named / load_unet_state.
  std::map<std::string, at::Tensor> weights;
};

/// Runs options.steps steps of the objective above on model.unet().
///   lora: trains `adapter`'s tensors; it must be attached to model.unet().
///         The UNet's parameters are frozen (requires_grad false) during the
///         run and restored after; they are never written.
///   full: trains every UNet parameter in place, in the model's dtype
///         (`adapter` must be null).
///   off:  returns at once.
/// The UNet is in training mode during the run and returns to its previous
/// mode. Throws std::invalid_argument for inconsistent settings.
FinetuneResult finetune(const model::InstructPix2Pix& model, const TuningLatents& data,
                        const FinetuneOptions& options, LoraAdapter* adapter, const StepCallback& on_step = {});

/// The objective's mean over a fixed evaluation batch, with the current
/// weights and no gradients: draws 0..count-1 of generator seed `seed`,
/// conditioning dropout off. Same draws every call, so values before and
/// after training compare the same noise, timesteps and pairs.
double evaluate_loss(const model::InstructPix2Pix& model, const TuningLatents& data, uint64_t seed,
                     int64_t count);

/// Copies a full-mode result (every parameter and buffer by name) into
/// `unet` in place. The names and shapes must match exactly; otherwise
/// std::invalid_argument naming the tensor, and nothing is changed.
void load_unet_state(model::UNet2DConditionModelImpl& unet, const std::map<std::string, at::Tensor>& state);

}  // namespace via::adapt
