#include "comm/mpi_communicator.h"

#include <algorithm>
#include <climits>
#include <cstdio>
#include <cstdlib>

namespace via::comm {
namespace {

std::string mpi_error_text(int code) {
  char text[MPI_MAX_ERROR_STRING];
  int len = 0;
  if (MPI_Error_string(code, text, &len) != MPI_SUCCESS) return "MPI error " + std::to_string(code);
  return std::string(text, static_cast<size_t>(len));
}

const char* thread_level_name(int level) {
  switch (level) {
    case MPI_THREAD_SINGLE: return "MPI_THREAD_SINGLE";
    case MPI_THREAD_FUNNELED: return "MPI_THREAD_FUNNELED";
    case MPI_THREAD_SERIALIZED: return "MPI_THREAD_SERIALIZED";
    case MPI_THREAD_MULTIPLE: return "MPI_THREAD_MULTIPLE";
    default: return "unknown";
  }
}

MPI_Op mpi_op(ReduceOp op) {
  switch (op) {
    case ReduceOp::Sum: return MPI_SUM;
    case ReduceOp::Max: return MPI_MAX;
    case ReduceOp::Min: return MPI_MIN;
  }
  return MPI_OP_NULL;
}

// Byte counts and displacements of an Allgatherv, checked to fit MPI's ints.
struct Layout {
  std::vector<int> counts, displs;
  int64_t total = 0;
};

}  // namespace

/// Checks an MPI call's return code; on failure throws CommError with
/// `context` (evaluated only then), the MPI function's name and MPI's message.
#define VIA_MPI_CHECK(call, context)                                                              \
  do {                                                                                            \
    const int via_mpi_rc_ = (call);                                                               \
    if (via_mpi_rc_ != MPI_SUCCESS) {                                                             \
      const std::string via_call_(#call);                                                         \
      throw ::via::comm::CommError((context) + ": " + via_call_.substr(0, via_call_.find('(')) + \
                                   " failed: " + mpi_error_text(via_mpi_rc_));                    \
    }                                                                                             \
  } while (0)

// ---------------------------------------------------------------- session

MpiSession::MpiSession(int* argc, char*** argv, int thread_level) {
  int initialized = 0, finalized = 0;
  MPI_Initialized(&initialized);
  MPI_Finalized(&finalized);
  if (finalized) throw CommError("mpi: MPI was finalised in this process and cannot be initialised again");
  if (initialized) {
    MPI_Query_thread(&provided_);
  } else {
    VIA_MPI_CHECK(MPI_Init_thread(argc, argv, thread_level, &provided_), std::string("mpi: initialising MPI"));
    owns_ = true;
  }
  if (provided_ < thread_level) {
    if (owns_) MPI_Finalize();
    throw CommError(std::string("mpi: MPI provides ") + thread_level_name(provided_) + ", via needs " +
                    thread_level_name(thread_level));
  }
}

MpiSession::~MpiSession() {
  if (!owns_) return;
  int finalized = 0;
  MPI_Finalized(&finalized);
  if (!finalized) MPI_Finalize();
}

// ---------------------------------------------------------------- communicator

MpiCommunicator::MpiCommunicator(MPI_Comm comm, MpiOptions options) : options_(options) {
  int initialized = 0;
  MPI_Initialized(&initialized);
  if (!initialized) throw CommError("mpi: MPI is not initialised (make a via::comm::MpiSession first)");
  if (options_.split_bytes <= 0 || options_.split_bytes > INT_MAX)
    throw CommError("mpi: split_bytes must be in 1.." + std::to_string(INT_MAX) + ", not " +
                    std::to_string(options_.split_bytes));
  VIA_MPI_CHECK(MPI_Comm_dup(comm, &comm_), std::string("mpi: duplicating the communicator"));
  MPI_Comm_set_errhandler(comm_, MPI_ERRORS_RETURN);
  MPI_Comm_rank(comm_, &rank_);
  MPI_Comm_size(comm_, &size_);
}

MpiCommunicator::~MpiCommunicator() {
  int finalized = 0;
  MPI_Finalized(&finalized);
  if (comm_ != MPI_COMM_NULL && !finalized) MPI_Comm_free(&comm_);
}

void MpiCommunicator::broadcast_bytes(void* data, int64_t bytes, int root) {
  auto* p = static_cast<char*>(data);
  for (int64_t offset = 0; offset < bytes; offset += options_.split_bytes) {
    const int n = static_cast<int>(std::min(options_.split_bytes, bytes - offset));
    VIA_MPI_CHECK(MPI_Bcast(p + offset, n, MPI_BYTE, root, comm_),
                  describe(Op::Broadcast, "bytes " + std::to_string(offset) + "+" + std::to_string(n) + " of " +
                                              std::to_string(bytes) + " from root " + std::to_string(root)));
  }
}

void MpiCommunicator::broadcast(std::vector<at::Tensor>& tensors, int root) {
  verify_layout(*this, tensors, root);
  check_root(Op::Broadcast, root);
  check_tensors(tensors, c10::DeviceType::CPU);
  for (at::Tensor& t : tensors) {
    if (t.numel() == 0) continue;
    if (t.is_contiguous()) {
      broadcast_bytes(t.data_ptr(), static_cast<int64_t>(t.nbytes()), root);
    } else {
      at::Tensor packed = t.contiguous();
      broadcast_bytes(packed.data_ptr(), static_cast<int64_t>(packed.nbytes()), root);
      if (rank_ != root) t.copy_(packed);
    }
  }
}

void MpiCommunicator::barrier() { VIA_MPI_CHECK(MPI_Barrier(comm_), describe(Op::Barrier, "")); }

std::vector<int64_t> MpiCommunicator::all_reduce(const std::vector<int64_t>& values, ReduceOp op) {
  std::vector<int64_t> out(values.size());
  if (values.size() > static_cast<size_t>(INT_MAX))
    throw CommError(describe(Op::AllReduce, std::to_string(values.size()) + " values are too many"));
  VIA_MPI_CHECK(MPI_Allreduce(values.data(), out.data(), static_cast<int>(values.size()), MPI_INT64_T, mpi_op(op),
                              comm_),
                describe(Op::AllReduce, std::to_string(values.size()) + " value(s)"));
  return out;
}

namespace {
// Every rank's byte count (from an all-gather every rank takes part in, so
// all ranks agree on whether the result fits MPI's int displacements).
Layout gather_layout(const std::vector<int64_t>& sizes, const std::string& where) {
  Layout l;
  for (int64_t s : sizes) {
    if (l.total + s > INT_MAX) throw CommError(where + ": more than 2 GiB in all; gather is for small statuses");
    l.counts.push_back(static_cast<int>(s));
    l.displs.push_back(static_cast<int>(l.total));
    l.total += s;
  }
  return l;
}
std::vector<std::string> split(const std::string& bytes, const Layout& l) {
  std::vector<std::string> out;
  for (size_t r = 0; r < l.counts.size(); ++r)
    out.push_back(bytes.substr(static_cast<size_t>(l.displs[r]), static_cast<size_t>(l.counts[r])));
  return out;
}
}  // namespace

std::vector<std::string> MpiCommunicator::all_gather(const std::string& value) {
  const int64_t mine = static_cast<int64_t>(value.size());
  std::vector<int64_t> sizes(static_cast<size_t>(size_));
  VIA_MPI_CHECK(MPI_Allgather(&mine, 1, MPI_INT64_T, sizes.data(), 1, MPI_INT64_T, comm_),
                describe(Op::AllGather, "sizes"));
  const Layout l = gather_layout(sizes, describe(Op::AllGather, ""));
  std::string bytes(static_cast<size_t>(l.total), '\0');
  VIA_MPI_CHECK(MPI_Allgatherv(value.data(), static_cast<int>(mine), MPI_BYTE, bytes.data(), l.counts.data(),
                               l.displs.data(), MPI_BYTE, comm_),
                describe(Op::AllGather, std::to_string(l.total) + " bytes"));
  return split(bytes, l);
}

std::vector<std::string> MpiCommunicator::gather(const std::string& value, int root) {
  check_root(Op::Gather, root);
  const int64_t mine = static_cast<int64_t>(value.size());
  std::vector<int64_t> sizes(static_cast<size_t>(size_));
  VIA_MPI_CHECK(MPI_Allgather(&mine, 1, MPI_INT64_T, sizes.data(), 1, MPI_INT64_T, comm_),
                describe(Op::Gather, "sizes"));
  const Layout l = gather_layout(sizes, describe(Op::Gather, ""));
  std::string bytes(rank_ == root ? static_cast<size_t>(l.total) : 0, '\0');
  VIA_MPI_CHECK(MPI_Gatherv(value.data(), static_cast<int>(mine), MPI_BYTE, bytes.data(), l.counts.data(),
                            l.displs.data(), MPI_BYTE, root, comm_),
                describe(Op::Gather, std::to_string(l.total) + " bytes to root " + std::to_string(root)));
  if (rank_ != root) return {};
  return split(bytes, l);
}

void MpiCommunicator::abort_job(int code, const std::string& message) {
  std::fprintf(stderr, "via: rank %d: %s\n", rank_, message.c_str());
  std::fflush(stderr);
  std::fflush(stdout);
  MPI_Abort(comm_ != MPI_COMM_NULL ? comm_ : MPI_COMM_WORLD, code);
}

}  // namespace via::comm

namespace via::comm {

NodeLayout node_layout(MPI_Comm comm) {
  MPI_Comm node = MPI_COMM_NULL;
  VIA_MPI_CHECK(MPI_Comm_split_type(comm, MPI_COMM_TYPE_SHARED, 0, MPI_INFO_NULL, &node),
                std::string("mpi: grouping the ranks by node"));
  NodeLayout layout;
  MPI_Comm_rank(node, &layout.local_rank);
  MPI_Comm_size(node, &layout.local_size);
  MPI_Comm_free(&node);
  return layout;
}

}  // namespace via::comm
