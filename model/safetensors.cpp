#include "model/safetensors.h"

#include <ATen/ops/empty.h>
#include <ATen/ops/from_blob.h>
#include <c10/core/ScalarType.h>
#include <nlohmann/json.hpp>

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <limits>
#include <utility>

#include "base/posix.h"

static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__,
              "safetensors data is little-endian; this reader maps it without byte swapping");

namespace via::model {
namespace {

// Headers of real checkpoints are a few hundred KB; the reference library
// refuses anything above 100 MB, and so do we (a garbage length is caught here).
constexpr uint64_t kMaxHeaderBytes = 100ull * 1024 * 1024;

// dtype names of the format (safetensors' `Dtype` enum) that map onto torch types.
const std::vector<std::pair<std::string, at::ScalarType>>& dtype_table() {
  static const std::vector<std::pair<std::string, at::ScalarType>> table = {
      {"F64", at::kDouble}, {"F32", at::kFloat}, {"F16", at::kHalf},  {"BF16", at::kBFloat16},
      {"I64", at::kLong},   {"I32", at::kInt},   {"I16", at::kShort}, {"I8", at::kChar},
      {"U8", at::kByte},    {"BOOL", at::kBool},
  };
  return table;
}

at::ScalarType dtype_from_name(const std::string& name, const std::string& where) {
  for (const auto& [n, t] : dtype_table())
    if (n == name) return t;
  throw ModelError(where + ": unsupported dtype '" + name + "'");
}

std::string dtype_name(at::ScalarType type, const std::string& where) {
  for (const auto& [n, t] : dtype_table())
    if (t == type) return n;
  throw ModelError(where + ": dtype " + std::string(c10::toString(type)) + " cannot be stored in safetensors");
}

// Multiplies without overflow; false when the product does not fit.
bool checked_mul(uint64_t a, uint64_t b, uint64_t* out) {
  if (a != 0 && b > std::numeric_limits<uint64_t>::max() / a) return false;
  *out = a * b;
  return true;
}

}  // namespace

// The whole file mapped privately (copy-on-write): tensors may be written to
// in place without touching the file; untouched pages stay in the page cache.
struct SafeTensorsFile::Mapping {
  void* base = nullptr;
  size_t size = 0;
  uint64_t data_begin = 0;  // 8 + header length
  Mapping(void* b, size_t s) : base(b), size(s) {}
  ~Mapping() {
    if (base != nullptr) ::munmap(base, size);
  }
  Mapping(const Mapping&) = delete;
  Mapping& operator=(const Mapping&) = delete;
  const uint8_t* bytes() const { return static_cast<const uint8_t*>(base); }
};

SafeTensorsFile::SafeTensorsFile(const std::string& path) : path_(path) {
  const Fd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd.valid()) throw ModelError(path + ": cannot open safetensors file (" + errno_text() + ")");
  struct stat st {};
  if (::fstat(fd.get(), &st) != 0) throw ModelError(path + ": cannot stat (" + errno_text() + ")");
  if (!S_ISREG(st.st_mode)) throw ModelError(path + ": not a regular file");
  const uint64_t file_size = static_cast<uint64_t>(st.st_size);
  if (file_size < 8)
    throw ModelError(path + ": not a safetensors file (" + std::to_string(file_size) +
                     " bytes, shorter than the 8-byte header length)");

  void* base = ::mmap(nullptr, file_size, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd.get(), 0);
  if (base == MAP_FAILED) throw ModelError(path + ": cannot memory-map (" + errno_text() + ")");
  mapping_ = std::make_shared<Mapping>(base, file_size);

  uint64_t header_len = 0;
  std::memcpy(&header_len, mapping_->bytes(), 8);
  if (header_len > file_size - 8)
    throw ModelError(path + ": not a safetensors file or truncated (header length " + std::to_string(header_len) +
                     " exceeds the file's " + std::to_string(file_size) + " bytes)");
  if (header_len > kMaxHeaderBytes)
    throw ModelError(path + ": header length " + std::to_string(header_len) + " is implausibly large");
  if (header_len < 2) throw ModelError(path + ": not a safetensors file (header too short)");

  const char* header_text = reinterpret_cast<const char*>(mapping_->bytes() + 8);
  nlohmann::json header;
  try {
    header = nlohmann::json::parse(header_text, header_text + header_len);
  } catch (const nlohmann::json::exception& e) {
    throw ModelError(path + ": not a safetensors file (header is not valid JSON: " + e.what() + ")");
  }
  if (!header.is_object()) throw ModelError(path + ": not a safetensors file (header is not a JSON object)");

  const uint64_t data_size = file_size - 8 - header_len;
  mapping_->data_begin = 8 + header_len;
  for (const auto& [name, entry] : header.items()) {
    if (name == "__metadata__") {
      if (!entry.is_object()) throw ModelError(path + ": __metadata__ is not an object");
      for (const auto& [key, value] : entry.items()) {
        if (!value.is_string()) throw ModelError(path + ": __metadata__ value '" + key + "' is not a string");
        metadata_[key] = value.get<std::string>();
      }
      continue;
    }
    const std::string where = path + ": tensor '" + name + "'";
    if (!entry.is_object()) throw ModelError(where + ": header entry is not an object");
    auto dtype_it = entry.find("dtype");
    auto shape_it = entry.find("shape");
    auto offsets_it = entry.find("data_offsets");
    if (dtype_it == entry.end() || !dtype_it->is_string()) throw ModelError(where + ": missing or non-string dtype");
    if (shape_it == entry.end() || !shape_it->is_array()) throw ModelError(where + ": missing or non-array shape");
    if (offsets_it == entry.end() || !offsets_it->is_array() || offsets_it->size() != 2 ||
        !(*offsets_it)[0].is_number_unsigned() || !(*offsets_it)[1].is_number_unsigned())
      throw ModelError(where + ": data_offsets must be two non-negative integers");

    TensorInfo info;
    info.dtype = dtype_from_name(dtype_it->get<std::string>(), where);
    uint64_t numel = 1;
    for (const auto& dim : *shape_it) {
      if (!dim.is_number_unsigned()) throw ModelError(where + ": shape entries must be non-negative integers");
      const uint64_t d = dim.get<uint64_t>();
      if (d > static_cast<uint64_t>(std::numeric_limits<int64_t>::max()) || !checked_mul(numel, d, &numel))
        throw ModelError(where + ": shape is too large");
      info.shape.push_back(static_cast<int64_t>(d));
    }
    info.begin = (*offsets_it)[0].get<uint64_t>();
    info.end = (*offsets_it)[1].get<uint64_t>();
    uint64_t nbytes = 0;
    if (!checked_mul(numel, c10::elementSize(info.dtype), &nbytes)) throw ModelError(where + ": shape is too large");
    if (info.end < info.begin || info.end > data_size)
      throw ModelError(where + ": data offsets [" + std::to_string(info.begin) + ", " + std::to_string(info.end) +
                       ") lie outside the data section of " + std::to_string(data_size) +
                       " bytes (truncated or corrupt file)");
    if (info.end - info.begin != nbytes)
      throw ModelError(where + ": data offsets span " + std::to_string(info.end - info.begin) +
                       " bytes but dtype x shape needs " + std::to_string(nbytes));
    info_.emplace(name, std::move(info));
    names_.push_back(name);
  }

  // The format stores tensors back to back: sorted by offset, each starts
  // where the previous one ended, and together they cover the data section.
  std::stable_sort(names_.begin(), names_.end(), [this](const std::string& a, const std::string& b) {
    const TensorInfo& x = info_.at(a);
    const TensorInfo& y = info_.at(b);
    return x.begin != y.begin ? x.begin < y.begin : x.end < y.end;
  });
  uint64_t cursor = 0;
  for (const std::string& name : names_) {
    const TensorInfo& info = info_.at(name);
    if (info.begin != cursor)
      throw ModelError(path + ": tensor '" + name + "': data at byte " + std::to_string(info.begin) +
                       (info.begin < cursor ? " overlaps the previous tensor" : " leaves a gap after the previous tensor") +
                       " (expected " + std::to_string(cursor) + ")");
    cursor = info.end;
  }
  if (cursor != data_size)
    throw ModelError(path + ": the data section has " + std::to_string(data_size) + " bytes but the tensors cover " +
                     std::to_string(cursor) + " (corrupt file)");
}

const TensorInfo& SafeTensorsFile::info(const std::string& name) const {
  auto it = info_.find(name);
  if (it == info_.end()) throw ModelError(path_ + ": no tensor named '" + name + "'");
  return it->second;
}

at::Tensor SafeTensorsFile::tensor(const std::string& name) const {
  const TensorInfo& ti = info(name);
  uint8_t* data = static_cast<uint8_t*>(mapping_->base) + mapping_->data_begin + ti.begin;
  const auto options = at::TensorOptions().dtype(ti.dtype).device(at::kCPU);
  // Writers normally align the data section to 8 bytes; an old or foreign
  // writer may not, and ATen kernels expect elements at aligned addresses.
  if (reinterpret_cast<uintptr_t>(data) % c10::elementSize(ti.dtype) != 0) {
    at::Tensor aligned = at::empty(ti.shape, options);
    if (ti.end > ti.begin) std::memcpy(aligned.data_ptr(), data, ti.end - ti.begin);
    return aligned;
  }
  std::shared_ptr<Mapping> keep = mapping_;
  return at::from_blob(
      data, ti.shape, [keep](void*) mutable { keep.reset(); }, options);
}

void SafeTensorsFile::release(const std::string& name, uint64_t from, uint64_t to) const {
  const TensorInfo& ti = info(name);
  const uint64_t size = ti.end - ti.begin;
  to = std::min(to, size);
  if (from >= to) return;
  // Only whole pages inside the range: neighbouring tensors keep theirs.
  static const uint64_t page = static_cast<uint64_t>(::sysconf(_SC_PAGESIZE));
  const uint64_t base = reinterpret_cast<uint64_t>(mapping_->base);
  const uint64_t first = base + mapping_->data_begin + ti.begin + from;
  const uint64_t last = base + mapping_->data_begin + ti.begin + to;
  const uint64_t begin = (first + page - 1) / page * page;
  const uint64_t end = last / page * page;
  // Advice only: a refusal leaves the pages resident, which costs memory, not correctness.
  if (begin < end) ::madvise(reinterpret_cast<void*>(begin), end - begin, MADV_DONTNEED);
}

namespace {

// Owns a FILE* and removes the temporary file unless released.
class TempFile {
 public:
  TempFile(std::string path, std::string target) : path_(std::move(path)), target_(std::move(target)) {
    file_ = std::fopen(path_.c_str(), "wb");
    if (file_ == nullptr) throw ModelError(target_ + ": cannot create temporary file " + path_ + " (" + errno_text() + ")");
  }
  ~TempFile() {
    if (file_ != nullptr) std::fclose(file_);
    if (!committed_) std::remove(path_.c_str());
  }
  TempFile(const TempFile&) = delete;
  TempFile& operator=(const TempFile&) = delete;

  void write(const void* data, size_t n) {
    if (n != 0 && std::fwrite(data, 1, n, file_) != n)
      throw ModelError(target_ + ": write failed (" + errno_text() + ")");
  }
  void commit() {
    if (std::fflush(file_) != 0 || ::fsync(::fileno(file_)) != 0)
      throw ModelError(target_ + ": flush failed (" + errno_text() + ")");
    const int rc = std::fclose(file_);
    file_ = nullptr;
    if (rc != 0) throw ModelError(target_ + ": close failed (" + errno_text() + ")");
    if (std::rename(path_.c_str(), target_.c_str()) != 0)
      throw ModelError(target_ + ": cannot rename " + path_ + " into place (" + errno_text() + ")");
    committed_ = true;
  }

 private:
  std::string path_;
  std::string target_;
  FILE* file_ = nullptr;
  bool committed_ = false;
};

}  // namespace

void save_safetensors(const std::string& path, const std::map<std::string, at::Tensor>& tensors,
                      const std::map<std::string, std::string>& metadata) {
  nlohmann::json header = nlohmann::json::object();
  if (!metadata.empty()) header["__metadata__"] = metadata;
  std::vector<at::Tensor> contiguous;
  contiguous.reserve(tensors.size());
  uint64_t offset = 0;
  for (const auto& [name, t] : tensors) {
    const std::string where = path + ": tensor '" + name + "'";
    if (name == "__metadata__") throw ModelError(where + ": the name is reserved by the format");
    if (!t.defined()) throw ModelError(where + ": undefined tensor");
    at::Tensor c = t.detach().to(at::kCPU).contiguous();
    const uint64_t nbytes = c.nbytes();
    header[name] = {{"dtype", dtype_name(c.scalar_type(), where)},
                    {"shape", c.sizes().vec()},
                    {"data_offsets", {offset, offset + nbytes}}};
    offset += nbytes;
    contiguous.push_back(std::move(c));
  }
  std::string text = header.dump();
  // Pad with spaces so the data section starts 8-byte aligned (as the reference writer does).
  text.append((8 - (8 + text.size()) % 8) % 8, ' ');
  const uint64_t header_len = text.size();

  TempFile out(path + ".tmp." + std::to_string(::getpid()), path);
  out.write(&header_len, 8);
  out.write(text.data(), text.size());
  for (const at::Tensor& c : contiguous) out.write(c.data_ptr(), c.nbytes());
  out.commit();
}

}  // namespace via::model
