#pragma once
// Root-frame candidates for test-time editing adaptation (docs/ARCHITECTURE.md §4): the
// root frame edited with K seeds, a contact sheet of them for a person to
// pick from (a uint8 tensor; the caller writes it, e.g. rank/render.cpp as
// candidates.png), and the choice of the root pair (source, edit) the
// fine-tuning learns from. Compute only: no file is read or written here.
//
// Seeds. Candidate k (0-based) is the root frame edited with seed
//     seed_k = seed + k   (mod 2^64)
// through make_noise(shape, seed_k, frame, step): step -1 for the initial
// latent noise, step i for the ancestral noise of step i. So candidate 0 is
// exactly the plain edit of the root frame with the render's own seed, and
// candidate k can be reproduced alone with `--seed seed+k`.
//
// Automatic choice (a heuristic, stated as such). The paper picks the root
// edit by hand and names that as its limitation. Without --root-seed we pick
// the candidate that edits most strongly where the candidates agree an edit
// belongs, and least elsewhere: with d_k the per-pixel change of candidate k
// from the root frame (mean absolute difference over channels) and w the
// candidates' per-pixel (lower) median of d scaled to [0, 1],
//     score_k = sum(w d_k) / sum(w) - sum((1 - w) d_k) / sum(1 - w)
// and the highest score wins (ties: the lowest index). Why: an ambiguous
// instruction's candidates fall into modes; a sample hedged between them (a
// pale colour between two palette colours) edits the agreed region weakly,
// and a broken one (a stray blob) changes pixels no other candidate touches.
// The most typical candidate (the medoid, the rule before) tends to be the
// hedged one; the plain strongest edit (largest change anywhere) took a
// broken one. On the toy model's "paint the shapes", the shapes' colour's
// distance to the nearest palette colour of the chosen candidate (lower is
// better): 24 held-out stills x 4 candidates: medoid 0.102, a random
// candidate 0.088, this score 0.093; the six benchmark videos' root
// candidates: medoid 0.108 (worst 0.21), random 0.089, this score 0.070
// (worst 0.10), where the strongest edit of the typical ones chose the blob.
#include <ATen/core/Tensor.h>

#include <cstdint>
#include <string>
#include <vector>

#include "base/random.h"
#include "model/pipeline.h"

namespace via::adapt {

/// How the root frame's candidates are made and chosen.
struct RootSettings {
  model::DenoiseSettings denoise;
  uint64_t seed = 0;
  int64_t frame = 0;        ///< the root frame's index in the video (part of the noise stream)
  int64_t candidates = 4;   ///< K >= 1
  int64_t root_seed = -1;   ///< the chosen candidate's index k (manual choice); -1: the automatic rule
  model::StepHook on_step;  ///< runs after every denoising step of every candidate (a stop check)
};

/// The seed candidate k is edited with: seed + k (wrapping; base/random.h).
using random::candidate_seed;

/// The K edits of the root frame: decoded images, and the latents they were
/// decoded from.
struct Candidates {
  at::Tensor images;   ///< [K, 3, H, W] fp32 in [0, 1] on the CPU
  at::Tensor latents;  ///< [K, C, h, w] fp32 on the CPU, scaled (what denoise returns, decode takes)
};

/// The root frame `source` ([1, 3, H, W] in [0, 1]) edited with each of the
/// K candidate seeds, one edit at a time (so candidate k does not depend on
/// K).
Candidates edit_candidates(const model::InstructPix2Pix& model, const at::Tensor& source,
                           const model::TextEmbeddings& text, const RootSettings& settings);

/// Per candidate ([K, 3, H, W]), the automatic choice's score against the
/// root frame `source` ([1, 3, H, W]): see above. Higher is better.
std::vector<double> edit_scores(const at::Tensor& source, const at::Tensor& candidates);

/// The chosen root pair.
struct RootPair {
  int64_t index = 0;           ///< the chosen candidate k
  uint64_t seed = 0;           ///< candidate_seed(seed, index)
  bool automatic = false;      ///< true when the automatic rule chose it
  at::Tensor source;           ///< [1, 3, H, W] the root frame
  at::Tensor edit;             ///< [1, 3, H, W] candidate `index`
  /// [1, C, h, w] candidate `index`'s own latent (make_root_pair only). The
  /// fine-tuning learns this, not a re-encoding of `edit`: every VAE round
  /// trip washes colours out (on the toy model one trip moves a palette
  /// colour 0.06 away, and the tuned model then paints the paler colour).
  at::Tensor edit_latent;
  std::vector<double> scores;  ///< edit_scores of all candidates (also for a manual choice)
  at::Tensor candidates;       ///< [K, 3, H, W] every candidate (make_root_pair; for the contact sheet)
};

/// Chooses among `candidates` ([K, 3, H, W] images): settings.root_seed when
/// it is >= 0 (std::invalid_argument when it is not < K), else the
/// automatic rule.
RootPair choose_root(const at::Tensor& source, const at::Tensor& candidates, const RootSettings& settings);

/// edit_candidates and choose_root: the whole of steps a-b of
/// docs/ARCHITECTURE.md §1. The pair keeps every candidate (`candidates`)
/// for the caller's contact sheet.
RootPair make_root_pair(const model::InstructPix2Pix& model, const at::Tensor& source,
                        const model::TextEmbeddings& text, const RootSettings& settings);

/// The contact sheet: a label band on top, then the source and the K
/// candidates left to right, kContactSheetGap black columns between tiles.
/// The source is labelled "S" and candidate k with the number k. Returns
/// uint8 [kContactSheetLabel + H, (K + 1) W + K kContactSheetGap, 3].
at::Tensor contact_sheet(const at::Tensor& source, const at::Tensor& candidates);
inline constexpr int64_t kContactSheetGap = 4;
inline constexpr int64_t kContactSheetLabel = 14;

}  // namespace via::adapt
