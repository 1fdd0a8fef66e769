#pragma once
// HDF5 helpers of the checkpoint store (io/checkpoint.h): an owner for every
// hid_t and one check macro that turns a failed call into a CheckpointError
// carrying HDF5's own error stack and the file's name. Internal to io/.
#include <hdf5.h>

#include <algorithm>
#include <string>
#include <utility>
#include <vector>

#include "io/checkpoint.h"

namespace via::io::h5 {

/// Owns one HDF5 id and closes it with `Close` (H5Fclose, H5Dclose, ...).
/// Move-only. The destructor never throws and ignores a failing close, since
/// it also runs on error paths; use close() where the result matters (a
/// file's close flushes it).
template <herr_t (*Close)(hid_t)>
class Id {
 public:
  Id() = default;
  explicit Id(hid_t id) : id_(id) {}
  Id(const Id&) = delete;
  Id& operator=(const Id&) = delete;
  Id(Id&& other) noexcept : id_(std::exchange(other.id_, H5I_INVALID_HID)) {}
  Id& operator=(Id&& other) noexcept {
    if (this != &other) {
      reset();
      id_ = std::exchange(other.id_, H5I_INVALID_HID);
    }
    return *this;
  }
  ~Id() { reset(); }

  hid_t get() const { return id_; }
  explicit operator bool() const { return id_ >= 0; }

  /// Closes now, ignoring failure.
  void reset() noexcept {
    if (id_ >= 0) Close(id_);
    id_ = H5I_INVALID_HID;
  }
  /// Closes now and returns HDF5's result (negative on failure).
  herr_t close() noexcept {
    const herr_t r = id_ >= 0 ? Close(id_) : 0;
    id_ = H5I_INVALID_HID;
    return r;
  }

 private:
  hid_t id_ = H5I_INVALID_HID;
};

using File = Id<H5Fclose>;
using Group = Id<H5Gclose>;
using Dataset = Id<H5Dclose>;
using Dataspace = Id<H5Sclose>;
using Datatype = Id<H5Tclose>;
using Attribute = Id<H5Aclose>;
using PropertyList = Id<H5Pclose>;

/// Turns off HDF5's automatic printing of error stacks for the calling thread
/// (the stack goes into our exceptions instead). HDF5's error settings are
/// per thread in thread-safe builds, so every entry point calls this.
/// First, before the library starts, it also turns off HDF5's teardown at
/// exit: after a write failed on a full disk HDF5 can keep a half-freed file
/// that its teardown crashes on (seen on a full tmpfs: exit 139 after our
/// error). Every file of ours is closed by its owner; nothing needs it.
inline void quiet() {
  static const bool no_teardown = (H5dont_atexit(), true);
  (void)no_teardown;
  thread_local bool done = false;
  if (!done) {
    H5Eset_auto2(H5E_DEFAULT, nullptr, nullptr);
    done = true;
  }
}

/// The calling thread's HDF5 error stack as one line, then clears it. A
/// failure with a system error behind it (a full disk, a lost mount) reads
/// "H5Fcreate(): unable to create file: No space left on device": the API
/// call's entry and the system's messages, since the rest (file descriptors,
/// buffer addresses, offsets) means nothing to a user. Otherwise the API
/// call's entry and the innermost three ("H5Fopen(): unable to open file;
/// ...; H5F__super_read(): truncated file: eof = 100, ...").
inline std::string error_stack() {
  std::vector<std::string> entries;
  auto walk = [](unsigned, const H5E_error2_t* e, void* data) -> herr_t {
    std::string entry = std::string(e->func_name ? e->func_name : "?") + "(): ";
    if (e->desc && *e->desc) {
      entry += e->desc;
    } else {
      char msg[256] = {0};
      H5E_type_t type;
      if (H5Eget_msg(e->min_num, &type, msg, sizeof msg) > 0) entry += msg;
    }
    // Some descriptions hold ctime() text: keep the message on one line.
    for (char& c : entry)
      if (c == '\n' || c == '\r') c = ' ';
    static_cast<std::vector<std::string>*>(data)->push_back(std::move(entry));
    return 0;
  };
  H5Ewalk2(H5E_DEFAULT, H5E_WALK_DOWNWARD, walk, &entries);
  H5Eclear2(H5E_DEFAULT);
  if (entries.empty()) return "no HDF5 error stack";

  // The POSIX driver's entries say "..., errno = 28, error message = 'No space left on device', ...".
  static const std::string kSystem = "error message = '";
  std::vector<std::string> system;
  for (const std::string& entry : entries) {
    const size_t at = entry.find(kSystem);
    if (at == std::string::npos) continue;
    const size_t from = at + kSystem.size(), to = entry.find('\'', from);
    const std::string message = entry.substr(from, to == std::string::npos ? std::string::npos : to - from);
    if (std::find(system.begin(), system.end(), message) == system.end()) system.push_back(message);
  }
  std::string text = entries.front();
  if (!system.empty()) {
    for (size_t i = 0; i < system.size(); ++i) text += (i == 0 ? ": " : "; ") + system[i];
    return text;
  }
  size_t previous = 0;
  for (size_t i = std::max<size_t>(1, entries.size() < 4 ? 1 : entries.size() - 3); i < entries.size(); ++i) {
    text += (i == previous + 1 ? "; " : "; ...; ") + entries[i];
    previous = i;
  }
  return text;
}

/// Throws CheckpointError for `path`: "<context>: <function> failed: <stack>".
[[noreturn]] inline void fail(const char* call, const std::string& path, const std::string& context) {
  std::string function(call);
  function = function.substr(0, function.find('('));
  throw CheckpointError(path, context + ": " + function + " failed: " + error_stack());
}

}  // namespace via::io::h5

/// Checks an HDF5 call's result (hid_t, herr_t or htri_t; negative = failure)
/// and returns it. On failure throws CheckpointError naming `path`, with
/// `context` (evaluated only then) and HDF5's error stack.
#define VIA_H5_CHECK(call, path, context)                             \
  ([&]() {                                                            \
    auto via_h5_result_ = (call);                                     \
    if (via_h5_result_ < 0) ::via::io::h5::fail(#call, (path), (context)); \
    return via_h5_result_;                                            \
  }())
