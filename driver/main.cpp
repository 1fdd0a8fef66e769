// `via`: edits long videos from one plain-language instruction.
// Dispatches to one subcommand; every error ends here as one line and a
// non-zero exit code.
#include <cstdio>
#include <exception>
#include <iostream>
#include <string>

#include "driver/commands.h"

namespace {

struct Command {
  const char* name;
  int (*run)(const via::driver::Args&);
  const char* summary;
};

const Command kCommands[] = {
    {"render", via::driver::cmd_render, "edit a whole video from one instruction (one process, or under mpirun / srun)"},
    {"submit", via::driver::cmd_submit, "write a Slurm job script for a render (or a manifest of them) and sbatch it"},
    {"status", via::driver::cmd_status, "show how far a render got, from its work directory"},
    {"version", via::driver::cmd_version, "print via's version and the versions of its libraries"},
    {"probe", via::driver::cmd_probe, "print a video's facts (frames, rate, size, audio); --json for machines"},
    {"edit-image", via::driver::cmd_edit_image, "edit one image from a plain-language instruction"},
    {"inspect-model", via::driver::cmd_inspect_model, "what a model folder or checkpoint holds; --json for machines"},
    {"make-tiny-model", via::driver::cmd_make_tiny_model, "write a small random model (diffusers layout) for tests and demos"},
};

void print_help() {
  std::cout << "usage: via <command> [options]\n\ncommands:\n";
  for (const auto& c : kCommands) std::printf("  %-16s %s\n", c.name, c.summary);
  std::cout << "\n`via <command> --help` shows a command's options.\n";
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    print_help();
    return 2;
  }
  const std::string name = argv[1];
  if (name == "--help" || name == "-h" || name == "help") {
    print_help();
    return 0;
  }
  if (name == "--version") return via::driver::cmd_version({});
  for (const auto& c : kCommands) {
    if (name != c.name) continue;
    try {
      return c.run(via::driver::Args(argv + 2, argv + argc));
    } catch (const via::driver::UsageError& e) {
      std::cerr << "via " << name << ": " << e.what() << " (see `via " << name << " --help`)\n";
      return 2;
    } catch (const std::exception& e) {
      std::cerr << "via " << name << ": error: " << e.what() << "\n";
      return 1;
    }
  }
  std::cerr << "via: unknown command '" << name << "' (see `via --help`)\n";
  return 2;
}
