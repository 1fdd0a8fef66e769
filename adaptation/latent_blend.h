#pragma once
// Local latent adaptation (docs/ARCHITECTURE.md §6): after every denoising step the
// generated latent is blended with the source latent noised to the same
// step, through a mask whose edge is feathered and whose pinning weight
// ramps up over the steps (progressive boundary integration).
//
// The exact formula. Let M ∈ [0,1] be the user's mask at latent resolution
// (1 = edit here), M_f = feather(M) its Gaussian-blurred version, N the number
// of steps and i = 0..N-1 the step just taken. Then
//     w_i = (i + 1) / N                          (ramps linearly to 1)
//     M_i = 1 − w_i · (1 − M_f)
//     z  ← M_i ⊙ z + (1 − M_i) ⊙ z_src(t_{i+1})
// where z_src(t) is the source image's latent noised to the noise level of
// the next timestep (clean at the end). Early steps leave the edit free to
// form everywhere; at the last step M_i = M_f, so outside the mask the latent
// IS the source latent, and the feathered band keeps the boundary seamless.
#include <ATen/core/Tensor.h>

#include <cstdint>

namespace via::adapt {

/// Area-averages a mask image [1, 1, H, W] (values in [0, 1]) down to the
/// latent grid [1, 1, h, w].
at::Tensor mask_to_latent_grid(const at::Tensor& mask, int64_t h, int64_t w);

/// Gaussian blur with standard deviation `sigma` latent pixels (0: unchanged),
/// borders replicated; the result stays in [0, 1].
at::Tensor feather_mask(const at::Tensor& mask, double sigma);

/// M_i of the formula above for step i of num_steps.
at::Tensor step_mask(const at::Tensor& feathered, int64_t step, int64_t num_steps);

/// z ← M ⊙ z + (1 − M) ⊙ z_src, broadcasting M over channels and batch.
at::Tensor blend_latents(const at::Tensor& z, const at::Tensor& z_src, const at::Tensor& m);

}  // namespace via::adapt
