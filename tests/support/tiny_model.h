#pragma once
// The tiny model, loaded once per test binary (loading is the slow part).
#include "model/pipeline.h"
#include "tests/support/data.h"

namespace via::test {

inline const model::InstructPix2Pix& tiny_model() {
  static const model::InstructPix2Pix model(tiny_model_dir());
  return model;
}

}  // namespace via::test
