// Name-conversion tables (see checkpoint_names.h). Sources, diffusers 0.42.1:
//  - legacy VAE attention: models/modeling_utils.py,
//    ModelMixin._convert_deprecated_attention_blocks (query -> to_q, key ->
//    to_k, value -> to_v, proj_attn -> to_out.0; group_norm unchanged);
//  - original layout: loaders/single_file_utils.py, DIFFUSERS_TO_LDM_MAPPING
//    ("unet" "layers", "vae"), convert_ldm_unet_checkpoint with
//    update_unet_resnet_ldm_to_diffusers, convert_ldm_vae_checkpoint with
//    update_vae_{resnet,attentions}_ldm_to_diffusers, convert_ldm_clip_checkpoint
//    (LDM_CLIP_PREFIX_TO_REMOVE). The original names themselves are those of
//    CompVis/stable-diffusion ldm/modules/diffusionmodules/{openaimodel,model}.py.
#include "model/checkpoint_names.h"

#include <cctype>
#include <utility>
#include <vector>

namespace via::model {
namespace {

using Pairs = std::vector<std::pair<const char*, const char*>>;

bool starts_with(const std::string& s, const std::string& prefix) { return s.rfind(prefix, 0) == 0; }

// Reads "<digits>." at s[pos]; advances pos past the dot. -1 when absent.
int64_t read_index(const std::string& s, size_t& pos) {
  size_t end = pos;
  while (end < s.size() && std::isdigit(static_cast<unsigned char>(s[end]))) ++end;
  if (end == pos || end >= s.size() || s[end] != '.' || end - pos > 6) return -1;
  const int64_t value = std::stoll(s.substr(pos, end - pos));
  pos = end + 1;
  return value;
}

// First matching prefix of `rest` replaced; `rest` unchanged when none matches.
std::string replace_prefix(const std::string& rest, const Pairs& table) {
  for (const auto& [from, to] : table)
    if (starts_with(rest, from)) return std::string(to) + rest.substr(std::char_traits<char>::length(from));
  return rest;
}

// openaimodel.py ResBlock -> diffusers ResnetBlock2D (update_unet_resnet_ldm_to_diffusers).
const Pairs kUnetResnet = {{"in_layers.0.", "norm1."},       {"in_layers.2.", "conv1."},
                           {"out_layers.0.", "norm2."},      {"out_layers.3.", "conv2."},
                           {"emb_layers.1.", "time_emb_proj."}, {"skip_connection.", "conv_shortcut."}};

// DIFFUSERS_TO_LDM_MAPPING["unet"]["layers"], inverted.
const Pairs kUnetTop = {{"time_embed.0.", "time_embedding.linear_1."}, {"time_embed.2.", "time_embedding.linear_2."},
                        {"input_blocks.0.0.", "conv_in."},             {"out.0.", "conv_norm_out."},
                        {"out.2.", "conv_out."}};

// model.py ResnetBlock -> ResnetBlock2D (update_vae_resnet_ldm_to_diffusers).
const Pairs kVaeResnet = {{"nin_shortcut.", "conv_shortcut."}};

// model.py AttnBlock (1x1 convs) -> Attention (update_vae_attentions_ldm_to_diffusers).
const Pairs kVaeAttention = {{"norm.", "group_norm."}, {"q.", "to_q."},           {"k.", "to_k."},
                             {"v.", "to_v."},          {"proj_out.", "to_out.0."}};

// DIFFUSERS_TO_LDM_MAPPING["vae"], inverted (encoder/decoder norm_out, the rest unchanged).
const Pairs kVaeTop = {{"encoder.norm_out.", "encoder.conv_norm_out."}, {"decoder.norm_out.", "decoder.conv_norm_out."}};

// A middle/mid block's parts: "<n>." as the diffusers "resnets.<i>." or "attentions.<i>.".
std::string unet_block_part(const std::string& base, const std::string& rest, bool attention, int64_t index) {
  return attention ? base + "attentions." + std::to_string(index) + "." + rest
                   : base + "resnets." + std::to_string(index) + "." + replace_prefix(rest, kUnetResnet);
}

}  // namespace

std::string legacy_vae_name(const std::string& name) {
  static const Pairs kLegacy = {{"query.", "to_q."}, {"key.", "to_k."}, {"value.", "to_v."}, {"proj_attn.", "to_out.0."}};
  const size_t at = name.find(".attentions.");
  if (at == std::string::npos) return name;
  size_t pos = at + std::char_traits<char>::length(".attentions.");
  if (read_index(name, pos) < 0) return name;
  return name.substr(0, pos) + replace_prefix(name.substr(pos), kLegacy);
}

std::optional<std::string> ldm_unet_name(const std::string& key, int64_t layers_per_block) {
  if (!starts_with(key, kLdmUnetPrefix)) return std::nullopt;
  const std::string k = key.substr(std::char_traits<char>::length(kLdmUnetPrefix));
  const int64_t per = layers_per_block + 1;  // resnets + the down/up sampler slot
  for (const auto& [from, to] : kUnetTop)
    if (starts_with(k, from)) return replace_prefix(k, kUnetTop);

  if (starts_with(k, "input_blocks.")) {
    size_t pos = std::char_traits<char>::length("input_blocks.");
    const int64_t i = read_index(k, pos);
    const int64_t part = i >= 1 ? read_index(k, pos) : -1;
    if (part < 0) return k;
    const std::string rest = k.substr(pos), block = "down_blocks." + std::to_string((i - 1) / per) + ".";
    const int64_t layer = (i - 1) % per;
    if (part == 0 && starts_with(rest, "op.")) return block + "downsamplers.0.conv." + rest.substr(3);
    if (part == 0) return block + "resnets." + std::to_string(layer) + "." + replace_prefix(rest, kUnetResnet);
    if (part == 1) return block + "attentions." + std::to_string(layer) + "." + rest;
    return k;
  }
  if (starts_with(k, "middle_block.")) {
    size_t pos = std::char_traits<char>::length("middle_block.");
    const int64_t part = read_index(k, pos);
    if (part < 0 || part > 2) return k;
    // 0: resnet 0, 1: attention 0, 2: resnet 1.
    return unet_block_part("mid_block.", k.substr(pos), part == 1, part == 2 ? 1 : 0);
  }
  if (starts_with(k, "output_blocks.")) {
    size_t pos = std::char_traits<char>::length("output_blocks.");
    const int64_t i = read_index(k, pos);
    const int64_t part = i >= 0 ? read_index(k, pos) : -1;
    if (part < 0) return k;
    const std::string rest = k.substr(pos), block = "up_blocks." + std::to_string(i / per) + ".";
    const int64_t layer = i % per;
    if (part == 0) return block + "resnets." + std::to_string(layer) + "." + replace_prefix(rest, kUnetResnet);
    // The upsampler is part 1 in blocks without attention, part 2 after one.
    if ((part == 1 || part == 2) && starts_with(rest, "conv.")) return block + "upsamplers.0." + rest;
    if (part == 1) return block + "attentions." + std::to_string(layer) + "." + rest;
    return k;
  }
  return k;
}

std::optional<std::string> ldm_vae_name(const std::string& key, int64_t num_blocks) {
  if (!starts_with(key, kLdmVaePrefix)) return std::nullopt;
  const std::string k = key.substr(std::char_traits<char>::length(kLdmVaePrefix));
  // Training-only weights some VAE checkpoints keep (LPIPS / discriminator of ldm's loss module).
  if (k.rfind("loss.", 0) == 0) return std::nullopt;
  for (const auto& [from, to] : kVaeTop)
    if (starts_with(k, from)) return replace_prefix(k, kVaeTop);
  for (const std::string side : {"encoder.", "decoder."}) {
    if (!starts_with(k, side)) continue;
    const std::string r = k.substr(side.size());
    if (starts_with(r, "mid.block_1.") || starts_with(r, "mid.block_2.")) {
      const std::string index = r[10] == '1' ? "0" : "1";
      return side + "mid_block.resnets." + index + "." + replace_prefix(r.substr(12), kVaeResnet);
    }
    if (starts_with(r, "mid.attn_1.")) return side + "mid_block.attentions.0." + replace_prefix(r.substr(11), kVaeAttention);
    const bool enc = side == "encoder.";
    const std::string stage = enc ? "down." : "up.";
    if (!starts_with(r, stage)) return k;
    size_t pos = stage.size();
    const int64_t i = read_index(r, pos);
    if (i < 0) return k;
    // The original decoder numbers its up blocks from the lowest resolution's end.
    const std::string block = side + (enc ? "down_blocks." + std::to_string(i) : "up_blocks." + std::to_string(num_blocks - 1 - i)) + ".";
    const std::string rest = r.substr(pos);
    if (starts_with(rest, "block.")) {
      size_t p = 6;
      const int64_t j = read_index(rest, p);
      if (j < 0) return k;
      return block + "resnets." + std::to_string(j) + "." + replace_prefix(rest.substr(p), kVaeResnet);
    }
    const std::string sampler = enc ? "downsample.conv." : "upsample.conv.";
    if (starts_with(rest, sampler))
      return block + (enc ? "downsamplers.0.conv." : "upsamplers.0.conv.") + rest.substr(sampler.size());
    return k;
  }
  return k;
}

std::optional<std::string> ldm_text_encoder_name(const std::string& key) {
  if (!starts_with(key, kLdmTextPrefix)) return std::nullopt;
  const std::string k = key.substr(std::char_traits<char>::length(kLdmTextPrefix));
  return starts_with(k, "text_model.") ? k : "text_model." + k;
}

}  // namespace via::model
