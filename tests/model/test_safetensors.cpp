// SafeTensorsFile / save_safetensors: round trips of every dtype, a file
// written by the reference library, and every kind of broken file.
#include "model/safetensors.h"

#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>

namespace fs = std::filesystem;
using via::model::ModelError;
using via::model::SafeTensorsFile;
using via::model::save_safetensors;

namespace {

class SafeTensorsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string tmpl = (fs::temp_directory_path() / "via_safetensors_XXXXXX").string();
    ASSERT_NE(::mkdtemp(tmpl.data()), nullptr);
    dir_ = tmpl;
  }
  void TearDown() override { fs::remove_all(dir_); }

  std::string path(const std::string& name) const { return (dir_ / name).string(); }

  static void write_bytes(const std::string& p, const std::string& bytes) {
    std::ofstream out(p, std::ios::binary);
    out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  }

  // A file made of an 8-byte little-endian length, `header` and `data`.
  std::string make_file(const std::string& name, const std::string& header, const std::string& data,
                        uint64_t declared_len = UINT64_MAX) {
    const uint64_t len = declared_len == UINT64_MAX ? header.size() : declared_len;
    std::string bytes(reinterpret_cast<const char*>(&len), 8);
    bytes += header + data;
    write_bytes(path(name), bytes);
    return path(name);
  }

  // Expects opening `p` to throw ModelError whose message names `p` and contains `needle`.
  static void expect_error(const std::string& p, const std::string& needle) {
    try {
      SafeTensorsFile f(p);
      FAIL() << "expected ModelError for " << p;
    } catch (const ModelError& e) {
      const std::string msg = e.what();
      EXPECT_NE(msg.find(p), std::string::npos) << msg;
      EXPECT_NE(msg.find(needle), std::string::npos) << msg;
    }
  }

  // Expects `name`.safetensors, made of `header` and `data_bytes` zero bytes, to be refused (expect_error).
  void expect_refused(const std::string& name, const std::string& header, size_t data_bytes,
                      const std::string& needle) {
    expect_error(make_file(name + ".safetensors", header, std::string(data_bytes, '\0')), needle);
  }

  fs::path dir_;
};

TEST_F(SafeTensorsTest, RoundTripEveryDtype) {
  at::manual_seed(0);
  std::map<std::string, at::Tensor> tensors = {
      {"f32", at::randn({3, 4})},
      {"f16", at::randn({2, 5}).to(at::kHalf)},
      {"bf16", at::randn({7}).to(at::kBFloat16)},
      {"i64", at::arange(-5, 7, at::kLong).reshape({3, 4})},
      {"i32", at::arange(-3, 3, at::kInt)},
      {"u8", at::arange(250, 256, at::kLong).to(at::kByte)},
      {"bool", at::tensor({1, 0, 1}, at::kLong).to(at::kBool)},
      {"scalar", at::scalar_tensor(3.25, at::kFloat)},
      {"empty", at::zeros({0, 3})},
      {"strided", at::randn({4, 6}).t()},  // non-contiguous input is written contiguously
  };
  const std::string p = path("all.safetensors");
  save_safetensors(p, tensors, {{"format", "pt"}, {"note", "round trip"}});

  SafeTensorsFile f(p);
  ASSERT_EQ(f.names().size(), tensors.size());
  EXPECT_EQ(f.metadata().at("format"), "pt");
  EXPECT_EQ(f.metadata().at("note"), "round trip");
  for (const auto& [name, t] : tensors) {
    SCOPED_TRACE(name);
    ASSERT_TRUE(f.contains(name));
    at::Tensor r = f.tensor(name);
    EXPECT_EQ(r.scalar_type(), t.scalar_type());
    EXPECT_EQ(r.sizes(), t.sizes());
    EXPECT_TRUE(at::equal(r, t));
    EXPECT_EQ(f.info(name).shape, t.sizes().vec());
  }
  // names() is in data order: offsets strictly increase.
  for (size_t i = 1; i < f.names().size(); ++i)
    EXPECT_LE(f.info(f.names()[i - 1]).end, f.info(f.names()[i]).begin);
  EXPECT_FALSE(fs::exists(p + ".tmp." + std::to_string(::getpid())));
}

TEST_F(SafeTensorsTest, TensorsAliasTheMappingAndOutliveTheFileObject) {
  const std::string p = path("alias.safetensors");
  save_safetensors(p, {{"w", at::arange(16, at::kFloat)}});
  at::Tensor a, b;
  {
    SafeTensorsFile f(p);
    a = f.tensor("w");
    b = f.tensor("w");
  }
  EXPECT_EQ(a.data_ptr(), b.data_ptr());  // zero-copy: both views of the same mapped bytes
  EXPECT_TRUE(at::equal(a, at::arange(16, at::kFloat)));
  a.mul_(2);  // copy-on-write: allowed, never reaches the file
  SafeTensorsFile again(p);
  EXPECT_TRUE(at::equal(again.tensor("w"), at::arange(16, at::kFloat)));
}

TEST_F(SafeTensorsTest, ReadsTheReferenceWritersBytes) {
  // Bytes produced by safetensors 0.8 (Python): save({'a': fp16 [[1.5, -2]], 'b': int64 [7, -1]},
  // metadata={'format': 'pt'}); its header is padded with one space to 8-byte alignment.
  const std::string header =
      R"({"__metadata__":{"format":"pt"},"b":{"dtype":"I64","shape":[2],"data_offsets":[0,16]},)"
      R"("a":{"dtype":"F16","shape":[1,2],"data_offsets":[16,20]}} )";
  ASSERT_EQ(header.size(), 0x90u);
  const std::string data("\x07\0\0\0\0\0\0\0\xff\xff\xff\xff\xff\xff\xff\xff\x00\x3e\x00\xc0", 20);
  SafeTensorsFile f(make_file("ref.safetensors", header, data));
  EXPECT_EQ((std::vector<std::string>{"b", "a"}), f.names());
  EXPECT_EQ(f.metadata().at("format"), "pt");
  EXPECT_TRUE(at::equal(f.tensor("b"), at::tensor({7, -1}, at::kLong)));
  at::Tensor a = f.tensor("a");
  EXPECT_EQ(a.scalar_type(), at::kHalf);
  EXPECT_TRUE(at::equal(a.to(at::kFloat), at::tensor({1.5f, -2.0f}).reshape({1, 2})));
}

TEST_F(SafeTensorsTest, UnknownTensorNameIsAnError) {
  const std::string p = path("one.safetensors");
  save_safetensors(p, {{"w", at::ones({2})}});
  SafeTensorsFile f(p);
  try {
    f.tensor("nope");
    FAIL();
  } catch (const ModelError& e) {
    EXPECT_NE(std::string(e.what()).find("nope"), std::string::npos);
    EXPECT_NE(std::string(e.what()).find(p), std::string::npos);
  }
}

TEST_F(SafeTensorsTest, MissingFile) { expect_error(path("absent.safetensors"), "cannot open"); }

TEST_F(SafeTensorsTest, EmptyFile) {
  write_bytes(path("empty.safetensors"), "");
  expect_error(path("empty.safetensors"), "0 bytes");
}

TEST_F(SafeTensorsTest, TruncatedFile) {
  const std::string p = path("trunc.safetensors");
  save_safetensors(p, {{"a", at::ones({64})}, {"b", at::ones({64})}});
  fs::resize_file(p, fs::file_size(p) - 10);
  expect_error(p, "tensor 'b'");
  // Cut inside the header: the header length now exceeds the file.
  fs::resize_file(p, 20);
  expect_error(p, "exceeds the file");
}

TEST_F(SafeTensorsTest, HeaderLengthLargerThanFile) {
  expect_error(make_file("biglen.safetensors", "{}", "", 1ull << 40), "exceeds the file");
}

TEST_F(SafeTensorsTest, GarbageHeader) {
  expect_refused("garbage", "this is not json at all", 0, "not valid JSON");
  expect_refused("array", "[1,2,3]", 0, "not a JSON object");
  // A PNG's first bytes read as a length: huge, caught before anything is parsed.
  write_bytes(path("png.safetensors"), std::string("\x89PNG\r\n\x1a\n\0\0\0\rIHDR", 16));
  expect_error(path("png.safetensors"), "exceeds the file");
}

TEST_F(SafeTensorsTest, OffsetsOutOfRange) {
  expect_refused("oob", R"({"w":{"dtype":"F32","shape":[2],"data_offsets":[0,8000]}})", 8, "outside the data section");
}

TEST_F(SafeTensorsTest, OffsetsInconsistentWithShape) {
  expect_refused("size", R"({"w":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}})", 8, "needs 12");
}

TEST_F(SafeTensorsTest, OverlappingTensors) {
  expect_refused("overlap",
                 R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
                 R"("b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}})",
                 12, "overlaps");
}

TEST_F(SafeTensorsTest, GapsAndTrailingBytes) {
  expect_refused("gap", R"({"a":{"dtype":"U8","shape":[2],"data_offsets":[2,4]}})", 4, "gap");
  expect_refused("trail", R"({"a":{"dtype":"U8","shape":[2],"data_offsets":[0,2]}})", 4, "cover 2");
}

TEST_F(SafeTensorsTest, BadEntries) {
  expect_refused("dtype", R"({"w":{"dtype":"F8_E4M3","shape":[1],"data_offsets":[0,1]}})", 1,
                 "unsupported dtype 'F8_E4M3'");
  expect_refused("noshape", R"({"w":{"dtype":"F32","data_offsets":[0,4]}})", 4, "tensor 'w'");
  expect_refused("negshape", R"({"w":{"dtype":"F32","shape":[-1],"data_offsets":[0,4]}})", 4, "non-negative");
  expect_refused("offs", R"({"w":{"dtype":"F32","shape":[1],"data_offsets":[0]}})", 4, "data_offsets");
}

TEST_F(SafeTensorsTest, SaveFailsCleanlyIntoMissingDirectory) {
  const std::string p = path("no/such/dir/x.safetensors");
  EXPECT_THROW(save_safetensors(p, {{"w", at::ones({1})}}), ModelError);
  EXPECT_FALSE(fs::exists(p));
}

}  // namespace
