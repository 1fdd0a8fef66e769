#pragma once
// The settings of one render. Everything that can change an output frame is
// part of the settings hash: a work directory made with one hash is never
// resumed with another (docs/ARCHITECTURE.md §8).
//
// Every setting is one row of settings_table() (rank/settings.cpp): its key,
// help, check and how it reads and writes. The command line
// (driver/render_options.cpp), validate(), the JSON of settings.json, the
// hash and the "made with other settings" message all come from that table,
// so a new setting is a member here and one row there. Enumerated settings
// are held as enums: text is parsed once, where it enters (a flag, a JSON
// file).
#include <c10/core/ScalarType.h>
#include <nlohmann/json.hpp>

#include <cstdint>
#include <functional>
#include <optional>
#include <stdexcept>
#include <string>
#include <variant>
#include <vector>

#include "adaptation/modes.h"
#include "io/output_format.h"
#include "io/resize.h"
#include "model/scheduler_kind.h"

namespace via::rank {

/// Thrown for settings that cannot work; the message names the setting.
struct SettingsError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

/// per-frame: each frame draws its own noise (seed, frame, step), the
/// method's setting; shared: every frame draws the same noise, the baseline
/// of simple video editors (a shared start keeps many edits alike).
enum class NoiseMode { PerFrame, Shared };

struct RenderSettings {
  // What to edit.
  std::string input;        // source video
  std::string model;        // InstructPix2Pix folder (diffusers layout) or single file
  std::string instruction;  // the edit, in plain language
  std::string mask;         // "" | images pattern "masks/%05d.png" | mask video | one image

  // Frame size: the model works on sides that are multiples of 8.
  int64_t long_side = 512;  // the longer side of the model size
  io::ResizeMode resize = io::ResizeMode::fit;

  // Editing.
  int64_t steps = 20;
  // nullopt ("auto"): the model's own (model_index.json / scheduler_config.json).
  std::optional<model::SchedulerKind> scheduler;
  double text_guidance = 7.5;
  double image_guidance = 1.5;
  uint64_t seed = 0;
  std::optional<c10::ScalarType> dtype;  // nullopt ("auto"): fp32 on CPU, fp16 on CUDA

  // Test-time editing adaptation (docs/ARCHITECTURE.md §4).
  int64_t root_frame = -1;  // -1: drawn from the seed
  int64_t candidates = 4;
  int64_t root_seed = -1;  // -1: choose automatically
  int64_t augment = 16;    // tuning pairs
  adapt::FinetuneMode finetune = adapt::FinetuneMode::Lora;
  int64_t lora_rank = 4;
  double learning_rate = 1e-4;
  int64_t finetune_steps = 100;
  double condition_dropout = 0.05;

  // Spatiotemporal attention adaptation (docs/ARCHITECTURE.md §5).
  adapt::AttentionMode attention = adapt::AttentionMode::GatherSwap;
  int64_t group_size = 4;
  int64_t swap_steps = -1;  // -1: all steps
  adapt::LayerSet swap_layers = adapt::LayerSet::Both;
  NoiseMode noise = NoiseMode::PerFrame;

  // Local latent adaptation (docs/ARCHITECTURE.md §6).
  double mask_feather = 1.0;  // Gaussian sigma, latent pixels

  // Output. Chunks are the unit of work, of checkpoints and of segments.
  std::string output;  // outside the hash (as is audio): a resume may write elsewhere
  io::AudioMode audio = io::AudioMode::Auto;  // the source's audio in the output (io/output_format.h)
  // The output's video, outside the hash too: they change no latent, and a
  // segment made otherwise is encoded again from its chunk's latents.
  std::optional<io::VideoCodec> codec;  // nullopt ("auto"): H.264, VP9 for .webm
  std::string pix_fmt = "auto";         // "auto": the codec's default (io::default_pixel_format)
  std::string output_size = "model";    // model | source | WxH (io::parse_output_size)
  int64_t crf = 18;
  std::string preset = "medium";
  int64_t chunk_frames = 16;

  // Resources: outside the hash, they change no output frame.
  int64_t batch_frames = 0;  // frames per UNet call; 0: auto (1 on the CPU, from free memory on a GPU)
  double host_memory = 0;    // MiB a rank may use in host memory; 0: the free memory shared among the node's ranks
  double device_memory = 0;  // MiB a rank may use on its device; 0: the device's free memory
  std::string disk_check = "on";  // on: refuse a render whose disk estimate does not fit (rank/disk_plan.h); off: say it only

  /// Throws SettingsError naming the first invalid setting.
  void validate() const;
  /// swap_steps with -1 resolved to `steps`.
  int64_t resolved_swap_steps() const { return swap_steps < 0 ? steps : swap_steps; }

  /// All settings, for settings.json in the work directory.
  nlohmann::json to_json() const;
  /// Settings from to_json()'s form; keys missing keep their defaults.
  /// Throws SettingsError for an unknown key or a value of the wrong type.
  static RenderSettings from_json(const nlohmann::json& j);
  /// Sets the setting `key` from its JSON value (a name for an enumerated
  /// setting); throws SettingsError naming the flag when it is not one.
  void set(const std::string& key, const nlohmann::json& value);
  /// The hashed settings (all but the output's file, audio, codec, pixel format
  /// and size, and the resources) and their hash (16 hex digits).
  nlohmann::json hashed() const;
  std::string hash() const;
  /// The first hashed setting that differs from `other`'s, or "" when equal.
  std::string first_difference(const RenderSettings& other) const;
  /// How `here` differs from these settings (a work directory's):
  /// "--group-size is 4 there, 6 here"; "" when the hashes agree.
  std::string difference_from(const RenderSettings& here) const;
};

/// One setting: one row of the table.
struct SettingField {
  /// How the command line binds it: to the member itself (numbers, text), or
  /// as a name parsed by `set` (enumerated settings).
  struct Named {};
  using Binding = std::variant<std::string RenderSettings::*, int64_t RenderSettings::*,
                               uint64_t RenderSettings::*, double RenderSettings::*, Named>;

  std::string key;    // settings.json's key; the flag is flag_of(key)
  std::string group;  // the help section
  std::string help;
  bool required = false;  // on the command line
  bool hashed = true;     // all but the output's file, audio, video format, size and the resources: no latent changes
  Binding binding;
  std::function<nlohmann::json(const RenderSettings&)> get;
  /// Throws SettingsError naming the flag for a value of the wrong type or name.
  std::function<void(RenderSettings&, const nlohmann::json&)> set;
  /// Throws SettingsError naming the flag; may look at other settings.
  std::function<void(const RenderSettings&)> check;
};

/// Every setting, in the order of the help and of validation.
const std::vector<SettingField>& settings_table();

/// The command-line flag of a settings key: "long_side" -> "--long-side".
std::string flag_of(const std::string& key);

}  // namespace via::rank
