// The real adapter and attention group, broadcast from rank 0 as a render
// does, arrive element for element, and a frame edited with them on another
// rank is bit-identical to rank 0's (run under mpirun -np 2).
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>

#include "comm/mpi_communicator.h"
#include "comm/routed_communicator.h"
#include "rank/render.h"
#include "tests/io/test_video_util.h"
#include "tests/support/data.h"

namespace {

using via::rank::Renderer;

TEST(BroadcastAdaptation, EveryRankGetsRankZerosAdapterAndGroup) {
  at::set_num_threads(1);
  auto comm = via::comm::make_world_communicator();
  ASSERT_EQ(comm->size(), 2);
  const int rank = comm->rank();

  // Rank 0 makes the video and the work directory; both ranks read the video.
  std::unique_ptr<via::test::TempDir> dir;
  std::string root;
  if (rank == 0) {
    dir = std::make_unique<via::test::TempDir>();
    via::test::VideoSpec spec;
    spec.width = 96;
    spec.height = 64;
    spec.seconds = 0.4;
    via::test::make_video(*dir, "in.mp4", spec);
    root = dir->file("");
  }
  root = via::comm::broadcast_string(*comm, root, 0);

  via::rank::RenderSettings s;
  s.input = root + "/in.mp4";
  s.model = via::test::tiny_model_dir();
  s.instruction = "make it a pencil sketch";
  s.long_side = 64;
  s.steps = 3;
  s.candidates = 2;
  s.augment = 2;
  s.finetune_steps = 3;
  s.learning_rate = 1e-2;  // a visible adapter
  s.group_size = 2;
  Renderer r(s, root + "/work");
  if (rank == 0) r.adapt();

  const auto adapter = via::comm::broadcast_named(*comm, rank == 0 ? r.adapter_tensors() : decltype(r.adapter_tensors()){}, 0);
  const auto group = via::comm::broadcast_named(*comm, rank == 0 ? r.group_tensors() : decltype(r.group_tensors()){}, 0);
  if (rank != 0) r.install_adaptation(adapter, group);
  ASSERT_FALSE(adapter.empty());
  ASSERT_FALSE(group.empty());

  // Rank 1 sends back what it installed; rank 0 compares with its own copy.
  auto echo_adapter = via::comm::broadcast_named(*comm, rank == 1 ? r.adapter_tensors() : decltype(r.adapter_tensors()){}, 1);
  auto echo_group = via::comm::broadcast_named(*comm, rank == 1 ? r.group_tensors() : decltype(r.group_tensors()){}, 1);
  at::Tensor frame = r.frame_latents(3);
  comm->broadcast(frame, 1);  // rank 1's frame 3
  if (rank == 0) {
    const auto mine = r.adapter_tensors();
    ASSERT_EQ(echo_adapter.size(), mine.size());
    for (const auto& [name, t] : mine) {
      ASSERT_TRUE(echo_adapter.count(name)) << name;
      EXPECT_TRUE(at::equal(echo_adapter.at(name), t)) << name;
    }
    EXPECT_GT(mine.begin()->second.abs().max().item<double>(), 0.0);
    const auto group_mine = r.group_tensors();
    ASSERT_EQ(echo_group.size(), group_mine.size());
    for (const auto& [name, t] : group_mine) EXPECT_TRUE(at::equal(echo_group.at(name), t)) << name;
    EXPECT_TRUE(at::equal(frame, r.frame_latents(3))) << "frame 3 differs between the ranks";
  }
  comm->barrier();
}

}  // namespace
