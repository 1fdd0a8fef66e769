#pragma once
// Masks for local latent adaptation (docs/ARCHITECTURE.md §6): where the edit may change
// a frame, read from files (the blending is adaptation/latent_blend.h). A
// mask is given as one of
//   - a per-frame image pattern with one printf-style frame number,
//     `masks/%05d.png`: frame i reads the file the pattern names for i
//     (`masks/00007.png` for frame 7; numbering starts at 0 like the frames);
//   - a mask video (any file FFmpeg reads as a video of more than one frame):
//     frame i of the video is the mask of frame i;
//   - one still image (anything FFmpeg reads as a single picture): the same
//     mask for every frame.
//
// Geometry: each mask picture goes through the same resize plan as the video's
// frames (io::plan_resize of the picture's size to the model frame size with
// the video's ResizeMode), so a mask drawn at the source's size lines up with
// the resized frame pixel for pixel. A picture of the video's stored size has
// the video's pixels: when those are not square (a 360x288 PAL frame shown at
// 384x288), it goes through the frames' own plan for that shape; a picture of
// any other size has square pixels. Under `fit` the padded bars are 0: the
// letterbox is not picture, so nothing there is edited (it keeps the source's
// black).
//
// Values: the mask is the picture's luma, Y = (299 R + 587 G + 114 B) / 1000
// (BT.601 weights, exact for grey pictures, where it is the grey level),
// divided by 255: 1 = edit here, 0 = keep the source. Nothing is thresholded;
// soft masks (and antialiased edges) pass through as fractions.
#include <ATen/core/Tensor.h>

#include <cstdint>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <string>

#include "io/resize.h"

namespace via::io {

class VideoReader;

/// A mask that cannot be used: missing file, unreadable picture, a pattern
/// without files, too few mask frames. what() is one line naming the path
/// (and the frame, where one is involved).
class MaskError : public std::runtime_error {
 public:
  MaskError(const std::string& message, std::string path) : std::runtime_error(message), path_(std::move(path)) {}
  /// The mask spec or file the failure is about.
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

/// Where the masks of a MaskSource come from.
enum class MaskKind { per_frame_images, video, still_image };
const char* to_string(MaskKind kind);

/// The masks of one video, at its model frame size.
///
/// Construction detects the kind from `spec` and checks that it is usable (the
/// file exists and reads; a pattern matches at least one file); validate()
/// checks, before rendering, that every frame of the video has a mask.
///
/// mask(i) depends only on the spec, the frame size, the resize mode and i:
/// not on which frames were asked for before or in which order (the renderer
/// asks for arbitrary frames on several ranks). mask() is thread-safe (a mask
/// video's reader is used under a lock). Movable, not copyable.
class MaskSource {
 public:
  /// `spec`: a pattern, a mask video or a still image (see the file comment).
  /// `frame_size`, `resize`: the model frame size and aspect policy the video's
  /// frames are read with. `stored`, `shown`: the video's frame size as stored
  /// (upright) and as displayed (io::VideoInfo::upright_size(), display_size());
  /// {} for square pixels. Throws MaskError naming `spec` when it is unusable,
  /// std::invalid_argument for a non-positive frame size.
  MaskSource(std::string spec, io::Size frame_size, io::ResizeMode resize, io::Size stored = {},
             io::Size shown = {});
  ~MaskSource();
  MaskSource(MaskSource&&) noexcept;
  MaskSource& operator=(MaskSource&&) noexcept;
  MaskSource(const MaskSource&) = delete;
  MaskSource& operator=(const MaskSource&) = delete;

  MaskKind kind() const { return kind_; }
  const std::string& spec() const { return spec_; }
  io::Size frame_size() const { return frame_size_; }
  /// Frames of a mask video; 1 for a still image; for a pattern, 0 (unknown
  /// until files are asked for).
  int64_t frame_count() const { return frame_count_; }

  /// Checks that frames 0..num_frames-1 all have a mask: a mask video has at
  /// least num_frames frames (else MaskError naming both counts), a pattern's
  /// file exists for every frame (else MaskError naming the first missing file
  /// and its frame). Nothing to check for a still image.
  void validate(int64_t num_frames) const;

  /// The mask of frame `frame`: float [1, 1, H, W] in [0, 1] on the CPU, H x W
  /// the frame size; a fresh tensor the caller owns. Throws MaskError naming
  /// the file and frame when a pattern's file is missing or does not read, or
  /// the frame lies past a mask video's end; std::out_of_range for frame < 0.
  at::Tensor mask(int64_t frame) const;

  /// The file a pattern names for `frame` (`masks/%05d.png`, 7 -> `masks/00007.png`).
  /// Throws std::logic_error when this source is not a pattern.
  std::string frame_path(int64_t frame) const;

 private:
  struct Pattern {  // spec = prefix + number (zero-padded to width when zero_pad) + suffix
    std::string prefix;
    std::string suffix;
    int width = 0;
    bool zero_pad = false;
  };

  at::Tensor read_still(const std::string& path, int64_t frame) const;

  std::string spec_;
  io::Size frame_size_;
  io::ResizeMode resize_;
  io::Size stored_;  // the video's stored (upright) frame size and its displayed size
  io::Size shown_;
  MaskKind kind_ = MaskKind::still_image;
  int64_t frame_count_ = 0;
  Pattern pattern_;
  at::Tensor still_;                         // the still image's mask
  std::unique_ptr<io::VideoReader> video_;   // the mask video's reader
  std::unique_ptr<std::mutex> video_mutex_;  // guards video_ (a pointer keeps the class movable)
};

}  // namespace via::io
