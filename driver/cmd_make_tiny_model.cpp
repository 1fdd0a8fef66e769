// `via make-tiny-model`: a small random InstructPix2Pix model for tests and demos.
#include <cstdint>
#include <cstdio>
#include <string>

#include "driver/options.h"
#include "model/tiny_model.h"

namespace via::driver {

int cmd_make_tiny_model(const Args& args) {
  std::string out;
  uint64_t seed = 0;
  po::options_description desc("options");
  desc.add_options()
      ("out", po::value(&out)->required(), "folder to write (created; an earlier model there is replaced)")
      ("seed", po::value(&seed)->default_value(0), "seed of the random weights (same seed, same files)");
  if (!parse_options("via make-tiny-model --out DIR [--seed S]\n\n"
                     "Writes a small random InstructPix2Pix model in the diffusers folder layout\n"
                     "(configs, tokenizer files, safetensors weights). Its edits are meaningless\n"
                     "but fast: for tests and for trying via without downloading a model.",
                     desc, args))
    return 0;
  model::write_tiny_model(out, seed);
  std::printf("wrote a tiny random InstructPix2Pix model to %s (seed %llu)\n", out.c_str(),
              static_cast<unsigned long long>(seed));
  return 0;
}

}  // namespace via::driver
