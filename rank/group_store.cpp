#include "rank/group_store.h"

#include <filesystem>
#include <stdexcept>

#include "io/checkpoint.h"

namespace via::rank {

void save_group(const std::string& path, const adapt::AttentionGroup& group, const std::vector<int64_t>& key_frames,
                const std::map<std::string, std::string>& attributes) {
  io::CheckpointWriter out(path);
  for (const auto& [key, value] : attributes) out.set_string(key, value);
  for (int64_t step : group.steps())
    for (const auto& [name, t] : group.step_named(step)) out.write(name, t);
  std::string list;
  for (int64_t k : key_frames) list += (list.empty() ? "" : ", ") + std::to_string(k);
  out.set_int("group_format", kGroupFormat);
  out.set_string("key_frames", list);
  out.set_int("key_frame_count", static_cast<int64_t>(key_frames.size()));
  out.commit();
}

GroupFile::GroupFile(const std::string& path) : reader_(std::make_unique<io::CheckpointReader>(path)) {
  if (!reader_->has_attribute("group_format") || reader_->get_int("group_format") != kGroupFormat)
    throw std::runtime_error(path + ": an attention group of format " +
                             (reader_->has_attribute("group_format")
                                  ? std::to_string(reader_->get_int("group_format"))
                                  : std::string("1")) +
                             ", this via reads format " + std::to_string(kGroupFormat));
  key_frame_count_ = reader_->get_int("key_frame_count");
  for (const std::string& name : reader_->names()) {
    int64_t step = 0;
    if (!adapt::AttentionGroup::parse_name(name, nullptr, &step, nullptr))
      throw std::runtime_error(path + ": '" + name + "' is not an attention group entry");
    names_[step].push_back(name);
  }
}

GroupFile::~GroupFile() = default;

std::vector<int64_t> GroupFile::steps() const {
  std::vector<int64_t> steps;
  for (const auto& [step, names] : names_) {
    (void)names;
    steps.push_back(step);
  }
  return steps;
}

std::map<std::string, at::Tensor> GroupFile::read_step(int64_t step) const {
  std::map<std::string, at::Tensor> named;
  const auto it = names_.find(step);
  if (it == names_.end()) return named;
  for (const std::string& name : it->second) named.emplace(name, reader_->read(name));
  return named;
}

std::string group_file_problem(const std::string& path) {
  std::error_code ec;
  if (!std::filesystem::exists(path, ec)) return "missing";
  std::string reason;
  if (!io::is_valid_checkpoint(path, io::Verify::Structure, &reason)) return reason;
  try {
    GroupFile file(path);
  } catch (const std::exception& e) {
    return e.what();
  }
  return "";
}

void load_group(const std::string& path, adapt::AttentionGroup& group) {
  const GroupFile file(path);
  for (int64_t step : file.steps()) group.add_named(file.read_step(step));
  group.set_key_frames(file.key_frame_count());
}

}  // namespace via::rank
