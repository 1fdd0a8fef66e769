#include "rank/provenance.h"

#include <fcntl.h>
#include <sys/stat.h>

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <stdexcept>
#include <vector>

#include "base/posix.h"
#include "base/random.h"
#include "io/checkpoint.h"

#ifndef VIA_VERSION
#define VIA_VERSION "unknown"
#endif
#ifndef VIA_COMMIT
#define VIA_COMMIT "unknown"
#endif

namespace fs = std::filesystem;

namespace via::rank {
namespace {

std::string hex(uint64_t v) {
  char buf[17];
  std::snprintf(buf, sizeof(buf), "%016llx", static_cast<unsigned long long>(v));
  return buf;
}

int64_t mtime_ns(const struct stat& st) {
  return static_cast<int64_t>(st.st_mtim.tv_sec) * 1000000000 + st.st_mtim.tv_nsec;
}

// XXH64 of each 16 MiB block, then of the blocks' hashes.
uint64_t file_content(const std::string& path) {
  const Fd fd(VIA_SYS_CHECK(std::runtime_error, ::open(path.c_str(), O_RDONLY | O_CLOEXEC), "cannot read " + path));
  constexpr size_t kBlock = size_t{16} << 20;
  std::vector<char> buf(kBlock);
  std::vector<uint64_t> blocks;
  for (;;) {
    size_t got = 0;
    while (got < kBlock) {
      const ssize_t n = VIA_SYS_CHECK(std::runtime_error, ::read(fd.get(), buf.data() + got, kBlock - got),
                                      "cannot read " + path);
      if (n == 0) break;
      got += static_cast<size_t>(n);
    }
    if (got == 0 && !blocks.empty()) break;
    blocks.push_back(io::xxh64(buf.data(), got));
    if (got < kBlock) break;
  }
  return io::xxh64(blocks.data(), blocks.size() * sizeof(uint64_t));
}

}  // namespace

nlohmann::json Fingerprint::to_json() const {
  return {{"path", path}, {"files", files}, {"bytes", bytes}, {"mtime_ns", mtime_ns}, {"content", content}};
}

Fingerprint Fingerprint::from_json(const nlohmann::json& j) {
  return {j.at("path").get<std::string>(), j.at("files").get<int64_t>(), j.at("bytes").get<int64_t>(),
          j.at("mtime_ns").get<int64_t>(), j.at("content").get<std::string>()};
}

Fingerprint fingerprint(const std::string& path, const Fingerprint* known) {
  Fingerprint fp;
  fp.path = fs::absolute(path).lexically_normal().string();
  std::error_code ec;
  // The regular files, by path relative to `path` ("" for a file itself).
  std::vector<std::pair<std::string, std::string>> files;
  if (fs::is_directory(path, ec)) {
    for (auto it = fs::recursive_directory_iterator(path, ec); !ec && it != fs::end(it); it.increment(ec)) {
      // Hidden entries (a hub's .cache/, an editor's files) are not the model.
      if (it->path().filename().string().rfind('.', 0) == 0) {
        if (it->is_directory(ec)) it.disable_recursion_pending();
        continue;
      }
      if (it->is_regular_file(ec)) files.emplace_back(fs::relative(it->path(), path).string(), it->path().string());
    }
    if (ec) throw std::runtime_error("cannot list " + path + ": " + ec.message());
    std::sort(files.begin(), files.end());
  } else {
    files.emplace_back("", path);
  }
  for (const auto& [rel, file] : files) {
    struct stat st {};
    if (::stat(file.c_str(), &st) != 0) throw std::runtime_error("cannot read " + file + ": " + errno_text());
    ++fp.files;
    fp.bytes += static_cast<int64_t>(st.st_size);
    fp.mtime_ns = std::max(fp.mtime_ns, rank::mtime_ns(st));
  }
  if (known && known->path == fp.path && known->same_stat(fp) && !known->content.empty()) {
    fp.content = known->content;
    return fp;
  }
  std::string listing;
  for (const auto& [rel, file] : files) listing += rel + '\0' + hex(file_content(file)) + '\n';
  fp.content = hex(io::xxh64(listing.data(), listing.size()));
  return fp;
}

nlohmann::json Provenance::to_json() const {
  return {{"input", input.to_json()}, {"model", model.to_json()}, {"edit_path", edit_path}, {"via", via_build}};
}

Provenance Provenance::from_json(const nlohmann::json& j) {
  Provenance p;
  p.input = Fingerprint::from_json(j.at("input"));
  p.model = Fingerprint::from_json(j.at("model"));
  p.edit_path = j.at("edit_path").get<int64_t>();
  p.via_build = j.value("via", "");
  return p;
}

std::string via_build() { return std::string(VIA_VERSION) + " (commit " + VIA_COMMIT + ")"; }

std::string render_key(const std::string& settings_hash, const Provenance& p) {
  const std::string text = settings_hash + "|" + p.input.content + "|" + p.model.content + "|" +
                           std::to_string(p.edit_path);
  return hex(random::fnv1a(text));
}

std::string provenance_change(const Provenance& then, const Provenance& now) {
  const auto describe = [](const char* what, const Fingerprint& a, const Fingerprint& b) {
    return std::string(what) + " " + b.path + " changed since this work directory was made (" +
           (a.bytes != b.bytes ? std::to_string(a.bytes) + " bytes then, " + std::to_string(b.bytes) + " now"
                               : std::string("same size, other content")) +
           ")";
  };
  if (then.input.content != now.input.content) return describe("the input video", then.input, now.input);
  if (then.model.content != now.model.content) return describe("the model", then.model, now.model);
  return "";
}

}  // namespace via::rank
