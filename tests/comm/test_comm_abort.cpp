// A rank that fails while the others wait in a collective: run_or_abort()
// must end the whole job (MPI_Abort) instead of leaving rank 0 blocked in the
// barrier forever. CTest checks the exit status and rank 1's message, and
// its timeout catches a hang.
#include <cstdio>
#include <stdexcept>

#include "comm/mpi_communicator.h"

int main(int argc, char** argv) {
  via::comm::MpiSession session(&argc, &argv);
  via::comm::MpiCommunicator comm;
  via::comm::run_or_abort(comm, [&] {
    if (comm.rank() == 1) throw std::runtime_error("injected failure on rank 1");
    comm.barrier();  // rank 0 (and any other) waits here for rank 1, which never comes
  });
  std::printf("rank %d: passed a barrier that rank 1 never entered\n", comm.rank());
  return 0;
}
