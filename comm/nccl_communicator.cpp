// The NCCL backend; compiled to nothing without NCCL (see the header).
#ifdef VIA_HAVE_NCCL

#include "comm/nccl_communicator.h"

#include <cuda_runtime.h>
#include <nccl.h>

#include <algorithm>
#include <cstring>

namespace via::comm {
namespace {

std::string nccl_text(ncclResult_t result, ncclComm_t comm) {
  std::string s = ncclGetErrorString(result);
#if NCCL_VERSION_CODE >= NCCL_VERSION(2, 13, 0)
  const char* last = ncclGetLastError(comm);
  if (last && *last) s += std::string(" (") + last + ")";
#endif
  return s;
}

std::string function_of(const char* call) {
  const std::string s(call);
  return s.substr(0, s.find('('));
}

ncclRedOp_t nccl_op(ReduceOp op) {
  switch (op) {
    case ReduceOp::Sum: return ncclSum;
    case ReduceOp::Max: return ncclMax;
    case ReduceOp::Min: return ncclMin;
  }
  return ncclSum;
}

// NCCL calls of one group (ncclGroupStart/End) per batch of tensors.
constexpr size_t kGroupSize = 256;

}  // namespace

/// Checks a CUDA runtime call; throws CommError with `context` (evaluated
/// only on failure) and CUDA's message.
#define VIA_CUDA_CHECK(call, context)                                                                   \
  do {                                                                                                  \
    const cudaError_t via_cuda_rc_ = (call);                                                            \
    if (via_cuda_rc_ != cudaSuccess)                                                                    \
      throw ::via::comm::CommError((context) + ": " + function_of(#call) + " failed: " +                \
                                   cudaGetErrorString(via_cuda_rc_));                                    \
  } while (0)

/// Checks an NCCL call on communicator `owner` (a Comm*, or null before one
/// exists); a failure marks it failed (so it is aborted, not destroyed) and
/// throws CommError with `context` and NCCL's messages.
#define VIA_NCCL_CHECK(call, owner, context)                                                            \
  do {                                                                                                  \
    const ncclResult_t via_nccl_rc_ = (call);                                                           \
    if (via_nccl_rc_ != ncclSuccess) {                                                                  \
      Comm* via_owner_ = (owner);                                                                       \
      if (via_owner_) via_owner_->mark_failed();                                                        \
      throw ::via::comm::CommError((context) + ": " + function_of(#call) + " failed: " +                \
                                   nccl_text(via_nccl_rc_, via_owner_ ? via_owner_->get() : nullptr));  \
    }                                                                                                   \
  } while (0)

/// Owns one ncclComm_t: destroyed with the object, or aborted if an
/// operation on it failed (a failed communicator cannot be destroyed
/// cleanly). Non-copyable; made by create().
class NcclCommunicator::Comm {
 public:
  static std::unique_ptr<Comm> create(int nranks, const ncclUniqueId& id, int rank, const std::string& where) {
    ncclComm_t c = nullptr;
    VIA_NCCL_CHECK(ncclCommInitRank(&c, nranks, id, rank), static_cast<Comm*>(nullptr), where);
    return std::unique_ptr<Comm>(new Comm(c));
  }
  ~Comm() {
    if (failed_)
      ncclCommAbort(comm_);
    else
      ncclCommDestroy(comm_);
  }
  Comm(const Comm&) = delete;
  Comm& operator=(const Comm&) = delete;

  ncclComm_t get() const { return comm_; }
  void mark_failed() { failed_ = true; }

 private:
  explicit Comm(ncclComm_t comm) : comm_(comm) {}
  ncclComm_t comm_;
  bool failed_ = false;
};

namespace {

// A device buffer for reductions, freed on every path.
class DeviceBuffer {
 public:
  DeviceBuffer(size_t bytes, const std::string& where) { VIA_CUDA_CHECK(cudaMalloc(&ptr_, bytes), where); }
  ~DeviceBuffer() { cudaFree(ptr_); }
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;
  void* get() const { return ptr_; }

 private:
  void* ptr_ = nullptr;
};

}  // namespace

int cuda_device_count() {
  int n = 0;
  if (cudaGetDeviceCount(&n) != cudaSuccess) {
    cudaGetLastError();  // clear the sticky "no driver" error
    return 0;
  }
  return n;
}

int64_t cuda_free_memory(int device) {
  int current = 0;
  size_t free = 0, total = 0;
  if (cudaGetDevice(&current) != cudaSuccess || cudaSetDevice(device) != cudaSuccess ||
      cudaMemGetInfo(&free, &total) != cudaSuccess) {
    cudaGetLastError();
    return -1;
  }
  cudaSetDevice(current);
  return static_cast<int64_t>(free);
}

NcclCommunicator::NcclCommunicator(MpiCommunicator& host, int device) : host_(host), device_(device) {
  const std::string where = "nccl rank " + std::to_string(host.rank()) + "/" + std::to_string(host.size()) +
                            ": creating the communicator on cuda:" + std::to_string(device);
  // Local checks first, agreed on by every rank, so no rank is left waiting
  // in NCCL's initialisation for one that gave up.
  std::string problem;
  const int devices = cuda_device_count();
  if (device < 0 || device >= devices) {
    problem = "no CUDA device " + std::to_string(device) + " (this process sees " + std::to_string(devices) + ")";
  } else if (cudaSetDevice(device) != cudaSuccess) {
    problem = std::string("cudaSetDevice failed: ") + cudaGetErrorString(cudaGetLastError());
  }
  if (host.all_reduce(problem.empty() ? 0 : 1, ReduceOp::Max) != 0)
    throw CommError(where + ": " + (problem.empty() ? "another rank could not use its device" : problem));

  // Rank 0 makes the unique id and sends it, with its status, over MPI.
  struct {
    int32_t ok;
    ncclUniqueId id;
  } start{};
  std::string id_problem;
  if (host.rank() == 0) {
    const ncclResult_t r = ncclGetUniqueId(&start.id);
    start.ok = r == ncclSuccess;
    if (!start.ok) id_problem = std::string("ncclGetUniqueId failed: ") + ncclGetErrorString(r);
  }
  host.broadcast_bytes(&start, sizeof start, 0);
  if (!start.ok) throw CommError(where + ": " + (id_problem.empty() ? "rank 0 could not make an NCCL id" : id_problem));
  comm_ = Comm::create(host.size(), start.id, host.rank(), where);
}

NcclCommunicator::~NcclCommunicator() = default;

int NcclCommunicator::rank() const { return host_.rank(); }
int NcclCommunicator::size() const { return host_.size(); }

void NcclCommunicator::broadcast(std::vector<at::Tensor>& tensors, int root) {
  verify_layout(host_, tensors, root);
  check_root(Op::Broadcast, root);
  // Device indices are each rank's own business: agree on the outcome first.
  std::string problem;
  try {
    check_tensors(tensors, c10::DeviceType::CUDA);
    for (size_t i = 0; i < tensors.size(); ++i)
      if (tensors[i].device().index() != device_)
        throw CommError(describe(Op::Broadcast, "tensor " + std::to_string(i) + " is on " +
                                                    tensors[i].device().str() + ", this rank's device is cuda:" +
                                                    std::to_string(device_)));
  } catch (const CommError& e) {
    problem = e.what();
  }
  if (host_.all_reduce(problem.empty() ? 0 : 1, ReduceOp::Max) != 0)
    throw CommError(problem.empty() ? describe(Op::Broadcast, "another rank's tensors are unusable") : problem);

  const std::string where = describe(Op::Broadcast, std::to_string(tensors.size()) + " tensor(s) from root " +
                                                        std::to_string(root));
  VIA_CUDA_CHECK(cudaSetDevice(device_), where);
  // Non-contiguous tensors travel through a contiguous copy.
  std::vector<at::Tensor> packed(tensors.size());
  for (size_t i = 0; i < tensors.size(); ++i) packed[i] = tensors[i].contiguous();
  for (size_t begin = 0; begin < packed.size(); begin += kGroupSize) {
    VIA_NCCL_CHECK(ncclGroupStart(), comm_.get(), where);
    for (size_t i = begin; i < std::min(packed.size(), begin + kGroupSize); ++i) {
      if (packed[i].numel() == 0) continue;
      void* data = packed[i].data_ptr();
      VIA_NCCL_CHECK(ncclBroadcast(data, data, packed[i].nbytes(), ncclUint8, root, comm_->get(), cudaStreamLegacy),
                     comm_.get(), where);
    }
    VIA_NCCL_CHECK(ncclGroupEnd(), comm_.get(), where);
  }
  VIA_CUDA_CHECK(cudaStreamSynchronize(cudaStreamLegacy), where);
  if (rank() != root)
    for (size_t i = 0; i < tensors.size(); ++i)
      if (!packed[i].is_same(tensors[i])) tensors[i].copy_(packed[i]);
}

std::vector<int64_t> NcclCommunicator::all_reduce(const std::vector<int64_t>& values, ReduceOp op) {
  if (values.empty()) return {};
  const std::string where = describe(Op::AllReduce, std::to_string(values.size()) + " value(s)");
  const size_t bytes = values.size() * sizeof(int64_t);
  VIA_CUDA_CHECK(cudaSetDevice(device_), where);
  DeviceBuffer buffer(bytes, where);
  VIA_CUDA_CHECK(cudaMemcpy(buffer.get(), values.data(), bytes, cudaMemcpyHostToDevice), where);
  VIA_NCCL_CHECK(ncclAllReduce(buffer.get(), buffer.get(), values.size(), ncclInt64, nccl_op(op), comm_->get(),
                               cudaStreamLegacy),
                 comm_.get(), where);
  std::vector<int64_t> out(values.size());
  // A plain cudaMemcpy runs on the legacy default stream: it waits for the reduction.
  VIA_CUDA_CHECK(cudaMemcpy(out.data(), buffer.get(), bytes, cudaMemcpyDeviceToHost), where);
  return out;
}

void NcclCommunicator::barrier() { all_reduce(std::vector<int64_t>{0}, ReduceOp::Sum); }

}  // namespace via::comm

#endif  // VIA_HAVE_NCCL
