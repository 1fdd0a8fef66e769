// The single-process backend (no MPI), failure injection, abort, the loud
// defaults of the interface and the routed front over a single process.
#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <map>
#include <stdexcept>
#include <string>
#include <vector>

#include "comm/communicator.h"
#include "comm/routed_communicator.h"
#include "comm/single_process.h"

using via::comm::CommError;
using via::comm::Communicator;
using via::comm::Op;
using via::comm::ReduceOp;
using via::comm::SingleProcessCommunicator;

namespace {

template <class F>
std::string comm_error_of(F&& f) {
  try {
    f();
  } catch (const CommError& e) {
    return e.what();
  }
  ADD_FAILURE() << "expected CommError";
  return "";
}

TEST(SingleProcess, IsAGroupOfOne) {
  SingleProcessCommunicator comm;
  EXPECT_EQ(comm.backend(), "single");
  EXPECT_EQ(comm.rank(), 0);
  EXPECT_EQ(comm.size(), 1);
  at::Tensor t = at::arange(6, at::kFloat).view({2, 3});
  const at::Tensor before = t.clone();
  comm.broadcast(t, 0);
  EXPECT_TRUE(at::equal(t, before));
  std::vector<at::Tensor> list = {at::ones({2}, at::kHalf), at::zeros({}, at::kLong)};
  comm.broadcast(list, 0);
  comm.barrier();
  EXPECT_EQ(comm.all_reduce(5, ReduceOp::Sum), 5);
  EXPECT_EQ(comm.all_reduce({3, -4}, ReduceOp::Max), (std::vector<int64_t>{3, -4}));
  EXPECT_EQ(comm.gather("ok", 0), std::vector<std::string>{"ok"});
  EXPECT_EQ(comm.all_gather("ok"), std::vector<std::string>{"ok"});
}

TEST(SingleProcess, ChecksArgumentsLikeARealBackend) {
  SingleProcessCommunicator comm;
  at::Tensor t = at::ones({2});
  EXPECT_NE(comm_error_of([&] { comm.broadcast(t, 1); }).find("single rank 0/1: broadcast: root 1 is not a rank"),
            std::string::npos);
  std::vector<at::Tensor> list = {at::ones({1}), at::Tensor()};
  EXPECT_NE(comm_error_of([&] { comm.broadcast(list, 0); }).find("tensor 1 is undefined"), std::string::npos);
  EXPECT_NE(comm_error_of([&] { comm.gather("x", -1); }).find("gather: root -1"), std::string::npos);
}

TEST(SingleProcess, InjectsAFailureIntoTheNthCall) {
  SingleProcessCommunicator comm;
  at::Tensor t = at::ones({2});
  comm.fail_on(Op::Broadcast, 2, "network down");
  comm.broadcast(t, 0);
  const std::string message = comm_error_of([&] { comm.broadcast(t, 0); });
  EXPECT_EQ(message, "single rank 0/1: broadcast: network down (call 2)");
  comm.broadcast(t, 0);  // one injection, one failure
  EXPECT_EQ(comm.calls(Op::Broadcast), 3);

  comm.fail_on(Op::Barrier);
  EXPECT_THROW(comm.barrier(), CommError);
  comm.barrier();
  comm.fail_on(Op::AllReduce);
  EXPECT_THROW(comm.all_reduce(1, ReduceOp::Sum), CommError);
  comm.fail_on(Op::Gather);
  EXPECT_THROW(comm.gather("s", 0), CommError);
  comm.fail_on(Op::AllGather);
  EXPECT_THROW(comm.all_gather("s"), CommError);
  EXPECT_EQ(comm.calls(Op::Barrier), 2);
  EXPECT_EQ(comm.calls(Op::AllReduce), 1);
  EXPECT_THROW(comm.fail_on(Op::Barrier, 0), std::invalid_argument);
}

TEST(SingleProcess, BroadcastNamedAndStringReturnRootsValues) {
  SingleProcessCommunicator comm;
  const std::map<std::string, at::Tensor> named = {{"a.b/c", at::ones({2, 2}, at::kHalf)}, {"n", at::zeros({})}};
  const auto got = via::comm::broadcast_named(comm, named, 0);
  ASSERT_EQ(got.size(), 2u);
  EXPECT_TRUE(got.at("a.b/c").is_same(named.at("a.b/c")));
  EXPECT_EQ(via::comm::broadcast_string(comm, "settings", 0), "settings");
  EXPECT_EQ(comm.calls(Op::Broadcast), 1 + 2 + 2);  // one list; two per string (length, bytes)
}

TEST(SingleProcess, AbortEndsTheProcessWithTheCodeAndMessage) {
  SingleProcessCommunicator comm;
  EXPECT_EXIT(comm.abort(3, "boom"), ::testing::ExitedWithCode(3), "via: rank 0: boom");
  EXPECT_EXIT(via::comm::run_or_abort(comm, []() -> int { throw std::runtime_error("frame 12 failed"); }),
              ::testing::ExitedWithCode(1), "via: rank 0: frame 12 failed");
  EXPECT_EQ(via::comm::run_or_abort(comm, [] { return 7; }), 7);
}

// A backend that provides nothing: every collective must fail loudly,
// naming the backend and the operation.
class BareBackend : public Communicator {
 public:
  std::string backend() const override { return "bare"; }
  int rank() const override { return 0; }
  int size() const override { return 1; }
 protected:
  void abort_job(int, const std::string&) override {}
};

TEST(Interface, UnsupportedOperationsFailNamingTheBackend) {
  BareBackend bare;
  at::Tensor t = at::ones({1});
  std::vector<at::Tensor> list = {t};
  EXPECT_EQ(comm_error_of([&] { bare.broadcast(t, 0); }),
            "bare rank 0/1: broadcast: not supported by the bare backend");
  EXPECT_NE(comm_error_of([&] { bare.broadcast(list, 0); }).find("not supported by the bare backend"),
            std::string::npos);
  EXPECT_NE(comm_error_of([&] { bare.barrier(); }).find("barrier: not supported by the bare backend"),
            std::string::npos);
  EXPECT_NE(comm_error_of([&] { bare.all_reduce(1, ReduceOp::Max); }).find("all_reduce: not supported"),
            std::string::npos);
  EXPECT_NE(comm_error_of([&] { bare.gather("s", 0); }).find("gather: not supported"), std::string::npos);
  EXPECT_NE(comm_error_of([&] { bare.all_gather("s"); }).find("all_gather: not supported"), std::string::npos);
}

TEST(Interface, LayoutDescribesDtypesShapesAndDevices) {
  EXPECT_EQ(via::comm::layout_of({at::zeros({2, 3}), at::zeros({}, at::kHalf), at::Tensor()}),
            "Float[2,3]@cpu;Half[]@cpu;undefined");
}

TEST(Routed, OverASingleProcess) {
  via::comm::RoutedCommunicator comm(std::make_unique<SingleProcessCommunicator>());
  EXPECT_EQ(comm.backend(), "single");
  EXPECT_EQ(comm.size(), 1);
  std::vector<at::Tensor> list = {at::ones({3}), at::ones({2}, at::kBFloat16)};
  comm.broadcast(list, 0);
  auto& host = static_cast<SingleProcessCommunicator&>(comm.host());
  EXPECT_EQ(host.calls(Op::Broadcast), 1);
  EXPECT_EQ(host.calls(Op::AllGather), 1);  // the layout check
  at::Tensor meta = at::empty({2}, at::TensorOptions().device(at::kMeta));
  EXPECT_NE(comm_error_of([&] { comm.broadcast(meta, 0); }).find("meta, which no backend of this communicator serves"),
            std::string::npos);
  // Failures of the host backend come through the front unchanged.
  host.fail_on(Op::AllReduce);
  EXPECT_NE(comm_error_of([&] { comm.all_reduce(1, ReduceOp::Sum); }).find("single rank 0/1: all_reduce"),
            std::string::npos);
  EXPECT_THROW(via::comm::RoutedCommunicator(nullptr), CommError);
}

}  // namespace
