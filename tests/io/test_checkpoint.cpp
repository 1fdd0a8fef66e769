// The checkpoint store: bit-exact round trips of every dtype and shape,
// attributes, names with dots and slashes, every kind of bad file, the
// temporary-then-rename protocol and a disk that fills up during a write.
#include "io/checkpoint.h"

#include <ATen/ATen.h>
#include <gtest/gtest.h>
#include <hdf5.h>

#include <fcntl.h>
#include <unistd.h>

#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <sstream>
#include <string>
#include <vector>

#include "tests/support/tensors.h"

namespace fs = std::filesystem;
using via::io::Attribute;
using via::io::CheckpointError;
using via::io::CheckpointReader;
using via::io::CheckpointWriter;
using via::io::is_valid_checkpoint;
using via::io::Verify;

namespace {

class CheckpointTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string tmpl = (fs::temp_directory_path() / "via_checkpoint_XXXXXX").string();
    ASSERT_NE(::mkdtemp(tmpl.data()), nullptr);
    dir_ = tmpl;
    at::manual_seed(1234);
  }
  void TearDown() override { fs::remove_all(dir_); }

  std::string path(const std::string& name) const { return (dir_ / name).string(); }

  // Files in the test directory other than `except`.
  std::vector<std::string> files() const {
    std::vector<std::string> out;
    for (const auto& e : fs::directory_iterator(dir_)) out.push_back(e.path().filename().string());
    std::sort(out.begin(), out.end());
    return out;
  }

  static std::string read_bytes(const std::string& p) {
    std::ifstream in(p, std::ios::binary);
    return std::string(std::istreambuf_iterator<char>(in), {});
  }
  static void write_bytes(const std::string& p, const std::string& bytes) {
    std::ofstream out(p, std::ios::binary);
    out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  }

  // Expects opening `p` to fail with a CheckpointError naming `p` and
  // containing `needle`, and is_valid_checkpoint to say no with the same text.
  static void expect_invalid(const std::string& p, const std::string& needle) {
    try {
      CheckpointReader r(p);
      ADD_FAILURE() << "expected CheckpointError for " << p;
    } catch (const CheckpointError& e) {
      const std::string msg = e.what();
      EXPECT_EQ(e.path(), p);
      EXPECT_NE(msg.find(p), std::string::npos) << msg;
      EXPECT_NE(msg.find(needle), std::string::npos) << msg;
    }
    std::string reason;
    EXPECT_FALSE(is_valid_checkpoint(p, Verify::Structure, &reason));
    EXPECT_NE(reason.find(needle), std::string::npos) << reason;
  }

  // A small valid checkpoint.
  std::string make_valid(const std::string& name) {
    const std::string p = path(name);
    CheckpointWriter w(p);
    w.write("a", at::arange(1000, at::kFloat));
    w.write("b", at::ones({3, 4}, at::kHalf));
    w.set_string("settings", "{\"steps\": 20}");
    w.commit();
    return p;
  }

  fs::path dir_;
};

// Same dtype, shape and bytes, and read back contiguous.
void expect_identical(const at::Tensor& expected, const at::Tensor& actual, const std::string& what) {
  EXPECT_TRUE(!actual.defined() || actual.is_contiguous()) << what;
  via::test::expect_identical(expected, actual, what);
}

TEST(Xxh64, MatchesReferenceVectors) {
  // Values from the reference implementation (libxxhash 0.8.1, XXH64, seed 0).
  EXPECT_EQ(via::io::xxh64("", 0), 0xef46db3751d8e999ULL);
  EXPECT_EQ(via::io::xxh64("abc", 3), 0x44bc2cf5ad770999ULL);
  const std::string a31(31, 'a'), a32(32, 'a');
  EXPECT_EQ(via::io::xxh64(a31.data(), a31.size()), 0xfe47067cda802916ULL);
  EXPECT_EQ(via::io::xxh64(a32.data(), a32.size()), 0x856e843298f99ad7ULL);
  const std::string fox = "The quick brown fox jumps over the lazy dog";
  EXPECT_EQ(via::io::xxh64(fox.data(), fox.size()), 0x0b242d361fda71bcULL);
  std::string bytes;
  for (int r = 0; r < 5; ++r)
    for (int i = 0; i < 256; ++i) bytes += static_cast<char>(i);
  EXPECT_EQ(via::io::xxh64(bytes.data(), bytes.size()), 0xafc184ad7938a354ULL);
}

TEST(TensorNames, EncodeAndDecode) {
  using via::io::decode_tensor_name;
  using via::io::encode_tensor_name;
  EXPECT_EQ(encode_tensor_name("down_blocks.0.attentions.0.transformer_blocks.0.attn1/step3/k"),
            "down_blocks.0.attentions.0.transformer_blocks.0.attn1%2Fstep3%2Fk");
  EXPECT_EQ(encode_tensor_name("."), "%2E");
  EXPECT_EQ(encode_tensor_name(".a.b"), "%2Ea.b");
  EXPECT_EQ(encode_tensor_name("100%"), "100%25");
  EXPECT_EQ(encode_tensor_name(std::string("a\0b", 3)), "a%00b");
  for (const std::string name : {"plain", "a/b/c", "%2F", "/", "//", ".", "..", "x@3/k", "\x7f\x01"})
    EXPECT_EQ(decode_tensor_name(encode_tensor_name(name)), name);
  EXPECT_THROW(decode_tensor_name("bad%2"), std::invalid_argument);
  EXPECT_THROW(decode_tensor_name("bad%zz"), std::invalid_argument);
}

TEST_F(CheckpointTest, RoundTripsEveryDtypeBitExact) {
  const std::vector<at::ScalarType> dtypes = {at::kFloat, at::kDouble, at::kHalf, at::kBFloat16, at::kChar,
                                              at::kShort, at::kInt,    at::kLong, at::kByte,     at::kBool};
  const std::vector<std::vector<int64_t>> shapes = {{}, {0}, {1}, {7}, {2, 0, 3}, {3, 4, 5}, {2, 3, 4, 5, 2}};
  std::map<std::string, at::Tensor> written;
  const std::string p = path("dtypes.h5");
  {
    CheckpointWriter w(p);
    for (auto dtype : dtypes)
      for (const auto& shape : shapes) {
        const std::string name = std::string(c10::toString(dtype)) + "/" + std::to_string(shape.size()) + "d" +
                                 std::to_string(written.size());
        written[name] = via::test::random_bits(dtype, shape);
        w.write(name, written[name]);
      }
    // Every 16-bit pattern of half and bfloat16, and float specials.
    written["half/all"] = at::arange(-32768, 32768, at::kInt).to(at::kShort).view(at::kHalf);
    written["bf16/all"] = at::arange(-32768, 32768, at::kInt).to(at::kShort).view(at::kBFloat16);
    written["float/special"] = at::tensor({0.0f, -0.0f, std::numeric_limits<float>::infinity(),
                                           -std::numeric_limits<float>::infinity(), std::nanf("0x1234"),
                                           std::numeric_limits<float>::denorm_min(), 1e-40f});
    written["int64/extremes"] =
        at::tensor({std::numeric_limits<int64_t>::min(), int64_t{-1}, int64_t{0}, std::numeric_limits<int64_t>::max()});
    for (const auto& name : {"half/all", "bf16/all", "float/special", "int64/extremes"}) w.write(name, written[name]);
    w.commit();
  }
  CheckpointReader r(p);
  EXPECT_EQ(r.size(), static_cast<int64_t>(written.size()));
  for (const auto& [name, t] : written) {
    expect_identical(t, r.read(name), name);
    const auto meta = r.meta(name);
    EXPECT_EQ(meta.dtype, t.scalar_type()) << name;
    EXPECT_EQ(meta.shape, t.sizes().vec()) << name;
    EXPECT_EQ(meta.nbytes, static_cast<int64_t>(t.nbytes())) << name;
  }
  EXPECT_TRUE(is_valid_checkpoint(p, Verify::Full));
}

TEST_F(CheckpointTest, StoresNonContiguousAndSlicedTensorsByValue) {
  const at::Tensor base = at::randn({6, 8});
  const std::map<std::string, at::Tensor> views = {
      {"transposed", base.t()}, {"sliced", base.slice(1, 2, 7, 2)}, {"offset", base[3]}, {"expanded", base[0].expand({4, 8})}};
  const std::string p = path("views.h5");
  via::io::save_checkpoint(p, views);
  const auto loaded = via::io::load_checkpoint(p);
  for (const auto& [name, t] : views) expect_identical(t.contiguous(), loaded.tensors.at(name), name);
}

TEST_F(CheckpointTest, HalfIsAnHdf5FloatAndBfloat16IsMarkedRawBits) {
  const std::string p = path("types.h5");
  via::io::save_checkpoint(p, {{"h", at::full({2}, 1.5, at::kHalf)}, {"b", at::full({2}, 1.5, at::kBFloat16)}});
  // Read with HDF5 itself: the half dataset converts to native float, the
  // bfloat16 one is 16-bit unsigned integers with a dtype attribute.
  const hid_t f = H5Fopen(p.c_str(), H5F_ACC_RDONLY, H5P_DEFAULT);
  ASSERT_GE(f, 0);
  const hid_t h = H5Dopen2(f, "/tensors/h", H5P_DEFAULT);
  float values[2] = {0, 0};
  ASSERT_GE(H5Dread(h, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, values), 0);
  EXPECT_EQ(values[0], 1.5f);
  const hid_t b = H5Dopen2(f, "/tensors/b", H5P_DEFAULT);
  const hid_t bt = H5Dget_type(b);
  EXPECT_EQ(H5Tget_class(bt), H5T_INTEGER);
  EXPECT_EQ(H5Tget_size(bt), 2u);
  uint16_t bits[2] = {0, 0};
  ASSERT_GE(H5Dread(b, H5T_NATIVE_UINT16, H5S_ALL, H5S_ALL, H5P_DEFAULT, bits), 0);
  EXPECT_EQ(bits[0], 0x3FC0);  // 1.5 in bfloat16
  H5Tclose(bt);
  H5Dclose(b);
  H5Dclose(h);
  H5Fclose(f);
}

TEST_F(CheckpointTest, Attributes) {
  const std::string p = path("attrs.h5");
  std::string big;
  for (int i = 0; i < 20000; ++i) big += "{\"k\":" + std::to_string(i) + "}";  // ~200 kB: past HDF5's 64 kB header limit
  {
    CheckpointWriter w(p);
    w.set_string("settings", big);
    w.set_string("empty", "");
    w.set_string("utf8", "Ünïcödé ✓");
    w.set_string("settings.hash", "0123456789abcdef");
    w.set_string("a/b", "slash");
    w.set_string(".hidden", "dot");
    w.set_int("min", std::numeric_limits<int64_t>::min());
    w.set_int("max", std::numeric_limits<int64_t>::max());
    w.set_double("pi", 3.141592653589793);
    w.set_double("neg_zero", -0.0);
    w.set_double("inf", std::numeric_limits<double>::infinity());
    w.set_int("replaced", 1);
    w.set_string("replaced", "now a string");
    w.set_attribute("variant", Attribute{2.5});
    EXPECT_THROW(w.set_string("nul", std::string("a\0b", 3)), CheckpointError);
    EXPECT_THROW(w.set_int("", 1), CheckpointError);
    w.commit();
  }
  CheckpointReader r(p);
  EXPECT_EQ(r.get_string("settings"), big);
  EXPECT_EQ(r.get_string("empty"), "");
  EXPECT_EQ(r.get_string("utf8"), "Ünïcödé ✓");
  EXPECT_EQ(r.get_string("settings.hash"), "0123456789abcdef");
  EXPECT_EQ(r.get_string("a/b"), "slash");
  EXPECT_EQ(r.get_string(".hidden"), "dot");
  EXPECT_EQ(r.get_int("min"), std::numeric_limits<int64_t>::min());
  EXPECT_EQ(r.get_int("max"), std::numeric_limits<int64_t>::max());
  EXPECT_EQ(r.get_double("pi"), 3.141592653589793);
  EXPECT_TRUE(std::signbit(r.get_double("neg_zero")));
  EXPECT_EQ(r.get_double("inf"), std::numeric_limits<double>::infinity());
  EXPECT_EQ(r.get_string("replaced"), "now a string");
  EXPECT_EQ(r.get_double("variant"), 2.5);
  EXPECT_TRUE(r.has_attribute("pi"));
  EXPECT_FALSE(r.has_attribute("nul"));
  EXPECT_FALSE(r.has_attribute("missing"));
  const auto all = r.attributes();
  EXPECT_EQ(all.size(), 13u);
  EXPECT_EQ(std::get<int64_t>(all.at("max")), std::numeric_limits<int64_t>::max());
  EXPECT_EQ(std::get<std::string>(all.at("a/b")), "slash");
  // Wrong type and missing key: errors naming file and key.
  try {
    r.get_int("pi");
    ADD_FAILURE() << "expected CheckpointError";
  } catch (const CheckpointError& e) {
    EXPECT_NE(std::string(e.what()).find("'pi' is a double, not an integer"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find(p), std::string::npos) << e.what();
  }
  EXPECT_THROW(r.get_string("missing"), CheckpointError);
}

TEST_F(CheckpointTest, NamesWithDotsAndSlashesRoundTripInWriteOrder) {
  const std::vector<std::string> names = {
      "down_blocks.0.attentions.0.transformer_blocks.0.attn1/step3/k",
      "down_blocks.0.attentions.0.transformer_blocks.0.attn1/step3/v",
      "a/b",
      "a%2Fb",
      "a",
      ".",
      "..",
      "/leading",
      "trailing/",
      "a//b",
      "with space",
      "ünïcödé",
      std::string("ctrl\x01\n", 6),
      "mid.0.attn2@19/k",
      std::string(1000, 'x') + "/long",
      "zeta",
      "alpha",
  };
  const std::string p = path("names.h5");
  {
    CheckpointWriter w(p);
    for (size_t i = 0; i < names.size(); ++i) w.write(names[i], at::full({2}, static_cast<double>(i)));
    w.commit();
  }
  CheckpointReader r(p);
  EXPECT_EQ(r.names(), names);  // write order, exact bytes
  for (size_t i = 0; i < names.size(); ++i) {
    EXPECT_TRUE(r.contains(names[i])) << names[i];
    EXPECT_EQ(r.read(names[i])[1].item<float>(), static_cast<float>(i)) << names[i];
  }
  EXPECT_FALSE(r.contains("a/b/c"));
  EXPECT_FALSE(r.contains("b"));
  EXPECT_FALSE(r.contains(""));
  try {
    r.read("not/there");
    ADD_FAILURE() << "expected CheckpointError";
  } catch (const CheckpointError& e) {
    EXPECT_NE(std::string(e.what()).find("no tensor 'not/there'"), std::string::npos) << e.what();
  }
}

TEST_F(CheckpointTest, BadInputKeepsTheWriterUsable) {
  const std::string p = path("input.h5");
  CheckpointWriter w(p);
  w.write("x", at::ones({2}));
  EXPECT_THROW(w.write("x", at::ones({2})), CheckpointError);  // duplicate
  EXPECT_THROW(w.write("", at::ones({2})), CheckpointError);
  EXPECT_THROW(w.write("c", at::ones({2}, at::kComplexFloat)), CheckpointError);
  EXPECT_THROW(w.write("u", at::Tensor()), CheckpointError);
  w.write("y", at::zeros({3}));
  w.commit();
  EXPECT_THROW(w.write("z", at::ones({1})), CheckpointError);  // after commit
  EXPECT_THROW(w.commit(), CheckpointError);
  CheckpointReader r(p);
  EXPECT_EQ(r.names(), (std::vector<std::string>{"x", "y"}));
}

TEST_F(CheckpointTest, WritesToATemporaryNameAndRenamesOnCommit) {
  const std::string p = path("chunk_0000.h5");
  {
    CheckpointWriter w(p);
    w.write("latent", at::randn({4, 8, 8}));
    EXPECT_FALSE(fs::exists(p));
    EXPECT_TRUE(fs::exists(w.temporary_path()));
    EXPECT_EQ(fs::path(w.temporary_path()).parent_path(), fs::path(p).parent_path());
    EXPECT_EQ(w.temporary_path().rfind(p + ".tmp.", 0), 0u) << w.temporary_path();
    w.commit();
    EXPECT_TRUE(fs::exists(p));
    EXPECT_FALSE(fs::exists(w.temporary_path()));
  }
  EXPECT_EQ(files(), std::vector<std::string>{"chunk_0000.h5"});
  EXPECT_TRUE(is_valid_checkpoint(p));
}

TEST_F(CheckpointTest, AWriterDestroyedWithoutCommitLeavesNothing) {
  const std::string p = path("abandoned.h5");
  std::string tmp;
  {
    CheckpointWriter w(p);
    tmp = w.temporary_path();
    w.write("latent", at::randn({4, 8, 8}));
  }
  EXPECT_FALSE(fs::exists(p));
  EXPECT_FALSE(fs::exists(tmp));
  EXPECT_TRUE(files().empty());
  EXPECT_EQ(H5Fget_obj_count(H5F_OBJ_ALL, H5F_OBJ_ALL), 0);
}

TEST_F(CheckpointTest, CommitReplacesAnOlderFile) {
  const std::string p = path("replace.h5");
  via::io::save_checkpoint(p, {{"v", at::full({1}, 1.0)}});
  via::io::save_checkpoint(p, {{"v", at::full({1}, 2.0)}, {"w", at::ones({1})}});
  CheckpointReader r(p);
  EXPECT_EQ(r.size(), 2);
  EXPECT_EQ(r.read("v").item<float>(), 2.0f);
}

// Points the descriptor this process has open on `file` at /dev/full, whose
// every write fails with ENOSPC: the disk under a writer fills up, from the
// next write on, without needing root to mount a small file system.
void fill_disk_under(const std::string& file) {
  const fs::path target = fs::canonical(file);
  for (const auto& entry : fs::directory_iterator("/proc/self/fd")) {
    std::error_code ec;
    if (fs::read_symlink(entry.path(), ec) != target || ec) continue;
    const int fd = std::stoi(entry.path().filename().string());
    const int full = ::open("/dev/full", O_WRONLY | O_CLOEXEC);
    ASSERT_GE(full, 0);
    ASSERT_EQ(::dup2(full, fd), fd);
    ::close(full);
    return;
  }
  FAIL() << "no descriptor open on " << file;
}

// A disk that fills up while a writer writes a big tensor (raw data goes
// straight to the file) or at commit (small tensors wait in HDF5's caches
// until the flush): the error names the file and carries the system's
// message, nothing is left under the final name or the temporary one, an
// older file of that name survives, and HDF5 holds no file open afterwards.
class DiskFull : public CheckpointTest, public ::testing::WithParamInterface<bool> {};

TEST_P(DiskFull, NamesTheFileAndLeavesNoFile) {
  const bool during_write = GetParam();
  const std::string p = path("full.h5");
  via::io::save_checkpoint(p, {{"old", at::full({4}, 7.0)}});
  std::string message, tmp;
  bool failed_in_write = false;
  try {
    CheckpointWriter w(p);
    tmp = w.temporary_path();
    w.write("first", at::randn({16}));
    fill_disk_under(tmp);
    failed_in_write = true;
    w.write("second", during_write ? at::randn({256 * 1024}) : at::randn({16}));
    failed_in_write = false;
    w.commit();
  } catch (const CheckpointError& e) {
    message = e.what();
    EXPECT_EQ(e.path(), p);
  }
  ASSERT_FALSE(message.empty()) << "writing to a full disk did not fail";
  EXPECT_EQ(failed_in_write, during_write) << message;
  EXPECT_EQ(message.rfind("checkpoint " + p + ": ", 0), 0u) << message;
  EXPECT_NE(message.find(during_write ? "writing tensor 'second'" : "completing " + tmp), std::string::npos) << message;
  EXPECT_NE(message.find("No space left on device"), std::string::npos) << message;  // HDF5's stack has strerror
  EXPECT_NE(message.find("nothing was written under this name"), std::string::npos) << message;
  EXPECT_EQ(message.find('\n'), std::string::npos) << "one line: " << message;
  EXPECT_FALSE(fs::exists(tmp));
  EXPECT_EQ(files(), std::vector<std::string>{"full.h5"});
  EXPECT_EQ(H5Fget_obj_count(H5F_OBJ_ALL, H5F_OBJ_ALL), 0) << "the failed file is still open in HDF5";
  CheckpointReader r(p);  // the older file is intact
  EXPECT_EQ(r.names(), std::vector<std::string>{"old"});
  EXPECT_EQ(r.read("old")[0].item<float>(), 7.0f);
}

INSTANTIATE_TEST_SUITE_P(Checkpoint, DiskFull, ::testing::Values(true, false),
                         [](const auto& info) { return info.param ? "DuringWrite" : "AtCommit"; });

TEST_F(CheckpointTest, AMissingDirectoryFailsAtCreationNamingTheFile) {
  const std::string p = path("no/such/dir/x.h5");
  try {
    CheckpointWriter w(p);
    ADD_FAILURE() << "expected CheckpointError";
  } catch (const CheckpointError& e) {
    EXPECT_EQ(e.path(), p);
    EXPECT_NE(std::string(e.what()).find("No such file or directory"), std::string::npos) << e.what();
  }
  EXPECT_TRUE(files().empty());
}

TEST_F(CheckpointTest, DetectsMissingEmptyAndForeignFiles) {
  expect_invalid(path("missing.h5"), "No such file or directory");
  write_bytes(path("empty.h5"), "");
  expect_invalid(path("empty.h5"), "empty file");
  write_bytes(path("text.h5"), "this is not HDF5\n");
  expect_invalid(path("text.h5"), "not an HDF5 file");
  fs::create_directory(path("dir.h5"));
  expect_invalid(path("dir.h5"), "not a regular file");

  // A valid HDF5 file that via did not write.
  const std::string foreign = path("foreign.h5");
  {
    const hid_t f = H5Fcreate(foreign.c_str(), H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    ASSERT_GE(f, 0);
    const hsize_t dims[1] = {4};
    const hid_t space = H5Screate_simple(1, dims, nullptr);
    const hid_t ds = H5Dcreate2(f, "data", H5T_IEEE_F32LE, space, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    const float values[4] = {1, 2, 3, 4};
    H5Dwrite(ds, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, values);
    H5Dclose(ds);
    H5Sclose(space);
    H5Fclose(f);
  }
  expect_invalid(foreign, "without a via_format attribute");

  // An HDF5 file that claims the format but was never completed.
  const std::string incomplete = path("incomplete.h5");
  {
    const hid_t f = H5Fcreate(incomplete.c_str(), H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    ASSERT_GE(f, 0);
    const hid_t space = H5Screate(H5S_SCALAR);
    const hid_t str = H5Tcopy(H5T_C_S1);
    H5Tset_size(str, 14);
    const hid_t a = H5Acreate2(f, "via_format", str, space, H5P_DEFAULT, H5P_DEFAULT);
    H5Awrite(a, str, "via.checkpoint");
    H5Aclose(a);
    const int64_t one = 1, zero = 0;
    const hid_t v = H5Acreate2(f, "via_format_version", H5T_STD_I64LE, space, H5P_DEFAULT, H5P_DEFAULT);
    H5Awrite(v, H5T_NATIVE_INT64, &one);
    H5Aclose(v);
    const hid_t c = H5Acreate2(f, "complete", H5T_STD_I64LE, space, H5P_DEFAULT, H5P_DEFAULT);
    H5Awrite(c, H5T_NATIVE_INT64, &zero);
    H5Aclose(c);
    H5Tclose(str);
    H5Sclose(space);
    H5Fclose(f);
  }
  expect_invalid(incomplete, "incomplete checkpoint");
}

TEST_F(CheckpointTest, DetectsTruncatedFiles) {
  const std::string good = make_valid("good.h5");
  const std::string bytes = read_bytes(good);
  ASSERT_GT(bytes.size(), 4000u);
  for (size_t keep : {size_t{4}, size_t{100}, bytes.size() / 2, bytes.size() - 1}) {
    const std::string p = path("truncated_" + std::to_string(keep) + ".h5");
    write_bytes(p, bytes.substr(0, keep));
    SCOPED_TRACE("kept " + std::to_string(keep) + " of " + std::to_string(bytes.size()) + " bytes");
    expect_invalid(p, keep < 8 ? "not an HDF5 file" : "truncated");
  }
  EXPECT_TRUE(is_valid_checkpoint(good));
}

TEST_F(CheckpointTest, DetectsDamagedTensorData) {
  const std::string p = path("damaged.h5");
  const at::Tensor t = at::arange(0, 4096, at::kInt) * 7919 + 0x5A5A0000;  // distinctive bytes
  via::io::save_checkpoint(p, {{"latent", t}, {"other", at::ones({2})}});
  std::string bytes = read_bytes(p);
  const std::string needle(static_cast<const char*>(t.data_ptr()), 64);
  const auto at = bytes.find(needle);
  ASSERT_NE(at, std::string::npos);
  bytes[at + 1000] ^= 0x10;
  write_bytes(p, bytes);

  EXPECT_TRUE(is_valid_checkpoint(p, Verify::Structure));  // metadata intact
  std::string reason;
  EXPECT_FALSE(is_valid_checkpoint(p, Verify::Full, &reason));
  EXPECT_NE(reason.find("checksum mismatch"), std::string::npos) << reason;
  CheckpointReader r(p);
  EXPECT_EQ(r.read("other")[0].item<float>(), 1.0f);  // a single tensor reads without the rest
  try {
    r.read("latent");
    ADD_FAILURE() << "expected CheckpointError";
  } catch (const CheckpointError& e) {
    EXPECT_NE(std::string(e.what()).find("tensor 'latent' int32[4096]: checksum mismatch"), std::string::npos)
        << e.what();
  }
}

TEST_F(CheckpointTest, ThousandsOfTensorsRoundTrip) {
  // The attention group holds thousands of named tensors: every one is
  // written, listed in write order and read back. The times are printed, a
  // figure rather than a check (the machine may be shared; a render's
  // checkpoint seconds are in bench/run_render_bench.sh's table).
  const int n = 4000;
  const std::string p = path("many.h5");
  auto name = [](int i) { return "up_blocks." + std::to_string(i % 40) + ".attn1@" + std::to_string(i / 40) + "/k"; };
  const auto t0 = std::chrono::steady_clock::now();
  {
    CheckpointWriter w(p);
    for (int i = 0; i < n; ++i) w.write(name(i), at::full({2, 16, 8}, static_cast<double>(i % 1024), at::kHalf));
    w.commit();
  }
  const auto t1 = std::chrono::steady_clock::now();
  CheckpointReader r(p);
  const auto names = r.names();
  ASSERT_EQ(names.size(), static_cast<size_t>(n));
  for (int i = 0; i < n; ++i) {
    ASSERT_EQ(names[i], name(i));
    ASSERT_EQ(r.read(names[i])[0][0][0].item<float>(), static_cast<float>(i % 1024));
  }
  const auto t2 = std::chrono::steady_clock::now();
  std::cout << n << " tensors: write " << std::chrono::duration<double>(t1 - t0).count() << " s, list+read "
            << std::chrono::duration<double>(t2 - t1).count() << " s, file " << fs::file_size(p) / 1024 << " KiB\n";
}

}  // namespace
