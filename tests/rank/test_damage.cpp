// A work directory that heals itself: every kind of file a render leaves,
// damaged every way (deleted, emptied, truncated, bytes flipped, replaced by
// another render's file), and one `--resume` finishes with the output of an
// undamaged render, bit for bit, with no manual step. Also: what a directory
// was made from (input, model) is checked on resume, and a lost settings.json
// cannot bring back another edit.
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iostream>
#include <sstream>

#include "io/checkpoint.h"
#include "tests/io/test_video_util.h"
#include "tests/support/render_util.h"

namespace fs = std::filesystem;
using via::test::decoded_frames;
using via::test::env;
using via::test::TempDir;

namespace {

std::string tiny_model() { return env("VIA_SOURCE_DIR") + "/tests/reference/data/tiny_ip2p"; }

// 8 frames in 4 chunks of 2.
const char* const kPartialFrame = "frames/chunk_000003/frame_000006.h5";

void write_bytes(const std::string& path, const std::string& bytes) {
  std::ofstream(path, std::ios::binary | std::ios::trunc) << bytes;
}

// Leaves `work` as a stopped attempt would: the last chunk unfinished, with
// one of its two frames on disk (written as the render writes frame files:
// the latents, the render key and the frame index), and a stale claim.
void make_partial(const std::string& work) {
  const std::string chunk = work + "/chunks/chunk_000003.h5";
  {
    const via::io::CheckpointReader r(chunk);
    fs::create_directories(work + "/frames/chunk_000003");
    via::io::save_checkpoint(work + "/" + kPartialFrame, {{"latents", r.read("frame_6")}},
                             {{"render_key", r.get_string("render_key")}, {"frame", int64_t{6}}});
  }
  fs::remove(chunk);
  fs::remove(work + "/segments/chunk_000003.mp4");
  fs::create_directories(work + "/claims");
  write_bytes(work + "/claims/chunk_000000", "1\n");
}

class Damage : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    shared_ = new TempDir;
    via::test::VideoSpec spec;
    spec.width = 96;
    spec.height = 64;
    spec.rate = "16";
    spec.seconds = 0.5;  // 8 frames
    spec.audio = true;
    input_ = via::test::make_video(*shared_, "in.mp4", spec);
    // The undamaged render, and another render (another seed) whose files
    // replace this one's.
    for (const auto& [name, seed] : {std::pair<std::string, int>{"base", 5}, {"other", 6}}) {
      const auto r = via::test::run(command(shared_->file(name + ".mp4"), shared_->file(name), seed), *shared_);
      if (r.exit_code != 0) throw std::runtime_error("the " + name + " render failed: " + r.err);
      make_partial(shared_->file(name));
    }
    reference_bytes_ = via::test::read_file(shared_->file("base.mp4"));
    reference_ = decoded_frames(shared_->file("base.mp4"));
  }
  static void TearDownTestSuite() { delete shared_; }

  static std::string command(const std::string& out, const std::string& work, int seed = 5,
                             const std::string& input = "", const std::string& model = "") {
    return env("VIA_BIN") + " render --input '" + (input.empty() ? input_ : input) + "' --output '" + out +
           "' --model '" + (model.empty() ? tiny_model() : model) + "' --instruction 'make it a pencil sketch'" +
           " --workdir '" + work + "' --long-side 48 --steps 2 --candidates 2 --augment 2 --finetune-steps 2" +
           " --group-size 2 --chunk-frames 2 --threads 1 --seed " + std::to_string(seed) + " --overwrite";
  }

  // A copy of the partial render, `file` damaged by `damage`, resumed once.
  // Returns the resume's stderr.
  std::string resume_damaged(const std::string& file, const std::function<void(const std::string&)>& damage,
                             const std::string& label, bool also_drop_adapter = false) {
    const std::string work = dir_.file(label);
    fs::copy(shared_->file("base"), work, fs::copy_options::recursive);
    if (also_drop_adapter) fs::remove(work + "/adapter.h5");
    damage(work + "/" + file);
    const std::string out = dir_.file(label + ".mp4");
    const auto r = via::test::run(command(out, work) + " --resume", dir_);
    EXPECT_EQ(r.exit_code, 0) << label << ": " << r.err;
    if (r.exit_code != 0) return r.err;
    EXPECT_EQ(via::test::read_file(out), reference_bytes_) << label << ": the output differs from the undamaged render's";
    const auto frames = decoded_frames(out);
    EXPECT_EQ(frames, reference_) << label;
    return r.err;
  }

  TempDir dir_;
  static inline TempDir* shared_ = nullptr;
  static inline std::string input_, reference_bytes_;
  static inline std::vector<std::vector<uint8_t>> reference_;
};

struct Kind {
  const char* name;
  const char* file;  // relative to the work directory
  bool checked;      // a checkpoint or segment: damage is detected, named and moved aside
  bool needs_root_pair = false;
};

const Kind kKinds[] = {
    {"adapter", "adapter.h5", true},
    {"group", "attention_group.h5", true},
    {"root_pair", "root_pair.h5", true, true},  // read only when the adapter must be made again
    {"chunk", "chunks/chunk_000001.h5", true},
    {"frame", kPartialFrame, true},
    {"segment", "segments/chunk_000001.mp4", true},
    {"settings", "settings.json", false},
    {"plan", "plan.json", false},
    {"claims", "claims/chunk_000000", false},
    {"lock", "lock", false},
    {"attempts", "attempts.jsonl", false},
};

struct Harm {
  const char* name;
  std::function<void(const std::string& path, const std::string& other)> apply;
};

const Harm kHarms[] = {
    {"deleted", [](const std::string& p, const std::string&) { fs::remove(p); }},
    {"empty", [](const std::string& p, const std::string&) { write_bytes(p, ""); }},
    {"truncated",
     [](const std::string& p, const std::string&) {
       const std::string bytes = via::test::read_file(p);
       write_bytes(p, bytes.substr(0, bytes.size() / 2));
     }},
    {"flipped",  // 16 bytes spread over the file, so the data is hit as well as the headers
     [](const std::string& p, const std::string&) {
       std::string bytes = via::test::read_file(p);
       ASSERT_FALSE(bytes.empty()) << p;
       for (size_t i = 0; i < 16; ++i) {
         const size_t at = (2 * i + 1) * bytes.size() / 32;
         bytes[at] = static_cast<char>(bytes[at] ^ 0x5a);
       }
       write_bytes(p, bytes);
     }},
    {"foreign", [](const std::string& p, const std::string& other) { fs::copy_file(other, p, fs::copy_options::overwrite_existing); }},
};

}  // namespace

// One test per artifact kind, each through every damage: the matrix.
class DamageMatrix : public Damage, public ::testing::WithParamInterface<Kind> {};

TEST_P(DamageMatrix, OneResumeFinishesIdentically) {
  const Kind& kind = GetParam();
  for (const Harm& harm : kHarms) {
    const std::string label = std::string(kind.name) + "_" + harm.name;
    const std::string other = shared_->file("other") + "/" + kind.file;
    ASSERT_TRUE(fs::exists(shared_->file("base") + "/" + kind.file)) << kind.file;
    const std::string err = resume_damaged(
        kind.file, [&](const std::string& p) { harm.apply(p, other); }, label, kind.needs_root_pair);
    // What the resume did, for the record: its lines about the damage.
    std::istringstream lines(err);
    std::string said;
    for (std::string line; std::getline(lines, line);)
      if (line.find("moved aside") != std::string::npos || line.find("re-encoded") != std::string::npos ||
          line.find("denoised") != std::string::npos || line.find("gathering") != std::string::npos)
        said += "\n    " + line;
    std::cout << label << ":" << said << "\n";
    if (kind.checked && std::string(harm.name) != "deleted") {
      // named once, and kept for inspection
      EXPECT_NE(err.find(kind.file), std::string::npos) << label << ": the damaged file is not named: " << err;
      EXPECT_NE(err.find("moved aside"), std::string::npos) << label << ": " << err;
      EXPECT_TRUE(fs::exists(dir_.file(label) + "/damaged")) << label;
    }
    // The healed directory is whole: a second resume has nothing to redo.
    const auto again = via::test::run(command(dir_.file(label + "_again.mp4"), dir_.file(label)) + " --resume", dir_);
    EXPECT_EQ(again.exit_code, 0) << label << ": " << again.err;
    EXPECT_NE(again.err.find("nothing was denoised"), std::string::npos) << label << ": " << again.err;
    EXPECT_EQ(again.err.find("moved aside"), std::string::npos) << label << ": " << again.err;
    fs::remove_all(dir_.file(label));
  }
}

INSTANTIATE_TEST_SUITE_P(EveryKind, DamageMatrix, ::testing::ValuesIn(kKinds),
                         [](const ::testing::TestParamInfo<Kind>& info) { return std::string(info.param.name); });

TEST_F(Damage, AChangedInputOrModelIsRefusedNamingWhich) {
  // Own copies, so they can be changed between attempts.
  const std::string input = dir_.file("in.mp4"), model = dir_.file("model");
  fs::copy_file(input_, input);
  fs::copy(tiny_model(), model, fs::copy_options::recursive);
  const std::string work = dir_.file("w");
  auto r = via::test::run(command(dir_.file("a.mp4"), work, 5, input, model), dir_);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(via::test::read_file(dir_.file("a.mp4")).size(), reference_bytes_.size()) << "the same edit";

  // The same bytes, touched: accepted (the content is hashed again, and
  // agrees); a hidden folder in the model (a hub's cache) is not the model.
  fs::last_write_time(input, fs::file_time_type::clock::now());
  fs::create_directories(model + "/.cache");
  write_bytes(model + "/.cache/download.lock", "x");
  r = via::test::run(command(dir_.file("b.mp4"), work, 5, input, model) + " --resume", dir_);
  EXPECT_EQ(r.exit_code, 0) << r.err;

  // Another video at the same path: refused, naming it, before anything is written.
  via::test::VideoSpec spec;
  spec.width = 96;
  spec.height = 64;
  spec.rate = "16";
  spec.seconds = 0.5;
  spec.audio = true;
  spec.video_codec = "-c:v libx264 -preset ultrafast -crf 30 -pix_fmt yuv420p";
  via::test::make_video(dir_, "in.mp4", spec);
  r = via::test::run(command(dir_.file("c.mp4"), work, 5, input, model) + " --resume", dir_);
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.err.find("the input video " + input + " changed"), std::string::npos) << r.err;
  EXPECT_FALSE(fs::exists(dir_.file("c.mp4")));
  fs::copy_file(input_, input, fs::copy_options::overwrite_existing);

  // A model whose weights changed in place.
  std::string weights;
  for (const auto& e : fs::recursive_directory_iterator(model))
    if (e.path().extension() == ".safetensors" && e.path().string().find("unet") != std::string::npos)
      weights = e.path().string();
  ASSERT_FALSE(weights.empty());
  std::string bytes = via::test::read_file(weights);
  bytes[bytes.size() - 3] = static_cast<char>(bytes[bytes.size() - 3] ^ 1);
  write_bytes(weights, bytes);
  r = via::test::run(command(dir_.file("d.mp4"), work, 5, input, model) + " --resume", dir_);
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.err.find("the model " + model + " changed"), std::string::npos) << r.err;
}

TEST_F(Damage, ALostSettingsFileCannotBringBackAnotherEdit) {
  // The directory of one edit, its settings.json lost, and another
  // instruction: every file of the old edit is moved aside and the new
  // edit is made from scratch (it equals a fresh render of it).
  const std::string work = dir_.file("w");
  fs::copy(shared_->file("base"), work, fs::copy_options::recursive);
  fs::remove(work + "/settings.json");
  const auto other_edit = [&](const std::string& out, const std::string& w) {
    std::string cmd = command(out, w);
    return cmd.replace(cmd.find("make it a pencil sketch"), 23, "make it snowy");
  };
  auto r = via::test::run(other_edit(dir_.file("a.mp4"), work), dir_);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.err.find("made for another render"), std::string::npos) << r.err;
  r = via::test::run(other_edit(dir_.file("fresh.mp4"), dir_.file("fresh")), dir_);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(decoded_frames(dir_.file("a.mp4")), decoded_frames(dir_.file("fresh.mp4")));
  EXPECT_NE(decoded_frames(dir_.file("a.mp4")), reference_);
}

TEST_F(Damage, ADirectoryOfOtherFilesIsNotAWorkDirectory) {
  const std::string work = dir_.file("mine");
  fs::create_directories(work);
  write_bytes(work + "/notes.txt", "my notes\n");
  const auto r = via::test::run(command(dir_.file("a.mp4"), work), dir_);
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.err.find("holds other files (notes.txt)"), std::string::npos) << r.err;
  EXPECT_EQ(std::distance(fs::directory_iterator(work), fs::directory_iterator{}), 1) << "nothing written beside them";
}

TEST_F(Damage, StatusJsonReportsErrorsAsJson) {
  const auto r = via::test::run(env("VIA_BIN") + " status --json '" + dir_.file("none") + "'", dir_);
  EXPECT_EQ(r.exit_code, 1);
  const auto j = nlohmann::json::parse(r.out);
  EXPECT_NE(j.at("error").get<std::string>().find("does not exist"), std::string::npos) << r.out;
}
