#pragma once
// The MPI backend: host tensors, over MPI's C API.
#include <mpi.h>

#include <cstdint>
#include <string>

#include "comm/communicator.h"

namespace via::comm {

/// Owns MPI's initialisation for the process: MPI_Init_thread in the
/// constructor, MPI_Finalize in the destructor. MPI can be initialised once
/// per process only, so make one session, early in main(), and let it outlive
/// every communicator. If MPI was already initialised by someone else, the
/// session neither initialises nor finalises it. Throws CommError if MPI
/// cannot provide the requested thread level.
class MpiSession {
 public:
  /// `thread_level`: MPI_THREAD_SINGLE, _FUNNELED (default: other threads may
  /// exist but only the main thread calls MPI), _SERIALIZED or _MULTIPLE.
  MpiSession(int* argc, char*** argv, int thread_level = MPI_THREAD_FUNNELED);
  MpiSession() : MpiSession(nullptr, nullptr) {}
  ~MpiSession();
  MpiSession(const MpiSession&) = delete;
  MpiSession& operator=(const MpiSession&) = delete;

  /// The thread level MPI provides.
  int thread_level() const { return provided_; }
  /// Whether this session initialised MPI (and will finalise it).
  bool owns() const { return owns_; }

 private:
  int provided_ = MPI_THREAD_SINGLE;
  bool owns_ = false;
};

/// Options of the MPI backend.
struct MpiOptions {
  /// Largest single MPI message in bytes; larger broadcasts are sent in
  /// pieces (MPI counts are ints). Tests set it small to exercise splitting.
  int64_t split_bytes = kDefaultSplitBytes;
  /// 2 GiB less 1 MiB: the largest int count, rounded down to whole MiB.
  static constexpr int64_t kDefaultSplitBytes = (int64_t{1} << 31) - (int64_t{1} << 20);
};

/// Collectives over an MPI communicator, for host (CPU) tensors. Works on a
/// private duplicate of the given communicator (its traffic never mixes with
/// other MPI use) that returns errors instead of aborting, so failures become
/// CommError with MPI's message. Requires a live MpiSession (or MPI
/// initialised otherwise) for its whole life. The collective contract of
/// Communicator applies.
class MpiCommunicator : public Communicator {
 public:
  explicit MpiCommunicator(MPI_Comm comm = MPI_COMM_WORLD, MpiOptions options = {});
  ~MpiCommunicator() override;

  std::string backend() const override { return "mpi"; }
  int rank() const override { return rank_; }
  int size() const override { return size_; }
  const MpiOptions& options() const { return options_; }
  /// The private MPI communicator (for code that calls MPI itself).
  MPI_Comm handle() const { return comm_; }

  using Communicator::all_reduce;
  using Communicator::broadcast;
  void broadcast(std::vector<at::Tensor>& tensors, int root) override;
  void barrier() override;
  std::vector<int64_t> all_reduce(const std::vector<int64_t>& values, ReduceOp op) override;
  std::vector<std::string> gather(const std::string& value, int root) override;
  std::vector<std::string> all_gather(const std::string& value) override;
  /// Broadcasts `bytes` bytes of host memory from `root`, in pieces of at
  /// most split_bytes. Collective.
  void broadcast_bytes(void* data, int64_t bytes, int root);

 private:
  /// MPI_Abort on this communicator: ends every rank of the job.
  void abort_job(int code, const std::string& message) override;

  MPI_Comm comm_ = MPI_COMM_NULL;
  int rank_ = 0, size_ = 1;
  MpiOptions options_;
};

/// This process's place among the ranks on its node (shared memory): one
/// rank per GPU uses local_rank as its device; CPU ranks share the cores.
struct NodeLayout {
  int local_rank = 0;
  int local_size = 1;
};
/// Collective over `comm`.
NodeLayout node_layout(MPI_Comm comm = MPI_COMM_WORLD);

}  // namespace via::comm
