#include "model/weights.h"

#include "model/json_file.h"
#include "model/safetensors.h"
#include "model/tensor_file.h"

#include <ATen/core/grad_mode.h>
#include <ATen/ops/empty.h>
#include <c10/core/DefaultDtype.h>
#include <torch/version.h>

#include <algorithm>
#include <filesystem>
#include <map>
#include <memory>
#include <set>
#include <sstream>

namespace fs = std::filesystem;

namespace via::model {
namespace {

// Source bytes copied per step: bounds how much of the mapping is resident at once.
constexpr uint64_t kChunkBytes = 16ull << 20;

// File names as the reference libraries write them (diffusers
// `utils/constants.py`: SAFETENSORS_WEIGHTS_NAME, SAFE_WEIGHTS_INDEX_NAME;
// transformers: model.safetensors); variants insert ".fp16" before the last
// suffix (diffusers `_add_variant`).
const char* const kBaseNames[] = {"diffusion_pytorch_model", "model"};

std::vector<std::string> shards_from_index(const fs::path& index) {
  const nlohmann::json json = read_json_file(index.string());
  auto map = json.find("weight_map");
  if (map == json.end() || !map->is_object() || map->empty())
    throw ModelError(index.string() + ": index has no 'weight_map' object");
  std::vector<std::string> files;
  std::set<std::string> seen;
  for (const auto& [tensor, file] : map->items()) {
    if (!file.is_string()) throw ModelError(index.string() + ": weight_map entry '" + tensor + "' is not a file name");
    const std::string name = file.get<std::string>();
    if (!seen.insert(name).second) continue;
    const fs::path shard = index.parent_path() / name;
    if (!fs::is_regular_file(shard))
      throw ModelError(index.string() + ": shard '" + name + "' is listed but missing");
    files.push_back(shard.string());
  }
  std::sort(files.begin(), files.end());
  return files;
}

std::string where_of(const std::vector<std::string>& files) {
  if (files.size() == 1) return files.front();
  return fs::path(files.front()).parent_path().string() + " (" + std::to_string(files.size()) + " weight files)";
}

// Copies `name` from the file's mapping into `dst` (same shape, contiguous),
// converting dtype and device, and releases the mapped pages behind each chunk.
void copy_from_mapping(const TensorFile& file, const std::string& name, at::Tensor& dst) {
  const at::Tensor src = file.tensor(name);
  const int64_t numel = src.numel();
  if (numel == 0) return;
  const at::Tensor src_flat = src.reshape({-1});
  at::Tensor dst_flat = dst.view({-1});
  const int64_t item = static_cast<int64_t>(src.element_size());
  const int64_t step = std::max<int64_t>(1, static_cast<int64_t>(kChunkBytes) / item);
  for (int64_t begin = 0; begin < numel; begin += step) {
    const int64_t n = std::min(step, numel - begin);
    dst_flat.narrow(0, begin, n).copy_(src_flat.narrow(0, begin, n));
    file.release(name, static_cast<uint64_t>(begin * item), static_cast<uint64_t>((begin + n) * item));
  }
}

}  // namespace

std::vector<std::string> find_weight_files(const std::string& component_dir) {
  const fs::path dir(component_dir);
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) throw ModelError(component_dir + ": model component folder not found");
  for (const char* variant : {"", ".fp16"}) {
    for (const char* base : kBaseNames) {
      const fs::path single = dir / (std::string(base) + variant + ".safetensors");
      if (fs::is_regular_file(single, ec)) return {single.string()};
      const fs::path index = dir / (std::string(base) + ".safetensors.index" + variant + ".json");
      if (fs::is_regular_file(index, ec)) return shards_from_index(index);
    }
  }
  // Older uploads have only PyTorch pickle weights; they are parsed, never executed (model/pickle_checkpoint.h).
  for (const char* variant : {"", ".fp16"}) {
    for (const char* base : {"diffusion_pytorch_model", "pytorch_model"}) {  // WEIGHTS_NAME in both libraries
      const fs::path single = dir / (std::string(base) + variant + ".bin");
      if (fs::is_regular_file(single, ec)) return {single.string()};
      const fs::path index = dir / (std::string(base) + ".bin.index" + variant + ".json");
      if (fs::is_regular_file(index, ec)) return shards_from_index(index);
    }
  }
  throw ModelError(component_dir +
                   ": no weights found (expected diffusion_pytorch_model.safetensors, model.safetensors, "
                   "an fp16 variant, a sharded .safetensors.index.json, or the .bin equivalents)");
}

namespace {

// A source of each module tensor, after the name and shape checks load_weights documents.
struct Source {
  size_t file;       // index into Matched::opened
  std::string name;  // the checkpoint's own name
};
struct Matched {
  std::vector<std::unique_ptr<TensorFile>> opened;
  std::map<std::string, Source> owner;  // module name -> where the checkpoint holds it
  std::map<std::string, at::Tensor> targets;
};

Matched match_weights(const torch::nn::Module& module, const std::vector<std::string>& files,
                      const WeightLoadOptions& options) {
  Matched m;
  auto& opened = m.opened;
  auto& owner = m.owner;
  auto& targets = m.targets;

  if (files.empty()) throw ModelError("load_weights: no weight files given for module '" + module.name() + "'");
  if (!at::isFloatingType(options.dtype))
    throw ModelError(where_of(files) + ": cannot load weights as " + std::string(c10::toString(options.dtype)) +
                     " (not a floating-point type)");

  for (const std::string& path : files) {
    opened.push_back(open_tensor_file(path));
    for (const std::string& name : opened.back()->names()) {
      std::optional<std::string> target = options.rename ? options.rename(name) : std::optional<std::string>(name);
      if (!target) continue;
      auto [it, fresh] = owner.emplace(*target, Source{opened.size() - 1, name});
      if (!fresh)
        throw ModelError(path + ": tensor '" + name + "' " + (name == *target ? "" : "(read as '" + *target + "') ") +
                         "also appears in " + opened[it->second.file]->path() +
                         (it->second.name == name ? "" : " as '" + it->second.name + "'"));
    }
  }

  for (const auto& item : module.named_parameters(/*recurse=*/true)) targets.emplace(item.key(), item.value());
  for (const auto& item : module.named_buffers(/*recurse=*/true)) targets.emplace(item.key(), item.value());

  std::vector<std::string> problems;
  for (const auto& [name, target] : targets) {
    auto it = owner.find(name);
    if (it == owner.end()) {
      problems.push_back("missing tensor '" + name + "' (model expects " + shape_string(target.sizes()) + ")");
      continue;
    }
    const TensorInfo& info = opened[it->second.file]->info(it->second.name);
    const std::string shown = it->second.name == name ? name : it->second.name + "' (as '" + name + "')";
    const bool squeezed = options.conv1x1_as_linear && target.dim() == 2 && info.shape.size() == 4 &&
                          info.shape[0] == target.size(0) && info.shape[1] == target.size(1) &&
                          info.shape[2] == 1 && info.shape[3] == 1;
    if (at::IntArrayRef(info.shape) != target.sizes() && !squeezed) {
      problems.push_back("tensor '" + shown + "' is " + shape_string(info.shape) +
                         " in the checkpoint but the model expects " + shape_string(target.sizes()));
    } else if (at::isFloatingType(info.dtype) != at::isFloatingType(target.scalar_type())) {
      problems.push_back("tensor '" + shown + "' is " + std::string(c10::toString(info.dtype)) +
                         " in the checkpoint but the model holds " + std::string(c10::toString(target.scalar_type())));
    }
  }
  const std::set<std::string> ignored(options.ignore_unexpected.begin(), options.ignore_unexpected.end());
  for (const auto& [name, source] : owner) {
    if (targets.count(name) == 0 && ignored.count(name) == 0)
      problems.push_back("unexpected tensor '" + source.name + "' " +
                         (source.name == name ? "" : "(read as '" + name + "') ") +
                         shape_string(opened[source.file]->info(source.name).shape) + " (not part of the model)");
  }
  if (!problems.empty()) {
    constexpr size_t kShown = 8;
    std::string msg = where_of(files) + ": checkpoint does not match the model's configuration (" +
                      std::to_string(problems.size()) + (problems.size() == 1 ? " problem): " : " problems): ");
    for (size_t i = 0; i < std::min(kShown, problems.size()); ++i) msg += (i ? "; " : "") + problems[i];
    if (problems.size() > kShown) msg += "; and " + std::to_string(problems.size() - kShown) + " more";
    throw ModelError(msg);
  }

  return m;
}

}  // namespace

void check_weights(const torch::nn::Module& module, const std::vector<std::string>& files,
                   const WeightLoadOptions& options) {
  match_weights(module, files, options);
}

void load_weights(torch::nn::Module& module, const std::vector<std::string>& files, const WeightLoadOptions& options) {
  Matched m = match_weights(module, files, options);
  const auto& opened = m.opened;
  const auto& owner = m.owner;
  auto& targets = m.targets;

  // In file order, so a cold checkpoint is read sequentially.
  std::map<std::pair<size_t, std::string>, std::string> module_name;  // (file, checkpoint name) -> module name
  for (const auto& [name, source] : owner) module_name.emplace(std::make_pair(source.file, source.name), name);
  at::NoGradGuard no_grad;
  for (size_t f = 0; f < opened.size(); ++f) {
    const auto& file = opened[f];
    for (const std::string& name : file->names()) {
      auto renamed = module_name.find({f, name});
      if (renamed == module_name.end()) continue;
      auto it = targets.find(renamed->second);
      if (it == targets.end()) continue;
      at::Tensor& target = it->second;
      const at::ScalarType dtype = at::isFloatingType(target.scalar_type()) ? options.dtype : target.scalar_type();
      if (target.scalar_type() == dtype && target.device() == options.device && target.is_contiguous()) {
        copy_from_mapping(*file, name, target);  // straight into the module's own storage
      } else {
        // New storage of the target type; set_data swaps it in under the
        // module's tensor and frees the old one, tensor by tensor.
        at::Tensor fresh = at::empty(target.sizes(), at::TensorOptions().dtype(dtype).device(options.device));
        copy_from_mapping(*file, name, fresh);
        target.set_data(fresh);
      }
    }
  }
}

WeightLoadOptions component_load_options(const std::string& dir, at::ScalarType dtype, c10::Device device) {
#if TORCH_VERSION_MAJOR < 2
  if (dtype == at::kHalf && device.is_cpu())
    throw ModelError(dir + ": fp16 is not available on the CPU with this libtorch; use bf16 or fp32");
#endif
  WeightLoadOptions options;
  options.dtype = dtype;
  options.device = device;
  return options;
}

void load_component_weights(torch::nn::Module& module, const std::string& component_dir,
                            const WeightLoadOptions& options) {
  load_weights(module, find_weight_files(component_dir), options);
}

std::vector<std::pair<std::string, std::vector<int64_t>>> state_shapes(const torch::nn::Module& module) {
  std::vector<std::pair<std::string, std::vector<int64_t>>> out;
  for (const auto& item : module.named_parameters(/*recurse=*/true)) out.emplace_back(item.key(), item.value().sizes().vec());
  for (const auto& item : module.named_buffers(/*recurse=*/true)) out.emplace_back(item.key(), item.value().sizes().vec());
  std::sort(out.begin(), out.end());
  return out;
}

std::string shape_string(at::IntArrayRef shape) {
  std::ostringstream out;
  out << '[';
  for (size_t i = 0; i < shape.size(); ++i) out << (i ? ", " : "") << shape[i];
  out << ']';
  return out.str();
}

DefaultDtypeGuard::DefaultDtypeGuard(at::ScalarType dtype) : previous_(c10::get_default_dtype()) {
  c10::set_default_dtype(caffe2::TypeMeta::fromScalarType(dtype));
}

DefaultDtypeGuard::~DefaultDtypeGuard() { c10::set_default_dtype(previous_); }

}  // namespace via::model
