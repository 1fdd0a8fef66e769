#pragma once
// The attention group's file in the work directory (attention_group.h5,
// docs/ARCHITECTURE.md §9), written and read one step at a time so that no
// rank ever needs a second whole copy of a group that can be many GiB.
//
// Format 2 (a via.checkpoint file): tensors "<layer>@<step>/k" and "/v"
// ([rows, G x tokens, channels] fp16) for the self-attention layers, one
// dataset per step and layer, and "<layer>@cross/k", "/v" (one key frame's,
// [rows, tokens, channels]) once per cross-attention layer
// (adaptation/attention_group.h says why); attributes group_format = 2,
// key_frames ("12, 37, ..."), key_frame_count. A file without group_format
// is format 1 (cross-attention per step and key frame): it is gathered again.
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "adaptation/attention_group.h"

namespace via::io {
class CheckpointReader;
}  // namespace via::io

namespace via::rank {

constexpr int64_t kGroupFormat = 2;

/// Writes `group` to `path`, step by step (through a temporary file and a
/// rename, like every checkpoint), with `attributes` (the render key).
void save_group(const std::string& path, const adapt::AttentionGroup& group, const std::vector<int64_t>& key_frames,
                const std::map<std::string, std::string>& attributes = {});

/// Reads a group file one step at a time.
class GroupFile {
 public:
  /// Throws io::CheckpointError when the file is not a complete checkpoint,
  /// and std::runtime_error naming the file when it is of another format.
  explicit GroupFile(const std::string& path);
  ~GroupFile();
  /// The steps with entries, increasing (AttentionGroup::kCrossStep first).
  std::vector<int64_t> steps() const;
  /// One step's named tensors (host memory, checksums verified).
  std::map<std::string, at::Tensor> read_step(int64_t step) const;
  int64_t key_frame_count() const { return key_frame_count_; }

 private:
  std::unique_ptr<io::CheckpointReader> reader_;
  std::map<int64_t, std::vector<std::string>> names_;  // step -> tensor names
  int64_t key_frame_count_ = 0;
};

/// "" when `path` is a complete group file of the current format, else why
/// not ("missing", "format 1", the checkpoint's problem).
std::string group_file_problem(const std::string& path);

/// Reads the whole group step by step into `group` (and its key frame count).
void load_group(const std::string& path, adapt::AttentionGroup& group);

}  // namespace via::rank
