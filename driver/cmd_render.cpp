// `via render`: edit a whole video from one instruction, on one process or
// on every rank of an MPI job (mpirun -np N, srun --mpi=pmix).
#include <ATen/Parallel.h>
#include <torch/cuda.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <iostream>
#include <memory>
#include <thread>

#include "comm/mpi_communicator.h"
#include "comm/routed_communicator.h"
#include "comm/single_process.h"
#include "driver/render_options.h"
#include "rank/job.h"
#include "rank/stop.h"

namespace via::driver {
namespace {

// Started by an MPI launcher (mpirun, srun with PMIx or PMI-2)? A plain
// `via render` runs as one process without initialising MPI.
bool launched_by_mpi() {
  for (const char* name : {"OMPI_COMM_WORLD_SIZE", "PMIX_RANK", "PMI_RANK", "PMI_SIZE"})
    if (std::getenv(name)) return true;
  return false;
}

int run(const RenderCommand& cmd, comm::Communicator& comm, int ranks_on_node, int cuda_device) {
  const int cores = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  at::set_num_threads(cmd.threads > 0 ? cmd.threads : std::max(1, cores / std::max(1, ranks_on_node)));
  // A stop signal while a rank only waits ends it at once; rank 0 says why.
  rank::StopSignals signals(comm.rank() == 0 ? "via: stopped by a signal; finished work is kept; run the same "
                                               "command with --resume to continue\n"
                                             : "");
  rank::JobOptions options;
  options.resume = cmd.resume;
  options.overwrite = cmd.overwrite;
  options.terminal = comm.rank() == 0 && isatty(STDERR_FILENO);
  options.cuda_device = cuda_device;
  options.ranks_on_node = ranks_on_node;
  return rank::run_render_job(cmd.settings, cmd.workdir, options, comm);
}

}  // namespace

int cmd_render(const Args& args) {
  RenderCommand cmd;
  if (!parse_options("via render --input VIDEO --output VIDEO --model DIR --instruction TEXT --workdir DIR [options]",
                     render_options(cmd), args))
    return 0;
  finish_render_command(cmd);
  try {
    if (!launched_by_mpi()) {
      comm::SingleProcessCommunicator single;
      return run(cmd, single, 1, torch::cuda::is_available() ? 0 : -1);
    }
    comm::MpiSession session;
    const comm::NodeLayout node = comm::node_layout();
    // One rank per GPU: the node's ranks take its devices in turn.
    const int gpus = static_cast<int>(torch::cuda::device_count());
    const int device = gpus > 0 ? node.local_rank % gpus : -1;
    auto world = comm::make_world_communicator(device);
    return run(cmd, *world, node.local_size, device);
  } catch (const rank::ReportedElsewhere&) {
    return 1;  // rank 0 printed it
  }
}

}  // namespace via::driver
