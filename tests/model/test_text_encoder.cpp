// CLIPTextModel: parity with the reference's output on the tiny model (fp32,
// fp16 weights, bf16), the full-size parameter list, and bad configs/weights.
#include "model/text_encoder.h"

#include "model/json_file.h"
#include "model/safetensors.h"
#include "model/tokenizer.h"
#include "model/weights.h"
#include "tests/support/data.h"

#include <ATen/ATen.h>
#include <ATen/Context.h>
#include <ATen/Parallel.h>
#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

namespace fs = std::filesystem;
using namespace via::model;

namespace {

std::string data_dir() { return via::test::reference_data(); }
std::string text_encoder_dir() { return data_dir() + "/tiny_ip2p/text_encoder"; }

struct Golden {
  at::Tensor input_ids;  // [8, 77] int64
  at::Tensor expected;   // [8, 77, 32] fp32
};
Golden golden() {
  SafeTensorsFile f(data_dir() + "/goldens/text_encoder.safetensors");
  return {f.tensor("input_ids").clone(), f.tensor("last_hidden_state").clone()};
}

// Max abs error relative to the output's scale (its max abs value).
double relative_error(const at::Tensor& out, const at::Tensor& expected) {
  return (out.to(at::kFloat) - expected).abs().max().item<double>() / expected.abs().max().item<double>();
}

at::Tensor run(CLIPTextModel& model, const at::Tensor& ids) {
  at::NoGradGuard no_grad;
  return model->forward(ids.to(model->text_model()->parameters()[0].device()));
}

class TempDir : public ::testing::Test {
 protected:
  void SetUp() override {
    at::set_num_threads(1);
    std::string tmpl = (fs::temp_directory_path() / "via_text_encoder_XXXXXX").string();
    ASSERT_NE(::mkdtemp(tmpl.data()), nullptr);
    dir_ = tmpl;
  }
  void TearDown() override { fs::remove_all(dir_); }
  fs::path dir_;
};

using TextEncoderTest = TempDir;

// fp32 tolerance: the reference's own fp32 rounding noise on this model is
// 3e-7 of the output scale (README: 1.2e-6 at outputs up to 3.9); 2e-5
// allows a different summation order, while a real bug moves outputs by 1e-2.
constexpr double kFp32Tolerance = 2e-5;

TEST_F(TextEncoderTest, MatchesTheReferenceInFp32) {
  const Golden g = golden();
  CLIPTextModel model = load_component<CLIPTextModel>(text_encoder_dir());
  EXPECT_EQ(model->config().hidden_size, 32);
  EXPECT_EQ(model->config().num_hidden_layers, 3);
  const at::Tensor out = run(model, g.input_ids);
  ASSERT_EQ(out.sizes(), g.expected.sizes());
  EXPECT_EQ(out.scalar_type(), at::kFloat);
  const double err = relative_error(out, g.expected);
  std::cout << "fp32 max abs error / output scale: " << err << "\n";
  EXPECT_LT(err, kFp32Tolerance);
}

TEST_F(TextEncoderTest, TokenizerAndEncoderTogether) {
  // The golden ids come from the reference tokenizer; ours gives the same
  // ids, so the whole text path matches.
  const Golden g = golden();
  const ClipTokenizer tok(data_dir() + "/tiny_ip2p/tokenizer");
  CLIPTextModel model = load_component<CLIPTextModel>(text_encoder_dir());
  const at::Tensor ids = tok.input_ids({"make it look like a painting", ""});
  EXPECT_TRUE(at::equal(ids[0], g.input_ids[0]));
  EXPECT_TRUE(at::equal(ids[1], g.input_ids[7]));
  const at::Tensor out = run(model, ids);
  EXPECT_LT(relative_error(out[0], g.expected[0]), kFp32Tolerance);
  EXPECT_LT(relative_error(out[1], g.expected[7]), kFp32Tolerance);
}

TEST_F(TextEncoderTest, LoadsTheFp16Variant) {
  // Only the fp16 file: the loader falls back to it and converts to fp32.
  fs::copy(text_encoder_dir() + "/config.json", dir_ / "config.json");
  fs::copy(text_encoder_dir() + "/model.fp16.safetensors", dir_ / "model.fp16.safetensors");
  const Golden g = golden();
  CLIPTextModel model = load_component<CLIPTextModel>(dir_.string());
  const at::Tensor out = run(model, g.input_ids);
  EXPECT_EQ(out.scalar_type(), at::kFloat);
  // Weights rounded to fp16 (relative step 2^-11) move the output by ~1e-3.
  const double err = relative_error(out, g.expected);
  std::cout << "fp16 weights, fp32 compute: " << err << "\n";
  EXPECT_LT(err, 1e-2);
  EXPECT_GT(err, 0.0);  // it really used the rounded weights
}

TEST_F(TextEncoderTest, RunsInBf16) {
  const Golden g = golden();
  CLIPTextModel model = load_component<CLIPTextModel>(text_encoder_dir(), at::kBFloat16);
  EXPECT_EQ(model->text_model()->parameters()[0].scalar_type(), at::kBFloat16);
  const at::Tensor out = run(model, g.input_ids);
  EXPECT_EQ(out.scalar_type(), at::kBFloat16);
  // bf16 keeps 8 mantissa bits (relative step 2^-8 = 4e-3) through 3 layers.
  const double err = relative_error(out, g.expected);
  std::cout << "bf16: " << err << "\n";
  EXPECT_LT(err, 5e-2);
}

TEST_F(TextEncoderTest, LoadsUnprefixedTransformers5Checkpoints) {
  // transformers 5 saves the same tensors without "text_model." and without position_ids.
  SafeTensorsFile src(text_encoder_dir() + "/model.safetensors");
  std::map<std::string, at::Tensor> renamed;
  for (const std::string& name : src.names())
    if (name != "text_model.embeddings.position_ids") renamed[name.substr(std::string("text_model.").size())] = src.tensor(name);
  save_safetensors((dir_ / "model.safetensors").string(), renamed);
  fs::copy(text_encoder_dir() + "/config.json", dir_ / "config.json");
  const Golden g = golden();
  CLIPTextModel model = load_component<CLIPTextModel>(dir_.string());
  EXPECT_LT(relative_error(run(model, g.input_ids), g.expected), kFp32Tolerance);
}

TEST_F(TextEncoderTest, FullSizeParameterListMatchesTheReference) {
  const CLIPTextConfig config = CLIPTextConfig::from_file(data_dir() + "/full_size/text_encoder_config.json");
  EXPECT_EQ(config.hidden_size, 768);
  std::vector<std::pair<std::string, std::vector<int64_t>>> expected;
  std::ifstream in(data_dir() + "/full_size/text_encoder_params.txt");
  ASSERT_TRUE(in) << "missing full_size/text_encoder_params.txt";
  std::string line;
  while (std::getline(in, line)) {
    if (line.empty()) continue;
    std::istringstream fields(line);
    std::string name, dims, dim;
    fields >> name >> dims;
    std::vector<int64_t> shape;
    std::istringstream dim_list(dims);
    while (std::getline(dim_list, dim, ',')) shape.push_back(std::stoll(dim));
    expected.emplace_back(name, shape);
  }
  ASSERT_EQ(expected.size(), 196u);
  // bf16 halves the ~0.5 GB this briefly allocates; the shapes do not depend on it.
  DefaultDtypeGuard guard(at::kBFloat16);
  const CLIPTextModel model(config);
  EXPECT_EQ(state_shapes(*model), expected);
}

TEST_F(TextEncoderTest, ConfigErrorsNameTheFileAndKey) {
  const std::string path = (dir_ / "config.json").string();
  auto error_for = [&](const std::string& json) {
    std::ofstream(path) << json;
    try {
      CLIPTextConfig::from_file(path);
    } catch (const ModelError& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  EXPECT_NE(error_for(R"({"hidden_size": 30, "num_attention_heads": 4})").find(path + ": hidden_size 30 is not divisible"),
            std::string::npos);
  EXPECT_NE(error_for(R"({"hidden_act": "swish"})").find("unsupported hidden_act 'swish'"), std::string::npos);
  EXPECT_NE(error_for(R"({"num_hidden_layers": "3"})").find("'num_hidden_layers' has the wrong type"), std::string::npos);
  EXPECT_NE(error_for(R"({"vocab_size": 0})").find("'vocab_size' must be positive"), std::string::npos);
  EXPECT_NE(error_for(R"({"model_type": "clip"})").find("not a CLIP text model"), std::string::npos);
  EXPECT_NE(error_for("{").find("not valid JSON"), std::string::npos);
  // Absent keys take the reference's defaults.
  std::ofstream(path) << "{}";
  EXPECT_EQ(CLIPTextConfig::from_file(path).hidden_size, 512);
}

TEST_F(TextEncoderTest, ConfigWeightMismatchNamesTensorAndShapes) {
  nlohmann::json config = via::model::read_json_file(text_encoder_dir() + "/config.json");
  config["intermediate_size"] = 40;
  config["num_hidden_layers"] = 2;
  std::ofstream(dir_ / "config.json") << config.dump();
  fs::copy(text_encoder_dir() + "/model.safetensors", dir_ / "model.safetensors");
  try {
    load_component<CLIPTextModel>(dir_.string());
    FAIL() << "expected ModelError";
  } catch (const ModelError& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find((dir_ / "model.safetensors").string()), std::string::npos) << msg;
    EXPECT_NE(msg.find("tensor 'text_model.encoder.layers.0.mlp.fc1.weight' is [37, 32] in the checkpoint but the model "
                       "expects [40, 32]"),
              std::string::npos)
        << msg;
    EXPECT_NE(msg.find("unexpected tensor 'text_model.encoder.layers.2.layer_norm1.bias' [32]"), std::string::npos)
        << msg;
    EXPECT_NE(msg.find("(22 problems)"), std::string::npos) << msg;  // 6 reshaped fc tensors + 16 of layer 2
  }
}

TEST_F(TextEncoderTest, MissingPiecesAreClearErrors) {
  EXPECT_THROW(load_component<CLIPTextModel>((dir_ / "absent").string()), ModelError);
  fs::copy(text_encoder_dir() + "/config.json", dir_ / "config.json");
  try {
    load_component<CLIPTextModel>(dir_.string());
    FAIL();
  } catch (const ModelError& e) {
    EXPECT_NE(std::string(e.what()).find("no weights found"), std::string::npos) << e.what();
  }
}

TEST_F(TextEncoderTest, RejectsBadInputIds) {
  CLIPTextModel model = load_component<CLIPTextModel>(text_encoder_dir());
  at::NoGradGuard no_grad;
  EXPECT_THROW(model->forward(at::zeros({1, 78}, at::kLong)), ModelError);
  EXPECT_THROW(model->forward(at::full({1, 77}, 834, at::kLong)), ModelError);
  EXPECT_THROW(model->forward(at::full({1, 77}, -1, at::kLong)), ModelError);
  // Shorter sequences are fine (positions 0..T-1), as in the reference.
  EXPECT_EQ(model->forward(at::zeros({2, 5}, at::kLong)).sizes(), (at::IntArrayRef{2, 5, 32}));
}

TEST_F(TextEncoderTest, CausalMask) {
  // A token's output depends only on the tokens before it.
  CLIPTextModel model = load_component<CLIPTextModel>(text_encoder_dir());
  at::Tensor a = at::randint(0, 834, {1, 77}, at::kLong);
  at::Tensor b = a.clone();
  b[0][40] = (a[0][40].item<int64_t>() + 1) % 834;
  const at::Tensor ya = run(model, a), yb = run(model, b);
  EXPECT_TRUE(at::equal(ya.narrow(1, 0, 40), yb.narrow(1, 0, 40)));
  EXPECT_FALSE(at::allclose(ya.narrow(1, 40, 37), yb.narrow(1, 40, 37)));
}

TEST_F(TextEncoderTest, Fp16OnCuda) {
  if (!at::hasCUDA()) GTEST_SKIP() << "no CUDA device: the fp16 GPU path is not exercised on this machine";
  const Golden g = golden();
  CLIPTextModel model = load_component<CLIPTextModel>(text_encoder_dir(), at::kHalf, at::Device(at::kCUDA, 0));
  const at::Tensor out = run(model, g.input_ids).to(at::kCPU);
  EXPECT_EQ(out.scalar_type(), at::kHalf);
  EXPECT_LT(relative_error(out, g.expected), 1e-2);
}

}  // namespace
