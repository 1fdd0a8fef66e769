// `via inspect-model PATH [--json]`: what a model folder or checkpoint file
// holds (layout, dtypes, configs, scheduler, parameter counts, whether its
// UNet is InstructPix2Pix's 8-channel one), read from headers and configs
// only; the first problem found is the error (exit 1).
#include <cstdio>
#include <iostream>
#include <nlohmann/json.hpp>
#include <string>

#include "driver/options.h"
#include "model/model_inspect.h"

namespace via::driver {
namespace {

std::string join_dtypes(const nlohmann::json& dtypes) {
  std::string out;
  for (const auto& [dtype, n] : dtypes.items()) out += (out.empty() ? "" : ", ") + dtype + " x" + n.dump();
  return out;
}

void print_text(const nlohmann::json& r) {
  std::printf("model:      %s\n", r["path"].get<std::string>().c_str());
  std::printf("layout:     %s\n", r["layout"].get<std::string>().c_str());
  if (r.contains("configs")) std::printf("configs:    %s\n", r["configs"].get<std::string>().c_str());
  std::printf("ip2p:       %s (UNet in_channels %lld, VAE latent_channels %lld)\n",
              r["instruct_pix2pix"].get<bool>() ? "yes, an InstructPix2Pix UNet (noisy + image latent)" : "NO",
              static_cast<long long>(r["unet_in_channels"].get<int64_t>()),
              static_cast<long long>(r["latent_channels"].get<int64_t>()));
  for (const char* name : {"unet", "vae", "text_encoder"}) {
    const nlohmann::json& c = r["components"][name];
    std::printf("%-11s %.3f M parameters in %lld tensors (%s)\n", (std::string(name) + ":").c_str(),
                static_cast<double>(c["parameters"].get<int64_t>()) / 1e6,
                static_cast<long long>(c["tensors"].get<int64_t>()), join_dtypes(c["dtypes"]).c_str());
    std::printf("            config %s\n", c["config"].dump().c_str());
  }
  const nlohmann::json& s = r["scheduler"];
  std::printf("scheduler:  %s (from %s), default %s\n", s["class"].get<std::string>().c_str(),
              s["source"].get<std::string>().c_str(), s["default"].get<std::string>().c_str());
  if (r["tokenizer"].is_object())
    std::printf("tokenizer:  %s, %lld tokens\n", r["tokenizer"]["form"].get<std::string>().c_str(),
                static_cast<long long>(r["tokenizer"]["vocab_size"].get<int64_t>()));
  else
    std::printf("tokenizer:  %s\n", r["tokenizer"].get<std::string>().c_str());
  if (r.contains("ema_tensors")) std::printf("ema:        %lld EMA tensors (not used)\n",
                                             static_cast<long long>(r["ema_tensors"].get<int64_t>()));
}

}  // namespace

int cmd_inspect_model(const Args& args) {
  po::options_description desc("options");
  desc.add_options()
      ("path", po::value<std::string>(), "a diffusers model folder or a single-file checkpoint")
      ("model-config", po::value<std::string>()->default_value(""), "for a single file: the diffusers folder giving its configs")
      ("json", po::bool_switch(), "print JSON instead of text");
  po::positional_options_description positional;
  positional.add("path", 1);
  const auto vm = parse_options("via inspect-model PATH [--model-config DIR] [--json]", desc, args, positional);
  if (!vm) return 0;
  if (!vm->count("path")) throw UsageError("which model? give a folder or a checkpoint file");
  const nlohmann::json report =
      model::inspect_model((*vm)["path"].as<std::string>(), (*vm)["model-config"].as<std::string>());
  if ((*vm)["json"].as<bool>()) std::cout << report.dump(2) << "\n";
  else print_text(report);
  return 0;
}

}  // namespace via::driver
