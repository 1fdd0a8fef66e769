#pragma once
// The distributed, resumable render (docs/ARCHITECTURE.md §1, §7, §8): every rank of a
// communicator runs run_render_job() together (mpirun -np N, srun, or one
// process).
//
//   rank 0                                   ranks 1..N-1
//   lock + check the work directory,         (wait)
//   write settings.json and plan.json
//   load the model  ------------------------ load the model
//   adaptation + gather (or load them        take a chunk, read and encode
//   from an earlier attempt)                 its source frames
//   broadcast adapter + group ------------> install them
//   take chunks until none is left --------- take chunks until none is left
//   gather every rank's outcome and times <- report
//   concatenate the segments + audio
//
// Chunks are handed out dynamically: a rank takes the next chunk nobody took
// (an exclusive file creation in the shared work directory), so a slow rank
// never leaves a fast one idle for more than one chunk, with no coordinator.
// A rank that fails or is stopped stops taking chunks; the others finish the
// rest, then rank 0 reports it (naming the rank) and the work stays on disk
// for --resume. A rank that dies outright ends the job through the launcher
// (mpirun, srun --kill-on-bad-exit).
#include <string>

#include "comm/communicator.h"
#include "rank/render.h"
#include "rank/settings.h"

namespace via::rank {

struct JobOptions {
  bool resume = false;     // continue the render in the work directory
  bool overwrite = false;  // replace an existing output this work directory did not write
  bool terminal = false;   // progress updated in place (stderr is a terminal)
  int cuda_device = -1;    // see Renderer
  int ranks_on_node = 1;   // ranks sharing this node's host memory (the memory plan)
};

/// A failure rank 0 reports; thrown on the other ranks so that they exit
/// non-zero without repeating it.
class ReportedElsewhere : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

/// Runs the render on every rank of `comm`. Rank 0 prints progress and the
/// outcome to stderr; the other ranks print nothing. Returns the exit code:
/// 0 when the output is written, kExitRequeue / kExitInterrupted when a
/// signal stopped the render (rank/stop.h). Throws on failure (rank 0: the
/// message; other ranks: ReportedElsewhere).
int run_render_job(const RenderSettings& settings, const std::string& workdir, const JobOptions& options,
                   comm::Communicator& comm);

}  // namespace via::rank
