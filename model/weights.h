#pragma once
// Loading a component's checkpoint (diffusers / transformers folder layout,
// safetensors or pickle weights) into a torch::nn::Module whose parameter and
// buffer names are the checkpoint's names, so loading is a lookup, never a
// translation; and the one loader of the model's components (load_component).
#include <ATen/core/Tensor.h>
#include <c10/core/Device.h>
#include <c10/core/ScalarType.h>
#include <torch/nn/module.h>

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace via::model {

/// The safetensors files holding a component's weights (e.g. `unet/`), in
/// load order. Looks for, in this order: `<base>.safetensors`, the sharded
/// `<base>.safetensors.index.json`, then the fp16 variants
/// `<base>.fp16.safetensors` and `<base>.safetensors.index.fp16.json`, with
/// base `diffusion_pytorch_model` (diffusers) or `model` (transformers);
/// then the same names with `.bin` (PyTorch pickle weights, read without
/// executing them). A missing folder, a folder with no weights or a broken
/// index throws ModelError naming the folder.
std::vector<std::string> find_weight_files(const std::string& component_dir);

/// How load_weights places tensors.
struct WeightLoadOptions {
  /// Floating-point parameters and buffers are converted to this type;
  /// integer and bool buffers keep the module's type.
  at::ScalarType dtype = at::kFloat;
  at::Device device = at::kCPU;
  /// Checkpoint names that may be present without a module counterpart
  /// (e.g. buffers older library versions saved and newer ones recompute).
  std::vector<std::string> ignore_unexpected;
  /// Checkpoint name -> module name, for checkpoints in another naming (legacy
  /// or original-layout keys); nullopt: the tensor belongs to another component
  /// of the same file and is skipped. Unset: names are used as they are.
  std::function<std::optional<std::string>(const std::string&)> rename;
  /// A [out, in, 1, 1] checkpoint tensor may fill an [out, in] parameter (the
  /// original VAE's 1x1-conv attention projections are linear layers here).
  bool conv1x1_as_linear = false;
};

/// Loads the tensors of `files` (safetensors or pickle checkpoints, see
/// model/tensor_file.h) into `module`'s parameters and buffers (matched
/// by full dotted name, after options.rename). The checkpoint and the module must hold exactly the
/// same names with the same shapes: every missing, unexpected or wrongly shaped
/// tensor is listed in one ModelError naming the tensor and both shapes.
/// Each tensor is copied chunk by chunk straight from the file's memory mapping
/// into the module's own storage when it already has the target dtype and
/// device (build the module under DefaultDtypeGuard for that), else into new
/// storage swapped in with set_data, freeing the old one tensor by tensor; the
/// mapped pages are released behind each chunk. Peak memory: the module's
/// size plus 16 MB (for pickle files, `.bin`/`.ckpt`: plus the largest
/// tensor, read whole). Runs under NoGradGuard; requires_grad is kept.
void load_weights(torch::nn::Module& module, const std::vector<std::string>& files,
                  const WeightLoadOptions& options = {});

/// load_weights' checks (names after options.rename, shapes, kinds) without
/// reading any tensor data: throws the same ModelError, or returns. For a
/// module built with ParamInit::Fill::ShapeOnly, this checks a checkpoint
/// against a config at no memory cost.
void check_weights(const torch::nn::Module& module, const std::vector<std::string>& files,
                   const WeightLoadOptions& options = {});

/// The options for loading the component folder `dir` (config.json and
/// weights) in `dtype` on `device`, after load_component's first check (fp16
/// on the CPU, where this libtorch lacks it: ModelError).
WeightLoadOptions component_load_options(const std::string& dir, at::ScalarType dtype, c10::Device device);

/// What load_component needs of a model component, specialised beside each
/// one (model/unet.h, model/vae.h, model/text_encoder.h):
///   using Config = ...;  // with `static Config from_file(const std::string& path)`
///   static Model build(const Config&, const WeightLoadOptions&);
///     the model, ready to be loaded in options.dtype
///   static torch::nn::Module& target(Model&, const std::vector<std::string>& files, WeightLoadOptions&);
///     the module the checkpoint's names are relative to, after adding to
///     the options the names the component also accepts
template <class Model>
struct ComponentTraits;

/// The one loader of a model component (UNet2DConditionModel, AutoencoderKL,
/// CLIPTextModel): the model of `config` with the weights of `files` (any
/// naming `options.rename` maps; dtype and device from `options`; see
/// load_weights), in eval mode. Every problem is one ModelError naming the
/// file and the tensor.
template <class Model>
Model load_component(const typename ComponentTraits<Model>::Config& config, const std::vector<std::string>& files,
                     WeightLoadOptions options) {
  using Traits = ComponentTraits<Model>;
  Model model = Traits::build(config, options);
  torch::nn::Module& target = Traits::target(model, files, options);
  load_weights(target, files, options);
  model->eval();
  return model;
}

/// load_component of the diffusers component folder `dir` (e.g. `unet/`):
/// its config.json and its weights (find_weight_files), converted to `dtype`
/// on `device`. A missing folder or config, a setting the model does not
/// support or a checkpoint that does not match the config is a ModelError.
template <class Model>
Model load_component(const std::string& dir, at::ScalarType dtype = at::kFloat, c10::Device device = at::kCPU) {
  WeightLoadOptions options = component_load_options(dir, dtype, device);
  const auto config = ComponentTraits<Model>::Config::from_file(dir + "/config.json");
  return load_component<Model>(config, find_weight_files(dir), std::move(options));
}

/// find_weight_files(component_dir) followed by load_weights.
void load_component_weights(torch::nn::Module& module, const std::string& component_dir,
                            const WeightLoadOptions& options = {});

/// (name, shape) of every parameter and buffer of `module`, sorted by name:
/// the key set a checkpoint for it must have.
std::vector<std::pair<std::string, std::vector<int64_t>>> state_shapes(const torch::nn::Module& module);

/// "[768, 3072]": a shape as error messages print it.
std::string shape_string(at::IntArrayRef shape);

/// Sets the default floating dtype (the one torch::nn layers allocate their
/// parameters in) for its lifetime, so a model about to be loaded in fp16 or
/// bf16 is built in that type and never occupies its fp32 size. Process-wide
/// state: use it only around construction, not concurrently with other code
/// creating tensors without an explicit dtype.
class DefaultDtypeGuard {
 public:
  explicit DefaultDtypeGuard(at::ScalarType dtype);
  ~DefaultDtypeGuard();
  DefaultDtypeGuard(const DefaultDtypeGuard&) = delete;
  DefaultDtypeGuard& operator=(const DefaultDtypeGuard&) = delete;

 private:
  caffe2::TypeMeta previous_;
};

}  // namespace via::model
