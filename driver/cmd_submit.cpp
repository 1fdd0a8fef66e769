// `via submit`: writes a Slurm job script for a render (or a job array for a
// manifest of renders) into the work directory and submits it with sbatch.
#include <algorithm>
#include <filesystem>
#include <iostream>
#include <map>
#include <set>

#include "driver/render_options.h"
#include "rank/workdir.h"
#include "slurm/errors.h"
#include "slurm/job_script.h"
#include "slurm/manifest.h"
#include "slurm/quoting.h"
#include "slurm/sbatch.h"

namespace via::driver {
namespace {

namespace fs = std::filesystem;

const char* const kUsage =
    "via submit --input VIDEO --output VIDEO --model DIR --instruction TEXT --workdir DIR [options]\n"
    "       via submit --manifest FILE --model DIR --workdir DIR [options]";

/// Everything `via submit` takes besides the render's settings.
struct SubmitOptions {
  slurm::JobSpec job;
  std::string manifest;
  std::string via;
  bool dry_run = false;
};

po::options_description submit_options(SubmitOptions& o) {
  slurm::JobSpec& j = o.job;
  po::options_description desc("Slurm job");
  desc.add_options()
      ("nodes", po::value(&j.nodes)->default_value(j.nodes), "nodes")
      ("gpus-per-node", po::value(&j.gpus_per_node)->default_value(j.gpus_per_node),
       "GPUs per node, one rank each (0: CPU nodes, --ntasks-per-node ranks each)")
      ("ntasks-per-node", po::value(&j.ntasks_per_node)->default_value(j.ntasks_per_node), "ranks per CPU node (with --gpus-per-node 0)")
      ("cpus-per-task", po::value(&j.cpus_per_task)->default_value(j.cpus_per_task),
       "CPU cores per rank (0: Slurm's default); also the render's --threads unless given")
      ("time", po::value(&j.time_limit), "time limit (minutes, H:M:S, D-H:M:S ...; default: the partition's)")
      ("warning", po::value(&j.warning_seconds)->default_value(j.warning_seconds),
       "seconds before the time limit at which the render stops to requeue (Slurm may warn up to 60 s earlier)")
      ("partition", po::value(&j.partition), "partition")
      ("account", po::value(&j.account), "account to charge")
      ("dependency", po::value(&j.dependency), "start after other jobs (sbatch --dependency, e.g. afterok:123)")
      ("job-name", po::value(&j.job_name), "job name (default: via-<output or work directory name>)")
      ("sbatch-option", po::value(&j.sbatch_options)->composing(), "one more sbatch option, as --sbatch-option=--name=value (repeatable)")
      ("max-restarts", po::value(&j.max_restarts)->default_value(j.max_restarts), "requeues before the job stops requeueing itself")
      ("manifest", po::value(&o.manifest), "one render a line: input output instruction [--setting value ...]; submits a job array")
      ("max-running", po::value(&j.max_running)->default_value(4), "with --manifest: renders running at once (0: no cap)")
      ("via", po::value(&o.via), "the via executable as the nodes see it (default: this one)")
      ("dry-run", po::bool_switch(&o.dry_run), "print the job script; write and submit nothing");
  return desc;
}

// The render options without those named in `leave_out`, in one flat table
// (Boost keeps the groups private; --help prints the grouped table).
po::options_description render_options_except(RenderCommand& cmd, const std::set<std::string>& leave_out) {
  const po::options_description all = render_options(cmd);
  po::options_description flat;
  for (const auto& option : all.options())
    if (!leave_out.count(option->long_name())) flat.add(option);
  return flat;
}

bool wants_help(const Args& args) {
  for (const auto& arg : args)
    if (arg == "--help" || arg == "-h") return true;
  return false;
}

std::string this_executable() {
  std::error_code ec;
  const fs::path self = fs::read_symlink("/proc/self/exe", ec);
  if (ec)
    throw std::runtime_error("cannot find the via executable (/proc/self/exe): " + ec.message() + "; pass --via PATH");
  return self.string();
}

// Checks that the render can start and finish: its input exists, its output
// can be written, and the work directory, if it holds a render, holds this one.
void check_render(const RenderCommand& cmd, const std::string& where) {
  const rank::RenderSettings& s = cmd.settings;
  if (!fs::is_regular_file(s.input)) throw UsageError(where + "input " + s.input + " does not exist");
  try {
    rank::check_model_and_output(s);
  } catch (const rank::SettingsError& e) {
    throw UsageError(where + e.what());
  }
  const rank::WorkDir dir{cmd.workdir};
  rank::RenderSettings existing;
  bool has_settings = false;
  try {
    has_settings = rank::read_settings(dir, &existing);
  } catch (const rank::WorkDirError&) {
    // damaged: the render moves it aside and keeps what carries its key
  }
  if (has_settings) {
    const std::string other = rank::other_settings_message(dir, existing, s);
    if (!other.empty()) throw UsageError(where + other + "; use the same settings, or choose another --workdir");
  }
}

// The `via render` arguments of the job: what the user gave, --threads from
// --cpus-per-task unless given; the job script adds --resume itself.
std::vector<std::string> job_arguments(RenderCommand cmd, const slurm::JobSpec& job) {
  cmd.resume = false;
  if (cmd.threads == 0 && job.cpus_per_task > 0) cmd.threads = job.cpus_per_task;
  return render_arguments(cmd);
}

// One job array task per manifest line, each with its own work directory.
std::vector<std::vector<std::string>> manifest_renders(const RenderCommand& base, const std::string& manifest,
                                                       const slurm::JobSpec& job) {
  const std::vector<slurm::ManifestEntry> entries = slurm::read_manifest(manifest);
  std::map<std::string, int> outputs;  // absolute output -> line
  std::vector<std::vector<std::string>> renders;
  for (size_t task = 0; task < entries.size(); ++task) {
    const slurm::ManifestEntry& entry = entries[task];
    const std::string where = "manifest " + manifest + ":" + std::to_string(entry.line) + ": ";
    RenderCommand cmd = base;  // the line's settings override the command line's
    po::options_description line_options =
        render_options_except(cmd, {"input", "output", "instruction", "workdir", "resume", "model"});
    line_options.add_options()("model", po::value(&cmd.settings.model), "");
    po::variables_map vm;
    try {
      po::store(po::command_line_parser(entry.options).options(line_options).run(), vm);
      po::notify(vm);
    } catch (const po::error& e) {
      throw UsageError(where + e.what() +
                       " (a line's settings are those of via render, except the input, output, instruction "
                       "and work directory)");
    }
    if (vm.count("model")) cmd.settings.model = slurm::resolve_manifest_path(manifest, cmd.settings.model);
    if (vm.count("mask")) cmd.settings.mask = slurm::resolve_manifest_path(manifest, cmd.settings.mask);
    cmd.settings.input = slurm::resolve_manifest_path(manifest, entry.input);
    cmd.settings.output = slurm::resolve_manifest_path(manifest, entry.output);
    cmd.settings.instruction = entry.instruction;
    cmd.workdir = base.workdir + "/task-" + std::to_string(task);
    try {
      finish_render_command(cmd);
    } catch (const UsageError& e) {
      throw UsageError(where + e.what());
    }
    check_render(cmd, where);
    const auto [previous, fresh] = outputs.emplace(cmd.settings.output, entry.line);
    if (!fresh)
      throw UsageError(where + "writes the same output as line " + std::to_string(previous->second) + " (" +
                       cmd.settings.output + ")");
    renders.push_back(job_arguments(cmd, job));
  }
  return renders;
}

void write_script(const std::string& path, const std::string& text) {
  rank::write_file_atomic(path, text);
  fs::permissions(path, fs::perms::owner_exec | fs::perms::group_exec | fs::perms::others_exec,
                  fs::perm_options::add);
}

}  // namespace

int cmd_submit(const Args& args) {
  RenderCommand cmd;
  SubmitOptions submit;
  if (wants_help(args)) {
    po::options_description all("options");
    all.add(render_options(cmd)).add(submit_options(submit));
    std::cout << "usage: " << kUsage << "\n\n"
              << "Writes a Slurm job script running `via render --resume` with these settings into the work\n"
              << "directory (job.sh) and submits it with sbatch; prints the job id. The job stops before its\n"
              << "time limit and requeues itself; the requeued job resumes. `via status WORKDIR` shows progress.\n\n"
              << all << "\n";
    return 0;
  }
  // The input, output and instruction are optional here: with --manifest they come from its lines.
  po::options_description table = render_options_except(cmd, {"input", "output", "instruction"});
  rank::RenderSettings& s = cmd.settings;
  table.add_options()("input", po::value(&s.input), "")("output", po::value(&s.output), "")(
      "instruction", po::value(&s.instruction), "");
  table.add(submit_options(submit));
  const auto vm = parse_options(kUsage, table, args);
  if (!vm) return 0;
  slurm::JobSpec& job = submit.job;
  const bool manifest = !submit.manifest.empty();
  for (const char* name : {"input", "output", "instruction"}) {
    if (manifest && vm->count(name))
      throw UsageError(std::string("--") + name + " comes from the manifest's lines; leave it out with --manifest");
    if (!manifest && !vm->count(name))
      throw UsageError(std::string("the option '--") + name + "' is required but missing (or give --manifest FILE)");
  }
  if (!manifest && !vm->at("max-running").defaulted()) throw UsageError("--max-running needs --manifest");

  job.via = submit.via.empty() ? this_executable() : fs::absolute(submit.via).lexically_normal().string();
  if (manifest) {
    // The command line's paths are relative to here, the manifest's to its directory.
    cmd.workdir = fs::absolute(cmd.workdir).lexically_normal().string();
    s.model = fs::absolute(s.model).lexically_normal().string();
    if (!s.mask.empty()) s.mask = fs::absolute(s.mask).lexically_normal().string();
    job.array = true;
    job.renders = manifest_renders(cmd, submit.manifest, job);
    job.log = slurm::escape_slurm_pattern(cmd.workdir) + "/logs/slurm-%A_%a.out";
    if (!vm->count("job-name")) job.job_name = slurm::job_name_of("via-" + fs::path(cmd.workdir).filename().string());
  } else {
    finish_render_command(cmd);
    check_render(cmd, "");
    job.renders = {job_arguments(cmd, job)};
    job.log = slurm::escape_slurm_pattern(cmd.workdir) + "/logs/slurm-%j.out";
    if (!vm->count("job-name")) job.job_name = slurm::job_name_of("via-" + fs::path(s.output).stem().string());
  }

  std::string script;
  try {
    script = slurm::job_script(job);
  } catch (const slurm::JobSpecError& e) {
    throw UsageError(e.what());
  }
  if (submit.dry_run) {
    std::cout << script;
    return 0;
  }

  // Slurm does not create the log's directory: a job whose log cannot be opened fails unseen.
  fs::create_directories(cmd.workdir + "/logs");
  const std::string script_path = cmd.workdir + "/job.sh";
  write_script(script_path, script);
  const std::string job_id = slurm::submit_script(script_path);
  std::cerr << "via: submitted job " << job_id;
  if (job.array) std::cerr << " (an array of " << job.renders.size() << " renders)";
  std::cerr << "; script " << script_path << "; log " << cmd.workdir << "/logs/slurm-" << job_id
            << (job.array ? "_<task>" : "") << ".out\n";
  if (job.array) {
    for (size_t task = 0; task < job.renders.size(); ++task)
      std::cerr << "via:   task " << task << ": via status " << cmd.workdir << "/task-" << task << "\n";
  } else {
    std::cerr << "via: progress: via status " << cmd.workdir << "\n";
  }
  std::cout << job_id << "\n";
  return 0;
}

}  // namespace via::driver
