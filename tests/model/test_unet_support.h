#pragma once
// Helpers shared by the UNet, VAE and attention tests: where the reference
// data lives, golden tensors, error measures and the (name, shape) lists.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <cstdlib>
#include <fstream>
#include <iterator>
#include <sstream>
#include <string>
#include <vector>

#include "model/safetensors.h"
#include "model/weights.h"
#include "tests/support/data.h"

namespace via::model::testing {

// One intra-op thread for every test: on tiny tensors more threads only add
// synchronisation, and on a busy CI machine OpenMP barriers can cost 100x.
inline const bool kSingleThreaded = [] {
  at::set_num_threads(1);
  return true;
}();

/// tests/reference/data under the source tree (VIA_SOURCE_DIR, set by CTest).
inline std::string reference_data() { return via::test::reference_data(); }

/// A golden tensor as a contiguous fp32/int copy (not aliasing the mapping).
inline at::Tensor golden(const std::string& file, const std::string& name) {
  SafeTensorsFile f(reference_data() + "/goldens/" + file);
  return f.tensor(name).clone();
}

inline double max_abs_error(const at::Tensor& a, const at::Tensor& b) {
  return (a.to(at::kFloat) - b.to(at::kFloat)).abs().max().item<double>();
}

inline double max_abs(const at::Tensor& a) { return a.to(at::kFloat).abs().max().item<double>(); }

/// The lines of a reference params file ("name d0,d1,..."), sorted.
inline std::vector<std::string> read_param_lines(const std::string& path) {
  std::ifstream in(path);
  EXPECT_TRUE(in.good()) << "cannot read " << path;
  std::vector<std::string> lines;
  for (std::string line; std::getline(in, line);)
    if (!line.empty()) lines.push_back(line);
  std::sort(lines.begin(), lines.end());
  return lines;
}

/// The module's parameters and buffers in the same format, sorted.
inline std::vector<std::string> param_lines(const torch::nn::Module& module) {
  std::vector<std::string> lines;
  for (const auto& [name, shape] : state_shapes(module)) {
    std::ostringstream line;
    line << name << ' ';
    for (size_t i = 0; i < shape.size(); ++i) line << (i ? "," : "") << shape[i];
    lines.push_back(line.str());
  }
  std::sort(lines.begin(), lines.end());
  return lines;
}

/// Reports the first differences between two sorted line lists.
inline void expect_same_lines(const std::vector<std::string>& ours, const std::vector<std::string>& reference) {
  EXPECT_EQ(ours.size(), reference.size());
  std::vector<std::string> only_ours, only_ref;
  std::set_difference(ours.begin(), ours.end(), reference.begin(), reference.end(), std::back_inserter(only_ours));
  std::set_difference(reference.begin(), reference.end(), ours.begin(), ours.end(), std::back_inserter(only_ref));
  for (size_t i = 0; i < std::min<size_t>(only_ours.size(), 10); ++i) ADD_FAILURE() << "only in ours: " << only_ours[i];
  for (size_t i = 0; i < std::min<size_t>(only_ref.size(), 10); ++i) ADD_FAILURE() << "only in reference: " << only_ref[i];
}

/// Config::from_json of `base` with `key` set to `value` must throw one
/// ModelError naming `where` (the file) and `needle` (the setting or value).
template <class Config>
void expect_config_error(const nlohmann::json& base, const std::string& where, const std::string& key,
                         const nlohmann::json& value, const std::string& needle) {
  nlohmann::json config = base;
  config[key] = value;
  try {
    Config::from_json(config, where);
    ADD_FAILURE() << key << " = " << value.dump() << " was accepted";
  } catch (const ModelError& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find(where), std::string::npos) << msg;
    EXPECT_NE(msg.find(needle), std::string::npos) << msg;
  }
}

}  // namespace via::model::testing
