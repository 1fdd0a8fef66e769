#pragma once
// Filling text templates such as slurm/job_template.sh: `{{name}}` (lowercase
// letters, digits, '_') is replaced by its value, verbatim. A placeholder
// alone on its line whose value is empty removes the line, so optional
// blocks leave no blank lines.
#include <map>
#include <string>
#include <string_view>

namespace via::slurm {

/// `text` with every placeholder replaced. Throws TemplateError when a
/// placeholder has no value or a value has no placeholder (either is a bug).
std::string fill_template(std::string_view text, const std::map<std::string, std::string>& values);

/// The job script template, slurm/job_template.sh as it was at build time.
std::string_view job_template();

}  // namespace via::slurm
