#include "rank/progress.h"

#include <cmath>
#include <cstdio>
#include <filesystem>

namespace fs = std::filesystem;

namespace via::rank {

std::string duration_text(double seconds) {
  if (!std::isfinite(seconds) || seconds < 0) return "?";
  const auto s = static_cast<int64_t>(std::llround(seconds));
  char buf[32];
  if (s >= 3600) std::snprintf(buf, sizeof(buf), "%lldh%02lldm", (long long)(s / 3600), (long long)(s % 3600 / 60));
  else if (s >= 60) std::snprintf(buf, sizeof(buf), "%lldm%02llds", (long long)(s / 60), (long long)(s % 60));
  else std::snprintf(buf, sizeof(buf), "%llds", (long long)s);
  return buf;
}

LiveProgress::LiveProgress(bool terminal, Print print, std::chrono::milliseconds interval)
    : terminal_(terminal), print_(std::move(print)), interval_(interval) {}

bool LiveProgress::update(const std::string& stage, const std::string& line) {
  const auto now = std::chrono::steady_clock::now();
  const auto wait = terminal_ ? std::chrono::milliseconds(100) : interval_;
  if (stage == stage_ && now - last_ < wait) return false;
  stage_ = stage;
  last_ = now;
  print_(line, terminal_);
  return true;
}

DiskProgress::DiskProgress(WorkDir dir, ChunkPlan plan, std::string render_key)
    : dir_(std::move(dir)), plan_(plan), key_(std::move(render_key)) {}

DiskProgress::Counts DiskProgress::scan() {
  Counts c;
  std::error_code ec;
  for (int64_t chunk = 0; chunk < plan_.chunks(); ++chunk) {
    if (!done_.count(chunk) && fs::exists(dir_.chunk_latents(chunk), ec) &&
        chunk_latents_done(dir_, chunk, plan_, key_))
      done_.insert(chunk);
    if (done_.count(chunk)) {
      ++c.chunks_done;
      c.frames_done += plan_.range(chunk).second;
    } else {
      c.frames_done += frames_on_disk(dir_, chunk);
    }
    if (fs::exists(dir_.chunk_segment(chunk), ec)) ++c.segments;
  }
  return c;
}

ProgressReporter::ProgressReporter(DiskProgress progress, bool terminal, Print print, std::chrono::seconds interval)
    : progress_(std::move(progress)), terminal_(terminal), print_(std::move(print)), interval_(interval) {}

ProgressReporter::~ProgressReporter() { stop(); }

void ProgressReporter::start() {
  start_ = std::chrono::steady_clock::now();
  start_frames_ = progress_.scan().frames_done;
  thread_ = std::thread([this] { run(); });
}

void ProgressReporter::stop() {
  if (!thread_.joinable()) return;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stopping_ = true;
  }
  wake_.notify_all();
  thread_.join();
}

std::string ProgressReporter::line(const DiskProgress::Counts& c, double seconds) const {
  const int64_t total = progress_.plan().frames;
  const double fps = seconds > 0 ? static_cast<double>(c.frames_done - start_frames_) / seconds : 0.0;
  char buf[160];
  if (c.frames_done == total) {
    std::snprintf(buf, sizeof(buf), "render: %lld/%lld frames (100%%)", static_cast<long long>(total),
                  static_cast<long long>(total));
    return buf;
  }
  std::snprintf(buf, sizeof(buf), "render: %lld/%lld frames (%.1f%%), %.2f frames/s, ETA %s",
                static_cast<long long>(c.frames_done), static_cast<long long>(total),
                total ? 100.0 * static_cast<double>(c.frames_done) / static_cast<double>(total) : 100.0, fps,
                fps > 0 ? duration_text(static_cast<double>(total - c.frames_done) / fps).c_str() : "?");
  return buf;
}

void ProgressReporter::run() {
  int64_t last_printed = -1;
  auto last_time = std::chrono::steady_clock::now() - interval_;
  const auto tick = std::chrono::seconds(1);
  for (;;) {
    bool stopping;
    {
      std::unique_lock<std::mutex> lock(mutex_);
      wake_.wait_for(lock, tick, [this] { return stopping_; });
      stopping = stopping_;
    }
    const DiskProgress::Counts c = progress_.scan();
    const auto now = std::chrono::steady_clock::now();
    const double seconds = std::chrono::duration<double>(now - start_).count();
    const bool changed = c.frames_done != last_printed;
    if (terminal_ || stopping || (changed && now - last_time >= interval_)) {
      print_(line(c, seconds), terminal_ && !stopping);
      last_printed = c.frames_done;
      last_time = now;
    }
    if (stopping) return;
  }
}

}  // namespace via::rank
