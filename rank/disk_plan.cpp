#include "rank/disk_plan.h"

#include <sys/stat.h>
#include <sys/statvfs.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "adaptation/gather.h"
#include "rank/output_frames.h"

namespace fs = std::filesystem;

namespace via::rank {
namespace {

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

// Bits per pixel of the raw picture (4:2:0 8-bit: 12).
double raw_bits(const std::string& pixel_format) {
  const bool ten = pixel_format.find("p10") != std::string::npos;
  const double samples = pixel_format.rfind("yuv444", 0) == 0 ? 3.0 : pixel_format.rfind("yuv422", 0) == 0 ? 2.0 : 1.5;
  return samples * (ten ? 10.0 : 8.0);
}

// A rough bit rate per pixel and frame: H.264 at CRF 18 about 0.2 on camera
// footage, halving every 6 CRF; HEVC and VP9 about 30 % less; ProRes HQ
// 220 Mb/s at 1080p30 (4444: 330), FFV1 (lossless) about 60 % of the raw picture.
double bits_per_pixel(io::VideoCodec codec, const std::string& pixel_format, int64_t crf) {
  const double raw = raw_bits(pixel_format);
  const double lossy = std::min(raw, 0.2 * std::pow(2.0, (18.0 - static_cast<double>(crf)) / 6.0) * raw / 12.0);
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

// The attention group's file: self-attention K and V (fp16) of every key
// frame, guidance row and stored step, from the UNet's config (a diffusers
// folder's unet/config.json; SD-1.x's without one). Cross-attention, stored
// once, is small beside it.
int64_t group_bytes(const RenderSettings& s, int64_t frames, int64_t latent_h, int64_t latent_w) {
  if (s.attention == adapt::AttentionMode::Own) return 0;
  std::vector<int64_t> channels = {320, 640, 1280, 1280};
  std::vector<std::string> down = {"CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D",
                                   "DownBlock2D"};
  int64_t per_block = 2;
  const nlohmann::json config = read_json(fs::path(s.model) / "unet" / "config.json");
  if (config.is_object()) {
    channels = config.value("block_out_channels", channels);
    down = config.value("down_block_types", down);
    per_block = config.value("layers_per_block", per_block);
  }
  int64_t sum = 0;  // tokens x channels over the self-attention layers
  int64_t h = latent_h, w = latent_w;
  for (size_t level = 0; level < channels.size(); ++level) {
    // down block and its mirror up block (one layer more); the mid block at the last level
    const bool attention = level < down.size() && down[level].find("CrossAttn") != std::string::npos;
    if (attention) sum += (2 * per_block + 1) * h * w * channels[level];
    if (level + 1 == channels.size()) sum += h * w * channels[level];
    h = (h + 1) / 2;
    w = (w + 1) / 2;
  }
  const int64_t key_frames =
      static_cast<int64_t>(adapt::key_frame_indices(frames, s.group_size).size());
  constexpr int64_t kRows = 3, kKV = 2, kFp16 = 2;
  return s.resolved_swap_steps() * key_frames * kRows * kKV * kFp16 * sum;
}

// The adapter: LoRA's few MiB, or a whole fine-tuned UNet (its weights' size).
int64_t adapter_bytes(const RenderSettings& s) {
  if (s.finetune == adapt::FinetuneMode::Off) return 0;
  if (s.finetune == adapt::FinetuneMode::Lora) return 16 << 20;
  std::error_code ec;
  int64_t largest = 0;
  const fs::path unet = fs::path(s.model) / "unet";
  if (fs::is_directory(unet, ec)) {
    for (const auto& e : fs::directory_iterator(unet, ec))
      if (e.is_regular_file(ec)) largest = std::max<int64_t>(largest, static_cast<int64_t>(e.file_size(ec)));
  } else if (fs::is_regular_file(s.model, ec)) {
    largest = static_cast<int64_t>(fs::file_size(s.model, ec));
  }
  return largest;
}

}  // namespace

int64_t DiskNeed::workdir() const { return std::max<int64_t>(0, latents + segments + adaptation - already_there); }

DiskNeed estimate_disk(const DiskInputs& in) {
  DiskNeed need;
  need.latents = 2 * in.frames * in.latent_bytes;  // a frame's file and its chunk's
  const double pixels = static_cast<double>(in.output_size.width) * in.output_size.height;
  need.segments = static_cast<int64_t>(
      std::ceil(in.frames * pixels * bits_per_pixel(in.codec, in.pixel_format, in.crf) / 8.0));
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

std::string check_disk(const DiskNeed& need, const FreeSpace& workdir, const FreeSpace& output) {
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
  const auto refuse = [](const std::string& what, int64_t free) {
    throw SettingsError("cannot start: " + what + ", but only " + size_text(static_cast<double>(free)) +
                        " are free there");
  };
  if (workdir.bytes >= 0 && output.bytes >= 0 && workdir.device == output.device) {
    if (work + need.output > workdir.bytes)
      refuse(work_text("needs") + " and " + out_text + " on the same file system", workdir.bytes);
    return "disk: " + work_text("takes") + ", " + out_text + "; " + size_text(static_cast<double>(workdir.bytes)) +
           " free on their file system";
  }
  if (workdir.bytes >= 0 && work > workdir.bytes) refuse(work_text("needs"), workdir.bytes);
  if (output.bytes >= 0 && need.output > output.bytes)
    refuse("the output " + output.dir + " needs about " + size_text(static_cast<double>(need.output)), output.bytes);
  return "disk: " + work_text("takes") + " (" + size_text(static_cast<double>(workdir.bytes)) + " free), " + out_text +
         " (" + size_text(static_cast<double>(output.bytes)) + " free)";
}

io::OutputPlan plan_output_and_disk(const RenderSettings& settings, const io::VideoInfo& video,
                                    const std::string& workdir) {
  io::OutputPlan plan =
      io::plan_output(settings.output, video, settings.audio, settings.codec, settings.pix_fmt);
  const io::Size model = io::model_size(video.display_size(), static_cast<int>(settings.long_side));
  constexpr int64_t kVaeFactor = 8, kLatentChannels = 4, kFp32 = 4;
  const int64_t lh = model.height / kVaeFactor, lw = model.width / kVaeFactor;
  DiskInputs in;
  in.frames = video.frame_count;
  in.latent_bytes = kLatentChannels * lh * lw * kFp32;
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
  in.adaptation_bytes = group_bytes(settings, video.frame_count, lh, lw) + adapter_bytes(settings) + (16 << 20);
  in.already_there = directory_bytes(workdir);
  const std::string folder = fs::absolute(settings.output).parent_path().string();
  plan.disk = check_disk(estimate_disk(in), free_space(workdir), free_space(folder));
  return plan;
}

}  // namespace via::rank
