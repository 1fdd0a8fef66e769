// Weight loading: name/shape matching, dtype conversion, weight-file
// discovery in the diffusers layout, and the memory peak of a load.
#include "model/weights.h"

#include "model/safetensors.h"

#include <ATen/ATen.h>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>
#include <torch/nn/module.h>
#include <torch/nn/modules/container/modulelist.h>
#include <torch/nn/modules/embedding.h>
#include <torch/nn/modules/linear.h>
#include <torch/nn/modules/normalization.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>

namespace fs = std::filesystem;
using namespace via::model;

namespace {

struct BlockImpl : torch::nn::Module {
  BlockImpl() {
    proj = register_module("proj", torch::nn::Linear(8, 16));
    norm = register_module("norm", torch::nn::LayerNorm(torch::nn::LayerNormOptions({16})));
  }
  torch::nn::Linear proj{nullptr};
  torch::nn::LayerNorm norm{nullptr};
};
TORCH_MODULE(Block);

// Names: embed.weight, blocks.{0,1}.proj.{weight,bias}, blocks.{0,1}.norm.{weight,bias}, ids (int64 buffer).
struct TinyNetImpl : torch::nn::Module {
  TinyNetImpl() {
    embed = register_module("embed", torch::nn::Embedding(10, 8));
    blocks = register_module("blocks", torch::nn::ModuleList(Block(), Block()));
    ids = register_buffer("ids", at::arange(5, at::kLong));
  }
  torch::nn::Embedding embed{nullptr};
  torch::nn::ModuleList blocks{nullptr};
  at::Tensor ids;
};
TORCH_MODULE(TinyNet);

std::map<std::string, at::Tensor> state_of(const torch::nn::Module& m) {
  std::map<std::string, at::Tensor> out;
  for (const auto& p : m.named_parameters()) out[p.key()] = p.value().detach().clone();
  for (const auto& b : m.named_buffers()) out[b.key()] = b.value().clone();
  return out;
}

std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const ModelError& e) {
    return e.what();
  }
  ADD_FAILURE() << "expected ModelError";
  return {};
}

class WeightsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string tmpl = (fs::temp_directory_path() / "via_weights_XXXXXX").string();
    ASSERT_NE(::mkdtemp(tmpl.data()), nullptr);
    dir_ = tmpl;
    at::manual_seed(1);
    source_ = state_of(*TinyNet());
    source_["ids"] = at::arange(10, 15, at::kLong);  // distinguishable from the fresh module's buffer
  }
  void TearDown() override { fs::remove_all(dir_); }
  std::string path(const std::string& name) const { return (dir_ / name).string(); }

  fs::path dir_;
  std::map<std::string, at::Tensor> source_;
};

TEST_F(WeightsTest, LoadsEveryParameterAndBuffer) {
  save_safetensors(path("w.safetensors"), source_);
  TinyNet net;
  load_weights(*net, {path("w.safetensors")});
  for (const auto& [name, t] : state_of(*net)) {
    SCOPED_TRACE(name);
    EXPECT_EQ(t.scalar_type(), source_.at(name).scalar_type());
    EXPECT_TRUE(at::equal(t, source_.at(name)));
  }
  EXPECT_TRUE(net->blocks[0]->named_parameters()["proj.weight"].requires_grad());
  // The module's own handles see the loaded values (storage swapped in place).
  EXPECT_TRUE(at::equal(net->ids, source_.at("ids")));
  EXPECT_TRUE(at::equal(net->embed->weight, source_.at("embed.weight")));
}

TEST_F(WeightsTest, MissingTensorNamesItAndItsShape) {
  source_.erase("blocks.1.proj.weight");
  save_safetensors(path("w.safetensors"), source_);
  TinyNet net;
  const std::string msg = error_of([&] { load_weights(*net, {path("w.safetensors")}); });
  EXPECT_NE(msg.find(path("w.safetensors")), std::string::npos) << msg;
  EXPECT_NE(msg.find("missing tensor 'blocks.1.proj.weight' (model expects [16, 8])"), std::string::npos) << msg;
}

TEST_F(WeightsTest, UnexpectedTensorNamesIt) {
  source_["blocks.2.proj.weight"] = at::zeros({16, 8});
  save_safetensors(path("w.safetensors"), source_);
  TinyNet net;
  const std::string msg = error_of([&] { load_weights(*net, {path("w.safetensors")}); });
  EXPECT_NE(msg.find("unexpected tensor 'blocks.2.proj.weight' [16, 8]"), std::string::npos) << msg;
  // ... unless the caller declares it ignorable.
  WeightLoadOptions options;
  options.ignore_unexpected = {"blocks.2.proj.weight"};
  load_weights(*net, {path("w.safetensors")}, options);
  EXPECT_TRUE(at::equal(net->embed->weight, source_.at("embed.weight")));
}

TEST_F(WeightsTest, WrongShapeNamesBothShapes) {
  source_["embed.weight"] = at::zeros({12, 8});
  source_["blocks.0.norm.bias"] = at::zeros({17});
  save_safetensors(path("w.safetensors"), source_);
  TinyNet net;
  const std::string msg = error_of([&] { load_weights(*net, {path("w.safetensors")}); });
  EXPECT_NE(msg.find("2 problems"), std::string::npos) << msg;
  EXPECT_NE(msg.find("tensor 'embed.weight' is [12, 8] in the checkpoint but the model expects [10, 8]"),
            std::string::npos)
      << msg;
  EXPECT_NE(msg.find("tensor 'blocks.0.norm.bias' is [17] in the checkpoint but the model expects [16]"),
            std::string::npos)
      << msg;
  EXPECT_EQ(msg.find('\n'), std::string::npos) << "one line: " << msg;
}

TEST_F(WeightsTest, FloatCheckpointForIntegerBufferIsRejected) {
  source_["ids"] = at::zeros({5});
  save_safetensors(path("w.safetensors"), source_);
  TinyNet net;
  const std::string msg = error_of([&] { load_weights(*net, {path("w.safetensors")}); });
  EXPECT_NE(msg.find("tensor 'ids' is Float in the checkpoint but the model holds Long"), std::string::npos) << msg;
}

TEST_F(WeightsTest, Fp16CheckpointLoadsAsFp32) {
  std::map<std::string, at::Tensor> half;
  for (const auto& [name, t] : source_) half[name] = t.is_floating_point() ? t.to(at::kHalf) : t;
  save_safetensors(path("w.safetensors"), half);
  TinyNet net;
  load_weights(*net, {path("w.safetensors")});
  for (const auto& [name, t] : state_of(*net)) {
    SCOPED_TRACE(name);
    EXPECT_EQ(t.scalar_type(), name == "ids" ? at::kLong : at::kFloat);
    EXPECT_TRUE(at::equal(t, half.at(name).to(t.scalar_type())));
  }
}

TEST_F(WeightsTest, ConvertsToBf16AndKeepsIntegerBuffers) {
  save_safetensors(path("w.safetensors"), source_);
  TinyNet net;
  WeightLoadOptions options;
  options.dtype = at::kBFloat16;
  load_weights(*net, {path("w.safetensors")}, options);
  EXPECT_EQ(net->embed->weight.scalar_type(), at::kBFloat16);
  EXPECT_EQ(net->ids.scalar_type(), at::kLong);
  EXPECT_TRUE(at::equal(net->embed->weight, source_.at("embed.weight").to(at::kBFloat16)));
  // The converted module runs.
  at::Tensor y = net->blocks[0]->as<Block>()->proj(at::ones({2, 8}, at::kBFloat16));
  EXPECT_EQ(y.scalar_type(), at::kBFloat16);
}

TEST_F(WeightsTest, RejectsNonFloatingTarget) {
  save_safetensors(path("w.safetensors"), source_);
  TinyNet net;
  WeightLoadOptions options;
  options.dtype = at::kInt;
  EXPECT_THROW(load_weights(*net, {path("w.safetensors")}, options), ModelError);
}

TEST_F(WeightsTest, DefaultDtypeGuardBuildsInTheTargetType) {
  {
    DefaultDtypeGuard guard(at::kHalf);
    TinyNet net;
    EXPECT_EQ(net->embed->weight.scalar_type(), at::kHalf);
    EXPECT_EQ(net->ids.scalar_type(), at::kLong);
  }
  EXPECT_EQ(TinyNet()->embed->weight.scalar_type(), at::kFloat);
}

TEST_F(WeightsTest, StateShapesAreSortedNamesAndShapes) {
  const auto shapes = state_shapes(*TinyNet());
  ASSERT_EQ(shapes.size(), 10u);
  EXPECT_EQ(shapes.front().first, "blocks.0.norm.bias");
  EXPECT_EQ(shapes.back().first, "ids");
  for (const auto& [name, shape] : shapes) EXPECT_EQ(shape, source_.at(name).sizes().vec()) << name;
  EXPECT_EQ(shape_string({768, 3072}), "[768, 3072]");
  EXPECT_EQ(shape_string({}), "[]");
}

TEST_F(WeightsTest, FindsDiffusersAndTransformersNames) {
  fs::create_directories(path("unet"));
  save_safetensors(path("unet/diffusion_pytorch_model.fp16.safetensors"), {{"x", at::ones({1})}});
  EXPECT_EQ(find_weight_files(path("unet")), std::vector<std::string>{path("unet/diffusion_pytorch_model.fp16.safetensors")});
  // The full-precision file wins over the fp16 variant.
  save_safetensors(path("unet/diffusion_pytorch_model.safetensors"), {{"x", at::ones({1})}});
  EXPECT_EQ(find_weight_files(path("unet")), std::vector<std::string>{path("unet/diffusion_pytorch_model.safetensors")});

  fs::create_directories(path("text_encoder"));
  save_safetensors(path("text_encoder/model.safetensors"), {{"x", at::ones({1})}});
  EXPECT_EQ(find_weight_files(path("text_encoder")), std::vector<std::string>{path("text_encoder/model.safetensors")});
}

TEST_F(WeightsTest, LoadsShardedCheckpoints) {
  fs::create_directories(path("c"));
  std::map<std::string, at::Tensor> a, b;
  nlohmann::json map;
  for (const auto& [name, t] : source_) {
    const bool first = name < "blocks.1";
    (first ? a : b)[name] = t;
    map[name] = first ? "model-00001-of-00002.safetensors" : "model-00002-of-00002.safetensors";
  }
  save_safetensors(path("c/model-00001-of-00002.safetensors"), a);
  save_safetensors(path("c/model-00002-of-00002.safetensors"), b);
  std::ofstream(path("c/model.safetensors.index.json")) << nlohmann::json{{"weight_map", map}}.dump();
  TinyNet net;
  load_component_weights(*net, path("c"));
  for (const auto& [name, t] : state_of(*net)) EXPECT_TRUE(at::equal(t, source_.at(name))) << name;

  // A tensor stored in two shards is an error naming both files.
  save_safetensors(path("c/model-00002-of-00002.safetensors"), source_);
  const std::string msg = error_of([&] { load_component_weights(*net, path("c")); });
  EXPECT_NE(msg.find("also appears in"), std::string::npos) << msg;

  fs::remove(path("c/model-00002-of-00002.safetensors"));
  const std::string missing = error_of([&] { find_weight_files(path("c")); });
  EXPECT_NE(missing.find("shard 'model-00002-of-00002.safetensors' is listed but missing"), std::string::npos)
      << missing;
}

TEST_F(WeightsTest, MissingOrEmptyFolders) {
  std::string msg = error_of([&] { find_weight_files(path("nowhere")); });
  EXPECT_NE(msg.find(path("nowhere") + ": model component folder not found"), std::string::npos) << msg;
  fs::create_directories(path("empty"));
  msg = error_of([&] { find_weight_files(path("empty")); });
  EXPECT_NE(msg.find("no weights found"), std::string::npos) << msg;
  // Pickle weights are found and read by the safe parser; a broken one is named.
  std::ofstream(path("empty/pytorch_model.bin")) << "x";
  EXPECT_EQ(find_weight_files(path("empty")), std::vector<std::string>{path("empty/pytorch_model.bin")});
  msg = error_of([&] { load_weights(*torch::nn::Linear(2, 2), find_weight_files(path("empty"))); });
  EXPECT_NE(msg.find(path("empty/pytorch_model.bin") + ": not a zip-format PyTorch checkpoint"), std::string::npos)
      << msg;
}

// Resident set size in KB, from /proc/self/status ("VmRSS" or "VmHWM").
int64_t status_kb(const std::string& key) {
  std::ifstream in("/proc/self/status");
  std::string line;
  while (std::getline(in, line))
    if (line.rfind(key + ":", 0) == 0) return std::stoll(line.substr(key.size() + 1));
  return -1;
}

struct WideNetImpl : torch::nn::Module {
  WideNetImpl() {
    for (int i = 0; i < 3; ++i) register_module("fc" + std::to_string(i), torch::nn::Linear(4096, 2048));
  }
};
TORCH_MODULE(WideNet);

TEST_F(WeightsTest, PeakMemoryStaysNearTheModelsSize) {
  // ~96 MB of fp32 weights in three 32 MB tensors; the file is in the page
  // cache, so every page touched through the mapping would count in RSS.
  at::manual_seed(2);
  save_safetensors(path("wide.safetensors"), state_of(*WideNet()));
  const double weights_kb = 3.0 * (4096 * 2048 + 2048) * 4 / 1024;

  const int64_t before_kb = status_kb("VmRSS");
  WideNet net;
  std::ofstream clear("/proc/self/clear_refs");
  clear << "5";  // resets VmHWM to the current RSS
  clear.close();
  ASSERT_TRUE(clear.good()) << "cannot reset the peak RSS counter";
  load_weights(*net, {path("wide.safetensors")});
  const int64_t peak_kb = status_kb("VmHWM");
  const double ratio = (peak_kb - before_kb) / weights_kb;
  std::cout << "load peak: " << ratio << " x the weights' size\n";
  EXPECT_LT(ratio, 1.3);
  EXPECT_TRUE(at::equal(net->named_parameters()["fc2.weight"],
                        SafeTensorsFile(path("wide.safetensors")).tensor("fc2.weight")));
}

}  // namespace
