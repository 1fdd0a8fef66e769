// rank/disk_plan.h: the work directory's and the output's disk needs,
// estimated from the settings before any compute, and the refusal (one line
// naming the directory, the need and the free space) when a file system
// cannot hold them; free space is given here, not read.
#include <gtest/gtest.h>

#include "rank/disk_plan.h"

namespace via::rank {
namespace {

constexpr int64_t kMiB = 1 << 20;

DiskInputs inputs() {
  DiskInputs in;
  in.frames = 1000;
  in.latent_bytes = 4 * 64 * 64 * 4;  // 512x512: 4 x 64 x 64 fp32
  in.output_size = {1920, 1080};
  in.adaptation_bytes = 500 * kMiB;
  in.audio_bytes = 3 * kMiB;
  return in;
}

std::string refusal(const DiskNeed& need, const FreeSpace& work, const FreeSpace& out) {
  try {
    check_disk(need, work, out);
  } catch (const SettingsError& e) {
    return e.what();
  }
  return "";
}

TEST(DiskPlan, LatentsTwicePerFrameSegmentsByCodecAndTheOutput) {
  const DiskNeed h264 = estimate_disk(inputs());
  EXPECT_EQ(h264.latents, 1000 * (2 * 65536 + 4096)) << "twice, and HDF5's own bytes per file";
  EXPECT_EQ(h264.adaptation, 500 * kMiB);
  EXPECT_EQ(h264.output, h264.segments + 3 * kMiB);
  EXPECT_EQ(h264.workdir(), h264.latents + h264.segments + h264.adaptation);
  // H.264 at CRF 18: 0.3 bits a pixel and 512 bytes a frame (75 MiB for 1000 frames of 1080p).
  EXPECT_NEAR(static_cast<double>(h264.segments), 1000 * (1920 * 1080 * 0.3 / 8 + 512), 1.0);

  DiskInputs in = inputs();
  in.codec = io::VideoCodec::ProRes;
  in.pixel_format = "yuv422p10le";
  const DiskNeed prores = estimate_disk(in);
  EXPECT_GT(prores.segments, 10 * h264.segments) << "ProRes HQ is intra-frame, about 220 Mb/s at 1080p30";
  in.codec = io::VideoCodec::FFV1;
  in.pixel_format = "yuv444p10le";
  EXPECT_GT(estimate_disk(in).segments, prores.segments) << "lossless 4:4:4";
  in = inputs();
  in.crf = 30;
  EXPECT_LT(estimate_disk(in).segments, h264.segments / 3) << "12 CRF more: a quarter";

  in = inputs();
  in.already_there = h264.latents;  // a resume: the latents are there
  EXPECT_EQ(estimate_disk(in).workdir(), h264.segments + h264.adaptation);
}

TEST(DiskPlan, RefusedWhenItCannotFitNamingTheDirectoryTheNeedAndTheFreeSpace) {
  const DiskNeed need = estimate_disk(inputs());  // about 0.7 GiB in the work directory
  const FreeSpace small{"/scratch/w", 100 * kMiB, 1}, large{"/scratch/w", 100 * 1024 * kMiB, 1};
  const FreeSpace out_small{"/out", 10 * kMiB, 2}, out_large{"/out", 100 * 1024 * kMiB, 2};

  const std::string work = refusal(need, small, out_large);
  EXPECT_NE(work.find("cannot start: the work directory /scratch/w needs about 703.6 MiB (latents 128.9 MiB, "
                      "segments 74.6 MiB, adaptation files 500.0 MiB)"),
            std::string::npos)
      << work;
  EXPECT_NE(work.find("but only 100.0 MiB are free there"), std::string::npos) << work;
  EXPECT_EQ(work.find('\n'), std::string::npos);

  const std::string out = refusal(need, large, out_small);
  EXPECT_NE(out.find("cannot start: the output /out needs about 77.6 MiB, but only 10.0 MiB are free there"),
            std::string::npos)
      << out;

  // One file system for both: their sum must fit.
  const FreeSpace shared{"/scratch/w", need.workdir() + need.output - 1, 7}, shared_out{"/out", 0, 7};
  EXPECT_NE(refusal(need, shared, shared_out).find("on the same file system"), std::string::npos);
  const FreeSpace enough{"/scratch/w", need.workdir() + need.output, 7}, enough_out{"/out", 0, 7};
  const std::string line = check_disk(need, enough, enough_out);
  EXPECT_EQ(line.rfind("disk: the work directory /scratch/w takes about", 0), 0u) << line;

  // --disk-check off: said, not refused.
  const std::string said = check_disk(need, small, out_large, /*refuse=*/false);
  EXPECT_EQ(said.rfind("disk: the work directory /scratch/w needs about 703.6 MiB", 0), 0u) << said;
  EXPECT_NE(said.find("(not refused: --disk-check off)"), std::string::npos) << said;

  // Unknown free space (statvfs failed) is not checked.
  EXPECT_NO_THROW(check_disk(need, {"/w", -1, 1}, {"/o", -1, 2}));
}

TEST(DiskPlan, FreeSpaceOfAFolderNotMadeYetIsItsParentsFileSystems) {
  const FreeSpace tmp = free_space("/tmp");
  const FreeSpace later = free_space("/tmp/via-not-made-yet/work");
  EXPECT_GT(tmp.bytes, 0);
  EXPECT_EQ(later.device, tmp.device);
  EXPECT_EQ(later.dir, "/tmp/via-not-made-yet/work");
}

}  // namespace
}  // namespace via::rank
