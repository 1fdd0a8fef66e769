#pragma once
// Template definitions for model/json_file.h.
#include "model/safetensors.h"  // ModelError

namespace via::model {

template <typename T>
T json_value(const nlohmann::json& config, const std::string& key, const T& fallback,
             const std::string& where) {
  auto it = config.find(key);
  if (it == config.end() || it->is_null()) return fallback;
  try {
    return it->template get<T>();
  } catch (const nlohmann::json::exception& e) {
    throw ModelError(where + ": setting '" + key + "' has the wrong type (" + e.what() + ")");
  }
}

}  // namespace via::model
