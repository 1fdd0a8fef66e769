#pragma once
// One interface for the collectives the renderer needs (docs/ARCHITECTURE.md §1: the
// adapter weights and the attention group go from rank 0 to every rank),
// with several backends: MPI for host tensors (comm/mpi_communicator.h), NCCL
// for CUDA tensors (comm/nccl_communicator.h), a single-process one for tests
// and one-rank runs (comm/single_process.h), and a front that routes each
// tensor to the backend of its device (comm/routed_communicator.h).
#include <ATen/core/Tensor.h>

#include <cstdint>
#include <exception>
#include <map>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

namespace via::comm {

/// A failed or unsupported collective. what() names the backend and the
/// rank ("mpi rank 1/4: broadcast: ...").
class CommError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

enum class ReduceOp { Sum, Max, Min };

/// The collective operations of a communicator; names used in messages and
/// in failure injection.
enum class Op { Broadcast, Barrier, AllReduce, Gather, AllGather };
const char* op_name(Op op);

/// A group of processes (ranks) that make collective calls together.
///
/// Contract: every call is collective. Every rank of the group must make the
/// same calls in the same order with matching arguments (the same root, the
/// same number of tensors with the same dtypes and shapes); a rank that skips
/// or reorders a call leaves the others waiting forever. Broadcasts check
/// that every rank passed the same root and tensors of the same dtypes,
/// shapes and device types, and throw CommError on every rank when not.
///
/// A rank that fails must not leave the others waiting in a collective.
/// Either every rank learns every rank's outcome through a collective and
/// all go on or stop together (what the render job does, rank/job.cpp), or
/// the failing rank calls abort() (or runs its work inside run_or_abort()),
/// which ends every rank of the job (MPI_Abort).
///
/// Calls block until this rank's part is done: a broadcast returns with the
/// data in place. Not thread-safe: one thread makes all calls on a
/// communicator.
///
/// Every operation a backend does not provide throws CommError naming the
/// backend and the operation.
class Communicator {
 public:
  virtual ~Communicator() = default;
  Communicator(const Communicator&) = delete;
  Communicator& operator=(const Communicator&) = delete;

  /// "mpi", "nccl", "single", or the routed front's "mpi+nccl".
  virtual std::string backend() const = 0;
  virtual int rank() const = 0;
  virtual int size() const = 0;

  /// Broadcasts `tensors` in place from `root`: on return every rank's
  /// tensors hold root's values. Tensors keep their identity (non-contiguous
  /// tensors are filled through a contiguous copy). Any dtype; sent as bytes.
  virtual void broadcast(std::vector<at::Tensor>& tensors, int root);
  /// Broadcasts one tensor in place from `root`.
  void broadcast(at::Tensor& tensor, int root);

  /// Returns when every rank has entered the barrier.
  virtual void barrier();

  /// Element-wise reduction of `values` (the same length on every rank);
  /// every rank receives the result.
  virtual std::vector<int64_t> all_reduce(const std::vector<int64_t>& values, ReduceOp op);
  int64_t all_reduce(int64_t value, ReduceOp op);

  /// Each rank's `value` (a small status: a few kB at most), indexed by rank,
  /// on `root`; other ranks receive an empty vector.
  virtual std::vector<std::string> gather(const std::string& value, int root);
  /// Each rank's `value`, indexed by rank, on every rank.
  virtual std::vector<std::string> all_gather(const std::string& value);

  /// Ends every rank of the job with exit code `code` after printing
  /// "via: rank R: <message>" to stderr. Use it when this rank cannot go on:
  /// the others may be blocked in a collective and would wait forever.
  [[noreturn]] void abort(int code, const std::string& message);

 protected:
  Communicator() = default;
  /// The backend's part of abort(): print the message and end the job (MPI:
  /// MPI_Abort). Should not return; if it does, abort() ends this process.
  virtual void abort_job(int code, const std::string& message) = 0;
  /// "<backend> rank <r>/<size>: <op>: <what>", for errors.
  std::string describe(Op op, const std::string& what) const;
  /// Throws CommError for an operation this backend does not provide.
  [[noreturn]] void unsupported(Op op, const std::string& why = "") const;
  /// Throws CommError unless 0 <= root < size().
  void check_root(Op op, int root) const;
  /// Checks that every rank passed the same root and tensors of the same
  /// dtypes, shapes and device types as rank 0 (one all-gather of a hash over
  /// `host`, which spans the same ranks); throws CommError on every rank,
  /// naming the ranks that differ. Runs before any local check that could
  /// throw on some ranks only, so a mismatch never leaves a rank waiting.
  void verify_layout(Communicator& host, const std::vector<at::Tensor>& tensors, int root) const;
  /// Throws CommError unless every tensor is defined and on `device`.
  void check_tensors(const std::vector<at::Tensor>& tensors, c10::DeviceType device) const;
};

/// Runs `work`; if it throws, aborts the whole job through `comm` with exit
/// code 1 and the exception's message, so no other rank waits forever.
template <class F>
decltype(auto) run_or_abort(Communicator& comm, F&& work) {
  try {
    return std::forward<F>(work)();
  } catch (const std::exception& e) {
    comm.abort(1, e.what());
  } catch (...) {
    comm.abort(1, "unknown exception");
  }
}

/// Broadcasts named tensors that only `root` has: root passes its tensors,
/// the others an empty map; every rank returns root's names, dtypes, shapes
/// and values. Received tensors are made on `device` (tensors on root are
/// returned as given). Names and layouts travel first as one small host
/// message, then the data as one list broadcast. For the adapter weights and
/// the attention group.
std::map<std::string, at::Tensor> broadcast_named(Communicator& comm, const std::map<std::string, at::Tensor>& tensors,
                                                  int root, const at::Device& device = at::kCPU);

/// Broadcasts a string from `root` (for example the settings JSON).
std::string broadcast_string(Communicator& comm, const std::string& value, int root);

/// A compact description of tensors' dtypes and shapes ("f32[2,3];f16[]"),
/// used to check that every rank's broadcast matches root's.
std::string layout_of(const std::vector<at::Tensor>& tensors);

}  // namespace via::comm
