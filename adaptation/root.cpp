#include "adaptation/root.h"

#include <ATen/ATen.h>

#include <algorithm>
#include <stdexcept>

#include "base/random.h"

namespace via::adapt {
namespace {

void check_images(const at::Tensor& t, const char* what, bool single) {
  if (!t.defined() || t.dim() != 4 || t.size(1) != 3 || !at::isFloatingType(t.scalar_type()) ||
      (single && t.size(0) != 1))
    throw std::invalid_argument(std::string(what) + ": expected float images [" + (single ? "1" : "N") +
                                ", 3, H, W] in [0, 1], got " +
                                (t.defined() ? c10::str(t.scalar_type(), " ", t.sizes()) : std::string("none")));
}

// A 3x5 bitmap font for the labels: one row per string, '#' lit.
const char* const* glyph(char c) {
  static const char* const digits[10][5] = {
      {"###", "#.#", "#.#", "#.#", "###"}, {".#.", "##.", ".#.", ".#.", "###"}, {"###", "..#", "###", "#..", "###"},
      {"###", "..#", "###", "..#", "###"}, {"#.#", "#.#", "###", "..#", "..#"}, {"###", "#..", "###", "..#", "###"},
      {"###", "#..", "###", "#.#", "###"}, {"###", "..#", "..#", "..#", "..#"}, {"###", "#.#", "###", "#.#", "###"},
      {"###", "#.#", "###", "..#", "###"}};
  static const char* const letter_s[5] = {"###", "#..", "###", "..#", "###"};
  if (c >= '0' && c <= '9') return digits[c - '0'];
  return letter_s;
}

// Draws `text` in white at (x0, y0) of an RGB byte image, each font pixel a
// 2x2 block; clipped to [x0, x_end).
void draw_label(at::Tensor& sheet, const std::string& text, int64_t x0, int64_t y0, int64_t x_end) {
  constexpr int64_t scale = 2, advance = 4 * scale;
  auto px = sheet.accessor<uint8_t, 3>();
  for (size_t i = 0; i < text.size(); ++i) {
    const char* const* g = glyph(text[i]);
    for (int64_t r = 0; r < 5; ++r)
      for (int64_t c = 0; c < 3; ++c) {
        if (g[r][c] != '#') continue;
        for (int64_t dy = 0; dy < scale; ++dy)
          for (int64_t dx = 0; dx < scale; ++dx) {
            const int64_t x = x0 + static_cast<int64_t>(i) * advance + c * scale + dx, y = y0 + r * scale + dy;
            if (x >= x_end || y >= sheet.size(0)) continue;
            for (int ch = 0; ch < 3; ++ch) px[y][x][ch] = 255;
          }
      }
  }
}

}  // namespace


Candidates edit_candidates(const model::InstructPix2Pix& model, const at::Tensor& source,
                           const model::TextEmbeddings& text, const RootSettings& settings) {
  check_images(source, "root frame", true);
  if (settings.candidates < 1)
    throw std::invalid_argument("the number of root candidates must be at least 1, got " +
                                std::to_string(settings.candidates));
  const at::Tensor latents = model.encode_image(source);
  std::vector<at::Tensor> edits, edit_latents;
  for (int64_t k = 0; k < settings.candidates; ++k) {
    const uint64_t seed = random::candidate_seed(settings.seed, k);
    const at::Tensor noise = model::make_noise(latents.sizes(), seed, settings.frame, random::kInitialNoiseStep);
    const at::Tensor out = model.denoise(latents, text, noise, settings.denoise, nullptr, settings.on_step,
                                         model::frame_noise(seed, {settings.frame}));
    edits.push_back(model.decode(out).to(at::kCPU));
    edit_latents.push_back(out.to(at::kCPU, at::kFloat));
  }
  return {at::cat(edits, 0), at::cat(edit_latents, 0)};
}

std::vector<double> edit_scores(const at::Tensor& source, const at::Tensor& candidates) {
  check_images(source, "root frame", true);
  check_images(candidates, "root candidates", false);
  if (source.sizes().slice(2) != candidates.sizes().slice(2))
    throw std::invalid_argument("root candidates " + c10::str(candidates.sizes()) + " and root frame " +
                                c10::str(source.sizes()) + " differ in size");
  const int64_t k = candidates.size(0);
  // per candidate and pixel, the change from the root frame: [K, H, W]
  const at::Tensor d = (candidates.to(at::kCPU, at::kDouble) - source.to(at::kCPU, at::kDouble)).abs().mean(1);
  // where the candidates agree an edit belongs: their median change, scaled to [0, 1]
  at::Tensor w = std::get<0>(d.median(0));
  const double top = w.max().item<double>();
  if (top <= 0.0) return std::vector<double>(static_cast<size_t>(k), 0.0);  // nothing edited anywhere
  w = w / top;
  const at::Tensor inside = (d * w).sum({1, 2}) / w.sum().clamp_min(1e-12);
  const at::Tensor outside = (d * (1.0 - w)).sum({1, 2}) / (1.0 - w).sum().clamp_min(1e-12);
  const at::Tensor score = (inside - outside).contiguous();
  return std::vector<double>(score.data_ptr<double>(), score.data_ptr<double>() + k);
}

RootPair choose_root(const at::Tensor& source, const at::Tensor& candidates, const RootSettings& settings) {
  check_images(source, "root frame", true);
  check_images(candidates, "root candidates", false);
  const int64_t k = candidates.size(0);
  RootPair pair;
  pair.scores = edit_scores(source, candidates);
  if (settings.root_seed >= 0) {
    if (settings.root_seed >= k)
      throw std::invalid_argument("--root-seed " + std::to_string(settings.root_seed) + " names no candidate: there are " +
                                  std::to_string(k) + " (0.." + std::to_string(k - 1) + ")");
    pair.index = settings.root_seed;
  } else {
    pair.index = std::max_element(pair.scores.begin(), pair.scores.end()) - pair.scores.begin();  // first of equals
    pair.automatic = true;
  }
  pair.seed = random::candidate_seed(settings.seed, pair.index);
  pair.source = source;
  pair.edit = candidates.narrow(0, pair.index, 1);
  return pair;
}

RootPair make_root_pair(const model::InstructPix2Pix& model, const at::Tensor& source,
                        const model::TextEmbeddings& text, const RootSettings& settings) {
  if (settings.root_seed >= settings.candidates)  // fail before the edits, not after
    throw std::invalid_argument("--root-seed " + std::to_string(settings.root_seed) + " names no candidate: there are " +
                                std::to_string(settings.candidates) + " (0.." + std::to_string(settings.candidates - 1) +
                                ")");
  const Candidates candidates = edit_candidates(model, source, text, settings);
  RootPair pair = choose_root(source.to(at::kCPU, at::kFloat), candidates.images, settings);
  pair.candidates = candidates.images;
  pair.edit_latent = candidates.latents.narrow(0, pair.index, 1);
  return pair;
}

at::Tensor contact_sheet(const at::Tensor& source, const at::Tensor& candidates) {
  check_images(source, "contact sheet source", true);
  check_images(candidates, "contact sheet candidates", false);
  if (source.sizes().slice(2) != candidates.sizes().slice(2))
    throw std::invalid_argument("contact sheet: source " + c10::str(source.sizes()) + " and candidates " +
                                c10::str(candidates.sizes()) + " differ in size");
  const int64_t k = candidates.size(0), h = source.size(2), w = source.size(3);
  const at::Tensor tiles = model::image_to_rgb8(at::cat({source.to(at::kCPU, at::kFloat),
                                                         candidates.to(at::kCPU, at::kFloat)}, 0));  // [K+1, H, W, 3]
  at::Tensor sheet = at::zeros({kContactSheetLabel + h, (k + 1) * w + k * kContactSheetGap, 3}, at::kByte);
  for (int64_t i = 0; i <= k; ++i) {
    const int64_t x0 = i * (w + kContactSheetGap);
    sheet.narrow(0, kContactSheetLabel, h).narrow(1, x0, w).copy_(tiles[i]);
    draw_label(sheet, i == 0 ? "S" : std::to_string(i - 1), x0 + 2, 2, x0 + w);
  }
  return sheet;
}

}  // namespace via::adapt
