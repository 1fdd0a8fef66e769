#include "rank/adapter_file.h"

#include <ATen/core/Tensor.h>

#include <map>
#include <sstream>
#include <stdexcept>
#include <variant>
#include <vector>

#include "io/checkpoint.h"

namespace via::rank {
namespace {

std::string join(const std::vector<std::string>& items) {
  std::string out;
  for (const auto& s : items) out += (out.empty() ? "" : ",") + s;
  return out;
}

}  // namespace

void save_lora(const std::string& path, const adapt::LoraAdapter& adapter,
               std::map<std::string, io::Attribute> attributes) {
  std::map<std::string, at::Tensor> tensors;
  for (const auto& [name, t] : adapter.named_tensors()) tensors.emplace(name, t.detach());
  attributes["lora_rank"] = adapter.options().rank;
  attributes["lora_alpha"] = adapter.options().effective_alpha();
  attributes["lora_targets"] = join(adapter.options().targets);
  io::save_checkpoint(path, tensors, attributes);
}

adapt::LoraOptions read_lora_options(const std::string& path) {
  const io::CheckpointReader reader(path);
  adapt::LoraOptions o;
  o.rank = reader.get_int("lora_rank");
  o.alpha = reader.get_double("lora_alpha");
  o.targets.clear();
  std::stringstream targets(reader.get_string("lora_targets"));
  for (std::string t; std::getline(targets, t, ',');) o.targets.push_back(t);
  return o;
}

void load_lora(const std::string& path, adapt::LoraAdapter& adapter) {
  const io::Checkpoint ck = io::load_checkpoint(path);
  const auto attr = [&](const std::string& key) -> const io::Attribute& {
    const auto it = ck.attributes.find(key);
    if (it == ck.attributes.end()) throw io::CheckpointError(path, "not a LoRA adapter file (no " + key + ")");
    return it->second;
  };
  const auto* rank = std::get_if<int64_t>(&attr("lora_rank"));
  const auto* alpha = std::get_if<double>(&attr("lora_alpha"));
  const auto* targets = std::get_if<std::string>(&attr("lora_targets"));
  if (rank == nullptr || alpha == nullptr || targets == nullptr)
    throw io::CheckpointError(path, "LoRA attributes have the wrong types");
  const adapt::LoraOptions& o = adapter.options();
  if (*rank != o.rank || *alpha != o.effective_alpha() || *targets != join(o.targets))
    throw std::invalid_argument("LoRA adapter " + path + " has rank " + std::to_string(*rank) + ", alpha " +
                                std::to_string(*alpha) + ", targets " + *targets + "; expected rank " +
                                std::to_string(o.rank) + ", alpha " + std::to_string(o.effective_alpha()) +
                                ", targets " + join(o.targets));
  adapter.load_named(ck.tensors);
}

}  // namespace via::rank
