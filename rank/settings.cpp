#include "rank/settings.h"

#include <cstdio>

#include "base/random.h"
#include "model/dtype.h"

namespace via::rank {
namespace {

using Json = nlohmann::json;

void require(bool ok, const std::string& message) {
  if (!ok) throw SettingsError(message);
}

SettingsError wrong_type(const std::string& key) {
  return SettingsError("setting '" + key + "' has the wrong type");
}

// "a, b or c"
std::string either(const std::vector<std::string>& names) {
  std::string text;
  for (size_t i = 0; i < names.size(); ++i)
    text += (i == 0 ? "" : i + 1 == names.size() ? " or " : ", ") + names[i];
  return text;
}

// A number or text, bound to its member.
template <class T>
SettingField member(const std::string& key, const std::string& group, T RenderSettings::*m, const std::string& help,
                    std::function<void(const RenderSettings&)> check = {}) {
  SettingField f;
  f.key = key;
  f.group = group;
  f.help = help;
  f.binding = m;
  f.get = [m](const RenderSettings& s) { return Json(s.*m); };
  f.set = [m, key](RenderSettings& s, const Json& j) {
    try {
      j.get_to(s.*m);
    } catch (const Json::exception&) {
      throw wrong_type(key);
    }
  };
  f.check = std::move(check);
  return f;
}

// Required on the command line.
SettingField required(SettingField f) {
  f.required = true;
  return f;
}

// Outside the hash: it changes no output frame.
SettingField unhashed(SettingField f) {
  f.hashed = false;
  return f;
}

// An enumerated setting: one of `values`, written by `name`. "{choices}" in
// the help stands for the names.
template <class T>
SettingField named(const std::string& key, const std::string& group, T RenderSettings::*m, std::vector<T> values,
                   std::function<std::string(T)> name, const std::string& help) {
  std::vector<std::string> names;
  std::string list;
  for (const T& v : values) {
    names.push_back(name(v));
    list += (list.empty() ? "" : " | ") + names.back();
  }
  SettingField f;
  f.key = key;
  f.group = group;
  f.help = help;
  const auto at = f.help.find("{choices}");
  if (at != std::string::npos) f.help.replace(at, 9, list);
  f.binding = SettingField::Named{};
  f.get = [m, name](const RenderSettings& s) { return Json(name(s.*m)); };
  f.set = [m, key, values, names](RenderSettings& s, const Json& j) {
    if (!j.is_string()) throw wrong_type(key);
    const std::string text = j.get<std::string>();
    for (size_t i = 0; i < values.size(); ++i)
      if (names[i] == text) {
        s.*m = values[i];
        return;
      }
    throw SettingsError(flag_of(key) + " must be " + either(names) + ", got '" + text + "'");
  };
  return f;
}

// nullopt is "auto".
template <class T>
std::function<std::string(std::optional<T>)> or_auto(std::string (*name)(T)) {
  return [name](std::optional<T> v) { return v ? name(*v) : std::string("auto"); };
}

std::vector<SettingField> make_table() {
  using S = RenderSettings;
  const std::string io = "input and output", edit = "editing", adapt = "test-time editing adaptation",
                    attn = "spatiotemporal attention adaptation", resources = "resources";
  std::vector<std::optional<model::SchedulerKind>> schedulers = {std::nullopt};
  schedulers.insert(schedulers.end(), model::kSchedulerKinds.begin(), model::kSchedulerKinds.end());
  std::vector<std::optional<c10::ScalarType>> dtypes = {std::nullopt};
  dtypes.insert(dtypes.end(), model::kComputeDtypes.begin(), model::kComputeDtypes.end());
  SettingField output = required(member("output", io, &S::output,
                                        "edited video: .mp4, .mkv, .mov (H.264) or .webm (VP9)"));
  output.hashed = false;  // a resume may write elsewhere
  SettingField audio = named<io::AudioMode>(
      "audio", io, &S::audio, {io::AudioMode::Auto, io::AudioMode::Copy, io::AudioMode::Reencode, io::AudioMode::None},
      [](io::AudioMode m) { return std::string(io::audio_mode_name(m)); },
      "the source's audio: {choices} (auto: copied when the container takes it, else re-encoded to AAC, or "
      "Opus in .webm)");
  audio.hashed = false;  // only the final join reads it
  std::vector<std::optional<io::VideoCodec>> codecs = {std::nullopt};
  codecs.insert(codecs.end(), std::begin(io::kVideoCodecs), std::end(io::kVideoCodecs));
  // The output's video: checked against the container and this FFmpeg's encoders.
  const auto check_video = [](const S& s) {
    if (s.output.empty()) return;
    try {
      io::resolve_video_format(s.output, s.codec, s.pix_fmt);
    } catch (const std::exception& e) {
      throw SettingsError(e.what());
    }
  };
  SettingField codec = unhashed(named<std::optional<io::VideoCodec>>(
      "codec", io, &S::codec, codecs,
      [](std::optional<io::VideoCodec> c) { return std::string(c ? io::video_codec_name(*c) : "auto"); },
      "the output's video codec: {choices} (auto: h264, vp9 for .webm; prores and ffv1 are intra-frame, for "
      "post-production; prores needs .mov or .mkv, ffv1 .mkv)"));
  codec.check = check_video;

  return {
      required(member("input", io, &S::input, "source video",
                      [](const S& s) { require(!s.input.empty(), "--input is required"); })),
      output,
      audio,
      codec,
      unhashed(member("pix_fmt", io, &S::pix_fmt,
                      "the output's pixel format: auto (yuv420p; yuv422p10le for prores), yuv420p, yuv422p, yuv444p, "
                      "yuv420p10le, yuv422p10le or yuv444p10le, as the codec takes them",
                      check_video)),
      unhashed(member("output_size", io, &S::output_size,
                      "the output's frame size: model (the size the model works at), source (the source's displayed "
                      "size; with --mask the source's own pixels outside it) or WxH",
                      [](const S& s) {
                        try {
                          io::parse_output_size(s.output_size);
                        } catch (const std::invalid_argument& e) {
                          throw SettingsError(e.what());
                        }
                      })),
      required(member("model", io, &S::model,
                      "InstructPix2Pix model: a diffusers folder or an original-layout .safetensors/.ckpt file",
                      [](const S& s) { require(!s.model.empty(), "--model is required"); })),
      required(member("instruction", io, &S::instruction, "the edit, in plain language",
                      [](const S& s) {
                        require(s.instruction.find_first_not_of(" \t\r\n") != std::string::npos,
                                "--instruction must not be empty");
                      })),
      member("mask", io, &S::mask,
             "edit only inside a mask: images pattern (masks/%05d.png), mask video or one image"),
      member("long_side", io, &S::long_side, "model size: the longer side (multiple of 8)",
             [](const S& s) {
               require(s.long_side >= 16 && s.long_side % 8 == 0, "--long-side must be a multiple of 8, at least 16");
             }),
      named<io::ResizeMode>("resize", io, &S::resize, {io::ResizeMode::fit, io::ResizeMode::crop, io::ResizeMode::stretch},
                            [](io::ResizeMode m) { return std::string(io::to_string(m)); }, "aspect policy: {choices}"),
      member("crf", io, &S::crf, "quality (0-51, lower is better): x264's CRF, libvpx's for .webm",
             [](const S& s) { require(s.crf >= 0 && s.crf <= 51, "--crf must be between 0 and 51"); }),
      member("preset", io, &S::preset, "x264 preset (for .webm: libvpx's speed, veryslow 0 ... faster 5)"),
      member("chunk_frames", io, &S::chunk_frames, "frames per chunk (unit of work and checkpoint)",
             [](const S& s) { require(s.chunk_frames >= 1, "--chunk-frames must be at least 1"); }),

      member("steps", edit, &S::steps, "denoising steps",
             [](const S& s) { require(s.steps >= 1 && s.steps <= 1000, "--steps must be between 1 and 1000"); }),
      named<std::optional<model::SchedulerKind>>("scheduler", edit, &S::scheduler, schedulers,
                                                 or_auto(&model::scheduler_name),
                                                 "{choices} (auto: the model's own)"),
      member("text_guidance", edit, &S::text_guidance, "s_T",
             [](const S& s) {
               require(s.text_guidance >= 0 && s.image_guidance >= 0, "guidance scales must not be negative");
               // Far beyond any useful scale the guided noise overflows into black frames.
               require(s.text_guidance <= 100 && s.image_guidance <= 100,
                       "--text-guidance and --image-guidance must be at most 100");
             }),
      member("image_guidance", edit, &S::image_guidance, "s_I"),
      member("seed", edit, &S::seed, "seed of every random draw"),
      named<std::optional<c10::ScalarType>>("dtype", edit, &S::dtype, dtypes, or_auto(&model::compute_dtype_name),
                                            "{choices} (auto: fp16 on CUDA, fp32 on the CPU)"),

      member("root_frame", adapt, &S::root_frame, "root frame (-1: drawn from the seed)"),
      member("candidates", adapt, &S::candidates, "candidate edits of the root frame",
             [](const S& s) { require(s.candidates >= 1, "--candidates must be at least 1"); }),
      member("root_seed", adapt, &S::root_seed, "the chosen candidate (-1: automatic, the strongest agreed edit)",
             [](const S& s) {
               require(s.root_seed < 0 || s.root_seed < s.candidates,
                       "--root-seed must name one of the candidates (0.." + std::to_string(s.candidates - 1) + ")");
             }),
      member("augment", adapt, &S::augment, "tuning pairs: random affine copies of the root pair (0: the pair alone)",
             [](const S& s) { require(s.augment >= 0, "--augment must be at least 0"); }),
      named<adapt::FinetuneMode>("finetune", adapt, &S::finetune,
                                 {adapt::FinetuneMode::Lora, adapt::FinetuneMode::Full, adapt::FinetuneMode::Off},
                                 &adapt::finetune_mode_name, "{choices}"),
      member("lora_rank", adapt, &S::lora_rank, "LoRA rank",
             [](const S& s) { require(s.lora_rank >= 1, "--lora-rank must be at least 1"); }),
      member("learning_rate", adapt, &S::learning_rate, "fine-tuning learning rate",
             [](const S& s) { require(s.learning_rate > 0, "--learning-rate must be positive"); }),
      member("finetune_steps", adapt, &S::finetune_steps, "fine-tuning steps",
             [](const S& s) { require(s.finetune_steps >= 0, "--finetune-steps must not be negative"); }),
      member("condition_dropout", adapt, &S::condition_dropout, "conditioning dropout",
             [](const S& s) {
               require(s.condition_dropout >= 0 && s.condition_dropout < 1, "--condition-dropout must be in [0, 1)");
             }),

      named<adapt::AttentionMode>(
          "attention", attn, &S::attention,
          {adapt::AttentionMode::GatherSwap, adapt::AttentionMode::Anchor, adapt::AttentionMode::Own},
          &adapt::attention_mode_name, "{choices}"),
      member("group_size", attn, &S::group_size, "key frames in the attention group",
             [](const S& s) { require(s.group_size >= 1, "--group-size must be at least 1"); }),
      member("swap_steps", attn, &S::swap_steps, "swap during the first N steps (-1: all)",
             [](const S& s) {
               require(s.swap_steps >= -1 && s.swap_steps <= s.steps,
                       "--swap-steps must be -1 (all) or between 0 and --steps");
             }),
      named<adapt::LayerSet>("swap_layers", attn, &S::swap_layers,
                             {adapt::LayerSet::Self, adapt::LayerSet::Cross, adapt::LayerSet::Both},
                             &adapt::layer_set_name, "{choices}"),
      named<NoiseMode>("noise", attn, &S::noise, {NoiseMode::PerFrame, NoiseMode::Shared},
                       [](NoiseMode n) { return std::string(n == NoiseMode::Shared ? "shared" : "per-frame"); },
                       "{choices} (shared: one noise for every frame, a baseline)"),
      member("mask_feather", attn, &S::mask_feather, "mask edge blur (latent pixels)",
             [](const S& s) { require(s.mask_feather >= 0, "--mask-feather must not be negative"); }),

      // Resources: the output does not depend on them (bit for bit on the CPU).
      unhashed(member("batch_frames", resources, &S::batch_frames,
                      "frames per UNet call (0: auto, 1 on the CPU and from free memory on a GPU); "
                      "each frame keeps its own noise, the output does not change",
                      [](const S& s) {
                        require(s.batch_frames >= 0 && s.batch_frames <= 256,
                                "--batch-frames must be between 0 (auto) and 256");
                      })),
      unhashed(member("host_memory", resources, &S::host_memory,
                      "host memory a rank may use, MiB, for the memory plan (0: the free memory shared among "
                      "the node's ranks)",
                      [](const S& s) { require(s.host_memory >= 0, "--host-memory must not be negative"); })),
      unhashed(member("device_memory", resources, &S::device_memory,
                      "device memory a rank may use, MiB, for the memory plan (0: the device's free memory)",
                      [](const S& s) { require(s.device_memory >= 0, "--device-memory must not be negative"); })),
      unhashed(member("disk_check", resources, &S::disk_check,
                      "on: refuse, before any compute, a render whose disk estimate does not fit the free space; "
                      "off: only say the estimate (a file system whose free space statvfs does not tell)",
                      [](const S& s) {
                        require(s.disk_check == "on" || s.disk_check == "off", "--disk-check must be on or off");
                      })),
  };
}

const SettingField& field(const std::string& key) {
  for (const SettingField& f : settings_table())
    if (f.key == key) return f;
  throw SettingsError("unknown setting '" + key + "'");
}

}  // namespace

const std::vector<SettingField>& settings_table() {
  static const std::vector<SettingField> table = make_table();
  return table;
}

void RenderSettings::validate() const {
  for (const SettingField& f : settings_table())
    if (f.check) f.check(*this);
}

nlohmann::json RenderSettings::to_json() const {
  Json j = Json::object();
  for (const SettingField& f : settings_table()) j[f.key] = f.get(*this);
  return j;
}

nlohmann::json RenderSettings::hashed() const {
  Json j = Json::object();
  for (const SettingField& f : settings_table())
    if (f.hashed) j[f.key] = f.get(*this);
  return j;
}

void RenderSettings::set(const std::string& key, const nlohmann::json& value) { field(key).set(*this, value); }

RenderSettings RenderSettings::from_json(const nlohmann::json& j) {
  RenderSettings s;
  for (const auto& item : j.items()) field(item.key());  // unknown keys are refused
  for (const SettingField& f : settings_table())
    if (j.contains(f.key)) f.set(s, j.at(f.key));
  return s;
}

std::string RenderSettings::hash() const {
  char buf[17];
  // nlohmann::json keeps keys sorted: the text, and so the hash, does not
  // depend on the table's order.
  std::snprintf(buf, sizeof(buf), "%016llx", static_cast<unsigned long long>(random::fnv1a(hashed().dump())));
  return buf;
}

std::string RenderSettings::first_difference(const RenderSettings& other) const {
  const Json a = hashed(), b = other.hashed();
  for (const auto& item : a.items())
    if (item.value() != b.at(item.key())) return item.key();
  return "";
}

std::string RenderSettings::difference_from(const RenderSettings& here) const {
  const std::string key = first_difference(here);
  if (key.empty()) return "";
  return flag_of(key) + " is " + hashed().at(key).dump() + " there, " + here.hashed().at(key).dump() + " here";
}

std::string flag_of(const std::string& key) {
  std::string flag = "--" + key;
  for (char& c : flag)
    if (c == '_') c = '-';
  return flag;
}

}  // namespace via::rank
