// `via probe VIDEO [--json]`: the facts of a video, for people or (--json) for machines.
#include <cstdio>
#include <iostream>
#include <numeric>
#include <nlohmann/json.hpp>
#include <string>

#include "driver/options.h"
#include "io/video_reader.h"

namespace via::driver {
namespace {

// "4:3" for 384x288: the displayed frame's shape, reduced.
std::string aspect_text(io::Size shown) {
  const int g = std::gcd(shown.width, shown.height);
  return g > 0 ? std::to_string(shown.width / g) + ":" + std::to_string(shown.height / g) : "?";
}

std::string sample_aspect_text(const io::VideoInfo& info) {
  return std::to_string(info.sample_aspect.num) + ":" + std::to_string(info.sample_aspect.den);
}

nlohmann::json to_json(const io::VideoInfo& info) {
  nlohmann::json audio = nlohmann::json::array();
  for (const auto& a : info.audio) {
    audio.push_back({{"stream_index", a.stream_index},
                     {"codec", a.codec},
                     {"sample_rate", a.sample_rate},
                     {"channels", a.channels},
                     {"bit_rate", a.bit_rate},
                     {"duration", a.duration},
                     {"mp4_compatible", a.mp4_compatible}});
  }
  const io::Size shown = info.display_size();
  return {{"path", info.path},
          {"container", info.container},
          {"container_duration", info.container_duration},
          {"video",
           {{"stream_index", info.stream_index},
            {"codec", info.codec},
            {"pixel_format", info.pixel_format},
            // The colour description the stream declares ("" where it says nothing).
            {"color_primaries", info.color.primaries},
            {"color_transfer", info.color.transfer},
            {"color_space", info.color.matrix},
            {"color_range", info.color.range},
            {"width", info.width},
            {"height", info.height},
            {"sample_aspect_ratio", sample_aspect_text(info)},
            {"rotation", info.rotation},
            {"display_width", shown.width},
            {"display_height", shown.height},
            {"display_aspect_ratio", aspect_text(shown)},
            {"frame_rate", info.frame_rate.to_string()},
            {"fps", info.frame_rate.to_double()},
            {"variable_frame_rate", info.variable_frame_rate},
            {"min_frame_interval", info.min_frame_interval},
            {"max_frame_interval", info.max_frame_interval},
            {"time_base", info.time_base.to_string()},
            {"frame_count", info.frame_count},
            {"header_frame_count", info.header_frame_count},
            {"start_time", info.start_time},
            {"duration", info.duration}}},
          {"audio", audio}};
}

void print_text(const io::VideoInfo& info) {
  const io::Size shown = info.display_size();
  std::printf("file:        %s\n", info.path.c_str());
  std::printf("container:   %s\n", info.container.c_str());
  std::printf("video:       stream %d, %s, %s, %dx%d, pixel aspect %s\n", info.stream_index, info.codec.c_str(),
              info.pixel_format.c_str(), info.width, info.height, sample_aspect_text(info).c_str());
  const auto declared = [](const std::string& v) { return v.empty() ? "unspecified" : v.c_str(); };
  std::printf("colour:      primaries %s, transfer %s, matrix %s, range %s%s\n", declared(info.color.primaries),
              declared(info.color.transfer), declared(info.color.matrix), declared(info.color.range),
              info.color.declared() ? "" : " (an output is BT.709, limited range)");
  std::printf("rotation:    %d degrees clockwise (displayed %dx%d, %s)\n", info.rotation, shown.width, shown.height,
              aspect_text(shown).c_str());
  if (info.variable_frame_rate) {
    std::printf("frame rate:  variable, %s on average (%.3f fps), frames %.3f to %.3f ms apart\n",
                info.frame_rate.to_string().c_str(), info.frame_rate.to_double(), 1000 * info.min_frame_interval,
                1000 * info.max_frame_interval);
  } else {
    std::printf("frame rate:  %s (%.3f fps)\n", info.frame_rate.to_string().c_str(), info.frame_rate.to_double());
  }
  std::printf("time base:   %s\n", info.time_base.to_string().c_str());
  std::printf("frames:      %lld (counted by demuxing", static_cast<long long>(info.frame_count));
  if (info.header_frame_count > 0) {
    std::printf("; the container says %lld", static_cast<long long>(info.header_frame_count));
  }
  std::printf(")\n");
  std::printf("start:       %.6f s\n", info.start_time);
  std::printf("duration:    %.6f s (container: %.6f s)\n", info.duration, info.container_duration);
  std::printf("audio:       %zu stream(s)\n", info.audio.size());
  for (const auto& a : info.audio) {
    std::printf("  stream %d:  %s, %d Hz, %d channel(s), %.6f s%s\n", a.stream_index, a.codec.c_str(), a.sample_rate,
                a.channels, a.duration, a.mp4_compatible ? "" : " (cannot be copied into MP4)");
  }
}

}  // namespace

int cmd_probe(const Args& args) {
  po::options_description desc("options");
  desc.add_options()("video", po::value<std::string>(), "the video file")("json", po::bool_switch(),
                                                                          "print JSON instead of text");
  po::positional_options_description positional;
  positional.add("video", 1);
  const auto vm = parse_options("via probe VIDEO [--json]", desc, args, positional);
  if (!vm) return 0;
  if (!vm->count("video")) throw UsageError("which video? give a file name");
  const io::VideoInfo info = io::probe_video((*vm)["video"].as<std::string>());
  if ((*vm)["json"].as<bool>()) {
    std::cout << to_json(info).dump(2) << "\n";
  } else {
    print_text(info);
  }
  return 0;
}

}  // namespace via::driver
