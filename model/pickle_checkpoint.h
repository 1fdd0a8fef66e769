#pragma once
// PyTorch checkpoints written by torch.save (the zip format of torch >= 1.6:
// `<archive>/data.pkl` plus one stored entry per storage, `<archive>/data/<key>`),
// read without executing anything: the pickle is interpreted by a small
// machine that knows only the opcodes and globals a tensor checkpoint uses
// (the approach of stable-diffusion.cpp's model.cpp). Anything else (another
// global such as os.system or builtins.eval, an opcode outside the list, a
// compressed or truncated zip, a tensor outside its storage) is refused with
// ModelError naming the file and the offending item.
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "model/tensor_file.h"

namespace via::model {

class PickleCheckpoint : public TensorFile {
 public:
  /// Parses the zip directory and the pickle; tensor bytes are read on demand.
  explicit PickleCheckpoint(const std::string& path);

  const std::string& path() const override { return path_; }
  const std::vector<std::string>& names() const override { return names_; }
  const TensorInfo& info(const std::string& name) const override;
  at::Tensor tensor(const std::string& name) const override;

  /// The allowed globals ("module.name"), for messages and tests.
  static const std::vector<std::string>& allowed_globals();

 private:
  struct Entry {
    uint64_t data_offset;  // of the stored bytes in the file
    uint64_t size;
  };
  struct TensorRef {
    TensorInfo info;
    std::string storage;  // zip entry name
    int64_t storage_offset = 0;  // elements
    std::vector<int64_t> stride;
  };
  void read_zip();
  void run_pickle(const std::string& bytes);

  std::string path_;
  std::map<std::string, Entry> entries_;
  std::string archive_;  // "<archive>/" prefix of data.pkl
  std::vector<std::string> names_;
  std::map<std::string, TensorRef> tensors_;
};

}  // namespace via::model
