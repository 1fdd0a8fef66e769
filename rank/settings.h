#pragma once
// The settings of one render. Everything that can change an output frame is
// part of the settings hash: a work directory made with one hash is never
// resumed with another (docs/ARCHITECTURE.md §8).
#include <nlohmann/json.hpp>

#include <cstdint>
#include <string>

namespace via::rank {

/// Thrown for settings that cannot work; the message names the setting.
struct SettingsError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

struct RenderSettings {
  // What to edit.
  std::string input;        // source video
  std::string model;        // InstructPix2Pix folder (diffusers layout)
  std::string instruction;  // the edit, in plain language
  std::string mask;         // "" | images pattern "masks/%05d.png" | mask video | one image

  // Frame size: the model works on sides that are multiples of 8.
  int64_t long_side = 512;         // the longer side of the model size
  std::string resize = "fit";      // fit | crop | stretch (see io/video_reader.h)

  // Editing.
  int64_t steps = 20;
  // auto: the model's own (model_index.json / scheduler_config.json); or
  // euler_a | euler | ddim | dpmpp_2m | dpmpp_2m_karras.
  std::string scheduler = "auto";
  double text_guidance = 7.5;
  double image_guidance = 1.5;
  uint64_t seed = 0;
  std::string dtype = "auto";  // auto (fp32 on CPU, fp16 on CUDA) | fp32 | bf16 | fp16

  // Test-time editing adaptation (docs/ARCHITECTURE.md §4).
  int64_t root_frame = -1;   // -1: drawn from the seed
  int64_t candidates = 4;
  int64_t root_seed = -1;    // -1: choose automatically
  int64_t augment = 16;      // tuning pairs
  std::string finetune = "lora";  // lora | full | off
  int64_t lora_rank = 4;
  double learning_rate = 1e-4;
  int64_t finetune_steps = 100;
  double condition_dropout = 0.05;

  // Spatiotemporal attention adaptation (docs/ARCHITECTURE.md §5).
  std::string attention = "gather-swap";  // gather-swap | anchor | own
  int64_t group_size = 4;
  int64_t swap_steps = -1;                // -1: all steps
  std::string swap_layers = "both";       // self | cross | both
  // per-frame: each frame draws its own noise (seed, frame, step), the method's
  // setting; shared: every frame draws the same noise, the baseline of simple
  // video editors (a shared start keeps many edits alike across frames).
  std::string noise = "per-frame";

  // Local latent adaptation (docs/ARCHITECTURE.md §6).
  double mask_feather = 1.0;  // Gaussian sigma, latent pixels

  // Output. Chunks are the unit of work, of checkpoints and of segments.
  std::string output;  // the only setting outside the hash: a resume may write elsewhere
  int64_t crf = 18;
  std::string preset = "medium";
  int64_t chunk_frames = 16;

  /// Throws SettingsError naming the first invalid setting.
  void validate() const;
  /// swap_steps with -1 resolved to `steps`.
  int64_t resolved_swap_steps() const { return swap_steps < 0 ? steps : swap_steps; }

  /// All settings, for settings.json in the work directory.
  nlohmann::json to_json() const;
  static RenderSettings from_json(const nlohmann::json& j);
  /// The hashed settings (all but `output`) and their hash (16 hex digits).
  nlohmann::json hashed() const;
  std::string hash() const;
  /// The first hashed setting that differs from `other`'s, or "" when equal.
  std::string first_difference(const RenderSettings& other) const;
};

/// The command-line flag of a settings key: "long_side" -> "--long-side".
std::string flag_of(const std::string& key);

}  // namespace via::rank
