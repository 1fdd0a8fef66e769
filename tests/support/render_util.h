#pragma once
// Helpers for the tests that run `via render` through the command line and
// compare its output bit for bit.
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "io/video_reader.h"

namespace via::test {

/// An environment variable set by CTest (VIA_BIN, VIA_MPIRUN), or "".
inline std::string env(const char* name) { return std::getenv(name) ? std::getenv(name) : ""; }

/// Every frame of a video as RGB bytes: the output compared bit for bit.
inline std::vector<std::vector<uint8_t>> decoded_frames(const std::string& path) {
  io::VideoReader reader(path);
  std::vector<std::vector<uint8_t>> frames;
  const int64_t n = io::probe_video(path).frame_count;
  for (int64_t i = 0; i < n; ++i) frames.push_back(reader.read_frame(i).image.data);
  return frames;
}

/// The shell words that wait until `work` holds at least `n` finished chunks
/// (or the job `$job` ended), for stopping a render part-way.
inline std::string wait_for_chunks(const std::string& work, int64_t n) {
  return "while [ $(ls '" + work + "/chunks' 2>/dev/null | grep -c '^chunk_[0-9]*[.]h5$') -lt " +
         std::to_string(n) + " ] && kill -0 $job 2>/dev/null; do sleep 0.01; done; ";
}

/// The shell words for rank R's pid, from the work directory's progress file.
inline std::string rank_pid(const std::string& work, int rank) {
  char name[32];
  std::snprintf(name, sizeof(name), "rank_%06d.json", rank);
  return "$(sed -n 's/.*\"pid\":\\([0-9]*\\).*/\\1/p' '" + work + "/progress/" + name + "')";
}

}  // namespace via::test
