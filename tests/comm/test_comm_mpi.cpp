// The MPI backend and the routed front under mpirun (2 and 3 ranks):
// broadcasts of every dtype and of mixed lists, compared element-wise,
// messages split into pieces, collectives, and mismatches that must fail on
// every rank instead of hanging.
#include <ATen/ATen.h>
#include <gtest/gtest.h>
#include <mpi.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <map>
#include <string>
#include <thread>
#include <vector>

#include "comm/communicator.h"
#include "comm/mpi_communicator.h"
#include "comm/routed_communicator.h"
#include "tests/support/tensors.h"

using via::comm::CommError;
using via::comm::MpiCommunicator;
using via::comm::MpiOptions;
using via::comm::ReduceOp;

// Counts the MPI_Bcast calls made (and the largest one in bytes) through the
// MPI profiling interface: this definition takes the place of the library's.
namespace {

using via::test::expect_identical;
using via::test::random_bits;
int64_t g_bcast_calls = 0;
int64_t g_bcast_largest = 0;
}  // namespace
extern "C" int MPI_Bcast(void* buffer, int count, MPI_Datatype type, int root, MPI_Comm comm) {
  int type_size = 0;
  PMPI_Type_size(type, &type_size);
  ++g_bcast_calls;
  g_bcast_largest = std::max<int64_t>(g_bcast_largest, int64_t{count} * type_size);
  return PMPI_Bcast(buffer, count, type, root, comm);
}

namespace {

const std::vector<at::ScalarType> kDtypes = {at::kFloat, at::kDouble, at::kHalf, at::kBFloat16, at::kChar,
                                             at::kShort, at::kInt,    at::kLong, at::kByte,     at::kBool,
                                             at::kComplexFloat};

// Expects `f` to throw CommError containing every needle.
template <class F>
void expect_comm_error(F&& f, const std::vector<std::string>& needles) {
  try {
    f();
    ADD_FAILURE() << "expected CommError";
  } catch (const CommError& e) {
    for (const auto& n : needles) EXPECT_NE(std::string(e.what()).find(n), std::string::npos) << e.what();
  }
}

TEST(MpiComm, RankAndSize) {
  MpiCommunicator comm;
  // The launcher's own count, independent of MPI's calls (Open MPI sets it).
  if (const char* launched = std::getenv("OMPI_COMM_WORLD_SIZE")) EXPECT_EQ(comm.size(), std::atoi(launched));
  EXPECT_GE(comm.size(), 2) << "run under mpirun -np 2 or more";
  // Every rank answers with its own number: 0..size-1, each once.
  const auto ranks = comm.all_gather(std::to_string(comm.rank()));
  ASSERT_EQ(ranks.size(), static_cast<size_t>(comm.size()));
  for (int r = 0; r < comm.size(); ++r) EXPECT_EQ(ranks[r], std::to_string(r)) << "the rank in slot " << r;
  EXPECT_EQ(comm.all_reduce(1, ReduceOp::Sum), comm.size());

  // On a part of the world the numbers are the part's, not the world's:
  // odd and even ranks apart, numbered in reverse.
  int world_rank = -1, world_size = 0;
  MPI_Comm_rank(MPI_COMM_WORLD, &world_rank);
  MPI_Comm_size(MPI_COMM_WORLD, &world_size);
  MPI_Comm half;
  ASSERT_EQ(MPI_Comm_split(MPI_COMM_WORLD, world_rank % 2, -world_rank, &half), MPI_SUCCESS);
  {
    MpiCommunicator part(half);
    const int members = (world_size - world_rank % 2 + 1) / 2;  // ranks of my parity
    EXPECT_EQ(part.size(), members);
    EXPECT_EQ(part.rank(), members - 1 - world_rank / 2);
    EXPECT_EQ(part.all_reduce(1, ReduceOp::Sum), members);
  }
  MPI_Comm_free(&half);

  EXPECT_EQ(comm.backend(), "mpi");
  EXPECT_NE(comm.handle(), MPI_COMM_WORLD);  // a private duplicate
  EXPECT_EQ(comm.options().split_bytes, (int64_t{1} << 31) - (int64_t{1} << 20));
}

TEST(MpiComm, BroadcastsEveryDtypeFromEveryRoot) {
  MpiCommunicator comm;
  for (int root = 0; root < comm.size(); ++root)
    for (size_t i = 0; i < kDtypes.size(); ++i) {
      const at::ScalarType dtype = kDtypes[i];
      const uint64_t seed = 100 * static_cast<uint64_t>(root) + i;
      const at::Tensor expected = random_bits(dtype, {3, 5, 7}, seed);
      at::Tensor t = comm.rank() == root ? expected.clone() : at::zeros({3, 5, 7}, dtype);
      comm.broadcast(t, root);
      expect_identical(expected, t, std::string(c10::toString(dtype)) + " from root " + std::to_string(root));
    }
}

TEST(MpiComm, BroadcastsAListOfMixedTensorsInPlace) {
  MpiCommunicator comm;
  const int root = comm.size() - 1;
  const std::vector<std::pair<at::ScalarType, std::vector<int64_t>>> specs = {
      {at::kFloat, {}},        {at::kHalf, {0}},        {at::kBFloat16, {4, 320, 40}}, {at::kLong, {3}},
      {at::kByte, {2, 0, 5}},  {at::kDouble, {7, 1}},   {at::kBool, {9}},              {at::kInt, {6, 4}}};
  std::vector<at::Tensor> expected, list;
  for (size_t i = 0; i < specs.size(); ++i) {
    expected.push_back(random_bits(specs[i].first, specs[i].second, 7000 + i));
    list.push_back(comm.rank() == root ? expected.back().clone() : at::zeros(specs[i].second, specs[i].first));
  }
  // Non-contiguous receivers are filled in place: a transposed view and a
  // strided slice of larger tensors.
  at::Tensor base_t = at::zeros({4, 6});
  at::Tensor base_s = at::full({10}, -1.0);
  const at::Tensor expected_t = random_bits(at::kFloat, {6, 4}, 9001);
  const at::Tensor expected_s = random_bits(at::kFloat, {5}, 9002);
  if (comm.rank() == root) {
    base_t.t().copy_(expected_t);
    base_s.slice(0, 0, 10, 2).copy_(expected_s);
  }
  expected.push_back(expected_t);
  expected.push_back(expected_s);
  list.push_back(base_t.t());
  list.push_back(base_s.slice(0, 0, 10, 2));
  const std::vector<at::Tensor> handles = list;

  comm.broadcast(list, root);
  for (size_t i = 0; i < list.size(); ++i) {
    EXPECT_TRUE(list[i].is_same(handles[i])) << "tensor " << i << " was replaced, not filled";
    expect_identical(expected[i], list[i], "tensor " + std::to_string(i));
  }
  expect_identical(expected_t, base_t.t(), "transposed base");
  EXPECT_TRUE(at::equal(base_s.slice(0, 1, 10, 2), at::full({5}, -1.0))) << "the slice's gaps must be untouched";
}

TEST(MpiComm, SplitsLargeMessagesIntoPieces) {
  MpiOptions options;
  options.split_bytes = 1000;
  MpiCommunicator comm(MPI_COMM_WORLD, options);
  const at::Tensor expected = random_bits(at::kFloat, {5003}, 55);  // 20012 bytes: 21 pieces, the last of 12
  at::Tensor t = comm.rank() == 0 ? expected.clone() : at::zeros({5003});
  g_bcast_calls = 0;
  g_bcast_largest = 0;
  comm.broadcast(t, 0);
  expect_identical(expected, t, "split broadcast");
  EXPECT_EQ(g_bcast_calls, 21);
  EXPECT_EQ(g_bcast_largest, 1000);

  // A list: each tensor is split on its own.
  std::vector<at::Tensor> list = {comm.rank() == 1 ? random_bits(at::kHalf, {1500}, 56) : at::zeros({1500}, at::kHalf),
                                  comm.rank() == 1 ? random_bits(at::kByte, {999}, 57) : at::zeros({999}, at::kByte)};
  g_bcast_calls = 0;
  comm.broadcast(list, 1);
  expect_identical(random_bits(at::kHalf, {1500}, 56), list[0], "half");
  expect_identical(random_bits(at::kByte, {999}, 57), list[1], "bytes");
  EXPECT_EQ(g_bcast_calls, 3 + 1);
}

TEST(MpiComm, RejectsABadSplitSize) {
  MpiOptions options;
  options.split_bytes = 0;
  expect_comm_error([&] { MpiCommunicator comm(MPI_COMM_WORLD, options); }, {"split_bytes"});
}

TEST(MpiComm, AllReduce) {
  MpiCommunicator comm;
  const int64_t r = comm.rank(), n = comm.size();
  EXPECT_EQ(comm.all_reduce(r + 1, ReduceOp::Sum), n * (n + 1) / 2);
  EXPECT_EQ(comm.all_reduce(r * 10, ReduceOp::Max), (n - 1) * 10);
  EXPECT_EQ(comm.all_reduce(r - 5, ReduceOp::Min), -5);
  const std::vector<int64_t> sums = comm.all_reduce({1, r, std::numeric_limits<int64_t>::max() / 8, -r}, ReduceOp::Sum);
  EXPECT_EQ(sums, (std::vector<int64_t>{n, n * (n - 1) / 2, n * (std::numeric_limits<int64_t>::max() / 8),
                                        -n * (n - 1) / 2}));
  EXPECT_TRUE(comm.all_reduce(std::vector<int64_t>{}, ReduceOp::Max).empty());
}

TEST(MpiComm, GatherAndAllGatherStatuses) {
  MpiCommunicator comm;
  auto status = [](int r) { return r == 1 ? std::string() : "rank " + std::to_string(r) + std::string(r * 1000, 'x'); };
  const int root = comm.size() - 1;
  const auto gathered = comm.gather(status(comm.rank()), root);
  if (comm.rank() == root) {
    ASSERT_EQ(gathered.size(), static_cast<size_t>(comm.size()));
    for (int r = 0; r < comm.size(); ++r) EXPECT_EQ(gathered[r], status(r)) << "rank " << r;
  } else {
    EXPECT_TRUE(gathered.empty());
  }
  const auto all = comm.all_gather(status(comm.rank()));
  ASSERT_EQ(all.size(), static_cast<size_t>(comm.size()));
  for (int r = 0; r < comm.size(); ++r) EXPECT_EQ(all[r], status(r)) << "rank " << r;
}

TEST(MpiComm, BarrierWaitsForTheLastRank) {
  // The last rank enters 300 ms late; every other rank must have waited for
  // it. Each rank measures its own wait and every rank checks them all, so
  // the check also runs (and can fail) on the rank that sleeps.
  MpiCommunicator comm;
  const int late = comm.size() - 1;
  comm.barrier();
  const auto start = std::chrono::steady_clock::now();
  if (comm.rank() == late) std::this_thread::sleep_for(std::chrono::milliseconds(300));
  comm.barrier();
  const double waited = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  const auto waits = comm.all_gather(std::to_string(waited));
  ASSERT_EQ(waits.size(), static_cast<size_t>(comm.size()));
  for (int r = 0; r < late; ++r)
    EXPECT_GE(std::stod(waits[r]), 0.25) << "rank " << r << " left the barrier before rank " << late << " entered it";
}

TEST(MpiComm, MismatchedTensorsFailOnEveryRankAndTheCommunicatorStaysUsable) {
  MpiCommunicator comm;
  // Rank 1 passes another shape.
  at::Tensor t = at::zeros({comm.rank() == 1 ? 4 : 3});
  expect_comm_error([&] { comm.broadcast(t, 0); }, {"mpi rank " + std::to_string(comm.rank()), "rank(s) 1 passed"});
  // Rank 1 passes another dtype in a list.
  std::vector<at::Tensor> list = {at::zeros({2}), at::zeros({2}, comm.rank() == 1 ? at::kHalf : at::kFloat)};
  expect_comm_error([&] { comm.broadcast(list, 0); }, {"rank(s) 1 passed"});
  // Rank 1 passes another root.
  at::Tensor u = at::zeros({2});
  expect_comm_error([&] { comm.broadcast(u, comm.rank() == 1 ? 1 : 0); }, {"rank(s) 1 passed"});
  // Every rank passes a root outside the group.
  expect_comm_error([&] { comm.broadcast(u, comm.size()); }, {"is not a rank of this group"});
  // Tensors on a device MPI cannot serve.
  at::Tensor meta = at::empty({2}, at::TensorOptions().device(at::kMeta));
  expect_comm_error([&] { comm.broadcast(meta, 0); }, {"the mpi backend takes cpu tensors"});
  // Still in step afterwards.
  at::Tensor v = comm.rank() == 0 ? at::arange(5, at::kFloat) : at::zeros({5});
  comm.broadcast(v, 0);
  EXPECT_TRUE(at::equal(v, at::arange(5, at::kFloat)));
}

TEST(MpiComm, BroadcastNamedSendsNamesAndLayoutsFromRoot) {
  MpiCommunicator comm;
  std::map<std::string, at::Tensor> on_root;
  if (comm.rank() == 0) {
    on_root["down.0.attn1/k"] = random_bits(at::kHalf, {2, 16, 8}, 1);
    on_root["down.0.attn1/v"] = random_bits(at::kHalf, {2, 16, 8}, 2);
    on_root["lora.up.weight"] = random_bits(at::kFloat, {4, 320}, 3);
    on_root["step"] = random_bits(at::kLong, {}, 4);
    on_root["empty"] = at::zeros({0, 3}, at::kBFloat16);
  }
  const auto got = via::comm::broadcast_named(comm, on_root, 0);
  ASSERT_EQ(got.size(), 5u);
  expect_identical(random_bits(at::kHalf, {2, 16, 8}, 1), got.at("down.0.attn1/k"), "k");
  expect_identical(random_bits(at::kHalf, {2, 16, 8}, 2), got.at("down.0.attn1/v"), "v");
  expect_identical(random_bits(at::kFloat, {4, 320}, 3), got.at("lora.up.weight"), "lora");
  expect_identical(random_bits(at::kLong, {}, 4), got.at("step"), "step");
  EXPECT_EQ(got.at("empty").sizes(), (std::vector<int64_t>{0, 3}));
  EXPECT_EQ(got.at("empty").scalar_type(), at::kBFloat16);

  const std::string settings = comm.rank() == 0 ? "{\"steps\": 20, \"instruction\": \"make it snow\"}" : "";
  EXPECT_EQ(via::comm::broadcast_string(comm, settings, 0), "{\"steps\": 20, \"instruction\": \"make it snow\"}");
  EXPECT_EQ(via::comm::broadcast_string(comm, "", 0), "");
  if (comm.rank() == 1) {
    expect_comm_error([&] { via::comm::broadcast_named(comm, {{"x", at::ones({1})}}, 0); }, {"only root 0 may"});
  }
}

TEST(RoutedComm, RoutesHostTensorsToMpi) {
  auto comm = via::comm::make_world_communicator();
  EXPECT_EQ(comm->backend(), "mpi");
  EXPECT_EQ(comm->device(), nullptr);
  std::vector<at::Tensor> list = {comm->rank() == 0 ? random_bits(at::kBFloat16, {33}, 8) : at::zeros({33}, at::kBFloat16),
                                  comm->rank() == 0 ? random_bits(at::kInt, {2, 2}, 9) : at::zeros({2, 2}, at::kInt)};
  comm->broadcast(list, 0);
  expect_identical(random_bits(at::kBFloat16, {33}, 8), list[0], "bf16");
  expect_identical(random_bits(at::kInt, {2, 2}, 9), list[1], "int");
  EXPECT_EQ(comm->all_reduce(1, ReduceOp::Sum), comm->size());
  EXPECT_EQ(comm->all_gather("s").size(), static_cast<size_t>(comm->size()));
  comm->barrier();
  at::Tensor meta = at::empty({2}, at::TensorOptions().device(at::kMeta));
  expect_comm_error([&] { comm->broadcast(meta, 0); }, {"which no backend of this communicator serves"});
  EXPECT_EQ(via::comm::run_or_abort(*comm, [] { return 42; }), 42);
}

TEST(RoutedComm, AMissingCudaDeviceFailsOnEveryRank) {
  // Asking for a CUDA device that is not there (no machine has 1000) must
  // fail cleanly on every rank: none may be left waiting in NCCL's start-up.
#ifdef VIA_HAVE_NCCL
  expect_comm_error([] { via::comm::make_world_communicator(1000); },
                    {"creating the communicator on cuda:1000", "no CUDA device 1000 (this process sees "});
#else
  expect_comm_error([] { via::comm::make_world_communicator(1000); }, {"built without NCCL"});
#endif
  MpiCommunicator comm;  // MPI is still fine
  EXPECT_EQ(comm.all_reduce(1, ReduceOp::Sum), comm.size());
}

}  // namespace
