#include "comm/routed_communicator.h"

#ifdef VIA_HAVE_NCCL
#include "comm/nccl_communicator.h"
#endif

namespace via::comm {

RoutedCommunicator::RoutedCommunicator(std::unique_ptr<Communicator> host, std::unique_ptr<Communicator> device)
    : host_(std::move(host)), device_(std::move(device)) {
  if (!host_) throw CommError("routed communicator: no host backend");
  if (device_ && (device_->rank() != host_->rank() || device_->size() != host_->size()))
    throw CommError("routed communicator: the " + device_->backend() + " backend (rank " +
                    std::to_string(device_->rank()) + "/" + std::to_string(device_->size()) + ") does not match the " +
                    host_->backend() + " backend (rank " + std::to_string(host_->rank()) + "/" +
                    std::to_string(host_->size()) + ")");
}

RoutedCommunicator::~RoutedCommunicator() { device_.reset(); }

std::string RoutedCommunicator::backend() const {
  return device_ ? host_->backend() + "+" + device_->backend() : host_->backend();
}

void RoutedCommunicator::broadcast(std::vector<at::Tensor>& tensors, int root) {
  // One check of the whole list (devices included) first: the backends only
  // see their own share, and a rank holding a tensor on another device than
  // root would otherwise send it to the wrong backend.
  verify_layout(*host_, tensors, root);
  check_root(Op::Broadcast, root);
  std::vector<at::Tensor> on_host, on_device;
  for (size_t i = 0; i < tensors.size(); ++i) {
    const at::Tensor& t = tensors[i];
    if (!t.defined()) throw CommError(describe(Op::Broadcast, "tensor " + std::to_string(i) + " is undefined"));
    if (t.is_cpu()) {
      on_host.push_back(t);
    } else if (t.is_cuda()) {
      if (!device_)
        throw CommError(describe(Op::Broadcast, "tensor " + std::to_string(i) + " is on " + t.device().str() +
                                                    " but this communicator has no CUDA backend"));
      on_device.push_back(t);
    } else {
      throw CommError(describe(Op::Broadcast, "tensor " + std::to_string(i) + " is on " + t.device().str() +
                                                  ", which no backend of this communicator serves"));
    }
  }
  // Shares are the same on every rank (checked above), so each backend sees
  // matching calls. A share's tensors are handles to the caller's tensors:
  // the broadcast fills them in place.
  if (!on_host.empty()) host_->broadcast(on_host, root);
  if (!on_device.empty()) device_->broadcast(on_device, root);
}

std::unique_ptr<RoutedCommunicator> make_world_communicator(int cuda_device, MpiOptions options) {
  auto host = std::make_unique<MpiCommunicator>(MPI_COMM_WORLD, options);
  std::unique_ptr<Communicator> device;
  if (cuda_device >= 0) {
#ifdef VIA_HAVE_NCCL
    device = std::make_unique<NcclCommunicator>(*host, cuda_device);
#else
    throw CommError("mpi rank " + std::to_string(host->rank()) + ": CUDA device " + std::to_string(cuda_device) +
                    " requested, but via was built without NCCL");
#endif
  }
  return std::make_unique<RoutedCommunicator>(std::move(host), std::move(device));
}

}  // namespace via::comm
