#include "slurm/sbatch.h"

#include "slurm/errors.h"
#include "slurm/process.h"

namespace via::slurm {
namespace {

// `text` on one line, without trailing blanks: for messages.
std::string one_line(const std::string& text) {
  std::string line;
  for (char c : text) line += (c == '\n' || c == '\r') ? ' ' : c;
  while (!line.empty() && line.back() == ' ') line.pop_back();
  return line;
}

}  // namespace

std::string parse_job_id(const std::string& sbatch_output) {
  const std::string line = sbatch_output.substr(0, sbatch_output.find('\n'));
  const std::string id = line.substr(0, line.find(';'));
  bool digits = !id.empty();
  for (char c : id) digits = digits && c >= '0' && c <= '9';
  if (!digits) throw SlurmError("sbatch printed no job id: '" + one_line(sbatch_output) + "'");
  return id;
}

std::string submit_script(const std::string& script) {
  ProcessResult result;
  try {
    result = run_process({"sbatch", "--parsable", script});
  } catch (const SlurmError& e) {
    throw SlurmError(std::string(e.what()) + " (via submit needs Slurm's sbatch: run it where jobs are submitted)");
  }
  if (result.exit_code != 0) {
    const std::string message = one_line(result.err.empty() ? result.out : result.err);
    throw SlurmError("sbatch failed (exit " + std::to_string(result.exit_code) + ") for " + script +
                     (message.empty() ? "" : ": " + message));
  }
  return parse_job_id(result.out);
}

}  // namespace via::slurm
