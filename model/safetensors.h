#pragma once
// Reading and writing the safetensors format (https://huggingface.co/docs/safetensors):
// 8-byte little-endian header length, a JSON header {name: {dtype, shape,
// data_offsets}, "__metadata__": {...}}, then the raw little-endian data.
#include <ATen/core/Tensor.h>

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

namespace via::model {

/// Thrown for any problem with a model's files; the message names the file
/// and, where it applies, the tensor.
struct ModelError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

/// One tensor's entry in a safetensors header.
struct TensorInfo {
  at::ScalarType dtype;
  std::vector<int64_t> shape;
  uint64_t begin = 0;  // byte offsets into the data section
  uint64_t end = 0;
};

/// A memory-mapped safetensors file. Tensors returned by tensor() alias the
/// mapping (no copy) and keep it alive, so they stay valid after the file
/// object is gone. The header is fully validated on open: offsets inside the
/// file, sizes matching dtype x shape, no overlap; a truncated, empty or
/// foreign file throws ModelError naming the path. Read-only; thread-safe.
class SafeTensorsFile {
 public:
  explicit SafeTensorsFile(const std::string& path);

  const std::string& path() const { return path_; }
  /// Tensor names in the order of the file's data (stable, sorted by offset).
  const std::vector<std::string>& names() const { return names_; }
  bool contains(const std::string& name) const { return info_.count(name) != 0; }
  const TensorInfo& info(const std::string& name) const;
  /// The tensor as stored (dtype and shape from the header), aliasing the
  /// mapping (a private copy-on-write mapping: in-place writes never reach the
  /// file). Copied only when the writer left the data misaligned for its dtype.
  at::Tensor tensor(const std::string& name) const;
  const std::map<std::string, std::string>& metadata() const { return metadata_; }
  /// Drops the resident pages holding bytes [from, to) of `name`'s data (clamped
  /// to the tensor) once a loader has copied them elsewhere, so loading a
  /// checkpoint never holds a second full copy in memory. Views of the range stay
  /// valid and re-read the file on access; in-place writes to them are discarded.
  void release(const std::string& name, uint64_t from = 0, uint64_t to = UINT64_MAX) const;

 private:
  struct Mapping;
  std::string path_;
  std::shared_ptr<Mapping> mapping_;
  std::vector<std::string> names_;
  std::map<std::string, TensorInfo> info_;
  std::map<std::string, std::string> metadata_;
};

/// Writes tensors (contiguous copies are made as needed, CPU) to `path`
/// through a temporary file renamed on success. Supports fp32/fp16/bf16/
/// int64/int32/uint8/bool.
void save_safetensors(const std::string& path, const std::map<std::string, at::Tensor>& tensors,
                      const std::map<std::string, std::string>& metadata = {});

}  // namespace via::model
