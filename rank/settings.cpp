#include "rank/settings.h"

#include <cstdio>
#include <set>

#include "model/scheduler.h"

namespace via::rank {
namespace {

void require(bool ok, const std::string& message) {
  if (!ok) throw SettingsError(message);
}

// FNV-1a, 64 bit: a stable fingerprint of the canonical settings text (not a
// security boundary; collisions only matter between two honest runs).
uint64_t fnv1a(const std::string& text) {
  uint64_t h = 0xcbf29ce484222325ULL;
  for (unsigned char c : text) {
    h ^= c;
    h *= 0x100000001b3ULL;
  }
  return h;
}

}  // namespace

void RenderSettings::validate() const {
  require(!input.empty(), "--input is required");
  require(!model.empty(), "--model is required");
  require(instruction.find_first_not_of(" \t\r\n") != std::string::npos, "--instruction must not be empty");
  require(long_side >= 16 && long_side % 8 == 0, "--long-side must be a multiple of 8, at least 16");
  require(resize == "fit" || resize == "crop" || resize == "stretch", "--resize must be fit, crop or stretch");
  require(steps >= 1 && steps <= 1000, "--steps must be between 1 and 1000");
  if (scheduler != "auto") {
    try {
      model::scheduler_kind_from_name(scheduler);  // the model's list of names is the only one
    } catch (const std::exception&) {
      throw SettingsError("--scheduler must be auto or one of " + model::supported_scheduler_names() + ", got '" +
                          scheduler + "'");
    }
  }
  require(text_guidance >= 0 && image_guidance >= 0, "guidance scales must not be negative");
  // Far beyond any useful scale the guided noise overflows into black frames.
  require(text_guidance <= 100 && image_guidance <= 100, "--text-guidance and --image-guidance must be at most 100");
  require(dtype == "auto" || dtype == "fp32" || dtype == "bf16" || dtype == "fp16",
          "--dtype must be auto, fp32, bf16 or fp16");
  require(candidates >= 1, "--candidates must be at least 1");
  require(root_seed < 0 || root_seed < candidates, "--root-seed must name one of the candidates (0.." +
                                                      std::to_string(candidates - 1) + ")");
  require(augment >= 1, "--augment must be at least 1");
  require(finetune == "lora" || finetune == "full" || finetune == "off", "--finetune must be lora, full or off");
  require(lora_rank >= 1, "--lora-rank must be at least 1");
  require(learning_rate > 0, "--learning-rate must be positive");
  require(finetune_steps >= 0, "--finetune-steps must not be negative");
  require(condition_dropout >= 0 && condition_dropout < 1, "--condition-dropout must be in [0, 1)");
  require(attention == "gather-swap" || attention == "anchor" || attention == "own",
          "--attention must be gather-swap, anchor or own");
  require(group_size >= 1, "--group-size must be at least 1");
  require(swap_steps >= -1 && swap_steps <= steps, "--swap-steps must be -1 (all) or between 0 and --steps");
  require(swap_layers == "self" || swap_layers == "cross" || swap_layers == "both",
          "--swap-layers must be self, cross or both");
  require(noise == "per-frame" || noise == "shared", "--noise must be per-frame or shared");
  require(mask_feather >= 0, "--mask-feather must not be negative");
  require(crf >= 0 && crf <= 51, "--crf must be between 0 and 51");
  require(chunk_frames >= 1, "--chunk-frames must be at least 1");
}

nlohmann::json RenderSettings::to_json() const {
  nlohmann::json j = hashed();
  j["output"] = output;
  return j;
}

nlohmann::json RenderSettings::hashed() const {
  return {{"input", input},
          {"model", model},
          {"instruction", instruction},
          {"mask", mask},
          {"long_side", long_side},
          {"resize", resize},
          {"steps", steps},
          {"scheduler", scheduler},
          {"text_guidance", text_guidance},
          {"image_guidance", image_guidance},
          {"seed", seed},
          {"dtype", dtype},
          {"root_frame", root_frame},
          {"candidates", candidates},
          {"root_seed", root_seed},
          {"augment", augment},
          {"finetune", finetune},
          {"lora_rank", lora_rank},
          {"learning_rate", learning_rate},
          {"finetune_steps", finetune_steps},
          {"condition_dropout", condition_dropout},
          {"attention", attention},
          {"group_size", group_size},
          {"swap_steps", swap_steps},
          {"swap_layers", swap_layers},
          {"noise", noise},
          {"mask_feather", mask_feather},
          {"crf", crf},
          {"preset", preset},
          {"chunk_frames", chunk_frames}};
}

RenderSettings RenderSettings::from_json(const nlohmann::json& j) {
  RenderSettings s;
  const std::set<std::string> known = [&] {
    std::set<std::string> k;
    const nlohmann::json defaults = s.to_json();
    for (const auto& item : defaults.items()) k.insert(item.key());
    return k;
  }();
  for (const auto& item : j.items())
    if (!known.count(item.key())) throw SettingsError("unknown setting '" + item.key() + "'");
  auto get = [&](const char* key, auto& field) {
    if (!j.contains(key)) return;
    try {
      j.at(key).get_to(field);
    } catch (const nlohmann::json::exception&) {
      throw SettingsError(std::string("setting '") + key + "' has the wrong type");
    }
  };
  get("input", s.input);
  get("model", s.model);
  get("instruction", s.instruction);
  get("mask", s.mask);
  get("long_side", s.long_side);
  get("resize", s.resize);
  get("steps", s.steps);
  get("scheduler", s.scheduler);
  get("text_guidance", s.text_guidance);
  get("image_guidance", s.image_guidance);
  get("seed", s.seed);
  get("dtype", s.dtype);
  get("root_frame", s.root_frame);
  get("candidates", s.candidates);
  get("root_seed", s.root_seed);
  get("augment", s.augment);
  get("finetune", s.finetune);
  get("lora_rank", s.lora_rank);
  get("learning_rate", s.learning_rate);
  get("finetune_steps", s.finetune_steps);
  get("condition_dropout", s.condition_dropout);
  get("attention", s.attention);
  get("group_size", s.group_size);
  get("swap_steps", s.swap_steps);
  get("swap_layers", s.swap_layers);
  get("noise", s.noise);
  get("mask_feather", s.mask_feather);
  get("output", s.output);
  get("crf", s.crf);
  get("preset", s.preset);
  get("chunk_frames", s.chunk_frames);
  return s;
}

std::string RenderSettings::hash() const {
  char buf[17];
  std::snprintf(buf, sizeof(buf), "%016llx", static_cast<unsigned long long>(fnv1a(hashed().dump())));
  return buf;
}

std::string RenderSettings::first_difference(const RenderSettings& other) const {
  const nlohmann::json a = hashed(), b = other.hashed();
  for (const auto& item : a.items())
    if (item.value() != b.at(item.key())) return item.key();
  return "";
}

std::string flag_of(const std::string& key) {
  std::string flag = "--" + key;
  for (char& c : flag)
    if (c == '_') c = '-';
  return flag;
}

}  // namespace via::rank
