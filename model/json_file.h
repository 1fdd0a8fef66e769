#pragma once
#include <nlohmann/json.hpp>

#include <string>

namespace via::model {

/// Reads and parses a JSON file; a missing or malformed file throws
/// ModelError naming the path and the parser's message.
nlohmann::json read_json_file(const std::string& path);

/// config[key] converted to T, or `fallback` when absent or null. A present
/// value of the wrong type throws ModelError naming `where` and the key.
template <typename T>
T json_value(const nlohmann::json& config, const std::string& key, const T& fallback,
             const std::string& where);

}  // namespace via::model

#include "model/json_file_inl.h"
