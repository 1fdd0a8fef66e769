#pragma once
// The disk a render will need, estimated before any compute and checked
// against the free space of the work directory's and the output's file
// systems, so that a render that cannot fit is refused in a second instead
// of failing with "No space left on device" hours in.
//
// The work directory holds each frame's final latents twice at the worst
// moment (the frame's own file and its chunk's), the segments, and the
// adaptation's files (the attention group, the adapter, the root pair); the
// output holds the segments' video again and the audio. Latents and the group
// are sized exactly from the settings and the model's configs; segments from
// a rough bit rate per codec (an estimate: real footage varies).
#include <cstdint>
#include <string>

#include "io/output_format.h"
#include "io/video_reader.h"
#include "rank/settings.h"

namespace via::rank {

/// What the estimate is made from.
struct DiskInputs {
  int64_t frames = 0;
  int64_t latent_bytes = 0;  ///< one frame's final latents (fp32)
  io::Size output_size;      ///< the segments' frame size
  io::VideoCodec codec = io::VideoCodec::H264;
  std::string pixel_format = "yuv420p";
  int64_t crf = 18;
  int64_t audio_bytes = 0;       ///< the output's audio
  int64_t adaptation_bytes = 0;  ///< attention group, adapter, root pair
  int64_t already_there = 0;     ///< what the work directory holds now (a resume)
};

/// Bytes needed, by part.
struct DiskNeed {
  int64_t latents = 0, segments = 0, adaptation = 0, output = 0;
  int64_t already_there = 0;
  /// What the work directory still needs: its parts less what it holds.
  int64_t workdir() const;
};

DiskNeed estimate_disk(const DiskInputs& in);

/// A file system's free space, as statvfs gives it to an unprivileged user.
struct FreeSpace {
  std::string dir;      ///< the folder it was asked for
  int64_t bytes = 0;    ///< free
  uint64_t device = 0;  ///< st_dev: the same for two folders on one file system
};
/// statvfs of `dir`, or of its nearest existing parent (a work directory not made yet).
FreeSpace free_space(const std::string& dir);

/// The estimate in a line ("disk: the work directory W takes about ...").
/// Throws SettingsError (one line naming the directory, the need and the free
/// space) when the work directory's or the output's file system, or their
/// shared one, cannot hold what it needs; with `refuse` false (--disk-check
/// off) that line is returned instead, saying it was not enforced.
std::string check_disk(const DiskNeed& need, const FreeSpace& workdir, const FreeSpace& output, bool refuse = true);

/// The checks of the output that run before any compute: the output's plan
/// (io::plan_output with --codec and --pix-fmt) and the disk estimate for
/// `workdir`, kept in the plan's `disk` (its describe() says it, once every
/// check has passed). Throws io::VideoError or SettingsError (a disk too
/// small, unless settings.disk_check is "off").
io::OutputPlan plan_output_and_disk(const RenderSettings& settings, const io::VideoInfo& video,
                                    const std::string& workdir);

}  // namespace via::rank
