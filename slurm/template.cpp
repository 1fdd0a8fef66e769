#include "slurm/template.h"

#include <set>

#include "slurm/errors.h"
#include "slurm/job_template_text.h"  // generated from slurm/job_template.sh (slurm/CMakeLists.txt)

namespace via::slurm {
namespace {

bool name_char(char c) { return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_'; }

}  // namespace

std::string fill_template(std::string_view text, const std::map<std::string, std::string>& values) {
  std::string out;
  std::set<std::string> used;
  size_t at = 0;
  while (at < text.size()) {
    const size_t open = text.find("{{", at);
    if (open == std::string_view::npos) {
      out.append(text.substr(at));
      break;
    }
    size_t end = open + 2;
    while (end < text.size() && name_char(text[end])) ++end;
    if (end == open + 2 || text.substr(end, 2) != "}}") {  // not a placeholder: keep the braces
      out.append(text.substr(at, open + 2 - at));
      at = open + 2;
      continue;
    }
    const std::string name(text.substr(open + 2, end - open - 2));
    const auto value = values.find(name);
    if (value == values.end()) throw TemplateError("job template: no value for {{" + name + "}}");
    used.insert(name);
    out.append(text.substr(at, open - at));
    at = end + 2;
    const bool alone = (open == 0 || text[open - 1] == '\n') && (at == text.size() || text[at] == '\n');
    if (alone && value->second.empty()) {
      if (at < text.size()) ++at;  // drop the line with its newline
      continue;
    }
    out.append(value->second);
  }
  for (const auto& [name, value] : values)
    if (!used.count(name)) throw TemplateError("job template: no {{" + name + "}} for the value given");
  return out;
}

std::string_view job_template() { return kJobTemplateText; }

}  // namespace via::slurm
