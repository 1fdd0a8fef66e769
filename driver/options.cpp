#include "driver/options.h"

#include <iostream>

namespace via::driver {

std::optional<po::variables_map> parse_options(const std::string& usage,
                                               po::options_description desc, const Args& args,
                                               const po::positional_options_description& positional) {
  desc.add_options()("help,h", "show this help");
  po::variables_map vm;
  try {
    po::store(po::command_line_parser(args).options(desc).positional(positional).run(), vm);
    if (vm.count("help")) {
      std::cout << "usage: " << usage << "\n\n" << desc << "\n";
      return std::nullopt;
    }
    po::notify(vm);
  } catch (const po::error& e) {
    throw UsageError(e.what());
  }
  return vm;
}

}  // namespace via::driver
