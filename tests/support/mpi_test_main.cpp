// main() of the MPI test binaries (run under mpirun): one MpiSession, rank
// 0 prints GoogleTest's usual progress, every other rank prints its own
// failures as they happen, prefixed with its rank, and at the end rank 0
// prints which tests failed on which rank. Every rank exits non-zero if any
// rank failed, and with via::test::kSkipExitCode if none failed but a test
// skipped somewhere.
//
// A fatal failure (a failed ASSERT_*, an exception out of a test) leaves the
// test early on that rank only, perhaps before a collective the other ranks
// already wait in: it ends every rank at once (MPI_Abort) instead of leaving
// them blocked until CTest's timeout.
#include <gtest/gtest.h>
#include <mpi.h>

#include <cstdio>
#include <string>
#include <vector>

#include "comm/mpi_communicator.h"
#include "tests/support/skip.h"

namespace {

class RankFailurePrinter : public ::testing::EmptyTestEventListener {
 public:
  explicit RankFailurePrinter(int rank) : rank_(rank) {}
  void OnTestPartResult(const ::testing::TestPartResult& r) override {
    if (!r.failed()) return;
    std::fprintf(stderr, "[rank %d] %s:%d: Failure\n%s\n", rank_, r.file_name() ? r.file_name() : "?",
                 r.line_number(), r.message());
    if (r.fatally_failed()) {
      std::fprintf(stderr, "[rank %d] fatal failure: ending every rank (MPI_Abort)\n", rank_);
      std::fflush(stderr);
      std::fflush(stdout);
      MPI_Abort(MPI_COMM_WORLD, 1);
    }
    std::fflush(stderr);
  }
  void OnTestEnd(const ::testing::TestInfo& info) override {
    if (info.result()->Failed()) failed_ += std::string(failed_.empty() ? "" : ", ") + info.test_suite_name() + "." + info.name();
  }
  const std::string& failed() const { return failed_; }

 private:
  int rank_;
  std::string failed_;
};

}  // namespace

int main(int argc, char** argv) {
  via::comm::MpiSession session(&argc, &argv);
  ::testing::InitGoogleTest(&argc, argv);
  int rank = 0, size = 1;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  MPI_Comm_size(MPI_COMM_WORLD, &size);

  auto& listeners = ::testing::UnitTest::GetInstance()->listeners();
  auto* printer = new RankFailurePrinter(rank);
  listeners.Append(printer);  // owned by GoogleTest
  if (rank != 0) delete listeners.Release(listeners.default_result_printer());

  const int result = RUN_ALL_TESTS();

  // Rank 0 reports every rank's failed tests in rank order.
  const std::string mine = printer->failed();
  const int length = static_cast<int>(mine.size());
  std::vector<int> lengths(static_cast<size_t>(size)), displs(static_cast<size_t>(size));
  MPI_Gather(&length, 1, MPI_INT, lengths.data(), 1, MPI_INT, 0, MPI_COMM_WORLD);
  int total = 0;
  for (int r = 0; r < size; ++r) {
    displs[static_cast<size_t>(r)] = total;
    total += lengths[static_cast<size_t>(r)];
  }
  std::string all(static_cast<size_t>(total), '\0');
  MPI_Gatherv(mine.data(), length, MPI_CHAR, all.data(), lengths.data(), displs.data(), MPI_CHAR, 0, MPI_COMM_WORLD);
  const int my_exit = via::test::exit_code(result, *::testing::UnitTest::GetInstance());
  const int mine_flags[2] = {my_exit == 1, my_exit == via::test::kSkipExitCode};
  int any[2] = {0, 0};  // failed, skipped: on any rank
  MPI_Allreduce(mine_flags, any, 2, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
  if (rank == 0) {
    for (int r = 0; r < size; ++r)
      if (lengths[static_cast<size_t>(r)] > 0)
        std::printf("[rank %d] FAILED: %s\n", r,
                    all.substr(static_cast<size_t>(displs[static_cast<size_t>(r)]),
                               static_cast<size_t>(lengths[static_cast<size_t>(r)]))
                        .c_str());
    std::printf(any[0]   ? "FAILED on at least one of %d ranks\n"
                : any[1] ? "SKIPPED on at least one of %d ranks (none failed)\n"
                         : "PASSED on all %d ranks\n",
                size);
    std::fflush(stdout);
  }
  return any[0] ? 1 : any[1] ? via::test::kSkipExitCode : 0;
}
