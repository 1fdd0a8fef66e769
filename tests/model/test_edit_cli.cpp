// `via make-tiny-model` and `via edit-image`, run as the user runs them (the
// binary named by VIA_BIN): the tiny model's layout, determinism and
// loadability, edits on it, and one clear error line with a non-zero exit
// for each kind of bad input.
#include <ATen/ATen.h>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>
#include <sys/wait.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <sstream>
#include <string>
#include <vector>

#include "io/image.h"
#include "model/pipeline.h"
#include "model/safetensors.h"
#include "tests/support/data.h"

namespace fs = std::filesystem;
using namespace via;

namespace {

struct Result {
  int code = -1;
  std::string out, err;
};

std::string quote(const std::string& s) {
  std::string q = "'";
  for (char c : s) q += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return q + "'";
}

std::string slurp(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// Lines of `text` that are not empty.
std::vector<std::string> lines(const std::string& text) {
  std::vector<std::string> out;
  std::stringstream ss(text);
  for (std::string l; std::getline(ss, l);)
    if (!l.empty()) out.push_back(l);
  return out;
}

// The temporary folder of the whole test binary: the tiny model is made once.
class Workspace {
 public:
  static Workspace& get() {
    static Workspace w;
    return w;
  }
  fs::path dir;
  fs::path model;
  Result make_result;

  Result via(const std::vector<std::string>& args) const {
    const char* bin = std::getenv("VIA_BIN");
    EXPECT_NE(bin, nullptr) << "VIA_BIN is not set";
    std::string cmd = quote(bin ? bin : "via");
    for (const auto& a : args) cmd += " " + quote(a);
    const fs::path out = dir / "stdout.txt", err = dir / "stderr.txt";
    cmd += " >" + quote(out.string()) + " 2>" + quote(err.string());
    const int status = std::system(cmd.c_str());
    Result r;
    r.code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
    r.out = slurp(out);
    r.err = slurp(err);
    return r;
  }

 private:
  Workspace() {
    std::string tmpl = (fs::temp_directory_path() / "via_edit_cli_XXXXXX").string();
    if (::mkdtemp(tmpl.data()) == nullptr) throw std::runtime_error("mkdtemp failed");
    dir = tmpl;
    model = dir / "tiny";
    make_result = via({"make-tiny-model", "--out", model.string(), "--seed", "7"});
    // A smooth 64x64 test picture.
    io::RgbImage img(64, 64);
    for (int y = 0; y < 64; ++y)
      for (int x = 0; x < 64; ++x) {
        uint8_t* p = img.pixel(x, y);
        p[0] = static_cast<uint8_t>(4 * x);
        p[1] = static_cast<uint8_t>(4 * y);
        p[2] = static_cast<uint8_t>(2 * (x + y));
      }
    io::write_png((dir / "in.png").string(), img);
  }
  ~Workspace() { fs::remove_all(dir); }
};

fs::path ws(const std::string& name) { return Workspace::get().dir / name; }
Result via(const std::vector<std::string>& args) { return Workspace::get().via(args); }

// Expects a failure with exit code `code` and exactly one stderr line containing every needle.
void expect_one_error_line(const Result& r, int code, const std::vector<std::string>& needles) {
  EXPECT_EQ(r.code, code) << r.err;
  const auto err_lines = lines(r.err);
  ASSERT_EQ(err_lines.size(), 1u) << "stderr:\n" << r.err;
  for (const auto& n : needles) EXPECT_NE(err_lines[0].find(n), std::string::npos) << err_lines[0];
}

std::vector<std::string> edit_args(const std::string& out, const std::vector<std::string>& extra = {}) {
  std::vector<std::string> a = {"edit-image", "--model",  Workspace::get().model.string(), "--input",
                                ws("in.png").string(), "--output", out, "--instruction", "make it winter",
                                "--steps", "6"};
  a.insert(a.end(), extra.begin(), extra.end());
  return a;
}

// ---- make-tiny-model ----

TEST(MakeTinyModel, WritesThePublishedLayout) {
  const Result& r = Workspace::get().make_result;
  ASSERT_EQ(r.code, 0) << r.err;
  const fs::path m = Workspace::get().model;
  for (const char* f : {"model_index.json", "scheduler/scheduler_config.json", "tokenizer/vocab.json",
                        "tokenizer/merges.txt", "tokenizer/tokenizer_config.json", "tokenizer/special_tokens_map.json",
                        "text_encoder/config.json", "text_encoder/model.safetensors", "unet/config.json",
                        "unet/diffusion_pytorch_model.safetensors", "vae/config.json",
                        "vae/diffusion_pytorch_model.safetensors"})
    EXPECT_TRUE(fs::is_regular_file(m / f)) << f;
  // CLIP's vocabulary construction: 256 byte characters, the same with </w>,
  // the merges, then the two special tokens at the end.
  const auto vocab = nlohmann::json::parse(slurp(m / "tokenizer/vocab.json"));
  const auto merges = lines(slurp(m / "tokenizer/merges.txt"));
  ASSERT_GE(merges.size(), 2u);
  EXPECT_EQ(merges[0], "#version: 0.2");
  EXPECT_EQ(vocab.size(), 512 + (merges.size() - 1) + 2);
  EXPECT_EQ(vocab.at("!").get<int>(), 0);
  EXPECT_EQ(vocab.at("!</w>").get<int>(), 256);
  EXPECT_EQ(vocab.at("<|startoftext|>").get<size_t>(), vocab.size() - 2);
  EXPECT_EQ(vocab.at("<|endoftext|>").get<size_t>(), vocab.size() - 1);
  // Not the reference's tiny architecture.
  const auto ours = nlohmann::json::parse(slurp(m / "unet/config.json"));
  const auto theirs = nlohmann::json::parse(slurp(fs::path(via::test::tiny_model_dir()) / "unet/config.json"));
  EXPECT_NE(ours.at("block_out_channels"), theirs.at("block_out_channels"));
}

TEST(MakeTinyModel, SameSeedSameBytesOtherSeedOtherWeights) {
  ASSERT_EQ(via({"make-tiny-model", "--out", ws("again").string(), "--seed", "7"}).code, 0);
  ASSERT_EQ(via({"make-tiny-model", "--out", ws("other").string(), "--seed", "8"}).code, 0);
  const fs::path unet = "unet/diffusion_pytorch_model.safetensors";
  EXPECT_EQ(slurp(ws("again") / unet), slurp(Workspace::get().model / unet));
  EXPECT_EQ(slurp(ws("again") / "tokenizer/vocab.json"), slurp(Workspace::get().model / "tokenizer/vocab.json"));
  EXPECT_NE(slurp(ws("other") / unet), slurp(Workspace::get().model / unet));
  // Writing over an earlier model is allowed.
  EXPECT_EQ(via({"make-tiny-model", "--out", ws("other").string(), "--seed", "7"}).code, 0);
  EXPECT_EQ(slurp(ws("other") / unet), slurp(Workspace::get().model / unet));
}

TEST(MakeTinyModel, RefusesAFolderWithOtherFiles) {
  fs::create_directories(ws("busy"));
  std::ofstream(ws("busy") / "notes.txt") << "mine";
  expect_one_error_line(via({"make-tiny-model", "--out", ws("busy").string()}), 1, {ws("busy").string()});
  EXPECT_TRUE(fs::exists(ws("busy") / "notes.txt"));
}

TEST(TinyModel, LoadsAndEditsFastWithVisibleDependenceOnImageAndText) {
  const model::InstructPix2Pix m(Workspace::get().model.string());
  EXPECT_EQ(m.vae_scale_factor(), 8);
  EXPECT_EQ(m.default_scheduler(), model::SchedulerKind::EulerAncestral);
  at::set_num_threads(1);
  const at::Tensor image = model::rgb8_to_image(io::image_to_tensor(io::read_image(ws("in.png").string())));
  model::DenoiseSettings s;
  s.steps = 10;
  auto edit = [&](const at::Tensor& img, const std::string& text) {
    const at::Tensor noise = model::make_noise({1, 4, 8, 8}, 3, 0, -1);
    return m.decode(m.denoise(m.encode_image(img), m.encode_instruction(text), noise, s, nullptr, {},
                              model::frame_noise(3, {0})));
  };
  edit(image, "make it winter");  // warm-up
  const auto start = std::chrono::steady_clock::now();
  const at::Tensor a = edit(image, "make it winter");
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  std::cout << "tiny model, 64x64, 10 euler_a steps, 1 thread: " << seconds << " s\n";
  const at::Tensor b = edit(image, "turn the sky into a sunset");
  const at::Tensor c = edit(image.flip(3), "make it winter");
  EXPECT_FALSE(a.isnan().any().item<bool>());
  EXPECT_GT(a.std().item<double>(), 0.05) << "a flat image";
  EXPECT_GT((a - b).abs().mean().item<double>(), 2.0 / 255) << "the instruction hardly matters";
  EXPECT_GT((a - c).abs().mean().item<double>(), 2.0 / 255) << "the input image hardly matters";
}

// ---- edit-image ----

TEST(EditImage, WritesThePictureDeterministically) {
  const Result r = via(edit_args(ws("a.png").string(), {"--seed", "5"}));
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_TRUE(r.err.empty()) << r.err;
  EXPECT_NE(r.out.find("a.png"), std::string::npos) << r.out;
  const io::RgbImage a = io::read_image(ws("a.png").string());
  EXPECT_EQ(a.width, 64);
  EXPECT_EQ(a.height, 64);
  ASSERT_EQ(via(edit_args(ws("b.png").string(), {"--seed", "5"})).code, 0);
  EXPECT_EQ(slurp(ws("a.png")), slurp(ws("b.png")));
  ASSERT_EQ(via(edit_args(ws("c.png").string(), {"--seed", "6"})).code, 0);
  EXPECT_NE(slurp(ws("a.png")), slurp(ws("c.png")));
}

TEST(EditImage, SizeSchedulersDtypeAndGivenNoise) {
  ASSERT_EQ(via(edit_args(ws("s.png").string(), {"--size", "48x32", "--scheduler", "ddim", "--threads", "1"})).code, 0);
  const io::RgbImage s = io::read_image(ws("s.png").string());
  EXPECT_EQ(s.width, 48);
  EXPECT_EQ(s.height, 32);
  EXPECT_EQ(via(edit_args(ws("e.png").string(), {"--scheduler", "euler", "--dtype", "bf16"})).code, 0);

  // --init-noise: the same latents give the same picture whatever the seed.
  model::save_safetensors(ws("noise.safetensors").string(), {{"latents", model::make_noise({1, 4, 8, 8}, 1, 2, 3)}});
  const std::vector<std::string> with_noise = {"--init-noise", ws("noise.safetensors").string(), "--scheduler", "ddim"};
  auto args1 = with_noise, args2 = with_noise;
  args1.insert(args1.end(), {"--seed", "1"});
  args2.insert(args2.end(), {"--seed", "2"});
  ASSERT_EQ(via(edit_args(ws("n1.png").string(), args1)).code, 0);
  ASSERT_EQ(via(edit_args(ws("n2.png").string(), args2)).code, 0);
  EXPECT_EQ(slurp(ws("n1.png")), slurp(ws("n2.png")));
}

TEST(EditImage, OddInputSizeIsRoundedDownLikeTheReference) {
  io::RgbImage odd(70, 43);
  io::write_png(ws("odd.png").string(), odd);
  auto args = edit_args(ws("odd_out.png").string());
  args[4] = ws("odd.png").string();
  ASSERT_EQ(via(args).code, 0);
  const io::RgbImage out = io::read_image(ws("odd_out.png").string());
  EXPECT_EQ(out.width, 64);
  EXPECT_EQ(out.height, 40);
}

TEST(EditImage, LongInstructionIsTruncatedWithAWarning) {
  std::string text;
  for (int i = 0; i < 90; ++i) text += "snow ";
  auto args = edit_args(ws("long.png").string());
  args[8] = text + "and a tiger";
  const Result r = via(args);
  EXPECT_EQ(r.code, 0) << r.err;
  const auto err = lines(r.err);
  ASSERT_EQ(err.size(), 1u) << r.err;
  EXPECT_NE(err[0].find("warning"), std::string::npos) << err[0];
  EXPECT_NE(err[0].find("and a tiger"), std::string::npos) << err[0];
}

TEST(EditImage, BadInputGivesOneClearLine) {
  const std::string model = Workspace::get().model.string();
  // Missing model folder.
  auto a = edit_args(ws("x.png").string());
  a[2] = ws("no_model").string();
  expect_one_error_line(via(a), 1, {ws("no_model").string()});
  // Incomplete model folder: names the missing file.
  fs::copy(model, ws("broken"), fs::copy_options::recursive);
  fs::remove(ws("broken") / "vae" / "config.json");
  a[2] = ws("broken").string();
  expect_one_error_line(via(a), 1, {(ws("broken") / "vae" / "config.json").string()});
  // Unreadable image.
  std::ofstream(ws("junk.png")) << "not a picture";
  auto b = edit_args(ws("x.png").string());
  b[4] = ws("junk.png").string();
  expect_one_error_line(via(b), 1, {ws("junk.png").string()});
  b[4] = ws("missing.png").string();
  expect_one_error_line(via(b), 1, {ws("missing.png").string()});
  // Unsupported scheduler, empty instruction, bad size, wrong output type: usage errors.
  expect_one_error_line(via(edit_args(ws("x.png").string(), {"--scheduler", "dpm++"})), 2, {"dpm++"});
  auto c = edit_args(ws("x.png").string());
  c[8] = "   ";
  expect_one_error_line(via(c), 2, {"instruction"});
  expect_one_error_line(via(edit_args(ws("x.png").string(), {"--size", "60x64"})), 2, {"60x64", "multiples of 8"});
  expect_one_error_line(via(edit_args(ws("x.png").string(), {"--size", "big"})), 2, {"--size"});
  expect_one_error_line(via(edit_args(ws("x.jpg").string())), 2, {".png"});
  expect_one_error_line(via(edit_args(ws("x.png").string(), {"--dtype", "int8"})), 2, {"int8"});
  expect_one_error_line(via(edit_args(ws("x.png").string(), {"--steps", "0"})), 2, {"--steps"});
  // fp16 on the CPU.
  expect_one_error_line(via(edit_args(ws("x.png").string(), {"--dtype", "fp16", "--device", "cpu"})), 1, {"fp16"});
  // Initial noise of the wrong shape or without the tensor.
  model::save_safetensors(ws("bad_noise.safetensors").string(), {{"latents", at::zeros({1, 4, 4, 4})}});
  expect_one_error_line(via(edit_args(ws("x.png").string(), {"--init-noise", ws("bad_noise.safetensors").string()})),
                        1, {ws("bad_noise.safetensors").string(), "[1, 4, 8, 8]"});
  model::save_safetensors(ws("no_latents.safetensors").string(), {{"noise", at::zeros({1, 4, 8, 8})}});
  expect_one_error_line(via(edit_args(ws("x.png").string(), {"--init-noise", ws("no_latents.safetensors").string()})),
                        1, {"'latents'"});
  EXPECT_FALSE(fs::exists(ws("x.png")));
}

}  // namespace
