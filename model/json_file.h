#pragma once
#include <nlohmann/json.hpp>

#include <string>

namespace via::model {

/// Reads and parses a JSON file; a missing or malformed file throws
/// ModelError naming the path and the parser's message. Accepts the bare
/// NaN, Infinity and -Infinity that Python's json module writes (as numbers).
nlohmann::json read_json_file(const std::string& path);

/// parse_json_text: read_json_file's parser for text already in memory;
/// `where` names it in errors.
nlohmann::json parse_json_text(const std::string& text, const std::string& where);

/// config[key] converted to T, or `fallback` when absent or null. A present
/// value of the wrong type throws ModelError naming `where` and the key.
template <typename T>
T json_value(const nlohmann::json& config, const std::string& key, const T& fallback,
             const std::string& where);

}  // namespace via::model

#include "model/json_file_inl.h"
