// Root-frame candidates: seeds, the automatic choice, the manual choice and the
// contact sheet, on the reference's tiny model.
#include "adaptation/root.h"

#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <string>
#include <vector>

#include "tests/support/tiny_model.h"

using namespace via;
using via::test::tiny_model;
using adapt::RootSettings;

namespace {

const model::TextEmbeddings& text() {
  static const model::TextEmbeddings t = tiny_model().encode_instruction("turn it into a pencil sketch");
  return t;
}

// A smooth 32x48 test picture (gradients), [1, 3, 32, 48] in [0, 1].
at::Tensor root_frame() {
  const at::Tensor y = at::linspace(0, 1, 32).view({1, 1, 32, 1}), x = at::linspace(0, 1, 48).view({1, 1, 1, 48});
  const auto full = [](const at::Tensor& t) { return t.expand({1, 1, 32, 48}); };
  return at::cat({full(y * x), full(0.5 * y + 0.25), full(1 - x * 0.8)}, 1).contiguous();
}

RootSettings settings(int64_t k) {
  RootSettings s;
  s.denoise.steps = 4;
  s.seed = 11;
  s.frame = 5;
  s.candidates = k;
  return s;
}

double mean_abs_diff(const at::Tensor& a, const at::Tensor& b) { return (a - b).abs().mean().item<double>(); }

}  // namespace

TEST(RootCandidates, DifferBetweenSeedsAndRepeatForTheSameSeed) {
  const adapt::Candidates ca = adapt::edit_candidates(tiny_model(), root_frame(), text(), settings(3));
  const at::Tensor& a = ca.images;
  ASSERT_EQ(a.sizes(), (std::vector<int64_t>{3, 3, 32, 48}));
  // the images are the latents decoded
  EXPECT_TRUE(at::allclose(a, tiny_model().decode(ca.latents), 1e-5, 1e-5));
  EXPECT_GE(a.min().item<double>(), 0.0);
  EXPECT_LE(a.max().item<double>(), 1.0);
  for (int i = 0; i < 3; ++i)
    for (int j = i + 1; j < 3; ++j) EXPECT_GT(mean_abs_diff(a[i], a[j]), 1e-3) << "candidates " << i << ", " << j;
  const adapt::Candidates b = adapt::edit_candidates(tiny_model(), root_frame(), text(), settings(3));
  EXPECT_TRUE(at::equal(a, b.images) && at::equal(ca.latents, b.latents)) << "same seed, same candidates";
}

TEST(RootCandidates, CandidateKIsTheEditWithSeedPlusK) {
  const at::Tensor all = adapt::edit_candidates(tiny_model(), root_frame(), text(), settings(3)).images;
  RootSettings alone = settings(1);
  alone.seed = adapt::candidate_seed(settings(3).seed, 2);
  EXPECT_EQ(alone.seed, 13u);
  const at::Tensor one = adapt::edit_candidates(tiny_model(), root_frame(), text(), alone).images;
  EXPECT_TRUE(at::equal(one[0], all[2])) << "candidate 2 does not depend on K or on the other candidates";
}

// Flat 8x8 frames: the source is 0; an edit paints the 4x4 "shape" in the
// top-left corner with `inside` and adds `blob` to a 2x2 patch elsewhere.
at::Tensor flat_edit(double inside, double blob = 0.0) {
  at::Tensor img = at::zeros({1, 3, 8, 8});
  img.narrow(2, 0, 4).narrow(3, 0, 4).fill_(inside);
  img.narrow(2, 6, 2).narrow(3, 6, 2).fill_(blob);
  return img;
}

TEST(RootChoice, ScoresTheEditWhereTheCandidatesAgreeMinusTheRest) {
  const at::Tensor source = at::zeros({1, 3, 8, 8});
  // a full edit, a hedged one (half as strong), and a full one with a stray blob
  const at::Tensor cands = at::cat({flat_edit(0.5), flat_edit(0.25), flat_edit(0.5, 1.0)}, 0);
  const std::vector<double> scores = adapt::edit_scores(source, cands);
  ASSERT_EQ(scores.size(), 3u);
  // median change: 0.5 inside the shape, 0 elsewhere (the blob is one
  // candidate's alone), so w is 1 on the shape and 0 elsewhere
  EXPECT_NEAR(scores[0], 0.5, 1e-12);
  EXPECT_NEAR(scores[1], 0.25, 1e-12);
  EXPECT_NEAR(scores[2], 0.5 - 4.0 / 48.0, 1e-12);
  RootSettings s = settings(3);
  const adapt::RootPair pair = adapt::choose_root(source, cands, s);
  EXPECT_EQ(pair.index, 0);
  EXPECT_TRUE(pair.automatic);
  EXPECT_EQ(pair.seed, adapt::candidate_seed(s.seed, 0));
  EXPECT_TRUE(at::equal(pair.edit, cands.narrow(0, 0, 1)));
  EXPECT_TRUE(at::equal(pair.source, source));
  EXPECT_EQ(pair.scores, scores);

  // Wherever the full edit is, it wins over the hedged and the broken one.
  for (int64_t at_index = 0; at_index < 3; ++at_index) {
    std::vector<at::Tensor> c = {flat_edit(0.25), flat_edit(0.5, 1.0)};
    c.insert(c.begin() + at_index, flat_edit(0.5));
    EXPECT_EQ(adapt::choose_root(source, at::cat(c, 0), s).index, at_index);
  }
  // Ties go to the lowest index; an edit that changes nothing scores 0.
  EXPECT_EQ(adapt::choose_root(source, at::cat({flat_edit(0.5), flat_edit(0.5)}, 0), settings(2)).index, 0);
  EXPECT_EQ(adapt::edit_scores(source, at::cat({source, source}, 0)), (std::vector<double>{0.0, 0.0}));
  EXPECT_THROW(adapt::edit_scores(source, at::rand({2, 3, 8, 4})), std::invalid_argument);
}

TEST(RootChoice, ManualChoiceIsHonoured) {
  std::vector<at::Tensor> c;
  for (double v : {0.1, 0.4, 0.41, 0.42}) c.push_back(at::full({1, 3, 4, 4}, v));
  RootSettings s = settings(4);
  s.root_seed = 0;  // the outlier: a person may choose it
  const adapt::RootPair pair = adapt::choose_root(at::zeros({1, 3, 4, 4}), at::cat(c, 0), s);
  EXPECT_EQ(pair.index, 0);
  EXPECT_FALSE(pair.automatic);
  EXPECT_TRUE(at::equal(pair.edit, c[0]));
  EXPECT_EQ(pair.scores.size(), 4u);
  EXPECT_NE(std::max_element(pair.scores.begin(), pair.scores.end()) - pair.scores.begin(), 0);
  s.root_seed = 4;
  EXPECT_THROW(adapt::choose_root(at::zeros({1, 3, 4, 4}), at::cat(c, 0), s), std::invalid_argument);
}

TEST(RootContactSheet, HasTheSourceAndEveryCandidateLabelled) {
  const at::Tensor source = at::full({1, 3, 16, 24}, 0.5);
  const at::Tensor cands = at::rand({3, 3, 16, 24});
  const at::Tensor sheet = adapt::contact_sheet(source, cands);
  const int64_t gap = adapt::kContactSheetGap, band = adapt::kContactSheetLabel;
  ASSERT_EQ(sheet.sizes(), (std::vector<int64_t>{band + 16, 4 * 24 + 3 * gap, 3}));
  const at::Tensor tiles = model::image_to_rgb8(at::cat({source, cands}, 0));
  for (int64_t i = 0; i < 4; ++i) {
    const int64_t x0 = i * (24 + gap);
    EXPECT_TRUE(at::equal(sheet.narrow(0, band, 16).narrow(1, x0, 24), tiles[i])) << "tile " << i;
    EXPECT_GT(sheet.narrow(0, 0, band).narrow(1, x0, 24).max().item<int>(), 0) << "label of tile " << i;
  }
  // Labels differ: "S", "0", "1", "2".
  for (int64_t i = 0; i < 4; ++i)
    for (int64_t j = i + 1; j < 4; ++j)
      EXPECT_FALSE(at::equal(sheet.narrow(0, 0, band).narrow(1, i * (24 + gap), 24),
                             sheet.narrow(0, 0, band).narrow(1, j * (24 + gap), 24)));
  EXPECT_THROW(adapt::contact_sheet(source, at::rand({2, 3, 16, 20})), std::invalid_argument);
}

TEST(RootPair, EndToEndKeepsTheCandidatesAndChoosesAutomatically) {
  const adapt::RootPair pair = adapt::make_root_pair(tiny_model(), root_frame(), text(), settings(3));
  ASSERT_EQ(pair.scores.size(), 3u);
  EXPECT_TRUE(pair.automatic);
  EXPECT_EQ(pair.index, std::max_element(pair.scores.begin(), pair.scores.end()) - pair.scores.begin());
  const adapt::Candidates cands = adapt::edit_candidates(tiny_model(), root_frame(), text(), settings(3));
  EXPECT_TRUE(at::equal(pair.candidates, cands.images));
  EXPECT_TRUE(at::equal(pair.edit, cands.images.narrow(0, pair.index, 1)));
  EXPECT_TRUE(at::equal(pair.edit_latent, cands.latents.narrow(0, pair.index, 1)));
  EXPECT_EQ(pair.edit.sizes(), (std::vector<int64_t>{1, 3, 32, 48}));
  const at::Tensor sheet = adapt::contact_sheet(pair.source, pair.candidates);  // what render writes
  EXPECT_EQ(sheet.sizes(), (std::vector<int64_t>{32 + adapt::kContactSheetLabel, 4 * 48 + 3 * adapt::kContactSheetGap, 3}));

  RootSettings bad = settings(3);
  bad.root_seed = 3;
  EXPECT_THROW(adapt::make_root_pair(tiny_model(), root_frame(), text(), bad), std::invalid_argument);
}
