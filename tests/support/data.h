#pragma once
// Where the tests' data is: in the source tree, found through VIA_SOURCE_DIR
// (CTest sets it; "." otherwise).
#include <cstdlib>
#include <string>

namespace via::test {

inline std::string source_dir() {
  const char* root = std::getenv("VIA_SOURCE_DIR");
  return root ? root : ".";
}

/// tests/reference/data/<rel>: the tiny model, goldens, model forms.
inline std::string reference_data(const std::string& rel = "") {
  return source_dir() + "/tests/reference/data" + (rel.empty() ? "" : "/" + rel);
}

/// The tiny random InstructPix2Pix in the diffusers layout (its goldens come
/// from diffusers on the same weights).
inline std::string tiny_model_dir() { return reference_data("tiny_ip2p"); }

}  // namespace via::test
