// `via status WORKDIR`: how far a render got, from its work directory alone
// (while it runs, after it stopped, or after it finished).
#include <iostream>

#include "driver/options.h"
#include "rank/status.h"

namespace via::driver {

int cmd_status(const Args& args) {
  std::string workdir;
  bool json = false;
  po::options_description desc("options");
  desc.add_options()
      ("workdir", po::value(&workdir)->required(), "the render's work directory")
      ("json", po::bool_switch(&json), "print JSON (for scripts)");
  po::positional_options_description positional;
  positional.add("workdir", 1);
  if (!parse_options("via status WORKDIR [--json]", desc, args, positional)) return 0;
  nlohmann::json status;
  try {
    status = rank::workdir_status(rank::WorkDir{workdir});
  } catch (const std::exception& e) {
    if (!json) throw;
    // Scripts read one JSON document either way.
    std::cout << nlohmann::json{{"workdir", workdir}, {"error", e.what()}}.dump(2) << "\n";
    return 1;
  }
  if (json) std::cout << status.dump(2) << "\n";
  else std::cout << rank::format_status(status);
  return 0;
}

}  // namespace via::driver
