#pragma once
// The settings of `via render`, shared with `via submit` (which writes a job
// script that runs `via render` with the same settings).
#include <string>
#include <vector>

#include "driver/options.h"
#include "rank/settings.h"

namespace via::driver {

/// Everything `via render` takes.
struct RenderCommand {
  rank::RenderSettings settings;
  std::string workdir;
  int threads = 0;      // CPU threads per rank (0: the cores of this machine / ranks on it)
  bool resume = false;  // continue the render in workdir
  bool overwrite = false;  // replace an existing output another work directory (or nobody) wrote
};

/// The options of `via render`, bound to `cmd` (defaults from it): one per
/// row of rank::settings_table(), plus --workdir, --resume, --overwrite and
/// --threads (what this command may do, not what the render is).
po::options_description render_options(RenderCommand& cmd);

/// After parsing: validates the settings (UsageError naming the setting) and
/// makes the paths absolute, so that a resume from another directory, or a
/// job started by Slurm elsewhere, sees the same settings.
void finish_render_command(RenderCommand& cmd);

/// The `via render` arguments that reproduce `cmd`: every setting, defaults
/// included (a job script run after an upgrade that changed a default must
/// still match its work directory), but an empty --mask; plus --workdir, and
/// --threads, --resume and --overwrite when set.
std::vector<std::string> render_arguments(const RenderCommand& cmd);

}  // namespace via::driver
