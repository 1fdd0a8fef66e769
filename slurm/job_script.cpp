#include "slurm/job_script.h"

#include <map>

#include "slurm/errors.h"
#include "slurm/quoting.h"
#include "slurm/template.h"

namespace via::slurm {
namespace {

// Slurm's --signal takes at most 65535 seconds.
constexpr int kMaxWarningSeconds = 65535;

// A non-negative decimal number, or -1 when `text` is not one.
int64_t number(const std::string& text) {
  if (text.empty() || text.size() > 9) return -1;
  int64_t value = 0;
  for (char c : text) {
    if (c < '0' || c > '9') return -1;
    value = value * 10 + (c - '0');
  }
  return value;
}

std::vector<std::string> split(const std::string& text, char separator) {
  std::vector<std::string> parts;
  size_t at = 0;
  for (;;) {
    const size_t end = text.find(separator, at);
    parts.push_back(text.substr(at, end == std::string::npos ? std::string::npos : end - at));
    if (end == std::string::npos) return parts;
    at = end + 1;
  }
}

std::string sbatch_line(const std::string& option, const std::string& value) {
  return "#SBATCH --" + option + "=" + sbatch_value("--" + option, value) + "\n";
}

// One of JobSpec::sbatch_options as an #SBATCH line: "--name=value" or "--flag".
std::string extra_sbatch_line(const std::string& option) {
  if (option.size() < 3 || option.compare(0, 2, "--") != 0)
    throw JobSpecError("sbatch option '" + option + "' must be written --name=value or --flag");
  const size_t equals = option.find('=');
  const std::string name = option.substr(0, equals);
  sbatch_value("sbatch option", name);
  if (name.find(' ') != std::string::npos) throw JobSpecError("sbatch option '" + option + "' has a blank in its name");
  if (equals == std::string::npos) return "#SBATCH " + name + "\n";
  return "#SBATCH " + name + "=" + sbatch_value("sbatch option " + name, option.substr(equals + 1)) + "\n";
}

// `args=( ... )`, one option and its value a line.
std::string bash_array(const std::vector<std::string>& args, const std::string& indent) {
  std::string text = indent + "args=(";
  for (size_t i = 0; i < args.size(); ++i) {
    const bool option = args[i].size() > 2 && args[i].compare(0, 2, "--") == 0;
    text += (i == 0 || option) ? "\n" + indent + "  " : " ";
    text += shell_quote(args[i]);
  }
  return text + "\n" + indent + ")";
}

std::string render_arguments(const JobSpec& spec) {
  if (!spec.array) return bash_array(spec.renders.front(), "");
  std::string text = "case \"${SLURM_ARRAY_TASK_ID:-}\" in\n";
  for (size_t task = 0; task < spec.renders.size(); ++task) {
    text += "  " + std::to_string(task) + ")\n" + bash_array(spec.renders[task], "    ") + " ;;\n";
  }
  text += "  *)\n    echo \"via job: this script is a job array of tasks 0-" + std::to_string(spec.renders.size() - 1) +
          "; task '${SLURM_ARRAY_TASK_ID:-}' has no render\" >&2\n    exit 1 ;;\nesac";
  return text;
}

}  // namespace

int64_t parse_time_limit(const std::string& limit) {
  const auto bad = [&]() {
    return JobSpecError("time limit '" + limit +
                        "' is not one of Slurm's formats: minutes, M:S, H:M:S, D-H, D-H:M or D-H:M:S");
  };
  int64_t days = 0;
  std::string clock = limit;
  const size_t dash = limit.find('-');
  const bool has_days = dash != std::string::npos;
  if (has_days) {
    days = number(limit.substr(0, dash));
    if (days < 0) throw bad();
    clock = limit.substr(dash + 1);
  }
  std::vector<int64_t> parts;
  for (const std::string& part : split(clock, ':')) {
    parts.push_back(number(part));
    if (parts.back() < 0) throw bad();
  }
  int64_t seconds = 0;
  if (has_days) {  // D-H, D-H:M, D-H:M:S
    if (parts.size() > 3) throw bad();
    const int64_t unit[] = {3600, 60, 1};
    for (size_t i = 0; i < parts.size(); ++i) seconds += parts[i] * unit[i];
    seconds += days * 86400;
  } else if (parts.size() == 1) {  // M
    seconds = parts[0] * 60;
  } else if (parts.size() == 2) {  // M:S
    seconds = parts[0] * 60 + parts[1];
  } else if (parts.size() == 3) {  // H:M:S
    seconds = parts[0] * 3600 + parts[1] * 60 + parts[2];
  } else {
    throw bad();
  }
  if (seconds <= 0) throw JobSpecError("time limit '" + limit + "' is zero");
  return seconds;
}

std::string job_name_of(const std::string& name) {
  std::string clean;
  for (char c : name) {
    const bool keep = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' ||
                      c == '-' || c == '_';
    clean += keep ? c : '_';
  }
  return clean.empty() ? "via" : clean;
}

void JobSpec::validate() const {
  if (via.empty() || via.front() != '/')
    throw JobSpecError("the via executable must be an absolute path, not '" + via + "'");
  if (renders.empty()) throw JobSpecError("a job needs at least one render");
  if (!array && renders.size() != 1)
    throw JobSpecError("a job that is not an array runs one render, not " + std::to_string(renders.size()));
  for (const auto& args : renders)
    if (args.empty()) throw JobSpecError("a render of the job has no arguments");
  if (nodes < 1) throw JobSpecError("--nodes must be at least 1, not " + std::to_string(nodes));
  if (gpus_per_node < 0) throw JobSpecError("--gpus-per-node must not be negative");
  if (gpus_per_node == 0 && ntasks_per_node < 1)
    throw JobSpecError("--ntasks-per-node must be at least 1, not " + std::to_string(ntasks_per_node));
  if (cpus_per_task < 0) throw JobSpecError("--cpus-per-task must not be negative");
  if (warning_seconds < 1 || warning_seconds > kMaxWarningSeconds)
    throw JobSpecError("--warning must be between 1 and " + std::to_string(kMaxWarningSeconds) + " seconds, not " +
                       std::to_string(warning_seconds));
  if (!time_limit.empty()) {
    const int64_t limit = parse_time_limit(time_limit);
    if (warning_seconds >= limit)
      throw JobSpecError("--warning " + std::to_string(warning_seconds) + " s must be shorter than the time limit (" +
                         time_limit + " = " + std::to_string(limit) + " s)");
  }
  if (max_restarts < 0) throw JobSpecError("--max-restarts must not be negative");
  if (max_running < 0) throw JobSpecError("--max-running must not be negative");
  sbatch_value("the job name", job_name);
  sbatch_value("the log path", log);
  if (!partition.empty()) sbatch_value("--partition", partition);
  if (!account.empty()) sbatch_value("--account", account);
  if (!dependency.empty()) sbatch_value("--dependency", dependency);
  for (const auto& option : sbatch_options) extra_sbatch_line(option);
}

std::string job_script(const JobSpec& spec) {
  spec.validate();
  std::string resources;
  if (!spec.time_limit.empty()) resources += sbatch_line("time", spec.time_limit);
  if (!spec.partition.empty()) resources += sbatch_line("partition", spec.partition);
  if (!spec.account.empty()) resources += sbatch_line("account", spec.account);
  if (spec.gpus_per_node > 0) resources += "#SBATCH --gpus-per-node=" + std::to_string(spec.gpus_per_node) + "\n";
  if (spec.cpus_per_task > 0) resources += "#SBATCH --cpus-per-task=" + std::to_string(spec.cpus_per_task) + "\n";

  std::string extra;
  if (spec.array) {
    extra += "#SBATCH --array=0-" + std::to_string(spec.renders.size() - 1);
    if (spec.max_running > 0) extra += "%" + std::to_string(spec.max_running);
    extra += "\n";
  }
  if (!spec.dependency.empty()) extra += sbatch_line("dependency", spec.dependency);
  for (const auto& option : spec.sbatch_options) extra += extra_sbatch_line(option);

  // Optional blocks end without their last newline: the template's line has one.
  const auto block = [](std::string text) {
    if (!text.empty()) text.pop_back();
    return text;
  };
  // Since Slurm 22.05 srun no longer inherits sbatch's --cpus-per-task.
  const std::string srun_options =
      spec.cpus_per_task > 0 ? "--cpus-per-task=" + std::to_string(spec.cpus_per_task) + " " : "";
  const std::map<std::string, std::string> values = {
      {"job_name", sbatch_value("the job name", spec.job_name)},
      {"nodes", std::to_string(spec.nodes)},
      {"ntasks_per_node", std::to_string(spec.gpus_per_node > 0 ? spec.gpus_per_node : spec.ntasks_per_node)},
      {"sbatch_resources", block(resources)},
      {"warning_seconds", std::to_string(spec.warning_seconds)},
      {"log", sbatch_value("the log path", spec.log)},
      {"sbatch_extra", block(extra)},
      {"via", shell_quote(spec.via)},
      {"max_restarts", std::to_string(spec.max_restarts)},
      {"render_arguments", render_arguments(spec)},
      {"srun_options", srun_options},
  };
  return fill_template(job_template(), values);
}

}  // namespace via::slurm
