#include "driver/render_options.h"

#include <boost/make_shared.hpp>
#include <filesystem>
#include <type_traits>
#include <variant>

namespace via::driver {
namespace {

std::string absolute(const std::string& path) {
  return path.empty() ? path : std::filesystem::absolute(path).lexically_normal().string();
}

// The option of one setting, bound to cmd's member: its current value is the
// default shown (and kept when the flag is not given).
po::value_semantic* setting_value(const rank::SettingField& f, rank::RenderSettings& s) {
  const auto bound = [&f](auto* typed, bool has_default, const auto& current) -> po::value_semantic* {
    if (f.required) return typed->required();
    return has_default ? typed->default_value(current) : typed;
  };
  return std::visit(
      [&](auto member) -> po::value_semantic* {
        using M = decltype(member);
        if constexpr (std::is_same_v<M, rank::SettingField::Named>) {
          // Parsed here, once: the flag's text becomes the enum.
          auto* typed = po::value<std::string>()->notifier([&f, &s](const std::string& text) {
            try {
              f.set(s, text);
            } catch (const rank::SettingsError& e) {
              throw po::error(e.what());
            }
          });
          return bound(typed, true, f.get(s).template get<std::string>());
        } else {
          auto& value = s.*member;
          if constexpr (std::is_same_v<std::decay_t<decltype(value)>, std::string>)
            return bound(po::value(&value), !value.empty(), value);
          else
            return bound(po::value(&value), true, value);
        }
      },
      f.binding);
}

}  // namespace

po::options_description render_options(RenderCommand& cmd) {
  // One help section per group, in the table's order.
  std::vector<std::pair<std::string, po::options_description>> groups;
  const auto group = [&groups](const std::string& title) -> po::options_description& {
    for (auto& [name, g] : groups)
      if (name == title) return g;
    return groups.emplace_back(title, po::options_description(title)).second;
  };
  for (const rank::SettingField& f : rank::settings_table()) {
    std::string name = rank::flag_of(f.key).substr(2);
    group(f.group).add(boost::make_shared<po::option_description>(name.c_str(), setting_value(f, cmd.settings),
                                                                   f.help.c_str()));
  }
  group("input and output").add_options()
      ("workdir", po::value(&cmd.workdir)->required(), "work directory: settings, adaptation, checkpoints, segments")
      ("resume", po::bool_switch(&cmd.resume), "continue the render in --workdir (starts one if it is empty)")
      ("overwrite", po::bool_switch(&cmd.overwrite), "replace an existing --output (one this work directory wrote is replaced anyway)")
      ("threads", po::value(&cmd.threads)->default_value(cmd.threads), "CPU threads per rank (0: this machine's cores shared by its ranks)");
  po::options_description all("render options");
  for (const auto& [name, g] : groups) all.add(g);
  return all;
}

void finish_render_command(RenderCommand& cmd) {
  try {
    cmd.settings.validate();
  } catch (const rank::SettingsError& e) {
    throw UsageError(e.what());
  }
  if (cmd.threads < 0) throw UsageError("--threads must not be negative");
  rank::RenderSettings& s = cmd.settings;
  s.input = absolute(s.input);
  s.model = absolute(s.model);
  s.output = absolute(s.output);
  s.mask = absolute(s.mask);
  cmd.workdir = absolute(cmd.workdir);
}

std::vector<std::string> render_arguments(const RenderCommand& cmd) {
  // Every setting, defaults included: a job script resubmitted after an
  // upgrade that changed a default must still match its work directory.
  std::vector<std::string> args;
  const nlohmann::json settings = cmd.settings.to_json();  // outlives items()
  for (const auto& item : settings.items()) {
    if (item.value().is_string() && item.value().get<std::string>().empty()) continue;  // no --mask
    args.push_back(rank::flag_of(item.key()));
    args.push_back(item.value().is_string() ? item.value().get<std::string>() : item.value().dump());
  }
  args.push_back("--workdir");
  args.push_back(cmd.workdir);
  if (cmd.threads > 0) {
    args.push_back("--threads");
    args.push_back(std::to_string(cmd.threads));
  }
  if (cmd.resume) args.push_back("--resume");
  if (cmd.overwrite) args.push_back("--overwrite");
  return args;
}

}  // namespace via::driver
