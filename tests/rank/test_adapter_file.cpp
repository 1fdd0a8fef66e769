// The LoRA adapter's file (rank/adapter_file.h) on the tiny reference model:
// save/load reproduces an edit bit for bit, the stored options read back, and
// a file of another adapter shape (or none) is refused.
#include "rank/adapter_file.h"

#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <map>
#include <string>

#include "io/checkpoint.h"
#include "model/pipeline.h"
#include "tests/support/lora.h"
#include "tests/support/tiny_model.h"

namespace fs = std::filesystem;
using namespace via;
using via::adapt::LoraAdapter;
using via::adapt::LoraOptions;

namespace {

using test::bit_equal;
using test::edit_latents;
using test::random_weights;
using test::test_image;
using test::tiny_unet;

class TempDir {
 public:
  TempDir() : path_(fs::temp_directory_path() / ("via_test_adapter_file_" + std::to_string(::getpid()))) {
    fs::create_directories(path_);
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path_, ec);
  }
  std::string file(const std::string& name) const { return (path_ / name).string(); }

 private:
  fs::path path_;
};

}  // namespace

TEST(AdapterFile, SaveAndLoadReproducesTheEditBitForBit) {
  auto& unet = tiny_unet();
  TempDir dir;
  LoraAdapter trained(unet, LoraOptions{});
  trained.load_named(random_weights(trained, 5));
  at::Tensor expected;
  {
    adapt::ScopedLora scoped(trained, unet);
    expected = edit_latents();
  }
  rank::save_lora(dir.file("adapter.h5"), trained);
  EXPECT_TRUE(io::is_valid_checkpoint(dir.file("adapter.h5"), io::Verify::Full));

  LoraOptions other_seed;
  other_seed.seed = 99;  // a different fresh init: everything must come from the file
  LoraAdapter loaded(unet, other_seed);
  rank::load_lora(dir.file("adapter.h5"), loaded);
  for (const auto& [name, t] : trained.named_tensors()) EXPECT_TRUE(bit_equal(loaded.named_tensors().at(name), t));
  {
    adapt::ScopedLora scoped(loaded, unet);
    EXPECT_TRUE(bit_equal(edit_latents(), expected));
  }

  // The generic store path (named_tensors -> save_checkpoint -> load_named), as
  // the renderer's broadcast uses the same map.
  io::save_checkpoint(dir.file("named.h5"), trained.named_tensors());
  LoraAdapter via_map(unet, other_seed);
  via_map.load_named(io::load_checkpoint(dir.file("named.h5")).tensors);
  {
    adapt::ScopedLora scoped(via_map, unet);
    EXPECT_TRUE(bit_equal(edit_latents(), expected));
  }

  const adapt::LoraOptions stored = rank::read_lora_options(dir.file("adapter.h5"));
  EXPECT_EQ(stored.rank, 4);
  EXPECT_DOUBLE_EQ(stored.alpha, 4.0);
  EXPECT_EQ(stored.targets, LoraOptions{}.targets);

  LoraOptions rank2;
  rank2.rank = 2;
  LoraAdapter wrong(unet, rank2);
  EXPECT_THROW(rank::load_lora(dir.file("adapter.h5"), wrong), std::invalid_argument);
  EXPECT_THROW(rank::load_lora(dir.file("missing.h5"), wrong), io::CheckpointError);
}

