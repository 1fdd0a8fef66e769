#pragma once
// The checkpoint store (docs/ARCHITECTURE.md §9): named tensors and attributes in HDF5
// files, one file per writer, written to a temporary name and renamed when
// complete, never trusted unless complete and intact.
//
// File format "via.checkpoint", version 1:
//   /                  attributes via_format = "via.checkpoint",
//                      via_format_version = 1, tensor_count = N, and
//                      complete = 1, which is written last (0 until then).
//   /attributes        group; its HDF5 attributes are the user attributes:
//                      fixed-length UTF-8 strings, 64-bit integers, doubles.
//   /tensors           group, links in write order; one dataset per tensor:
//     <link name>      The tensor name with '%', '/', control characters and
//                      a leading '.' percent-encoded ("%2F"), so any name
//                      round-trips: "down.0.attn1/step3/k" is stored as
//                      "down.0.attn1%2Fstep3%2Fk".
//                      Shape = dataspace (scalar for 0-d tensors), raw
//                      little-endian data, contiguous layout, and attributes
//                      dtype (the torch dtype: "float32", "bfloat16", ...) and
//                      xxh64 (XXH64, seed 0, of the raw bytes).
//   Storage types: float32/float64 IEEE; float16 an HDF5 IEEE half type
//   (h5py reads it as float16); bfloat16 the raw bits as uint16 (dtype
//   "bfloat16" says how to read them); int8/16/32/64 and uint8 as such; bool
//   as uint8 0/1. Values are stored exactly (bit-exact round trip, NaN
//   payloads included).
//
// A file is valid when it is an HDF5 file (HDF5 itself detects truncation:
// its stored end-of-file is past the real end), carries via_format with a
// known version and complete = 1, and holds tensor_count tensors. Reading a
// tensor checks its checksum. Every problem throws CheckpointError naming
// the file; nothing is read from a file that fails these checks.
//
// Threads: one reader or writer per thread; several threads may use the
// store at once only with a thread-safe HDF5 build (Debian's is).
#include <ATen/core/Tensor.h>

#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <stdexcept>
#include <string>
#include <variant>
#include <vector>

namespace via::io {

/// Any problem with a checkpoint file: missing, empty, truncated, foreign,
/// incomplete, damaged, or a failed write (a full disk). what() starts with
/// "checkpoint <path>: " and carries HDF5's error stack where HDF5 failed.
class CheckpointError : public std::runtime_error {
 public:
  CheckpointError(const std::string& path, const std::string& message)
      : std::runtime_error("checkpoint " + path + ": " + message), path_(path), detail_(message) {}
  /// The file the error is about (the final name, also for a failed write).
  const std::string& path() const { return path_; }
  /// The message without the "checkpoint <path>: " prefix.
  const std::string& detail() const { return detail_; }

 private:
  std::string path_, detail_;
};

/// A user attribute's value: settings text, hashes, counts, scales.
using Attribute = std::variant<std::string, int64_t, double>;

/// A stored tensor's dtype and shape, known without reading its data.
struct TensorMeta {
  at::ScalarType dtype;
  std::vector<int64_t> shape;
  int64_t nbytes = 0;
};

/// Writes one checkpoint file. Everything goes to a temporary file in the
/// same directory ("<path>.tmp.<pid>.<n>"); commit() marks it complete,
/// flushes and fsyncs it and renames it to `path` (replacing an older file of
/// that name), so `path` only ever holds a complete file. A writer destroyed
/// without commit(), or whose write or commit failed, removes its temporary
/// file and leaves `path` as it was. After a failed write() only destruction
/// is left. Not thread-safe; one writer per file.
class CheckpointWriter {
 public:
  explicit CheckpointWriter(const std::string& path);
  ~CheckpointWriter();
  CheckpointWriter(const CheckpointWriter&) = delete;
  CheckpointWriter& operator=(const CheckpointWriter&) = delete;

  /// Stores `tensor` (any device; copied to host memory if needed) under
  /// `name` (non-empty, any characters, unique in the file) exactly as it is:
  /// same dtype, shape and bits. Supported dtypes: float32, float64, float16,
  /// bfloat16, int8/16/32/64, uint8, bool.
  void write(const std::string& name, const at::Tensor& tensor);

  /// Sets a user attribute (a later call for the same key replaces it).
  /// Strings must not contain NUL bytes.
  void set_string(const std::string& key, const std::string& value);
  void set_int(const std::string& key, int64_t value);
  void set_double(const std::string& key, double value);
  void set_attribute(const std::string& key, const Attribute& value);

  /// Completes the file and renames it to path(). Throws CheckpointError
  /// (for example on a full disk); then nothing was written under path().
  void commit();

  const std::string& path() const;
  const std::string& temporary_path() const;
  /// Tensors written so far.
  int64_t size() const;

 private:
  struct State;
  std::unique_ptr<State> s_;
};

/// Reads one checkpoint file. The constructor validates the file (see the
/// format above) and throws CheckpointError if it is missing, empty,
/// truncated, not HDF5, not written by via, or incomplete. Tensors are read
/// one at a time, on demand, each checked against its checksum. Keeps the
/// file open. Not thread-safe; use one reader per thread.
class CheckpointReader {
 public:
  explicit CheckpointReader(const std::string& path);
  ~CheckpointReader();
  CheckpointReader(CheckpointReader&&) noexcept;
  CheckpointReader& operator=(CheckpointReader&&) noexcept;

  const std::string& path() const;
  /// Number of tensors.
  int64_t size() const;
  /// Tensor names in write order.
  std::vector<std::string> names() const;
  bool contains(const std::string& name) const;
  /// dtype and shape of `name`, without reading its data.
  TensorMeta meta(const std::string& name) const;
  /// The tensor `name` (host memory, contiguous), checksum verified.
  at::Tensor read(const std::string& name) const;
  /// Every tensor, by name.
  std::map<std::string, at::Tensor> read_all() const;
  /// Reads every tensor and checks its checksum; throws on the first bad one.
  void verify() const;

  bool has_attribute(const std::string& key) const;
  Attribute attribute(const std::string& key) const;
  /// Typed attribute access; throws CheckpointError naming the key if it is
  /// missing or of another type.
  std::string get_string(const std::string& key) const;
  int64_t get_int(const std::string& key) const;
  double get_double(const std::string& key) const;
  std::map<std::string, Attribute> attributes() const;

 private:
  struct State;
  std::unique_ptr<State> s_;
};

/// How thoroughly is_valid_checkpoint() looks.
enum class Verify {
  Structure,  ///< open and check the format (cheap: metadata only)
  Full,       ///< also read every tensor and check its checksum
};

/// True when `path` is a complete, intact via checkpoint; never throws. On
/// false, `reason` (if given) receives the CheckpointError's message. For
/// resume logic: a file that is not valid is redone.
bool is_valid_checkpoint(const std::string& path, Verify level = Verify::Structure,
                         std::string* reason = nullptr);

/// Writes `tensors` (in map order) and `attributes` to `path` in one go.
void save_checkpoint(const std::string& path, const std::map<std::string, at::Tensor>& tensors,
                     const std::map<std::string, Attribute>& attributes = {});

/// A whole checkpoint in memory.
struct Checkpoint {
  std::map<std::string, at::Tensor> tensors;
  std::map<std::string, Attribute> attributes;
};
/// Reads a whole checkpoint (validated, every checksum checked).
Checkpoint load_checkpoint(const std::string& path);

/// The checksum stored with each tensor: XXH64 with seed 0
/// (https://github.com/Cyan4973/xxHash/blob/dev/doc/xxhash_spec.md).
uint64_t xxh64(const void* data, size_t size, uint64_t seed = 0);

/// The HDF5 link name of a tensor name, and back (see the format above).
/// decode_tensor_name throws std::invalid_argument on a malformed escape.
std::string encode_tensor_name(const std::string& name);
std::string decode_tensor_name(const std::string& link);

}  // namespace via::io
