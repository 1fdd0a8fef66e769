#include "rank/memory_plan.h"

#include <algorithm>
#include <cstdio>
#include <fstream>
#include <sstream>

#include "model/unet.h"

namespace via::rank {
namespace {

// The group's storage precision (adaptation/attention_group.h: fp16).
constexpr int64_t kStoredBytes = 2;
// Auto --batch-frames takes at most this many frames per UNet call.
constexpr int64_t kMaxAutoBatch = 16;
// A frame's activations in one UNet call, per row, per latent pixel and
// channel of the first block: an estimate, used only for the automatic
// batch size (SD-1.5 at 512x512 in fp16: 335 MiB a row, 1 GiB a frame of 3
// rows, about what diffusers' peak memory beyond the weights is for it).
constexpr int64_t kActivationFactor = 128;


bool starts_with(const std::string& s, const std::string& prefix) { return s.compare(0, prefix.size(), prefix) == 0; }

// The resolution level of an attention layer, from its checkpoint path.
int64_t level_of(const std::string& name, int64_t levels) {
  const auto index = [&](const std::string& prefix) {
    return std::stoll(name.substr(prefix.size(), name.find('.', prefix.size()) - prefix.size()));
  };
  if (starts_with(name, "down_blocks.")) return index("down_blocks.");
  if (starts_with(name, "mid_block.")) return levels - 1;
  if (starts_with(name, "up_blocks.")) return levels - 1 - index("up_blocks.");
  throw std::runtime_error("memory plan: attention layer " + name + " is in no down, mid or up block");
}

bool acts_on(adapt::LayerSet set, bool cross) {
  return set == adapt::LayerSet::Both || (set == adapt::LayerSet::Cross) == cross;
}

}  // namespace

std::string size_text(double bytes) {
  const char* units[] = {"bytes", "KiB", "MiB", "GiB", "TiB"};
  int u = 0;
  while (bytes >= 1024 && u < 4) {
    bytes /= 1024;
    ++u;
  }
  char buf[48];
  std::snprintf(buf, sizeof(buf), u == 0 ? "%.0f %s" : "%.1f %s", bytes, units[u]);
  return buf;
}

std::vector<GroupLayer> group_layers(const model::UNet2DConditionModelImpl& unet, int64_t latent_h, int64_t latent_w,
                                     int64_t text_tokens) {
  const model::UNetConfig& config = unet.config();
  const auto levels = static_cast<int64_t>(config.block_out_channels.size());
  std::vector<std::pair<int64_t, int64_t>> sizes = {{latent_h, latent_w}};
  const int64_t pad = config.downsample_padding;
  for (int64_t l = 1; l < levels; ++l) {  // a 3x3 stride-2 convolution per level
    const auto [h, w] = sizes.back();
    sizes.push_back({(h + 2 * pad - 3) / 2 + 1, (w + 2 * pad - 3) / 2 + 1});
  }
  std::vector<GroupLayer> out;
  for (const model::Attention& a : unet.attention_layers()) {
    GroupLayer g;
    g.name = a->name();
    g.cross = a->is_cross();
    g.channels = a->options().heads * a->options().dim_head;
    const auto [h, w] = sizes.at(static_cast<size_t>(level_of(g.name, levels)));
    g.tokens = g.cross ? text_tokens : h * w;
    out.push_back(std::move(g));
  }
  return out;
}

MemoryPlan plan_memory(const PlanInputs& in, const RenderSettings& settings) {
  MemoryPlan plan;
  plan.limits = in.limits;
  const bool guided = settings.text_guidance > 1.0 && settings.image_guidance >= 1.0;  // model::DenoiseSettings
  plan.rows = guided ? 3 : 1;
  const bool group = settings.attention != adapt::AttentionMode::Own;
  plan.key_frames = group ? std::min(settings.group_size, in.frame_count) : 0;
  plan.steps = group ? settings.resolved_swap_steps() : 0;
  if (plan.steps > 0) {
    for (const GroupLayer& l : in.layers) {
      if (!acts_on(settings.swap_layers, l.cross)) continue;
      const int64_t one_frame = 2 * plan.rows * l.tokens * l.channels * kStoredBytes;  // K and V
      if (l.cross) {
        plan.cross_bytes += one_frame;
        plan.cross_bytes_per_step_and_frame += one_frame * plan.key_frames * plan.steps;
      } else {
        plan.step_bytes += one_frame * plan.key_frames;
      }
    }
  }
  plan.frame_bytes = plan.rows * in.latent_pixels * in.base_channels * in.element_size * kActivationFactor;
  const MemoryLimits& lim = in.limits;
  const bool device_known = !lim.device_is_host && lim.device >= 0;
  // The whole group stays on the device when it takes at most half of it
  // with one frame's activations; otherwise two steps at a time.
  plan.whole_on_device =
      device_known && static_cast<double>(plan.group_bytes() + plan.frame_bytes) <= lim.device / 2;
  if (settings.batch_frames > 0) {
    plan.batch_frames = settings.batch_frames;
  } else if (device_known && plan.frame_bytes > 0) {
    const double left = 0.8 * (lim.device - static_cast<double>(plan.device_group_bytes()));
    plan.batch_frames = std::clamp<int64_t>(static_cast<int64_t>(left / static_cast<double>(plan.frame_bytes)), 1,
                                            kMaxAutoBatch);
  }
  return plan;
}

std::string MemoryPlan::summary() const {
  std::string s = "memory plan: attention group " + size_text(static_cast<double>(group_bytes()));
  if (steps > 0 && key_frames > 0) {
    s += " (" + std::to_string(steps) + " step" + (steps == 1 ? "" : "s") + " x " +
         size_text(static_cast<double>(step_bytes)) + " of self-attention, " +
         size_text(static_cast<double>(cross_bytes)) + " of cross-attention for all steps; " +
         std::to_string(key_frames) + " key frame" + (key_frames == 1 ? "" : "s") + ", " + std::to_string(rows) +
         " branch" + (rows == 1 ? "" : "es") + ")";
  }
  const auto limit = [](double bytes, const std::string& source) {
    return bytes >= 0 ? " of " + size_text(bytes) + " (" + source + ")" : std::string(" (free memory unknown)");
  };
  s += "; per rank: host " + size_text(static_cast<double>(host_bytes())) + limit(limits.host, limits.host_source);
  if (limits.device_is_host) {
    s += ", the model runs in host memory";
  } else {
    s += ", device " + size_text(static_cast<double>(device_bytes())) + limit(limits.device, limits.device_source) +
         (whole_on_device ? " with the whole group there" : " with two steps' group at a time");
  }
  s += "; " + std::to_string(batch_frames) + " frame" + (batch_frames == 1 ? "" : "s") + " per UNet call";
  return s;
}

std::string MemoryPlan::problem() const {
  if (limits.host >= 0 && static_cast<double>(host_bytes()) > limits.host)
    return "the attention group needs " + size_text(static_cast<double>(host_bytes())) +
           " of host memory per rank (the group and one step in transit), more than the " + size_text(limits.host) +
           " there are (" + limits.host_source + ")";
  if (!limits.device_is_host && limits.device >= 0 && static_cast<double>(device_bytes()) > limits.device)
    return "the attention group and " + std::to_string(batch_frames) + " frame" + (batch_frames == 1 ? "" : "s") +
           " per UNet call need " + size_text(static_cast<double>(device_bytes())) +
           " of device memory per rank, more than the " + size_text(limits.device) + " there are (" +
           limits.device_source + ")";
  return "";
}

MemoryPlan checked_memory_plan(const PlanInputs& in, const RenderSettings& settings) {
  const MemoryPlan plan = plan_memory(in, settings);
  const std::string problem = plan.problem();
  if (problem.empty()) return plan;
  std::vector<std::string> fits;
  const auto fit = [&](RenderSettings s) { return plan_memory(in, s).problem().empty(); };
  for (int64_t n = plan.steps - 1; n >= 1; --n) {
    RenderSettings s = settings;
    s.swap_steps = n;
    if (fit(s)) {
      fits.push_back("--swap-steps " + std::to_string(n));
      break;
    }
  }
  for (int64_t g = plan.key_frames - 1; g >= 1; --g) {
    RenderSettings s = settings;
    s.group_size = g;
    if (fit(s)) {
      fits.push_back("--group-size " + std::to_string(g));
      break;
    }
  }
  for (adapt::LayerSet layers : {adapt::LayerSet::Self, adapt::LayerSet::Cross}) {
    RenderSettings s = settings;
    if (layers == s.swap_layers) continue;
    s.swap_layers = layers;
    if (fit(s)) fits.push_back("--swap-layers " + adapt::layer_set_name(layers));
  }
  for (int64_t b = plan.batch_frames - 1; b >= 1 && settings.batch_frames > 1; --b) {
    RenderSettings s = settings;
    s.batch_frames = b;
    if (fit(s)) {
      fits.push_back("--batch-frames " + std::to_string(b));
      break;
    }
  }
  std::string list;
  for (size_t i = 0; i < fits.size(); ++i) list += (i == 0 ? "" : i + 1 == fits.size() ? " or " : ", ") + fits[i];
  throw SettingsError(problem + (fits.empty() ? "; only --attention own (no group) fits"
                                              : "; any one of these fits: " + list));
}

double available_host_memory(int ranks_on_node) {
  std::ifstream meminfo("/proc/meminfo");
  std::string line;
  while (std::getline(meminfo, line)) {
    std::istringstream fields(line);
    std::string key;
    double kib = 0;
    if (fields >> key >> kib && key == "MemAvailable:") return kib * 1024 / std::max(1, ranks_on_node);
  }
  return -1;
}

}  // namespace via::rank
