#pragma once
// The work directory of a render (docs/ARCHITECTURE.md §8) and the rules for reusing
// one: what a finished chunk or frame is, who may write there (a lock), how a
// resume is checked against the settings, and which chunk a rank takes next.
//
// Layout (docs/ARCHITECTURE.md §8 also lists what `via submit` adds):
//   settings.json            the run's settings and their hash
//   plan.json                frames, chunk_frames, chunks (for `via status`)
//   lock                     held (flock) by rank 0 while a render runs; says who
//   attempts.jsonl           one line per start and end: time, ranks, resume, Slurm job, result
//   candidates.png, root_pair.h5, adapter.h5, attention_group.h5   adaptation
//   frames/chunk_N/frame_F.h5  a finished frame's latents, until its chunk is done
//   chunks/chunk_N.h5        a finished chunk's latents ("frame_F"), attributes
//                            settings_hash, first_frame, frames
//   segments/chunk_N.mp4     a finished chunk's frames, encoded
//   claims/chunk_N           which rank took chunk N in the running attempt
//   progress/rank_R.json     what rank R does now (for `via status`)
//   timings.json             time per stage and rank of the last finished attempt
//   output.json              the output this directory wrote: path, size, mtime
//   damaged/                 files found damaged or foreign, moved aside for inspection
//
// Every checkpoint carries the render key (rank/provenance.h) in its
// attribute "render_key": one whose key, checksum or structure fails is moved
// to damaged/ and its work redone, so no file needs a person to delete it.
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "base/posix.h"
#include "io/checkpoint.h"
#include "rank/provenance.h"
#include "rank/settings.h"

namespace via::rank {

/// A problem with the work directory: in use, made with other settings,
/// unwritable. The message names the directory and what to do.
struct WorkDirError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

/// Paths in a work directory.
struct WorkDir {
  std::string root;
  std::string settings() const { return root + "/settings.json"; }
  std::string plan() const { return root + "/plan.json"; }
  std::string lock() const { return root + "/lock"; }
  std::string attempts() const { return root + "/attempts.jsonl"; }
  std::string contact_sheet() const { return root + "/candidates.png"; }
  std::string root_pair() const { return root + "/root_pair.h5"; }
  std::string adapter() const { return root + "/adapter.h5"; }
  std::string group() const { return root + "/attention_group.h5"; }
  std::string timings() const { return root + "/timings.json"; }
  std::string output_record() const { return root + "/output.json"; }
  std::string frames_dir(int64_t chunk) const;
  std::string frame_latents(int64_t chunk, int64_t frame) const;
  std::string chunk_latents(int64_t chunk) const;
  std::string chunk_segment(int64_t chunk) const;
  std::string claims_dir() const { return root + "/claims"; }
  std::string claim(int64_t chunk) const;
  std::string progress_dir() const { return root + "/progress"; }
  std::string progress(int rank) const;
  std::string damaged_dir() const { return root + "/damaged"; }
};

/// The checkpoint attribute that holds the render key.
inline constexpr const char* kRenderKeyAttribute = "render_key";

/// Frames [first, first + count) of each chunk of a video.
struct ChunkPlan {
  int64_t frames = 0;        // of the video
  int64_t chunk_frames = 1;  // per chunk (the last may have fewer)
  int64_t chunks() const { return (frames + chunk_frames - 1) / chunk_frames; }
  std::pair<int64_t, int64_t> range(int64_t chunk) const {
    const int64_t first = chunk * chunk_frames;
    return {first, std::min(chunk_frames, frames - first)};
  }
};

/// Holds the work directory's lock (an flock on WorkDir::lock(), released by
/// the kernel when the process ends, however it ends) and records the holder.
class WorkDirLock {
 public:
  /// Throws WorkDirError naming the holder when another render holds it.
  explicit WorkDirLock(const WorkDir& dir);
  ~WorkDirLock();
  WorkDirLock(const WorkDirLock&) = delete;
  WorkDirLock& operator=(const WorkDirLock&) = delete;

  /// Whether some process holds the lock now, and what it wrote ("pid P on
  /// host H"); never blocks, never throws.
  static bool held(const WorkDir& dir, std::string* holder = nullptr);

 private:
  Fd fd_;
};

/// What settings.json holds: the settings, and (from this via on) the
/// provenance and render key.
struct WorkDirRecord {
  RenderSettings settings;
  std::optional<Provenance> provenance;
  std::string key;  // "" in a directory of an older via
};
/// False when there is no settings.json; throws WorkDirError when it is damaged.
bool read_record(const WorkDir& dir, WorkDirRecord* record);

/// What prepare_workdir() found and decided.
struct PreparedWorkDir {
  bool resumed = false;  // the directory already held this render
  Provenance provenance;
  std::string key;  // render_key(settings hash, provenance): every artifact's stamp
};

/// Rank 0, under the lock, before anything else: creates the directory, or
/// checks it for a resume. Refuses a directory that holds other files and no
/// render. Without `resume`, a directory that already holds a render is
/// refused (so nothing is overwritten by accident); with it, settings that
/// differ from the directory's, or an input or model whose content changed,
/// are refused, naming which. A settings.json that is damaged, or that no
/// file of the directory was made with (a stray copy), is moved to damaged/.
/// Removes what a stopped attempt left half-written (temporary files,
/// claims, progress) and writes settings.json with the provenance and key.
/// `log` gets one line per file moved aside.
PreparedWorkDir prepare_workdir(const WorkDir& dir, const RenderSettings& settings, bool resume,
                                const std::function<void(const std::string&)>& log = {});

/// Refuses (WorkDirError) a directory that holds other files and nothing of
/// via's: via would write beside them. Before the lock is taken.
void refuse_foreign_workdir(const WorkDir& dir);

/// Moves a damaged or foreign file (or folder) of the work directory to
/// damaged/ (kept for inspection; its name there says where it was) and
/// returns its new path. Never throws: a file that cannot be moved is removed.
std::string move_aside(const WorkDir& dir, const std::string& path);

/// "" when `path` is a complete and intact checkpoint (its checksums read at
/// `level`) stamped with `key`; else why not ("missing", "made for another
/// render", the checkpoint's problem).
std::string artifact_problem(const std::string& path, const std::string& key, io::Verify level);

/// "work directory DIR was made with other settings: --steps is 5 there, 6
/// here" when `there` (DIR's settings.json) differs from `here`, else "":
/// the one message of a resume (prepare_workdir) and of `via submit`.
std::string other_settings_message(const WorkDir& dir, const RenderSettings& there, const RenderSettings& here);

/// Checks, before anything is written, that the render's output can be
/// written (a new or regular file, not the input, in a writable directory)
/// and its model exists. Throws SettingsError naming the path.
void check_model_and_output(const RenderSettings& settings);

/// Records the output this directory just wrote (its path, size and
/// modification time), so a later command may write it again without
/// --overwrite. Informative: a failure is not an error.
void record_output(const WorkDir& dir, const std::string& output);
/// Before anything is written: an existing `output` that this directory did
/// not write (as record_output() left it, unchanged since) is refused unless
/// `overwrite`. Throws SettingsError "OUTPUT exists; pass --overwrite to replace it".
void check_output_replaceable(const WorkDir& dir, const std::string& output, bool overwrite);

/// The video's frames and chunking, written by rank 0 at the start
/// (plan.json), so `via status` needs neither the video nor the model.
void write_plan(const WorkDir& dir, const ChunkPlan& plan);
/// False when there is no readable plan.json.
bool read_plan(const WorkDir& dir, ChunkPlan* plan);

/// This machine's host name ("?" if unknown), for lock holders and progress.
std::string host_name();

/// Writes `text` to `path` through a temporary file and a rename.
void write_file_atomic(const std::string& path, const std::string& text);

/// Reads the directory's settings.json into `settings`; false if there is
/// none. Throws WorkDirError if it is damaged.
bool read_settings(const WorkDir& dir, RenderSettings* settings);

/// Whether chunk `chunk`'s latents file is complete (checksums read at
/// `level`), with this render key and the chunk's frame range (its segment
/// may still be missing: a done chunk's segment is re-encoded from these latents).
bool chunk_latents_done(const WorkDir& dir, int64_t chunk, const ChunkPlan& plan, const std::string& key,
                        io::Verify level = io::Verify::Structure);
/// The frame files present (finished frames of an unfinished chunk).
int64_t frames_on_disk(const WorkDir& dir, int64_t chunk);

/// Takes chunk `chunk` for this rank in the running attempt (an exclusive
/// file creation: exactly one rank gets each chunk, on any shared file
/// system). False when another rank took it first.
bool claim_chunk(const WorkDir& dir, int64_t chunk, int rank);

}  // namespace via::rank
