// `via inspect-model` and `via edit-image --model FILE` through the real
// binary (env VIA_BIN) on the model forms of tests/reference/data.
#include <gtest/gtest.h>
#include <sys/wait.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "io/image.h"
#include "tests/support/data.h"

namespace fs = std::filesystem;

namespace {

std::string data(const std::string& rel) { return via::test::reference_data(rel); }

std::string quote(const std::string& s) {
  std::string out = "'";
  for (char c : s) out += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return out + "'";
}

std::string slurp(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

struct Result {
  int code;
  std::string out, err;
};

class Cli : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string tmpl = (fs::temp_directory_path() / "via_inspect_XXXXXX").string();
    ASSERT_NE(::mkdtemp(tmpl.data()), nullptr);
    dir_ = tmpl;
  }
  void TearDown() override { fs::remove_all(dir_); }
  Result via(const std::vector<std::string>& args) const {
    const char* bin = std::getenv("VIA_BIN");
    std::string cmd = quote(bin ? bin : "via");
    for (const auto& a : args) cmd += " " + quote(a);
    cmd += " >" + quote((dir_ / "out").string()) + " 2>" + quote((dir_ / "err").string());
    const int status = std::system(cmd.c_str());
    return {WIFEXITED(status) ? WEXITSTATUS(status) : -1, slurp(dir_ / "out"), slurp(dir_ / "err")};
  }
  fs::path dir_;
};

TEST_F(Cli, InspectsAFolder) {
  const Result r = via({"inspect-model", data("tiny_ip2p"), "--json"});
  ASSERT_EQ(r.code, 0) << r.err;
  const nlohmann::json j = nlohmann::json::parse(r.out);
  EXPECT_EQ(j["layout"], "diffusers folder");
  EXPECT_EQ(j["instruct_pix2pix"], true);
  EXPECT_EQ(j["unet_in_channels"], 8);
  EXPECT_EQ(j["components"]["unet"]["tensors"], 302);
  EXPECT_EQ(j["components"]["vae"]["tensors"], 196);
  EXPECT_EQ(j["components"]["text_encoder"]["dtypes"]["Long"], 1);  // position_ids
  EXPECT_EQ(j["components"]["unet"]["config"]["block_out_channels"], nlohmann::json({32, 32}));
  EXPECT_EQ(j["scheduler"]["class"], "EulerAncestralDiscreteScheduler");
  EXPECT_EQ(j["scheduler"]["default"], "euler_a");
  EXPECT_EQ(j["tokenizer"]["vocab_size"], 834);
  const Result text = via({"inspect-model", data("tiny_ip2p")});
  ASSERT_EQ(text.code, 0) << text.err;
  EXPECT_NE(text.out.find("layout:     diffusers folder"), std::string::npos) << text.out;
  EXPECT_NE(text.out.find("yes, an InstructPix2Pix UNet"), std::string::npos) << text.out;
}

TEST_F(Cli, InspectsSingleFilesInBothContainers) {
  const nlohmann::json folder = nlohmann::json::parse(via({"inspect-model", data("tiny_ip2p"), "--json"}).out);
  for (const std::string& file : {data("model_forms/tiny_ip2p_ldm.safetensors"), data("model_forms/pickle/tiny_ip2p_ldm.ckpt")}) {
    const Result r = via({"inspect-model", file, "--model-config", data("tiny_ip2p"), "--json"});
    ASSERT_EQ(r.code, 0) << r.err;
    const nlohmann::json j = nlohmann::json::parse(r.out);
    EXPECT_EQ(j["layout"], "original single file") << file;
    for (const char* c : {"unet", "vae", "text_encoder"})
      EXPECT_EQ(j["components"][c]["parameters"], folder["components"][c]["parameters"]) << file << " " << c;
    EXPECT_EQ(j["instruct_pix2pix"], true);
  }
  // Without a config folder: the built-in configs sized from the weights.
  const Result r = via({"inspect-model", data("model_forms/tiny_ip2p_ldm.safetensors"), "--json"});
  ASSERT_EQ(r.code, 0) << r.err;
  const nlohmann::json j = nlohmann::json::parse(r.out);
  EXPECT_EQ(j["components"]["unet"]["config"]["norm_num_groups"], 32);
  EXPECT_EQ(j["components"]["unet"]["config"]["in_channels"], 8);
}

TEST_F(Cli, TheFirstProblemIsOneErrorLine) {
  fs::copy(data("tiny_ip2p"), dir_ / "m", fs::copy_options::recursive);
  std::ofstream(dir_ / "m" / "scheduler" / "scheduler_config.json") << R"({"_class_name": "PNDMScheduler"})";
  nlohmann::json index = nlohmann::json::parse(slurp(dir_ / "m" / "model_index.json"));
  index["scheduler"] = {"diffusers", "PNDMScheduler"};
  std::ofstream(dir_ / "m" / "model_index.json") << index.dump();
  // A config the checkpoint does not fit: found from the headers, without loading.
  fs::copy(data("tiny_ip2p"), dir_ / "w", fs::copy_options::recursive);
  nlohmann::json unet = nlohmann::json::parse(slurp(dir_ / "w" / "unet" / "config.json"));
  unet["layers_per_block"] = 3;
  std::ofstream(dir_ / "w" / "unet" / "config.json") << unet.dump();
  for (const auto& [path, needle] : std::vector<std::pair<std::string, std::string>>{
           {(dir_ / "w").string(), "checkpoint does not match the model's configuration"},
           {(dir_ / "m").string(), "scheduler class 'PNDMScheduler' is not supported"},
           {data("model_forms/pickle/evil_os_system.bin"), "global 'posix.system' is not allowed"},
           {(dir_ / "absent").string(), "model not found"}}) {
    const Result r = via({"inspect-model", path});
    EXPECT_EQ(r.code, 1) << path;
    EXPECT_NE(r.err.find(needle), std::string::npos) << r.err;
    EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;
  }
  EXPECT_EQ(via({"inspect-model"}).code, 2);
}

TEST_F(Cli, EditImageFromASingleFileEqualsTheFolder) {
  via::io::RgbImage img(32, 32);
  for (int y = 0; y < 32; ++y)
    for (int x = 0; x < 32; ++x) {
      uint8_t* p = img.pixel(x, y);
      p[0] = static_cast<uint8_t>(8 * x), p[1] = static_cast<uint8_t>(8 * y), p[2] = static_cast<uint8_t>(4 * (x + y));
    }
  via::io::write_png((dir_ / "in.png").string(), img);
  const std::vector<std::string> common = {"--input", (dir_ / "in.png").string(), "--instruction", "make it snow",
                                           "--steps", "3", "--scheduler", "dpmpp_2m", "--device", "cpu"};
  std::vector<std::string> a = {"edit-image", "--model", data("tiny_ip2p"), "--output", (dir_ / "a.png").string()};
  std::vector<std::string> b = {"edit-image", "--model", data("model_forms/tiny_ip2p_ldm.safetensors"), "--model-config",
                                data("tiny_ip2p"), "--output", (dir_ / "b.png").string()};
  a.insert(a.end(), common.begin(), common.end());
  b.insert(b.end(), common.begin(), common.end());
  const Result ra = via(a), rb = via(b);
  ASSERT_EQ(ra.code, 0) << ra.err;
  ASSERT_EQ(rb.code, 0) << rb.err;
  EXPECT_NE(ra.out.find("dpmpp_2m"), std::string::npos) << ra.out;
  EXPECT_EQ(slurp(dir_ / "a.png"), slurp(dir_ / "b.png"));
}

}  // namespace
