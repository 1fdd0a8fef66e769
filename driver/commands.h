#pragma once
// The `via` subcommands. Each takes the arguments after its name and returns
// the process exit code; errors are thrown and reported once by main().
#include <stdexcept>
#include <string>
#include <vector>

namespace via::driver {

using Args = std::vector<std::string>;

int cmd_version(const Args& args);  // cmd_version.cpp
int cmd_probe(const Args& args);    // cmd_probe.cpp
int cmd_edit_image(const Args& args);  // cmd_edit_image.cpp
int cmd_inspect_model(const Args& args);  // cmd_inspect_model.cpp
int cmd_make_tiny_model(const Args& args);  // cmd_make_tiny_model.cpp
int cmd_render(const Args& args);  // cmd_render.cpp
int cmd_status(const Args& args);  // cmd_status.cpp
int cmd_submit(const Args& args);  // cmd_submit.cpp

/// Thrown for a wrong command line; main() prints it with a usage hint, exit 2.
struct UsageError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

}  // namespace via::driver
