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
bool is_leftover(const std::string& name) {
  return name.find(".tmp.") != std::string::npos || (name.size() > 5 && ends_with(name, ".part")) ||
         ends_with(name, ".tmp");
}

void remove_leftovers(const fs::path& dir, bool recurse) {
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) return;
  for (const auto& entry : fs::directory_iterator(dir, ec)) {
    if (entry.is_directory(ec)) {
      if (recurse) remove_leftovers(entry.path(), false);
    } else if (is_leftover(entry.path().filename().string())) {
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

bool read_record(const WorkDir& dir, WorkDirRecord* record) {
  std::ifstream in(dir.settings());
  if (!in) return false;
  std::stringstream text;
  text << in.rdbuf();
  try {
    nlohmann::json j = nlohmann::json::parse(text.str());
    // Written next to the settings, for people, scripts and resumes.
    j.erase("settings_hash");
    record->key = j.value(kRenderKeyAttribute, "");
    j.erase(kRenderKeyAttribute);
    record->provenance.reset();
    if (j.contains("provenance")) record->provenance = Provenance::from_json(j["provenance"]);
    j.erase("provenance");
    record->settings = RenderSettings::from_json(j);
  } catch (const std::exception& e) {
    throw WorkDirError(dir.settings() + " is damaged (" + e.what() + ")");
  }
  return true;
}

bool read_settings(const WorkDir& dir, RenderSettings* settings) {
  WorkDirRecord record;
  if (!read_record(dir, &record)) return false;
  *settings = record.settings;
  return true;
}

std::string move_aside(const WorkDir& dir, const std::string& path) {
  std::error_code ec;
  fs::create_directories(dir.damaged_dir(), ec);
  // damaged/chunks_chunk_000003.h5, then .1, .2 ... when that name is taken
  std::string name = fs::relative(path, dir.root, ec).string();
  if (ec || name.empty()) name = fs::path(path).filename().string();
  std::replace(name.begin(), name.end(), '/', '_');
  std::string target = dir.damaged_dir() + "/" + name;
  for (int n = 1; fs::exists(target, ec); ++n) target = dir.damaged_dir() + "/" + name + "." + std::to_string(n);
  fs::rename(path, target, ec);
  if (!ec) return target;
  fs::remove_all(path, ec);
  return "(removed: it could not be moved)";
}

std::string artifact_problem(const std::string& path, const std::string& key, io::Verify level) {
  std::error_code ec;
  if (!fs::exists(path, ec)) return "missing";
  std::string reason;
  if (!io::is_valid_checkpoint(path, level, &reason)) return reason;
  try {
    const io::CheckpointReader r(path);
    if (!r.has_attribute(kRenderKeyAttribute) || r.get_string(kRenderKeyAttribute) != key)
      return "made for another render (render key " +
             (r.has_attribute(kRenderKeyAttribute) ? r.get_string(kRenderKeyAttribute) : std::string("none")) +
             ", this render's is " + key + ")";
  } catch (const std::exception& e) {
    return e.what();
  }
  return "";
}

namespace {

// The checkpoints a render writes, wherever they are.
std::vector<std::string> checkpoint_files(const WorkDir& dir) {
  std::vector<std::string> files;
  std::error_code ec;
  for (const std::string& file : {dir.root_pair(), dir.adapter(), dir.group()})
    if (fs::is_regular_file(file, ec)) files.push_back(file);
  for (const char* sub : {"/chunks", "/frames"})
    for (auto it = fs::recursive_directory_iterator(dir.root + sub, ec); !ec && it != fs::end(it); it.increment(ec))
      if (it->is_regular_file(ec) && ends_with(it->path().string(), ".h5")) files.push_back(it->path().string());
  return files;
}

// True when `dir` holds something computed (adaptation, latents, segments):
// only then do its settings bind a later command. A directory written by a
// command that failed before any compute (a mistyped model path, a bad
// output) is taken over by the corrected command.
bool holds_finished_work(const WorkDir& dir) {
  std::error_code ec;
  if (!checkpoint_files(dir).empty()) return true;
  for (auto it = fs::recursive_directory_iterator(dir.root + "/segments", ec); !ec && it != fs::end(it);
       it.increment(ec))
    if (it->is_regular_file(ec)) return true;
  return false;
}

// Whether some checkpoint of `dir` was made with `key`: then settings.json,
// which names it, is the directory's own record, not a stray copy.
bool made_with(const WorkDir& dir, const std::string& key) {
  if (key.empty()) return false;
  for (const std::string& file : checkpoint_files(dir)) {
    try {
      const io::CheckpointReader r(file);
      if (r.has_attribute(kRenderKeyAttribute) && r.get_string(kRenderKeyAttribute) == key) return true;
    } catch (const std::exception&) {
      // damaged: it says nothing
    }
  }
  return false;
}

// What a work directory may hold (via's own names, and what `via submit` adds).
bool is_via_entry(const std::string& name) {
  static const char* const kNames[] = {"settings.json", "plan.json",  "lock",     "attempts.jsonl", "candidates.png",
                                       "root_pair.h5",  "adapter.h5", "attention_group.h5", "timings.json",
                                       "output.json",   "frames",     "chunks",   "segments",       "claims",
                                       "progress",      "damaged",    "job.sh",   "logs"};
  for (const char* known : kNames)
    if (name == known) return true;
  return starts_with(name, "task-") || starts_with(name, "settings.json.") || is_leftover(name);
}

}  // namespace

// A directory with files of its own and nothing of via's is the user's: via
// would write beside them, and a later cleanup would take them too.
void refuse_foreign_workdir(const WorkDir& dir) {
  std::error_code ec;
  std::string foreign;
  bool ours = false;
  for (const auto& entry : fs::directory_iterator(dir.root, ec)) {
    const std::string name = entry.path().filename().string();
    if (name == "settings.json" || name == "attempts.jsonl" || name == "chunks" || name == "plan.json") ours = true;
    if (!is_via_entry(name) && foreign.empty()) foreign = name;
  }
  if (!ours && !foreign.empty())
    throw WorkDirError("work directory " + dir.root + " holds other files (" + foreign +
                       ") and no render; give a new or empty directory");
}

std::string other_settings_message(const WorkDir& dir, const RenderSettings& there, const RenderSettings& here) {
  const std::string difference = there.difference_from(here);
  return difference.empty() ? "" : "work directory " + dir.root + " was made with other settings: " + difference;
}

PreparedWorkDir prepare_workdir(const WorkDir& dir, const RenderSettings& settings, bool resume,
                                const std::function<void(const std::string&)>& log) {
  const auto say = [&](const std::string& line) {
    if (log) log(line);
  };
  make_dir(dir.root);
  refuse_foreign_workdir(dir);
  WorkDirRecord stored;
  bool has_record = false;
  try {
    has_record = read_record(dir, &stored);
  } catch (const WorkDirError& e) {
    say(std::string(e.what()) + ": moved aside to " + move_aside(dir, dir.settings()) +
        "; the files it described are kept when they carry this render's key");
  }
  const bool finished_work = holds_finished_work(dir);
  bool existing = has_record && finished_work;
  if (existing && stored.settings.hash() != settings.hash() && !made_with(dir, stored.key)) {
    // A settings.json no file here was made with (copied from another render,
    // or left by a directory's earlier life): the files' keys decide.
    say(dir.settings() + " belongs to no file of this directory: moved aside to " + move_aside(dir, dir.settings()));
    existing = false;
  }
  if (existing) {
    if (!resume)
      throw WorkDirError("work directory " + dir.root +
                         " already holds a render; add --resume to continue it (`via status " + dir.root +
                         "` shows how far it got), or choose another directory");
    const std::string other = other_settings_message(dir, stored.settings, settings);
    if (!other.empty()) throw WorkDirError(other + "; resume with the same settings, or choose another directory");
  }

  PreparedWorkDir prepared;
  prepared.resumed = existing;
  const bool known = existing && stored.provenance;
  prepared.provenance.input = fingerprint(settings.input, known ? &stored.provenance->input : nullptr);
  prepared.provenance.model = fingerprint(settings.model, known ? &stored.provenance->model : nullptr);
  prepared.provenance.via_build = via_build();
  if (known) {
    const std::string change = provenance_change(*stored.provenance, prepared.provenance);
    if (!change.empty())
      throw WorkDirError(change + "; its finished work in " + dir.root +
                         " was made from the old one: render into another work directory");
    if (stored.provenance->edit_path != kEditPathVersion)
      say("the work directory was started by " + stored.provenance->via_build + ", whose edits differ: its files are made again");
  } else if (existing && !stored.provenance) {
    say("the work directory was started by an older via that stamped no file: its files are made again");
  }
  prepared.key = render_key(settings.hash(), prepared.provenance);

  remove_leftovers(dir.root, false);
  for (const char* sub : {"/chunks", "/segments"}) remove_leftovers(dir.root + sub, false);
  remove_leftovers(dir.root + "/frames", true);
  std::error_code ec;
  fs::remove_all(dir.claims_dir(), ec);
  fs::remove_all(dir.progress_dir(), ec);
  for (const char* sub : {"/chunks", "/segments", "/frames", "/claims", "/progress"}) {
    // a file where a folder belongs (a damaged directory) is moved aside
    if (fs::exists(dir.root + sub, ec) && !fs::is_directory(dir.root + sub, ec))
      say(dir.root + sub + " is not a folder: moved aside to " + move_aside(dir, dir.root + sub));
    make_dir(dir.root + sub);
  }
  nlohmann::json j = settings.to_json();
  j["settings_hash"] = settings.hash();
  j["provenance"] = prepared.provenance.to_json();
  j[kRenderKeyAttribute] = prepared.key;
  write_file_atomic(dir.settings(), j.dump(2) + "\n");
  return prepared;
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

bool chunk_latents_done(const WorkDir& dir, int64_t chunk, const ChunkPlan& plan, const std::string& key,
                        io::Verify level) {
  const auto [first, count] = plan.range(chunk);
  try {
    if (level == io::Verify::Full && !io::is_valid_checkpoint(dir.chunk_latents(chunk), level)) return false;
    const io::CheckpointReader r(dir.chunk_latents(chunk));
    return r.has_attribute(kRenderKeyAttribute) && r.get_string(kRenderKeyAttribute) == key &&
           r.get_int("first_frame") == first && r.get_int("frames") == count && r.size() == count;
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
