#pragma once
// The front the renderer uses: the tensor's device chooses the backend.
#include <memory>
#include <string>

#include "comm/communicator.h"
#include "comm/mpi_communicator.h"

namespace via::comm {

/// Routes host (CPU) tensors to the host backend (MPI, or single-process)
/// and CUDA tensors to the device backend (NCCL); barriers, reductions,
/// gathers and abort go to the host backend. Both backends span the same
/// ranks. A broadcast list may mix devices: its host tensors go first, then
/// its CUDA tensors; every rank must hold each tensor on the same kind of
/// device as root (checked, with dtypes and shapes). Tensors on other devices,
/// or CUDA tensors without a device backend, throw CommError. The collective
/// contract of Communicator applies.
class RoutedCommunicator : public Communicator {
 public:
  /// `device` may be null (no CUDA tensors). It may refer to `host` (NCCL
  /// uses MPI to start): it is destroyed first.
  explicit RoutedCommunicator(std::unique_ptr<Communicator> host, std::unique_ptr<Communicator> device = nullptr);
  ~RoutedCommunicator() override;

  /// "mpi", "mpi+nccl", "single", ...
  std::string backend() const override;
  int rank() const override { return host_->rank(); }
  int size() const override { return host_->size(); }
  Communicator& host() { return *host_; }
  /// The CUDA backend, or null.
  Communicator* device() { return device_.get(); }

  using Communicator::all_reduce;
  using Communicator::broadcast;
  void broadcast(std::vector<at::Tensor>& tensors, int root) override;
  void barrier() override { host_->barrier(); }
  std::vector<int64_t> all_reduce(const std::vector<int64_t>& values, ReduceOp op) override {
    return host_->all_reduce(values, op);
  }
  std::vector<std::string> gather(const std::string& value, int root) override { return host_->gather(value, root); }
  std::vector<std::string> all_gather(const std::string& value) override { return host_->all_gather(value); }
 private:
  void abort_job(int code, const std::string& message) override { host_->abort(code, message); }

  std::unique_ptr<Communicator> host_;    // declared first: destroyed last
  std::unique_ptr<Communicator> device_;
};

/// The communicator of a job over MPI_COMM_WORLD (needs a live MpiSession):
/// MPI for host tensors and, when `cuda_device` >= 0, NCCL on that CUDA
/// device for CUDA tensors (collective: every rank passes a device or none).
/// Throws CommError if a device is asked for and via was built without NCCL.
std::unique_ptr<RoutedCommunicator> make_world_communicator(int cuda_device = -1, MpiOptions options = {});

}  // namespace via::comm
