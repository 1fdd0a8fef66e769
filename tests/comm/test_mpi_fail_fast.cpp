// A fatal failure on one rank while the others wait in a collective: the MPI
// tests' main() (tests/support/mpi_test_main.cpp) must end every rank at
// once, not leave rank 0 in the barrier until CTest's timeout. CTest checks
// rank 1's message; its timeout catches a hang.
#include <gtest/gtest.h>

#include <cstdio>

#include "comm/mpi_communicator.h"

TEST(MpiTestMain, AFatalFailureOnOneRankEndsEveryRank) {
  via::comm::MpiCommunicator comm;
  ASSERT_NE(comm.rank(), 1) << "injected failure on rank 1";
  comm.barrier();  // rank 0 (and any other) waits here for rank 1, which never comes
  std::printf("rank %d: passed a barrier that rank 1 never entered\n", comm.rank());
}
