#pragma once
// A checkpoint file's tensors by name, whatever the container: safetensors
// (memory-mapped) or a PyTorch zip/pickle checkpoint (.bin, .ckpt, .pt,
// .pth; parsed without executing anything, model/pickle_checkpoint.h).
#include <ATen/core/Tensor.h>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "model/safetensors.h"  // TensorInfo, ModelError

namespace via::model {

class TensorFile {
 public:
  virtual ~TensorFile() = default;
  virtual const std::string& path() const = 0;
  /// Tensor names in file order.
  virtual const std::vector<std::string>& names() const = 0;
  /// dtype and shape (offsets are meaningful for safetensors only).
  virtual const TensorInfo& info(const std::string& name) const = 0;
  /// The tensor as stored (CPU). Throws ModelError for an unknown name.
  virtual at::Tensor tensor(const std::string& name) const = 0;
  /// Drops cached bytes [from, to) of `name` after a loader copied them (a no-op where nothing is cached).
  virtual void release(const std::string& /*name*/, uint64_t /*from*/, uint64_t /*to*/) const {}
};

/// True for the file names read as PyTorch pickle checkpoints (.bin .ckpt .pt .pth).
bool is_pickle_checkpoint_name(const std::string& path);

/// Opens `path` by its extension: .safetensors, or a pickle checkpoint name.
/// Anything else, or a broken file, throws ModelError naming the path.
std::unique_ptr<TensorFile> open_tensor_file(const std::string& path);

}  // namespace via::model
