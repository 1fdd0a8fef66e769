#include "rank/disk_plan.h"

#include <sys/stat.h>
#include <sys/statvfs.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "rank/memory_plan.h"
#include "rank/output_frames.h"

namespace fs = std::filesystem;

namespace via::rank {
namespace {

// Bits per pixel of the raw picture (4:2:0 8-bit: 12).
double raw_bits(const std::string& pixel_format) {
  const bool ten = pixel_format.find("p10") != std::string::npos;
  const double samples = pixel_format.rfind("yuv444", 0) == 0 ? 3.0 : pixel_format.rfind("yuv422", 0) == 0 ? 2.0 : 1.5;
  return samples * (ten ? 10.0 : 8.0);
}

// A rough bit rate per pixel and frame, on the high side: H.264 at CRF 18
// 0.3 (camera footage takes 0.1 to 0.3), halving every 6 CRF; HEVC and VP9
// about 30 % less; ProRes HQ 220 Mb/s at 1080p30 (4444: 330); FFV1
// (lossless) about 60 % of the raw picture.
double bits_per_pixel(io::VideoCodec codec, const std::string& pixel_format, int64_t crf) {
  const double raw = raw_bits(pixel_format);
  const double lossy = std::min(raw, 0.3 * std::pow(2.0, (18.0 - static_cast<double>(crf)) / 6.0) * raw / 12.0);
  switch (codec) {
    case io::VideoCodec::H264: return lossy;
    case io::VideoCodec::HEVC:
    case io::VideoCodec::VP9: return 0.7 * lossy;
    case io::VideoCodec::ProRes: return pixel_format.rfind("yuv444", 0) == 0 ? 5.4 : 3.6;
    case io::VideoCodec::FFV1: return 0.6 * raw;
  }
  return raw;
}

int64_t directory_bytes(const std::string& dir) {
  std::error_code ec;
  int64_t total = 0;
  for (fs::recursive_directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) {
    std::error_code e2;
    if (it->is_regular_file(e2)) total += static_cast<int64_t>(it->file_size(e2));
  }
  return total;
}

nlohmann::json read_json(const fs::path& path) {
  std::ifstream in(path);
  return nlohmann::json::parse(in, nullptr, /*allow_exceptions=*/false);
}

// What the estimate needs of the model, from a diffusers folder's configs
// (SD-1.x's without them: a single-file checkpoint).
struct ModelShape {
  int64_t vae_factor = 8, latent_channels = 4;
  std::vector<int64_t> channels = {320, 640, 1280, 1280};
  std::vector<std::string> down = {"CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D",
                                   "DownBlock2D"};
  int64_t layers_per_block = 2, cross_dim = 768, text_tokens = 77;
  int64_t unet_weight_bytes = 0;  // the largest file in unet/, or the single file
};

ModelShape model_shape(const std::string& model) {
  ModelShape m;
  const nlohmann::json unet = read_json(fs::path(model) / "unet" / "config.json");
  if (unet.is_object()) {
    m.channels = unet.value("block_out_channels", m.channels);
    m.down = unet.value("down_block_types", m.down);
    if (unet.contains("layers_per_block") && unet["layers_per_block"].is_number_integer())
      m.layers_per_block = unet["layers_per_block"].get<int64_t>();
    if (unet.contains("cross_attention_dim") && unet["cross_attention_dim"].is_number_integer())
      m.cross_dim = unet["cross_attention_dim"].get<int64_t>();
  }
  const nlohmann::json vae = read_json(fs::path(model) / "vae" / "config.json");
  if (vae.is_object()) {
    const std::vector<int64_t> blocks = vae.value("block_out_channels", std::vector<int64_t>{128, 256, 512, 512});
    m.vae_factor = int64_t{1} << (blocks.empty() ? 0 : blocks.size() - 1);
    if (vae.contains("latent_channels") && vae["latent_channels"].is_number_integer())
      m.latent_channels = vae["latent_channels"].get<int64_t>();
  }
  std::error_code ec;
  const fs::path dir = fs::path(model) / "unet";
  if (fs::is_directory(dir, ec)) {
    for (const auto& e : fs::directory_iterator(dir, ec))
      if (e.is_regular_file(ec))
        m.unet_weight_bytes = std::max<int64_t>(m.unet_weight_bytes, static_cast<int64_t>(e.file_size(ec)));
  } else if (fs::is_regular_file(model, ec)) {
    m.unet_weight_bytes = static_cast<int64_t>(fs::file_size(model, ec));
  }
  return m;
}

// Tokens x channels of the attention layers, summed (the layers of a level:
// its down block's, its up block's one more, and the mid block's at the last
// level, as rank/memory_plan.cpp's group_layers() finds them in the UNet).
struct LayerSums {
  int64_t self = 0;      // sum of h*w x channels over the self-attention layers
  int64_t layers = 0;    // attention layers (each has a self and a cross one)
  int64_t channels = 0;  // sum of channels over the layers
};

LayerSums layer_sums(const ModelShape& m, int64_t latent_h, int64_t latent_w) {
  LayerSums sums;
  int64_t h = latent_h, w = latent_w;
  for (size_t level = 0; level < m.channels.size(); ++level) {
    int64_t layers = 0;
    const bool attention = level < m.down.size() && m.down[level].find("CrossAttn") != std::string::npos;
    if (attention) layers += 2 * m.layers_per_block + 1;  // the down block's and its up block's
    if (level + 1 == m.channels.size()) layers += 1;  // the mid block
    sums.self += layers * h * w * m.channels[level];
    sums.layers += layers;
    sums.channels += layers * m.channels[level];
    h = (h + 1) / 2;  // a 3x3 stride-2 convolution with padding 1
    w = (w + 1) / 2;
  }
  return sums;
}

// The adaptation's files: the attention group (K and V of every key frame,
// guidance row and stored step for self-attention, once for cross-attention,
// in fp16 as rank/memory_plan.cpp counts them), the adapter (LoRA's factors
// on every attention projection, or a whole fine-tuned UNet), the root pair
// and the candidates' contact sheet.
int64_t adaptation_bytes(const RenderSettings& s, const ModelShape& m, int64_t frames, io::Size model) {
  const int64_t lh = model.height / m.vae_factor, lw = model.width / m.vae_factor;
  const LayerSums sums = layer_sums(m, lh, lw);
  constexpr int64_t kFp16 = 2, kFp32 = 4, kKV = 2, kPerDataset = 1024;  // HDF5's own, roughly
  int64_t bytes = 0;
  if (s.attention != adapt::AttentionMode::Own) {
    const int64_t rows = s.text_guidance > 1.0 && s.image_guidance >= 1.0 ? 3 : 1;
    const int64_t key_frames = std::min(s.group_size, frames);
    if (s.swap_layers != adapt::LayerSet::Cross)
      bytes += s.resolved_swap_steps() * key_frames * rows * kKV * kFp16 * sums.self;
    if (s.swap_layers != adapt::LayerSet::Self) bytes += rows * kKV * kFp16 * m.text_tokens * sums.channels;
    bytes += (s.resolved_swap_steps() + 1) * sums.layers * 2 * kKV * kPerDataset;
  }
  if (s.finetune == adapt::FinetuneMode::Lora) {
    // q, k, v, out of the self-attention (C -> C) and of the cross-attention
    // (k and v from the text's width): rank x (in + out) each, fp32.
    const int64_t per_channel_sum = 6 * 2 * sums.channels + 2 * (m.cross_dim * sums.layers + sums.channels);
    bytes += s.lora_rank * per_channel_sum * kFp32 + sums.layers * 16 * kPerDataset;
  } else if (s.finetune == adapt::FinetuneMode::Full) {
    bytes += m.unet_weight_bytes;
  }
  const int64_t image = model.width * model.height * 3 * kFp32;
  bytes += 3 * image + (s.candidates + 1) * model.width * model.height * 3 + 64 * 1024;  // root pair, contact sheet
  return bytes;
}

}  // namespace

int64_t DiskNeed::workdir() const { return std::max<int64_t>(0, latents + segments + adaptation - already_there); }

DiskNeed estimate_disk(const DiskInputs& in) {
  DiskNeed need;
  // A frame's own file and its chunk's, and HDF5's own bytes for each (a few KiB).
  need.latents = in.frames * (2 * in.latent_bytes + 4096);
  const double pixels = static_cast<double>(in.output_size.width) * in.output_size.height;
  constexpr int64_t kFrameOverhead = 512;  // headers and the container's index, per frame
  need.segments = static_cast<int64_t>(
      std::ceil(in.frames * (pixels * bits_per_pixel(in.codec, in.pixel_format, in.crf) / 8.0 + kFrameOverhead)));
  need.adaptation = in.adaptation_bytes;
  need.output = need.segments + in.audio_bytes;
  need.already_there = in.already_there;
  return need;
}

FreeSpace free_space(const std::string& dir) {
  FreeSpace f;
  f.dir = dir;
  fs::path p = fs::absolute(dir);
  std::error_code ec;
  while (!fs::exists(p, ec) && p.has_parent_path() && p != p.parent_path()) p = p.parent_path();
  struct statvfs v {};
  struct stat st {};
  if (::statvfs(p.c_str(), &v) == 0) f.bytes = static_cast<int64_t>(v.f_bavail) * static_cast<int64_t>(v.f_frsize);
  else f.bytes = -1;  // unknown: not checked
  if (::stat(p.c_str(), &st) == 0) f.device = static_cast<uint64_t>(st.st_dev);
  return f;
}

std::string check_disk(const DiskNeed& need, const FreeSpace& workdir, const FreeSpace& output, bool refuse) {
  if (!refuse) {
    try {
      return check_disk(need, workdir, output, true);
    } catch (const SettingsError& e) {
      std::string text = e.what();
      text.replace(0, std::string("cannot start: ").size(), "disk: ");
      return text + " (not refused: --disk-check off)";
    }
  }
  const int64_t work = need.workdir();
  const std::string parts = "latents " + size_text(static_cast<double>(need.latents)) + ", segments " +
                            size_text(static_cast<double>(need.segments)) + ", adaptation files " +
                            size_text(static_cast<double>(need.adaptation)) +
                            (need.already_there > 0
                                 ? "; " + size_text(static_cast<double>(need.already_there)) + " already there"
                                 : "");
  // "needs" in a refusal; the estimate of a render that fits says "takes".
  const auto work_text = [&](const char* verb) {
    return "the work directory " + workdir.dir + " " + verb + " about " + size_text(static_cast<double>(work)) + " (" +
           parts + ")";
  };
  const std::string out_text = "the output " + output.dir + " about " + size_text(static_cast<double>(need.output));
  const auto refused = [](const std::string& what, int64_t free) {
    throw SettingsError("cannot start: " + what + ", but only " + size_text(static_cast<double>(free)) +
                        " are free there");
  };
  if (workdir.bytes >= 0 && output.bytes >= 0 && workdir.device == output.device) {
    if (work + need.output > workdir.bytes)
      refused(work_text("needs") + " and " + out_text + " on the same file system", workdir.bytes);
    return "disk: " + work_text("takes") + ", " + out_text + "; " + size_text(static_cast<double>(workdir.bytes)) +
           " free on their file system";
  }
  if (workdir.bytes >= 0 && work > workdir.bytes) refused(work_text("needs"), workdir.bytes);
  if (output.bytes >= 0 && need.output > output.bytes)
    refused("the output " + output.dir + " needs about " + size_text(static_cast<double>(need.output)), output.bytes);
  return "disk: " + work_text("takes") + " (" + size_text(static_cast<double>(workdir.bytes)) + " free), " + out_text +
         " (" + size_text(static_cast<double>(output.bytes)) + " free)";
}

io::OutputPlan plan_output_and_disk(const RenderSettings& settings, const io::VideoInfo& video,
                                    const std::string& workdir) {
  io::OutputPlan plan =
      io::plan_output(settings.output, video, settings.audio, settings.codec, settings.pix_fmt);
  const io::Size model = io::model_size(video.display_size(), static_cast<int>(settings.long_side));
  const ModelShape shape = model_shape(settings.model);
  constexpr int64_t kFp32 = 4;
  DiskInputs in;
  in.frames = video.frame_count;
  in.latent_bytes =
      shape.latent_channels * (model.height / shape.vae_factor) * (model.width / shape.vae_factor) * kFp32;
  in.output_size = output_frame_size(settings, video, model);
  in.codec = plan.video;
  in.pixel_format = plan.pixel_format;
  in.crf = settings.crf;
  for (const io::AudioTrackPlan& a : plan.audio) {
    int64_t rate = 192000;  // re-encoded, or a copied stream without a stated rate
    for (const io::AudioStreamInfo& s : video.audio)
      if (a.copy && s.stream_index == a.source_stream && s.bit_rate > 0) rate = s.bit_rate;
    in.audio_bytes += static_cast<int64_t>(rate * video.duration / 8.0);
  }
  in.adaptation_bytes = adaptation_bytes(settings, shape, video.frame_count, model);
  in.already_there = directory_bytes(workdir);
  const std::string folder = fs::absolute(settings.output).parent_path().string();
  plan.disk = check_disk(estimate_disk(in), free_space(workdir), free_space(folder), settings.disk_check != "off");
  return plan;
}

}  // namespace via::rank
