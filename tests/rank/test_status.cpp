// `via status` from the work directory's files alone (rank/status.cpp):
// the state every kind of ending leaves, without a render.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "rank/attempts.h"
#include "rank/status.h"
#include "tests/io/test_video_util.h"

namespace {

using via::rank::WorkDir;

class Status : public ::testing::Test {
 protected:
  void SetUp() override {
    via::rank::RenderSettings s;
    // what the work directory records of them: any bytes will do
    s.input = dir_.file("in.mp4");
    s.model = dir_.file("model");
    std::ofstream(s.input) << "video";
    std::filesystem::create_directories(s.model);
    std::ofstream(s.model + "/weights") << "weights";
    s.instruction = "make it a pencil sketch";
    s.output = dir_.file("out.mp4");
    via::rank::prepare_workdir(work_, s, false);
    via::rank::write_plan(work_, via::rank::ChunkPlan{10, 4});
  }
  std::string state() const { return via::rank::workdir_status(work_)["state"]; }

  via::test::TempDir dir_;
  WorkDir work_{dir_.file("w")};
};

TEST_F(Status, EachEndingHasItsState) {
  EXPECT_EQ(state(), "not started");
  // A start without an end: the process was killed before it could say so.
  via::rank::record_attempt_start(work_, 2, false);
  EXPECT_EQ(state(), "stopped without a record (killed?)");
  via::rank::record_attempt_end(work_, "stopped by SIGUSR1");
  EXPECT_EQ(state(), "stopped by SIGUSR1");
  // A new attempt forgets the last one's end.
  via::rank::record_attempt_start(work_, 3, true);
  EXPECT_EQ(state(), "stopped without a record (killed?)");
  via::rank::record_attempt_end(work_, "failed", "rank 1: disk full");
  const nlohmann::json s = via::rank::workdir_status(work_);
  EXPECT_EQ(s["state"], "failed");
  EXPECT_EQ(s["message"], "rank 1: disk full");
  EXPECT_EQ(s["attempts"], 2);
  EXPECT_EQ(s["stages"]["render"]["chunks"], 3);
  EXPECT_EQ(s["stages"]["render"]["chunks_done"], 0);
  EXPECT_NE(via::rank::format_status(s).find("failed: rank 1: disk full"), std::string::npos);
}

TEST_F(Status, ATornOrForeignLineIsSkipped) {
  {
    std::ofstream out(work_.attempts(), std::ios::app);
    out << "{\"event\":\"start\"}\n[1,2]\nnull\n{\"event\":5}\n{\"event\":\"end\",\"result\":[]}\n"
        << "{\"event\":\"end\",\"resu";  // cut off by a kill
  }
  EXPECT_EQ(state(), "stopped without a record (killed?)");
}

TEST_F(Status, FinishedNeedsEveryChunkOnDisk) {
  via::rank::record_attempt_start(work_, 1, false);
  via::rank::record_attempt_end(work_, "finished");
  // The record says finished, but no chunk is on disk.
  EXPECT_EQ(state(), "finished once, but chunks have since been removed");
}

}  // namespace
