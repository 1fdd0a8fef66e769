// PyTorch zip/pickle checkpoints read without executing them
// (tests/reference/make_model_forms.py wrote the files with torch.save).
#include "model/pickle_checkpoint.h"

#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <random>
#include <string>

#include <unistd.h>

#include "model/pipeline.h"
#include "model/text_encoder.h"
#include "model/vae.h"
#include "model/weights.h"
#include "tests/support/data.h"

namespace fs = std::filesystem;
using namespace via::model;
using via::test::reference_data;

namespace {

std::string pickle_data(const std::string& rel) { return reference_data("model_forms/pickle/" + rel); }
std::string error_of(const std::string& path) {
  try {
    PickleCheckpoint file(path);
    for (const std::string& name : file.names()) file.tensor(name);
  } catch (const ModelError& e) {
    return e.what();
  }
  return "";
}

std::string read_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

TEST(PickleCheckpoint, ReadsWhatTorchSaveWrote) {
  const PickleCheckpoint file(pickle_data("small.bin"));
  EXPECT_EQ(file.names(), (std::vector<std::string>{"a", "b"}));
  EXPECT_TRUE(at::equal(file.tensor("a"), at::arange(6, at::kFloat).reshape({2, 3})));
  EXPECT_EQ(file.info("b").dtype, at::kHalf);
  EXPECT_TRUE(at::equal(file.tensor("b"), at::ones({4}, at::kHalf)));
  EXPECT_THROW(file.tensor("c"), ModelError);
}

TEST(PickleCheckpoint, BinFolderLoadsTheSafetensorsBits) {
  AutoencoderKL bin = load_component<AutoencoderKL>(pickle_data("vae_bin"), at::kFloat, at::kCPU);
  AutoencoderKL st = load_component<AutoencoderKL>(reference_data("tiny_ip2p/vae"), at::kFloat, at::kCPU);
  std::map<std::string, at::Tensor> want;
  for (const auto& p : st->named_parameters()) want.emplace(p.key(), p.value());
  size_t n = 0;
  for (const auto& p : bin->named_parameters()) {
    EXPECT_TRUE(at::equal(p.value(), want.at(p.key()))) << p.key();
    ++n;
  }
  EXPECT_EQ(n, want.size());
}

TEST(PickleCheckpoint, ShardedBinTextEncoderGivesTheSameOutput) {
  // transformers 4's sharded pickle weights: pytorch_model-0000k-of-00003.bin + pytorch_model.bin.index.json.
  const std::string dir = pickle_data("text_encoder_bin_sharded");
  EXPECT_EQ(find_weight_files(dir).size(), 3u);
  CLIPTextModel bin = load_component<CLIPTextModel>(dir);
  CLIPTextModel st = load_component<CLIPTextModel>(reference_data("tiny_ip2p/text_encoder"));
  const at::Tensor ids = at::randint(0, 834, {2, 77}, at::TensorOptions().dtype(at::kLong));
  at::NoGradGuard no_grad;
  EXPECT_TRUE(at::equal(bin->forward(ids), st->forward(ids)));
}

TEST(PickleCheckpoint, LightningCkptSingleFileLoadsTheFolderBits) {
  ModelOptions options;
  options.config_dir = reference_data("tiny_ip2p");
  const InstructPix2Pix ckpt(pickle_data("tiny_ip2p_ldm.ckpt"), options);
  const InstructPix2Pix folder(reference_data("tiny_ip2p"));
  for (const auto& [a, b] : {std::make_pair(&*ckpt.unet(), &*folder.unet())}) {
    std::map<std::string, at::Tensor> want;
    for (const auto& p : b->named_parameters()) want.emplace(p.key(), p.value());
    for (const auto& p : a->named_parameters()) EXPECT_TRUE(at::equal(p.value(), want.at(p.key()))) << p.key();
  }
  const at::Tensor ids = folder.tokenizer().input_ids({"make it snow"});
  EXPECT_TRUE(at::equal(ckpt.text_encoder()->forward(ids), folder.text_encoder()->forward(ids)));
}

TEST(PickleCheckpoint, RefusesCodeAndForeignOpcodesWithoutRunningThem) {
  fs::remove("/tmp/via_pickle_was_executed");
  std::string msg = error_of(pickle_data("evil_os_system.bin"));
  EXPECT_NE(msg.find("system' is not allowed"), std::string::npos) << msg;  // posix.system on Linux
  EXPECT_NE(msg.find("evil_os_system.bin"), std::string::npos) << msg;
  EXPECT_FALSE(fs::exists("/tmp/via_pickle_was_executed"));
  msg = error_of(pickle_data("evil_stack_global.bin"));
  EXPECT_NE(msg.find("global 'builtins.eval' is not allowed"), std::string::npos) << msg;
  msg = error_of(pickle_data("bad_opcode.bin"));
  EXPECT_NE(msg.find("pickle opcode 0x8f at byte 3 is not allowed"), std::string::npos) << msg;
  msg = error_of(pickle_data("compressed.bin"));
  EXPECT_NE(msg.find("is compressed"), std::string::npos) << msg;
  msg = error_of(reference_data("tiny_ip2p/model_index.json"));
  EXPECT_NE(msg.find("not a zip-format PyTorch checkpoint"), std::string::npos) << msg;
}

class TempFile {
 public:
  TempFile() : path_((fs::temp_directory_path() / ("via_pickle_" + std::to_string(::getpid()) + ".bin")).string()) {}
  ~TempFile() { fs::remove(path_); }
  void write(const std::string& bytes) const { std::ofstream(path_, std::ios::binary | std::ios::trunc) << bytes; }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

TEST(PickleCheckpoint, EveryTruncationIsRefusedCleanly) {
  const std::string bytes = read_bytes(pickle_data("small.bin"));
  ASSERT_GT(bytes.size(), 1000u);
  TempFile tmp;
  for (size_t n = 0; n < bytes.size(); ++n) {
    tmp.write(bytes.substr(0, n));
    EXPECT_FALSE(error_of(tmp.path()).empty()) << "truncated to " << n << " bytes was accepted";
  }
}

TEST(PickleCheckpoint, RandomCorruptionNeverCrashes) {
  // Random byte changes: each file either reads (the bytes hit tensor data or
  // slack) or is refused with ModelError; any other exception or a crash fails.
  const std::string bytes = read_bytes(pickle_data("small.bin"));
  TempFile tmp;
  std::mt19937 rng(12);
  int refused = 0, read = 0;
  for (int round = 0; round < 3000; ++round) {
    std::string b = bytes;
    const int flips = 1 + static_cast<int>(rng() % 4);
    for (int k = 0; k < flips; ++k) b[rng() % b.size()] = static_cast<char>(rng() & 0xFF);
    tmp.write(b);
    (error_of(tmp.path()).empty() ? read : refused) += 1;
  }
  std::cout << "corrupted files: " << refused << " refused, " << read << " read\n";
  EXPECT_GT(refused, 100);
}

}  // namespace
