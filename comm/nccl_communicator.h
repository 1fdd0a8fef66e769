#pragma once
// The NCCL backend: CUDA tensors. Built only when NCCL was found
// (VIA_HAVE_NCCL, set by CMake on the via_comm target and its users).
#ifdef VIA_HAVE_NCCL

#include <cstdint>
#include <memory>
#include <string>

#include "comm/communicator.h"
#include "comm/mpi_communicator.h"

namespace via::comm {

/// Collectives over NCCL for CUDA tensors on one device per rank. The
/// constructor is collective over `host`: rank 0 makes NCCL's unique id and
/// broadcasts it over MPI, then every rank joins the NCCL communicator of
/// the same size and ranks as `host`. `host` must outlive this object; it
/// also carries the checks of broadcast layouts.
///
/// Operations are enqueued on the legacy default CUDA stream, which orders
/// them after work queued on libtorch's default stream, and each call waits
/// for completion, like the MPI backend (code that queues work on other
/// streams must synchronise them first). gather()/all_gather() of host
/// strings are not provided (CommError): use the MPI backend, as the routed
/// front does. Owns the NCCL communicator (destroyed, or aborted after a
/// failure, with this object). Not copyable.
class NcclCommunicator : public Communicator {
 public:
  /// `device`: this rank's CUDA device index.
  NcclCommunicator(MpiCommunicator& host, int device);
  ~NcclCommunicator() override;

  std::string backend() const override { return "nccl"; }
  int rank() const override;
  int size() const override;
  int device() const { return device_; }

  using Communicator::all_reduce;
  using Communicator::broadcast;
  /// Tensors must be CUDA tensors on device().
  void broadcast(std::vector<at::Tensor>& tensors, int root) override;
  /// NCCL has no barrier: an all-reduce of one value on the device, as c10d does.
  void barrier() override;
  /// Reduced on the device through a small device buffer.
  std::vector<int64_t> all_reduce(const std::vector<int64_t>& values, ReduceOp op) override;
 private:
  /// Aborts the job through MPI (NCCL has no job-wide abort).
  void abort_job(int code, const std::string& message) override { host_.abort(code, message); }

  class Comm;  // the RAII owner of ncclComm_t, in the .cpp (keeps nccl.h private)
  MpiCommunicator& host_;
  int device_;
  std::unique_ptr<Comm> comm_;
};

/// CUDA devices visible to this process (0 without a driver or devices).
int cuda_device_count();

/// Free memory of CUDA device `device` in bytes (cudaMemGetInfo), or -1
/// when it cannot be asked.
int64_t cuda_free_memory(int device);

}  // namespace via::comm

#endif  // VIA_HAVE_NCCL
