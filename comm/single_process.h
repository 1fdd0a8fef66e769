#pragma once
// The single-process backend: a group of one rank, no communication.
#include <cstdint>
#include <map>
#include <string>

#include "comm/communicator.h"

namespace via::comm {

/// A communicator of size 1 (rank 0) that needs no MPI: broadcasts leave
/// tensors as they are (any device), reductions and gathers return this
/// rank's own values. For one-process runs and for tests, it counts the calls
/// of each operation and can inject a failure (a CommError) into the n-th
/// call of an operation, to test how callers handle a failing collective.
/// abort() prints the message and ends the process with the code.
/// Arguments are checked as on a real backend (root must be 0).
class SingleProcessCommunicator : public Communicator {
 public:
  std::string backend() const override { return "single"; }
  int rank() const override { return 0; }
  int size() const override { return 1; }

  using Communicator::all_reduce;
  using Communicator::broadcast;
  void broadcast(std::vector<at::Tensor>& tensors, int root) override;
  void barrier() override;
  std::vector<int64_t> all_reduce(const std::vector<int64_t>& values, ReduceOp op) override;
  std::vector<std::string> gather(const std::string& value, int root) override;
  std::vector<std::string> all_gather(const std::string& value) override;
  /// Makes the `nth` call (1 = the next one) of `op` from now on throw
  /// CommError with `message`; one injection per op, replacing an earlier one.
  void fail_on(Op op, int64_t nth = 1, const std::string& message = "injected failure");
  /// Calls of `op` made so far (failed ones included).
  int64_t calls(Op op) const;

 private:
  void abort_job(int code, const std::string& message) override;
  // Counts a call of `op` and throws if a failure was injected for it.
  void enter(Op op);
  struct Injection {
    int64_t at_call = 0;
    std::string message;
  };
  std::map<Op, int64_t> calls_;
  std::map<Op, Injection> injections_;
};

}  // namespace via::comm
