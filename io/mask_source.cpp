#include "io/mask_source.h"

#include <ATen/ATen.h>

#include <cctype>
#include <filesystem>
#include <optional>
#include <system_error>

#include "io/image.h"
#include "io/video_reader.h"

namespace via::io {
namespace fs = std::filesystem;

namespace {

std::string in_quotes(const std::string& s) { return "'" + s + "'"; }

// An RGB picture at the frame size -> float [1, 1, H, W]: BT.601 luma / 255.
// Integer weights summing to 1000 keep a grey level g exactly g / 255.
at::Tensor luma_mask(const io::RgbImage& image) {
  at::Tensor out = at::empty({1, 1, image.height, image.width}, at::kFloat);
  float* dst = out.data_ptr<float>();
  const uint8_t* src = image.data.data();
  const size_t n = static_cast<size_t>(image.width) * image.height;
  for (size_t i = 0; i < n; ++i, src += 3) {
    const int y1000 = 299 * src[0] + 587 * src[1] + 114 * src[2];
    dst[i] = static_cast<float>(y1000 / (1000.0 * 255.0));
  }
  return out;
}

bool is_file(const std::string& path) {
  std::error_code ec;
  return fs::is_regular_file(path, ec);
}

}  // namespace

const char* to_string(MaskKind kind) {
  switch (kind) {
    case MaskKind::per_frame_images:
      return "per-frame images";
    case MaskKind::video:
      return "video";
    case MaskKind::still_image:
      return "still image";
  }
  return "?";
}

namespace {

struct ParsedPattern {
  std::string prefix;
  std::string suffix;
  int width = 0;
  bool zero_pad = false;
};

// The spec as a frame-number pattern, or nullopt when it holds no `%d`-style
// conversion (then it is a plain path, '%' characters and all). `%%` stands
// for '%'. A spec with a conversion must have exactly one, in the file name,
// and no other '%' sequence.
std::optional<ParsedPattern> parse_pattern(const std::string& spec) {
  ParsedPattern p;
  std::string* out = &p.prefix;
  int conversions = 0;
  std::string bad;
  for (size_t i = 0; i < spec.size(); ++i) {
    if (spec[i] != '%') {
      *out += spec[i];
      continue;
    }
    if (i + 1 < spec.size() && spec[i + 1] == '%') {
      *out += '%';
      ++i;
      continue;
    }
    size_t j = i + 1;
    const bool zero = j < spec.size() && spec[j] == '0';
    if (zero) ++j;
    size_t digits_end = j;
    while (digits_end < spec.size() && std::isdigit(static_cast<unsigned char>(spec[digits_end]))) ++digits_end;
    if (digits_end < spec.size() && spec[digits_end] == 'd' && digits_end - j <= 2) {
      ++conversions;
      p.zero_pad = zero;
      p.width = digits_end == j ? 0 : std::stoi(spec.substr(j, digits_end - j));
      out = &p.suffix;
      i = digits_end;
      continue;
    }
    if (bad.empty()) bad = spec.substr(i, std::min<size_t>(3, spec.size() - i));
    *out += '%';
  }
  if (conversions == 0) return std::nullopt;
  if (conversions > 1) {
    throw MaskError("mask pattern " + in_quotes(spec) + " has " + std::to_string(conversions) +
                        " frame-number conversions; it must have one (like %05d)",
                    spec);
  }
  if (!bad.empty()) {
    throw MaskError("mask pattern " + in_quotes(spec) + " holds " + in_quotes(bad) +
                        "; the only '%' sequences allowed are one %d / %0Nd and %% for '%'",
                    spec);
  }
  if (p.suffix.find('/') != std::string::npos) {
    throw MaskError(
        "mask pattern " + in_quotes(spec) + " numbers a directory; the frame number must be in the file name", spec);
  }
  return p;
}

std::string format_number(int64_t n, int width, bool zero_pad) {
  std::string digits = std::to_string(n);
  if (static_cast<int>(digits.size()) < width) digits.insert(0, width - digits.size(), zero_pad ? '0' : ' ');
  return digits;
}

}  // namespace

MaskSource::MaskSource(std::string spec, io::Size frame_size, io::ResizeMode resize, io::Size stored, io::Size shown)
    : spec_(std::move(spec)), frame_size_(frame_size), resize_(resize), stored_(stored), shown_(shown) {
  if (frame_size_.width <= 0 || frame_size_.height <= 0) {
    throw std::invalid_argument("mask frame size " + std::to_string(frame_size_.width) + "x" +
                                std::to_string(frame_size_.height) + " is not positive");
  }
  if (spec_.empty()) throw MaskError("mask path is empty", spec_);

  if (const auto parsed = parse_pattern(spec_)) {
    kind_ = MaskKind::per_frame_images;
    pattern_ = {parsed->prefix, parsed->suffix, parsed->width, parsed->zero_pad};
    // The pattern must name at least one file: scan its directory for names
    // that the pattern produces for some frame number.
    const fs::path prefix_path(pattern_.prefix);
    const bool prefix_is_dir = !pattern_.prefix.empty() && pattern_.prefix.back() == '/';
    const fs::path dir = prefix_is_dir ? prefix_path : prefix_path.parent_path();
    const std::string name_prefix = prefix_is_dir ? std::string() : prefix_path.filename().string();
    const fs::path scan_dir = dir.empty() ? fs::path(".") : dir;
    std::error_code ec;
    if (!fs::is_directory(scan_dir, ec)) {
      throw MaskError(
          "directory " + in_quotes(scan_dir.string()) + " of mask pattern " + in_quotes(spec_) + " does not exist",
          spec_);
    }
    bool found = false;
    for (fs::directory_iterator it(scan_dir, ec), end; !ec && it != end && !found; it.increment(ec)) {
      const std::string name = it->path().filename().string();
      if (name.size() <= name_prefix.size() + pattern_.suffix.size()) continue;
      if (name.compare(0, name_prefix.size(), name_prefix) != 0) continue;
      if (name.compare(name.size() - pattern_.suffix.size(), pattern_.suffix.size(), pattern_.suffix) != 0) continue;
      const std::string middle =
          name.substr(name_prefix.size(), name.size() - name_prefix.size() - pattern_.suffix.size());
      const size_t first_digit = middle.find_first_not_of(' ');
      if (first_digit == std::string::npos || middle.size() > 18) continue;
      bool digits = true;
      for (size_t k = first_digit; k < middle.size(); ++k)
        digits &= std::isdigit(static_cast<unsigned char>(middle[k])) != 0;
      if (!digits) continue;
      // Only names the pattern itself would produce count (00007 for %05d, not 7).
      found = format_number(std::stoll(middle.substr(first_digit)), pattern_.width, pattern_.zero_pad) == middle &&
              is_file(it->path().string());
    }
    if (ec)
      throw MaskError(
          "cannot list " + in_quotes(scan_dir.string()) + " for mask pattern " + in_quotes(spec_) + ": " + ec.message(),
          spec_);
    if (!found) throw MaskError("mask pattern " + in_quotes(spec_) + " matches no files", spec_);
    return;
  }

  std::error_code ec;
  if (!fs::exists(spec_, ec)) throw MaskError("mask file " + in_quotes(spec_) + " does not exist", spec_);
  if (fs::is_directory(spec_, ec)) {
    throw MaskError("mask path " + in_quotes(spec_) + " is a directory; give a file or a pattern such as " +
                        in_quotes(spec_ + "/%05d.png"),
                    spec_);
  }
  io::VideoInfo info;
  try {
    info = io::probe_video(spec_);
  } catch (const io::VideoError& e) {
    throw MaskError("mask " + in_quotes(spec_) + " is neither an image nor a video FFmpeg reads: " + e.what(), spec_);
  }
  if (info.frame_count > 1) {
    kind_ = MaskKind::video;
    frame_count_ = info.frame_count;
    io::ReaderOptions options;
    options.size = frame_size_;
    options.resize = resize_;
    options.threads = 1;  // masks are light; leave the cores to the model
    try {
      video_ = std::make_unique<io::VideoReader>(spec_, options);
    } catch (const io::VideoError& e) {
      throw MaskError(std::string("cannot open mask video: ") + e.what(), spec_);
    }
    video_mutex_ = std::make_unique<std::mutex>();
    return;
  }
  if (info.frame_count < 1) throw MaskError("mask " + in_quotes(spec_) + " holds no picture", spec_);
  kind_ = MaskKind::still_image;
  frame_count_ = 1;
  still_ = read_still(spec_, -1);
}

MaskSource::~MaskSource() = default;
MaskSource::MaskSource(MaskSource&&) noexcept = default;
MaskSource& MaskSource::operator=(MaskSource&&) noexcept = default;

std::string MaskSource::frame_path(int64_t frame) const {
  if (kind_ != MaskKind::per_frame_images) throw std::logic_error("mask " + in_quotes(spec_) + " is not a pattern");
  return pattern_.prefix + format_number(frame, pattern_.width, pattern_.zero_pad) + pattern_.suffix;
}

at::Tensor MaskSource::read_still(const std::string& path, int64_t frame) const {
  const std::string for_frame = frame >= 0 ? " for frame " + std::to_string(frame) : std::string();
  io::RgbImage image;
  try {
    image = io::read_image(path);
  } catch (const io::VideoError& e) {
    throw MaskError("cannot read mask image " + in_quotes(path) + for_frame + ": " + e.what(), path);
  }
  const io::Size size{image.width, image.height};
  const bool frame_pixels = size == stored_ && shown_.width > 0 && shown_.height > 0;  // see the header
  return luma_mask(io::resize_rgb(image, frame_pixels ? io::plan_resize(size, shown_, frame_size_, resize_)
                                                      : io::plan_resize(size, frame_size_, resize_)));
}

void MaskSource::validate(int64_t num_frames) const {
  if (num_frames < 0) throw std::invalid_argument("negative frame count " + std::to_string(num_frames));
  if (kind_ == MaskKind::video && frame_count_ < num_frames) {
    throw MaskError("mask video " + in_quotes(spec_) + " has " + std::to_string(frame_count_) +
                        " frames but the video to edit has " + std::to_string(num_frames),
                    spec_);
  }
  if (kind_ == MaskKind::per_frame_images) {
    for (int64_t i = 0; i < num_frames; ++i) {
      const std::string path = frame_path(i);
      if (!is_file(path)) {
        throw MaskError("mask file " + in_quotes(path) + " for frame " + std::to_string(i) + " (pattern " +
                            in_quotes(spec_) + ") does not exist",
                        path);
      }
    }
  }
}

at::Tensor MaskSource::mask(int64_t frame) const {
  if (frame < 0) throw std::out_of_range("mask of negative frame " + std::to_string(frame));
  switch (kind_) {
    case MaskKind::still_image:
      return still_.clone();
    case MaskKind::per_frame_images: {
      const std::string path = frame_path(frame);
      if (!is_file(path)) {
        throw MaskError("mask file " + in_quotes(path) + " for frame " + std::to_string(frame) + " (pattern " +
                            in_quotes(spec_) + ") does not exist",
                        path);
      }
      return read_still(path, frame);
    }
    case MaskKind::video: {
      if (frame >= frame_count_) {
        throw MaskError("mask video " + in_quotes(spec_) + " has " + std::to_string(frame_count_) + " frames; frame " +
                            std::to_string(frame) + " has no mask",
                        spec_);
      }
      io::Frame decoded;
      {
        const std::lock_guard<std::mutex> lock(*video_mutex_);
        try {
          decoded = video_->read_frame(frame);
        } catch (const io::VideoError& e) {
          throw MaskError("cannot read frame " + std::to_string(frame) + " of mask video: " + e.what(), spec_);
        }
      }
      return luma_mask(decoded.image);
    }
  }
  throw std::logic_error("unknown mask kind");
}

}  // namespace via::io
