// The NCCL backend and the routed front with CUDA tensors, under mpirun.
// Needs one GPU per rank and a libtorch with CUDA; without them every test
// is skipped with a message saying so.
#include <ATen/ATen.h>
#include <ATen/Context.h>
#include <gtest/gtest.h>

#include <cstring>
#include <limits>
#include <memory>
#include <string>
#include <vector>

#include "comm/mpi_communicator.h"
#include "comm/nccl_communicator.h"
#include "comm/routed_communicator.h"
#include "tests/support/tensors.h"

using via::comm::MpiCommunicator;
using via::comm::NcclCommunicator;
using via::comm::ReduceOp;

namespace {

using via::test::expect_identical;
using via::test::random_bits;

class NcclTest : public ::testing::Test {
 protected:
  void SetUp() override {
    host_ = std::make_unique<MpiCommunicator>();
    const int gpus = via::comm::cuda_device_count();
    // Decided the same way on every rank of one machine: all skip or none.
    if (!at::hasCUDA() || gpus < host_->size())
      GTEST_SKIP() << "no GPU: the NCCL tests need one CUDA device per rank (" << host_->size()
                   << " ranks; this process sees " << gpus << " CUDA device(s), libtorch "
                   << (at::hasCUDA() ? "with" : "without") << " CUDA)";
    device_ = host_->rank();
    nccl_ = std::make_unique<NcclCommunicator>(*host_, device_);
  }
  at::Device device() const { return at::Device(at::kCUDA, static_cast<c10::DeviceIndex>(device_)); }

  std::unique_ptr<MpiCommunicator> host_;
  std::unique_ptr<NcclCommunicator> nccl_;
  int device_ = 0;
};

TEST_F(NcclTest, BroadcastsEveryDtype) {
  EXPECT_EQ(nccl_->backend(), "nccl");
  EXPECT_EQ(nccl_->size(), host_->size());
  const std::vector<at::ScalarType> dtypes = {at::kFloat, at::kDouble, at::kHalf, at::kBFloat16, at::kChar,
                                              at::kShort, at::kInt,    at::kLong, at::kByte,     at::kBool};
  const int root = nccl_->size() - 1;
  for (size_t i = 0; i < dtypes.size(); ++i) {
    const at::Tensor expected = random_bits(dtypes[i], {4, 33}, 300 + i);
    at::Tensor t = (nccl_->rank() == root ? expected : at::zeros({4, 33}, dtypes[i])).to(device());
    nccl_->broadcast(t, root);
    expect_identical(expected, t, c10::toString(dtypes[i]));
  }
}

TEST_F(NcclTest, BroadcastsAMixedListInPlace) {
  std::vector<at::Tensor> expected = {random_bits(at::kHalf, {2, 16, 8}, 1), random_bits(at::kFloat, {}, 2),
                                      random_bits(at::kBFloat16, {0}, 3), random_bits(at::kFloat, {8, 6}, 4)};
  std::vector<at::Tensor> list;
  for (const auto& e : expected) list.push_back((nccl_->rank() == 0 ? e : at::zeros_like(e)).to(device()));
  at::Tensor base = at::zeros({6, 8}, at::TensorOptions().device(device()));
  if (nccl_->rank() == 0) base.t().copy_(expected[3]);
  list[3] = base.t();  // non-contiguous
  const at::Tensor handle = list[3];
  nccl_->broadcast(list, 0);
  for (size_t i = 0; i < list.size(); ++i) expect_identical(expected[i], list[i], "tensor " + std::to_string(i));
  EXPECT_TRUE(list[3].is_same(handle));
}

TEST_F(NcclTest, AllReduceAndBarrier) {
  const int64_t n = nccl_->size(), r = nccl_->rank();
  EXPECT_EQ(nccl_->all_reduce({r + 1, r}, ReduceOp::Sum), (std::vector<int64_t>{n * (n + 1) / 2, n * (n - 1) / 2}));
  EXPECT_EQ(nccl_->all_reduce(r, ReduceOp::Max), n - 1);
  nccl_->barrier();
  EXPECT_THROW(nccl_->gather("s", 0), via::comm::CommError);  // host data belongs to MPI
}

TEST_F(NcclTest, RoutedFrontSendsEachTensorToItsBackend) {
  nccl_.reset();
  auto comm = via::comm::make_world_communicator(device_);
  EXPECT_EQ(comm->backend(), "mpi+nccl");
  const at::Tensor a = random_bits(at::kFloat, {5}, 11), b = random_bits(at::kHalf, {7}, 12);
  std::vector<at::Tensor> list = {(comm->rank() == 0 ? a : at::zeros({5})).to(device()),
                                  comm->rank() == 0 ? b.clone() : at::zeros({7}, at::kHalf)};
  comm->broadcast(list, 0);
  EXPECT_TRUE(list[0].is_cuda());
  expect_identical(a, list[0], "cuda tensor");
  expect_identical(b, list[1], "host tensor");
}

}  // namespace
