#include "model/tensor_file.h"

#include <filesystem>

#include "model/pickle_checkpoint.h"

namespace via::model {
namespace {

class SafeTensorsTensorFile : public TensorFile {
 public:
  explicit SafeTensorsTensorFile(const std::string& path) : file_(path) {}
  const std::string& path() const override { return file_.path(); }
  const std::vector<std::string>& names() const override { return file_.names(); }
  const TensorInfo& info(const std::string& name) const override { return file_.info(name); }
  at::Tensor tensor(const std::string& name) const override { return file_.tensor(name); }
  void release(const std::string& name, uint64_t from, uint64_t to) const override { file_.release(name, from, to); }

 private:
  SafeTensorsFile file_;
};

}  // namespace

bool is_pickle_checkpoint_name(const std::string& path) {
  const std::string ext = std::filesystem::path(path).extension().string();
  return ext == ".bin" || ext == ".ckpt" || ext == ".pt" || ext == ".pth";
}

std::unique_ptr<TensorFile> open_tensor_file(const std::string& path) {
  if (std::filesystem::path(path).extension() == ".safetensors") return std::make_unique<SafeTensorsTensorFile>(path);
  if (is_pickle_checkpoint_name(path)) return std::make_unique<PickleCheckpoint>(path);
  throw ModelError(path + ": not a checkpoint file (expected .safetensors, .bin, .ckpt, .pt or .pth)");
}

}  // namespace via::model
