#pragma once
// Command-line parsing shared by the subcommands (Boost.Program_options).
#include <boost/program_options.hpp>
#include <optional>
#include <string>

#include "driver/commands.h"

namespace via::driver {

namespace po = boost::program_options;

/// Parses `args` against `desc` (and positional names, if any). Prints
/// `usage` and the options and returns nullopt on --help; throws UsageError
/// for unknown options, missing required ones or bad values.
std::optional<po::variables_map> parse_options(const std::string& usage,
                                               po::options_description desc, const Args& args,
                                               const po::positional_options_description& positional = {});

}  // namespace via::driver
