#include "model/json_file.h"

#include <fstream>
#include <iterator>
#include <limits>

namespace via::model {
namespace {

// Python's json module writes non-finite floats as the bare words NaN,
// Infinity and -Infinity (diffusers' DPMSolverMultistepScheduler config has
// "lambda_min_clipped": -Infinity); strict JSON has no such literals. Outside
// strings they are replaced by marker strings that the parse callback turns
// back into numbers.
const char kMarker[] = "\x01via-nonfinite:";

std::string quote_nonfinite(const std::string& text) {
  std::string out;
  out.reserve(text.size());
  bool in_string = false;
  for (size_t i = 0; i < text.size(); ++i) {
    const char c = text[i];
    if (in_string) {
      out += c;
      if (c == '\\' && i + 1 < text.size()) out += text[++i];
      else if (c == '"') in_string = false;
      continue;
    }
    if (c == '"') in_string = true;
    bool replaced = false;
    for (const char* word : {"-Infinity", "Infinity", "NaN"}) {
      const size_t n = std::char_traits<char>::length(word);
      if (text.compare(i, n, word) == 0) {
        out += std::string("\"") + "\\u0001via-nonfinite:" + word + "\"";
        i += n - 1;
        replaced = true;
        break;
      }
    }
    if (!replaced) out += c;
  }
  return out;
}

}  // namespace

nlohmann::json parse_json_text(const std::string& text, const std::string& where) {
  const nlohmann::json::parser_callback_t restore = [](int, nlohmann::json::parse_event_t event,
                                                       nlohmann::json& value) {
    if (event == nlohmann::json::parse_event_t::value && value.is_string()) {
      const std::string& s = value.get_ref<const std::string&>();
      if (s.rfind(kMarker, 0) == 0) {
        const std::string word = s.substr(sizeof(kMarker) - 1);
        const double inf = std::numeric_limits<double>::infinity();
        value = word == "NaN" ? std::numeric_limits<double>::quiet_NaN() : word == "Infinity" ? inf : -inf;
      }
    }
    return true;
  };
  try {
    return nlohmann::json::parse(quote_nonfinite(text), restore);
  } catch (const nlohmann::json::exception& e) {
    throw ModelError(where + ": not valid JSON (" + e.what() + ")");
  }
}

nlohmann::json read_json_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw ModelError(path + ": cannot open (missing or unreadable)");
  const std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  if (in.bad()) throw ModelError(path + ": read error");
  return parse_json_text(text, path);
}

}  // namespace via::model
