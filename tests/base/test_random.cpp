// The seeds of base/random.h are those every earlier render drew from: each
// value below was computed by the code that derived it before base/random.h
// existed (make_noise, finetune.cpp, lora.cpp, augment.cpp, render.cpp,
// settings.cpp). A change here changes the output of every render.
#include <gtest/gtest.h>

#include "base/random.h"

namespace seeds = via::random;

TEST(Random, NoiseStreamsAreThoseOfEarlierRenders) {
  EXPECT_EQ(seeds::noise_seed(42, 7, 3), 0xf55e4254d4655539ULL);
  EXPECT_EQ(seeds::noise_seed(0, -1, seeds::kInitialNoiseStep), 0x66698ca2f49cfee7ULL);
  EXPECT_EQ(seeds::noise_seed(5, 3, seeds::kMaskNoiseStep + 2), 0x2b1ac33afeca60c6ULL);
  EXPECT_EQ(seeds::candidate_seed(42, 3), 45u);
}

TEST(Random, AdaptationStreamsAreThoseOfEarlierRenders) {
  EXPECT_EQ(seeds::finetune_seed(42, 5), 0x88292e6e5540c33aULL);
  EXPECT_EQ(seeds::lora_init_seed(42, 3, 2), 0xeaa5c89fd05ab3eeULL);
  EXPECT_EQ(seeds::augment_seed(42, 9), 0xc985ec399836b4e9ULL);
  EXPECT_EQ(seeds::root_frame(42, 100), 13);
  EXPECT_EQ(seeds::root_frame(0, 7), 2);
}

TEST(Random, Fnv1aIsTheSettingsHashOfEarlierWorkDirectories) {
  EXPECT_EQ(seeds::fnv1a("via render"), 0xc5f140c235c87951ULL);
}

TEST(Random, StreamsOfOnePurposeDifferInEveryCoordinate) {
  const uint64_t s = seeds::noise_seed(1, 2, 3);
  EXPECT_NE(seeds::noise_seed(2, 2, 3), s);
  EXPECT_NE(seeds::noise_seed(1, 3, 3), s);
  EXPECT_NE(seeds::noise_seed(1, 2, 4), s);
  EXPECT_NE(seeds::finetune_seed(1, 2), seeds::mix_chain(1, 2)) << "fine-tuning has its own domain";
}
