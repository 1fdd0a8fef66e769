#include "rank/workdir.h"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "io/checkpoint.h"

namespace fs = std::filesystem;

namespace via::rank {
namespace {

std::string numbered(const std::string& dir, const char* stem, int64_t n, const char* ext) {
  char buf[64];
  std::snprintf(buf, sizeof(buf), "/%s_%06lld%s", stem, static_cast<long long>(n), ext);
  return dir + buf;
}

bool starts_with(const std::string& s, const std::string& prefix) { return s.rfind(prefix, 0) == 0; }
bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

// What a stopped attempt may have left half-written: checkpoint temporaries
// ("<name>.tmp.<pid>.<n>"), unfinished segments and outputs ("<name>.part"),
// and settings.json's temporary.
bool is_leftover(const fs::path& p) {
  const std::string name = p.filename().string();
  return name.find(".tmp.") != std::string::npos || (name.size() > 5 && ends_with(name, ".part")) ||
         ends_with(name, ".tmp");
}

void remove_leftovers(const fs::path& dir, bool recurse) {
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) return;
  for (const auto& entry : fs::directory_iterator(dir, ec)) {
    if (entry.is_directory(ec)) {
      if (recurse) remove_leftovers(entry.path(), false);
    } else if (is_leftover(entry.path())) {
      fs::remove(entry.path(), ec);
    }
  }
}

void make_dir(const std::string& path) {
  std::error_code ec;
  fs::create_directories(path, ec);
  if (ec) throw WorkDirError("cannot create " + path + ": " + ec.message());
}

}  // namespace

std::string host_name() {
  char buf[256] = {0};
  return gethostname(buf, sizeof(buf) - 1) == 0 ? buf : "?";
}

std::string WorkDir::frames_dir(int64_t chunk) const { return numbered(root + "/frames", "chunk", chunk, ""); }
std::string WorkDir::frame_latents(int64_t chunk, int64_t frame) const {
  return numbered(frames_dir(chunk), "frame", frame, ".h5");
}
std::string WorkDir::chunk_latents(int64_t chunk) const { return numbered(root + "/chunks", "chunk", chunk, ".h5"); }
std::string WorkDir::chunk_segment(int64_t chunk) const {
  return numbered(root + "/segments", "chunk", chunk, ".mp4");
}
std::string WorkDir::claim(int64_t chunk) const { return numbered(claims_dir(), "chunk", chunk, ""); }
std::string WorkDir::progress(int rank) const { return numbered(progress_dir(), "rank", rank, ".json"); }

WorkDirLock::WorkDirLock(const WorkDir& dir) {
  make_dir(dir.root);
  Fd fd(VIA_SYS_CHECK(WorkDirError, ::open(dir.lock().c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644),
                      "cannot open " + dir.lock()));
  if (::flock(fd.get(), LOCK_EX | LOCK_NB) != 0) {
    const int err = errno;
    if (err != EWOULDBLOCK) throw WorkDirError("cannot lock " + dir.lock() + ": " + std::strerror(err));
    fd.reset();
    std::string holder;
    held(dir, &holder);
    throw WorkDirError("work directory " + dir.root + " is in use by another render" +
                       (holder.empty() ? "" : " (" + holder + ")") + "; wait for it to end, or stop it first");
  }
  const std::string who = "pid " + std::to_string(::getpid()) + " on host " + host_name() + "\n";
  if (::ftruncate(fd.get(), 0) != 0 ||
      ::pwrite(fd.get(), who.data(), who.size(), 0) != static_cast<ssize_t>(who.size()))
    throw WorkDirError("cannot write " + dir.lock() + ": " + errno_text());
  fd_ = std::move(fd);
}

WorkDirLock::~WorkDirLock() = default;  // closing the lock file releases the flock

bool WorkDirLock::held(const WorkDir& dir, std::string* holder) {
  const Fd fd(::open(dir.lock().c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd.valid()) return false;
  bool busy = false;
  if (::flock(fd.get(), LOCK_SH | LOCK_NB) != 0) busy = (errno == EWOULDBLOCK);
  else ::flock(fd.get(), LOCK_UN);
  if (busy && holder) {
    char buf[256] = {0};
    const ssize_t n = ::pread(fd.get(), buf, sizeof(buf) - 1, 0);
    *holder = n > 0 ? std::string(buf, static_cast<size_t>(n)) : "";
    while (!holder->empty() && (holder->back() == '\n' || holder->back() == ' ')) holder->pop_back();
  }
  return busy;
}

void write_file_atomic(const std::string& path, const std::string& text) {
  const std::string tmp = path + ".tmp";
  FILE* f = std::fopen(tmp.c_str(), "wb");
  if (!f) throw WorkDirError("cannot write " + path + ": " + errno_text());
  const bool ok = std::fwrite(text.data(), 1, text.size(), f) == text.size() && std::fflush(f) == 0 &&
                  ::fsync(::fileno(f)) == 0;
  const std::string why = errno_text();
  const bool closed = std::fclose(f) == 0;
  std::error_code ec;
  if (!ok || !closed) {
    fs::remove(tmp, ec);
    throw WorkDirError("cannot write " + path + ": " + why);
  }
  fs::rename(tmp, path, ec);
  if (ec) {
    fs::remove(tmp, ec);
    throw WorkDirError("cannot write " + path + ": " + ec.message());
  }
}

bool read_settings(const WorkDir& dir, RenderSettings* settings) {
  std::ifstream in(dir.settings());
  if (!in) return false;
  std::stringstream text;
  text << in.rdbuf();
  try {
    nlohmann::json j = nlohmann::json::parse(text.str());
    j.erase("settings_hash");  // written next to the settings, for people and scripts
    *settings = RenderSettings::from_json(j);
  } catch (const std::exception& e) {
    throw WorkDirError(dir.settings() + " is damaged (" + e.what() +
                       "); remove the work directory to start over");
  }
  return true;
}

namespace {

// True when `dir` holds something computed (adaptation, latents, segments):
// only then do its settings bind a later command. A directory written by a
// command that failed before any compute (a mistyped model path, a bad
// output) is taken over by the corrected command.
bool holds_finished_work(const WorkDir& dir) {
  std::error_code ec;
  for (const std::string& file : {dir.root_pair(), dir.adapter(), dir.group()})
    if (fs::exists(file, ec)) return true;
  for (const char* sub : {"/chunks", "/segments", "/frames"})
    for (auto it = fs::recursive_directory_iterator(dir.root + sub, ec); !ec && it != fs::end(it); it.increment(ec))
      if (it->is_regular_file(ec)) return true;
  return false;
}

}  // namespace

std::string other_settings_message(const WorkDir& dir, const RenderSettings& there, const RenderSettings& here) {
  const std::string difference = there.difference_from(here);
  return difference.empty() ? "" : "work directory " + dir.root + " was made with other settings: " + difference;
}

bool prepare_workdir(const WorkDir& dir, const RenderSettings& settings, bool resume) {
  make_dir(dir.root);
  RenderSettings stored;
  const bool existing = read_settings(dir, &stored) && holds_finished_work(dir);
  if (existing) {
    if (!resume)
      throw WorkDirError("work directory " + dir.root +
                         " already holds a render; add --resume to continue it (`via status " + dir.root +
                         "` shows how far it got), or choose another directory");
    const std::string other = other_settings_message(dir, stored, settings);
    if (!other.empty()) throw WorkDirError(other + "; resume with the same settings, or choose another directory");
  }
  remove_leftovers(dir.root, false);
  for (const char* sub : {"/chunks", "/segments"}) remove_leftovers(dir.root + sub, false);
  remove_leftovers(dir.root + "/frames", true);
  std::error_code ec;
  fs::remove_all(dir.claims_dir(), ec);
  fs::remove_all(dir.progress_dir(), ec);
  for (const char* sub : {"/chunks", "/segments", "/frames", "/claims", "/progress"}) make_dir(dir.root + sub);
  nlohmann::json j = settings.to_json();
  j["settings_hash"] = settings.hash();
  write_file_atomic(dir.settings(), j.dump(2) + "\n");
  return existing;
}

void check_model_and_output(const RenderSettings& settings) {
  std::error_code ec;
  const fs::path out = fs::absolute(settings.output);
  if (fs::exists(out, ec) && fs::equivalent(out, settings.input, ec))
    throw SettingsError("--output " + settings.output + " is the input video; choose another file");
  if (fs::is_directory(out, ec))
    throw SettingsError("--output " + settings.output + " is a directory; give a file name (e.g. edited.mp4)");
  const fs::path folder = out.parent_path();
  const std::string cannot = "cannot write the output " + settings.output + ": ";
  if (!fs::is_directory(folder, ec))
    throw SettingsError(cannot + "the output's directory " + folder.string() + " does not exist or is not a directory");
  if (::access(folder.c_str(), W_OK) != 0) throw SettingsError(cannot + folder.string() + " is not writable");
  // A diffusers folder or a single-file checkpoint (model/single_file.h).
  if (!fs::exists(settings.model, ec)) throw SettingsError("model " + settings.model + " does not exist");
}

namespace {

// What identifies a file this directory wrote: its path, size and mtime.
nlohmann::json file_identity(const std::string& path) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0 || !S_ISREG(st.st_mode)) return nullptr;
  return {{"path", fs::absolute(path).lexically_normal().string()},
          {"size", static_cast<int64_t>(st.st_size)},
          {"mtime_ns", static_cast<int64_t>(st.st_mtim.tv_sec) * 1000000000 + st.st_mtim.tv_nsec}};
}

}  // namespace

void record_output(const WorkDir& dir, const std::string& output) {
  try {
    write_file_atomic(dir.output_record(), file_identity(output).dump(2) + "\n");
  } catch (const std::exception&) {
    // Informative: without it a later command needs --overwrite.
  }
}

void check_output_replaceable(const WorkDir& dir, const std::string& output, bool overwrite) {
  std::error_code ec;
  if (overwrite || !fs::exists(output, ec)) return;
  std::ifstream in(dir.output_record());
  const nlohmann::json ours = nlohmann::json::parse(in, nullptr, /*allow_exceptions=*/false);
  const nlohmann::json now = file_identity(output);
  if (!now.is_null() && ours == now) return;  // written by this directory and not touched since
  throw SettingsError(output + " exists; pass --overwrite to replace it");
}

void write_plan(const WorkDir& dir, const ChunkPlan& plan) {
  const nlohmann::json j = {{"frames", plan.frames}, {"chunk_frames", plan.chunk_frames}, {"chunks", plan.chunks()}};
  write_file_atomic(dir.plan(), j.dump(2) + "\n");
}

bool read_plan(const WorkDir& dir, ChunkPlan* plan) {
  std::ifstream in(dir.plan());
  const nlohmann::json j = nlohmann::json::parse(in, nullptr, /*allow_exceptions=*/false);
  if (!j.is_object()) return false;
  plan->frames = j.value("frames", int64_t{0});
  plan->chunk_frames = std::max<int64_t>(1, j.value("chunk_frames", int64_t{1}));
  return plan->frames > 0;
}

bool chunk_latents_done(const WorkDir& dir, int64_t chunk, const ChunkPlan& plan, const std::string& hash) {
  const auto [first, count] = plan.range(chunk);
  try {
    const io::CheckpointReader r(dir.chunk_latents(chunk));
    return r.get_string("settings_hash") == hash && r.get_int("first_frame") == first &&
           r.get_int("frames") == count && r.size() == count;
  } catch (const std::exception&) {
    return false;
  }
}

int64_t frames_on_disk(const WorkDir& dir, int64_t chunk) {
  std::error_code ec;
  int64_t n = 0;
  for (const auto& entry : fs::directory_iterator(dir.frames_dir(chunk), ec)) {
    const std::string name = entry.path().filename().string();
    if (starts_with(name, "frame_") && ends_with(name, ".h5")) ++n;
  }
  return n;
}

bool claim_chunk(const WorkDir& dir, int64_t chunk, int rank) {
  const Fd fd(::open(dir.claim(chunk).c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644));
  if (!fd.valid()) {
    if (errno == EEXIST) return false;
    throw WorkDirError("cannot claim chunk " + std::to_string(chunk) + " (" + dir.claim(chunk) + "): " + errno_text());
  }
  const std::string who = std::to_string(rank) + "\n";
  const ssize_t ignored = ::write(fd.get(), who.data(), who.size());  // informative only
  (void)ignored;
  return true;
}

}  // namespace via::rank
