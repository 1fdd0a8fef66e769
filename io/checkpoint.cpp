#include "io/checkpoint.h"

#include <ATen/ops/empty.h>
#include <c10/core/ScalarType.h>

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <unordered_set>
#include <utility>

#include "base/posix.h"
#include "io/hdf5.h"

static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__,
              "the checkpoint store writes host memory as little-endian data");

namespace via::io {
namespace {

constexpr const char* kFormat = "via.checkpoint";
constexpr int64_t kFormatVersion = 1;
constexpr const char* kTensorsGroup = "tensors";
constexpr const char* kAttributesGroup = "attributes";

// ---------------------------------------------------------------- dtypes

struct DtypeEntry {
  at::ScalarType type;
  const char* name;
};

// The dtypes the store holds and their names in the `dtype` attribute.
constexpr DtypeEntry kDtypes[] = {
    {at::kFloat, "float32"}, {at::kDouble, "float64"}, {at::kHalf, "float16"}, {at::kBFloat16, "bfloat16"},
    {at::kChar, "int8"},     {at::kShort, "int16"},    {at::kInt, "int32"},    {at::kLong, "int64"},
    {at::kByte, "uint8"},    {at::kBool, "bool"},
};

const char* dtype_name(at::ScalarType t) {
  for (const auto& d : kDtypes)
    if (d.type == t) return d.name;
  return nullptr;
}

bool dtype_from_name(const std::string& name, at::ScalarType* out) {
  for (const auto& d : kDtypes)
    if (name == d.name) {
      *out = d.type;
      return true;
    }
  return false;
}

// The HDF5 type a dtype is stored as (also the memory type: no conversion).
hid_t make_storage_type(at::ScalarType t) {
  switch (t) {
    case at::kFloat: return H5Tcopy(H5T_IEEE_F32LE);
    case at::kDouble: return H5Tcopy(H5T_IEEE_F64LE);
    case at::kHalf: {
      // IEEE binary16: sign bit 15, exponent bits 10-14 (bias 15), mantissa
      // bits 0-9; the same definition h5py uses, so h5py reads it as float16.
      hid_t h = H5Tcopy(H5T_IEEE_F32LE);
      if (h < 0) return h;
      if (H5Tset_fields(h, 15, 10, 5, 0, 10) < 0 || H5Tset_size(h, 2) < 0 || H5Tset_ebias(h, 15) < 0) {
        H5Tclose(h);
        return H5I_INVALID_HID;
      }
      return h;
    }
    case at::kBFloat16: return H5Tcopy(H5T_STD_U16LE);  // raw bits; HDF5 has no bfloat16
    case at::kChar: return H5Tcopy(H5T_STD_I8LE);
    case at::kShort: return H5Tcopy(H5T_STD_I16LE);
    case at::kInt: return H5Tcopy(H5T_STD_I32LE);
    case at::kLong: return H5Tcopy(H5T_STD_I64LE);
    case at::kByte:
    case at::kBool: return H5Tcopy(H5T_STD_U8LE);
    default: return H5I_INVALID_HID;
  }
}

std::string quoted(const std::string& s) { return "'" + s + "'"; }

std::string shape_text(const std::vector<int64_t>& shape) {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
  return s + "]";
}

// ------------------------------------------------------------ attributes

h5::Datatype string_type(size_t size, const std::string& path) {
  h5::Datatype t(VIA_H5_CHECK(H5Tcopy(H5T_C_S1), path, "making a string type"));
  VIA_H5_CHECK(H5Tset_size(t.get(), std::max<size_t>(size, 1)), path, "making a string type");
  VIA_H5_CHECK(H5Tset_strpad(t.get(), H5T_STR_NULLPAD), path, "making a string type");
  VIA_H5_CHECK(H5Tset_cset(t.get(), H5T_CSET_UTF8), path, "making a string type");
  return t;
}

// Writes (or replaces) the scalar attribute `key` of object `obj`.
void write_attribute(hid_t obj, const std::string& key, const Attribute& value, const std::string& path,
                     const std::string& context) {
  const std::string where = context + ", attribute " + quoted(key);
  if (VIA_H5_CHECK(H5Aexists(obj, key.c_str()), path, where) > 0)
    VIA_H5_CHECK(H5Adelete(obj, key.c_str()), path, where);
  h5::Dataspace space(VIA_H5_CHECK(H5Screate(H5S_SCALAR), path, where));
  if (const auto* s = std::get_if<std::string>(&value)) {
    h5::Datatype type = string_type(s->size(), path);
    h5::Attribute a(VIA_H5_CHECK(H5Acreate2(obj, key.c_str(), type.get(), space.get(), H5P_DEFAULT, H5P_DEFAULT),
                                 path, where));
    std::string buffer = s->empty() ? std::string(1, '\0') : *s;
    VIA_H5_CHECK(H5Awrite(a.get(), type.get(), buffer.data()), path, where);
  } else if (const auto* i = std::get_if<int64_t>(&value)) {
    h5::Attribute a(VIA_H5_CHECK(H5Acreate2(obj, key.c_str(), H5T_STD_I64LE, space.get(), H5P_DEFAULT, H5P_DEFAULT),
                                 path, where));
    VIA_H5_CHECK(H5Awrite(a.get(), H5T_NATIVE_INT64, i), path, where);
  } else {
    const double d = std::get<double>(value);
    h5::Attribute a(VIA_H5_CHECK(H5Acreate2(obj, key.c_str(), H5T_IEEE_F64LE, space.get(), H5P_DEFAULT, H5P_DEFAULT),
                                 path, where));
    VIA_H5_CHECK(H5Awrite(a.get(), H5T_NATIVE_DOUBLE, &d), path, where);
  }
}

bool attribute_exists(hid_t obj, const std::string& key, const std::string& path, const std::string& context) {
  return VIA_H5_CHECK(H5Aexists(obj, key.c_str()), path, context + ", attribute " + quoted(key)) > 0;
}

// Reads the scalar attribute `key` of `obj` as a string, integer or double.
Attribute read_attribute(hid_t obj, const std::string& key, const std::string& path, const std::string& context) {
  const std::string where = context + ", attribute " + quoted(key);
  h5::Attribute a(VIA_H5_CHECK(H5Aopen(obj, key.c_str(), H5P_DEFAULT), path, where));
  h5::Dataspace space(VIA_H5_CHECK(H5Aget_space(a.get()), path, where));
  if (VIA_H5_CHECK(H5Sget_simple_extent_npoints(space.get()), path, where) != 1)
    throw CheckpointError(path, where + " is not a single value");
  h5::Datatype type(VIA_H5_CHECK(H5Aget_type(a.get()), path, where));
  switch (H5Tget_class(type.get())) {
    case H5T_STRING: {
      if (VIA_H5_CHECK(H5Tis_variable_str(type.get()), path, where) > 0) {
        h5::Datatype mem(VIA_H5_CHECK(H5Tcopy(H5T_C_S1), path, where));
        VIA_H5_CHECK(H5Tset_size(mem.get(), H5T_VARIABLE), path, where);
        char* text = nullptr;
        VIA_H5_CHECK(H5Aread(a.get(), mem.get(), &text), path, where);
        std::string s = text ? text : "";
        H5free_memory(text);
        return s;
      }
      const size_t size = H5Tget_size(type.get());
      std::string s(size, '\0');
      VIA_H5_CHECK(H5Aread(a.get(), type.get(), s.data()), path, where);
      // Null-padded (ours) or null-terminated: the text ends at the first NUL.
      s.resize(std::strlen(s.c_str()));
      return s;
    }
    case H5T_INTEGER: {
      int64_t v = 0;
      VIA_H5_CHECK(H5Aread(a.get(), H5T_NATIVE_INT64, &v), path, where);
      return v;
    }
    case H5T_FLOAT: {
      double v = 0;
      VIA_H5_CHECK(H5Aread(a.get(), H5T_NATIVE_DOUBLE, &v), path, where);
      return v;
    }
    default: throw CheckpointError(path, where + " is not a string, integer or double");
  }
}

const char* attribute_type_name(const Attribute& a) {
  return std::holds_alternative<std::string>(a) ? "a string" : std::holds_alternative<int64_t>(a) ? "an integer" : "a double";
}

// ------------------------------------------------------------ file helpers

// fsync()s a file or directory so a crash after rename() cannot leave a
// complete-looking name over missing data.
void sync_path(const std::string& p, bool directory, const std::string& path) {
  const Fd fd(::open(p.c_str(), O_RDONLY | O_CLOEXEC | (directory ? O_DIRECTORY : 0)));
  if (!fd.valid()) throw CheckpointError(path, "opening " + p + " to sync it: " + errno_text());
  // Some file systems cannot sync a directory (EINVAL); the data itself is synced.
  if (::fsync(fd.get()) != 0 && !(directory && errno == EINVAL))
    throw CheckpointError(path, "syncing " + p + ": " + errno_text());
}

std::string parent_directory(const std::string& p) {
  const auto slash = p.find_last_of('/');
  if (slash == std::string::npos) return ".";
  return slash == 0 ? "/" : p.substr(0, slash);
}

// File-access properties for reading and writing: no file locking (our files
// are written once under a private name and read only when complete; locks
// fail on some cluster file systems).
h5::PropertyList file_access(const std::string& path, bool for_writing) {
  h5::PropertyList fapl(VIA_H5_CHECK(H5Pcreate(H5P_FILE_ACCESS), path, "making file-access properties"));
#if (H5_VERS_MAJOR == 1 && H5_VERS_MINOR == 10 && H5_VERS_RELEASE >= 7) || H5_VERSION_GE(1, 12, 1)
  VIA_H5_CHECK(H5Pset_file_locking(fapl.get(), false, true), path, "making file-access properties");
#endif
  if (for_writing) {
    // 1.8 object headers and groups: checksummed metadata, link creation
    // order, dense storage for thousands of links and for large attributes.
    VIA_H5_CHECK(H5Pset_libver_bounds(fapl.get(), H5F_LIBVER_V18, H5F_LIBVER_V110), path,
                 "making file-access properties");
  }
  return fapl;
}

int64_t required_int(hid_t obj, const char* key, const std::string& path) {
  if (!attribute_exists(obj, key, path, "reading the format"))
    throw CheckpointError(path, std::string("damaged via checkpoint: no ") + key + " attribute");
  const Attribute a = read_attribute(obj, key, path, "reading the format");
  if (!std::holds_alternative<int64_t>(a))
    throw CheckpointError(path, std::string("damaged via checkpoint: ") + key + " is not an integer");
  return std::get<int64_t>(a);
}

}  // namespace

// ================================================================ xxh64

namespace {
constexpr uint64_t kP1 = 0x9E3779B185EBCA87ULL, kP2 = 0xC2B2AE3D27D4EB4FULL, kP3 = 0x165667B19E3779F9ULL,
                   kP4 = 0x85EBCA77C2B2AE63ULL, kP5 = 0x27D4EB2F165667C5ULL;
inline uint64_t rotl(uint64_t x, int r) { return (x << r) | (x >> (64 - r)); }
inline uint64_t load64(const unsigned char* p) {
  uint64_t v;
  std::memcpy(&v, p, 8);
  return v;
}
inline uint32_t load32(const unsigned char* p) {
  uint32_t v;
  std::memcpy(&v, p, 4);
  return v;
}
inline uint64_t round64(uint64_t acc, uint64_t lane) { return rotl(acc + lane * kP2, 31) * kP1; }
inline uint64_t merge64(uint64_t acc, uint64_t v) { return (acc ^ round64(0, v)) * kP1 + kP4; }
}  // namespace

uint64_t xxh64(const void* data, size_t size, uint64_t seed) {
  const auto* p = static_cast<const unsigned char*>(data);
  const unsigned char* const end = p + size;
  uint64_t h;
  if (size >= 32) {
    uint64_t v1 = seed + kP1 + kP2, v2 = seed + kP2, v3 = seed, v4 = seed - kP1;
    for (const unsigned char* limit = end - 32; p <= limit; p += 32) {
      v1 = round64(v1, load64(p));
      v2 = round64(v2, load64(p + 8));
      v3 = round64(v3, load64(p + 16));
      v4 = round64(v4, load64(p + 24));
    }
    h = rotl(v1, 1) + rotl(v2, 7) + rotl(v3, 12) + rotl(v4, 18);
    h = merge64(merge64(merge64(merge64(h, v1), v2), v3), v4);
  } else {
    h = seed + kP5;
  }
  h += size;
  for (; p + 8 <= end; p += 8) h = rotl(h ^ round64(0, load64(p)), 27) * kP1 + kP4;
  if (p + 4 <= end) {
    h = rotl(h ^ (uint64_t{load32(p)} * kP1), 23) * kP2 + kP3;
    p += 4;
  }
  for (; p < end; ++p) h = rotl(h ^ (uint64_t{*p} * kP5), 11) * kP1;
  h ^= h >> 33;
  h *= kP2;
  h ^= h >> 29;
  h *= kP3;
  h ^= h >> 32;
  return h;
}

// ================================================================ names

std::string encode_tensor_name(const std::string& name) {
  static const char* hex = "0123456789ABCDEF";
  std::string out;
  out.reserve(name.size());
  for (size_t i = 0; i < name.size(); ++i) {
    const auto c = static_cast<unsigned char>(name[i]);
    // '/' separates HDF5 path parts, "." names the group itself, and control
    // characters (NUL above all) do not belong in link names.
    if (c == '%' || c == '/' || c < 0x20 || c == 0x7F || (i == 0 && c == '.')) {
      out += '%';
      out += hex[c >> 4];
      out += hex[c & 15];
    } else {
      out += static_cast<char>(c);
    }
  }
  return out;
}

std::string decode_tensor_name(const std::string& link) {
  auto nibble = [&](char c) -> int {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    throw std::invalid_argument("malformed escape in HDF5 link name '" + link + "'");
  };
  std::string out;
  out.reserve(link.size());
  for (size_t i = 0; i < link.size(); ++i) {
    if (link[i] != '%') {
      out += link[i];
      continue;
    }
    if (i + 2 >= link.size())
      throw std::invalid_argument("malformed escape in HDF5 link name '" + link + "'");
    out += static_cast<char>(nibble(link[i + 1]) * 16 + nibble(link[i + 2]));
    i += 2;
  }
  return out;
}

// ================================================================ writer

struct CheckpointWriter::State {
  std::string path, tmp;
  h5::File file;
  h5::Group tensors, attributes;
  h5::PropertyList dataset_create;
  std::map<at::ScalarType, h5::Datatype> types;  // storage types made so far
  std::unordered_set<std::string> names;
  int64_t count = 0;
  bool committed = false;
  bool abandoned = false;

  // Closes every id (the file last), quietly.
  void close_all() noexcept {
    types.clear();
    dataset_create.reset();
    attributes.reset();
    tensors.reset();
    file.reset();
  }
  // Gives the file up: closes it and removes the temporary file. HDF5 flushes
  // its caches when closing, and a failed H5Fclose (a full disk) leaves the
  // library with a half-freed file that crashes it at exit. The contents are
  // worthless now, so the file's descriptor is first pointed at an anonymous
  // in-memory file (sparse: only the few metadata blocks HDF5 still writes
  // take memory), where that flush cannot fail.
  void abandon() noexcept {
    void* handle = nullptr;
    if (file && H5Fget_vfd_handle(file.get(), H5P_DEFAULT, &handle) >= 0 && handle) {
      const int fd = *static_cast<int*>(handle);
      const Fd sink(::memfd_create("via-abandoned-checkpoint", MFD_CLOEXEC));
      if (sink.valid()) ::dup2(sink.get(), fd);
    }
    close_all();
    if (!committed) ::unlink(tmp.c_str());
    abandoned = true;
  }
  void require_open(const std::string& what) const {
    if (committed) throw CheckpointError(path, "cannot " + what + ": the file was already committed");
    if (abandoned) throw CheckpointError(path, "cannot " + what + ": an earlier failure abandoned this file");
  }
  hid_t storage_type(at::ScalarType t) {
    auto it = types.find(t);
    if (it == types.end())
      it = types.emplace(t, h5::Datatype(VIA_H5_CHECK(make_storage_type(t), path, "making the storage type"))).first;
    return it->second.get();
  }
};

CheckpointWriter::CheckpointWriter(const std::string& path) : s_(std::make_unique<State>()) {
  h5::quiet();
  static std::atomic<uint64_t> serial{0};
  s_->path = path;
  s_->tmp = path + ".tmp." + std::to_string(::getpid()) + "." + std::to_string(serial++);
  if (path.empty()) throw CheckpointError(path, "empty file name");
  try {
    const std::string where = "creating " + s_->tmp;
    h5::PropertyList fapl = file_access(path, true);
    s_->file = h5::File(VIA_H5_CHECK(H5Fcreate(s_->tmp.c_str(), H5F_ACC_TRUNC, H5P_DEFAULT, fapl.get()), path, where));
    h5::PropertyList group_create(VIA_H5_CHECK(H5Pcreate(H5P_GROUP_CREATE), path, where));
    VIA_H5_CHECK(H5Pset_link_creation_order(group_create.get(), H5P_CRT_ORDER_TRACKED | H5P_CRT_ORDER_INDEXED),
                 path, where);
    s_->tensors = h5::Group(VIA_H5_CHECK(
        H5Gcreate2(s_->file.get(), kTensorsGroup, H5P_DEFAULT, group_create.get(), H5P_DEFAULT), path, where));
    s_->attributes = h5::Group(
        VIA_H5_CHECK(H5Gcreate2(s_->file.get(), kAttributesGroup, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT), path, where));
    s_->dataset_create = h5::PropertyList(VIA_H5_CHECK(H5Pcreate(H5P_DATASET_CREATE), path, where));
    // Every byte is written right after creation: skip writing fill values first.
    VIA_H5_CHECK(H5Pset_fill_time(s_->dataset_create.get(), H5D_FILL_TIME_NEVER), path, where);
    write_attribute(s_->file.get(), "via_format", std::string(kFormat), path, where);
    write_attribute(s_->file.get(), "via_format_version", kFormatVersion, path, where);
    write_attribute(s_->file.get(), "complete", int64_t{0}, path, where);
  } catch (...) {
    s_->abandon();
    throw;
  }
}

CheckpointWriter::~CheckpointWriter() {
  h5::quiet();
  if (!s_->committed && !s_->abandoned) s_->abandon();
}

const std::string& CheckpointWriter::path() const { return s_->path; }
const std::string& CheckpointWriter::temporary_path() const { return s_->tmp; }
int64_t CheckpointWriter::size() const { return s_->count; }

void CheckpointWriter::write(const std::string& name, const at::Tensor& tensor) {
  h5::quiet();
  s_->require_open("write tensor " + quoted(name));
  const std::string& path = s_->path;
  const std::string where = "writing tensor " + quoted(name);
  // Input checks first: they leave the file usable.
  if (name.empty()) throw CheckpointError(path, "a tensor name must not be empty");
  if (!tensor.defined()) throw CheckpointError(path, where + ": undefined tensor");
  const char* dtype = dtype_name(tensor.scalar_type());
  if (!dtype)
    throw CheckpointError(path, where + ": dtype " + std::string(c10::toString(tensor.scalar_type())) +
                                    " is not supported (float32/64, float16, bfloat16, int8-64, uint8, bool are)");
  if (s_->names.count(name)) throw CheckpointError(path, where + ": a tensor of that name was already written");

  const at::Tensor host = (tensor.is_cpu() ? tensor : tensor.cpu()).contiguous();
  const auto nbytes = static_cast<size_t>(host.nbytes());
  try {
    const std::string link = encode_tensor_name(name);
    h5::Dataspace space;
    if (host.dim() == 0) {
      space = h5::Dataspace(VIA_H5_CHECK(H5Screate(H5S_SCALAR), path, where));
    } else {
      std::vector<hsize_t> dims(host.sizes().begin(), host.sizes().end());
      space = h5::Dataspace(
          VIA_H5_CHECK(H5Screate_simple(static_cast<int>(dims.size()), dims.data(), nullptr), path, where));
    }
    const hid_t type = s_->storage_type(tensor.scalar_type());
    h5::Dataset ds(VIA_H5_CHECK(H5Dcreate2(s_->tensors.get(), link.c_str(), type, space.get(), H5P_DEFAULT,
                                           s_->dataset_create.get(), H5P_DEFAULT),
                                path, where));
    if (nbytes > 0) VIA_H5_CHECK(H5Dwrite(ds.get(), type, H5S_ALL, H5S_ALL, H5P_DEFAULT, host.data_ptr()), path, where);
    write_attribute(ds.get(), "dtype", std::string(dtype), path, where);
    h5::Dataspace scalar(VIA_H5_CHECK(H5Screate(H5S_SCALAR), path, where));
    h5::Attribute sum(VIA_H5_CHECK(
        H5Acreate2(ds.get(), "xxh64", H5T_STD_U64LE, scalar.get(), H5P_DEFAULT, H5P_DEFAULT), path, where));
    const uint64_t checksum = xxh64(host.data_ptr(), nbytes);
    VIA_H5_CHECK(H5Awrite(sum.get(), H5T_NATIVE_UINT64, &checksum), path, where);
  } catch (const CheckpointError& e) {
    s_->abandon();
    throw CheckpointError(path, e.detail() + " (file abandoned; nothing was written under this name)");
  } catch (...) {
    s_->abandon();
    throw;
  }
  s_->names.insert(name);
  ++s_->count;
}

void CheckpointWriter::set_attribute(const std::string& key, const Attribute& value) {
  h5::quiet();
  s_->require_open("set attribute " + quoted(key));
  if (key.empty()) throw CheckpointError(s_->path, "an attribute key must not be empty");
  if (const auto* s = std::get_if<std::string>(&value); s && s->find('\0') != std::string::npos)
    throw CheckpointError(s_->path, "attribute " + quoted(key) + ": strings must not contain NUL bytes");
  try {
    write_attribute(s_->attributes.get(), encode_tensor_name(key), value, s_->path, "setting attributes");
  } catch (const CheckpointError& e) {
    s_->abandon();
    throw CheckpointError(s_->path, e.detail() + " (file abandoned; nothing was written under this name)");
  } catch (...) {
    s_->abandon();
    throw;
  }
}

void CheckpointWriter::set_string(const std::string& key, const std::string& value) { set_attribute(key, value); }
void CheckpointWriter::set_int(const std::string& key, int64_t value) { set_attribute(key, value); }
void CheckpointWriter::set_double(const std::string& key, double value) { set_attribute(key, value); }

void CheckpointWriter::commit() {
  h5::quiet();
  s_->require_open("commit");
  const std::string& path = s_->path;
  const std::string where = "completing " + s_->tmp;
  try {
    write_attribute(s_->file.get(), "tensor_count", s_->count, path, where);
    write_attribute(s_->file.get(), "complete", int64_t{1}, path, where);  // last: marks the file complete
    VIA_H5_CHECK(H5Fflush(s_->file.get(), H5F_SCOPE_LOCAL), path, where);
    s_->types.clear();
    s_->dataset_create.reset();
    s_->attributes.reset();
    s_->tensors.reset();
    if (s_->file.close() < 0) h5::fail("H5Fclose", path, where);
    sync_path(s_->tmp, false, path);
    // Read it back before it gets its name: on a file system that fills up
    // (seen on tmpfs) HDF5 can report success for a file whose raw data never
    // reached the disk, which reads back as zeros.
    try {
      CheckpointReader(s_->tmp).verify();
    } catch (const CheckpointError& e) {
      // Almost always a full file system: say so in the words every tool uses.
      struct statvfs fs {};
      const bool full = ::statvfs(parent_directory(path).c_str(), &fs) == 0 &&
                        static_cast<uint64_t>(fs.f_bavail) * fs.f_frsize < (uint64_t{1} << 20);
      throw CheckpointError(path, where + ": " + (full ? std::strerror(ENOSPC) + std::string(": ") : std::string()) +
                                      "it does not read back (" + e.detail() + ")" +
                                      (full ? "" : "; is the disk full?"));
    }
    if (::rename(s_->tmp.c_str(), path.c_str()) != 0)
      throw CheckpointError(path, "renaming " + s_->tmp + " to the final name: " + std::strerror(errno));
    s_->committed = true;
    sync_path(parent_directory(path), true, path);
  } catch (const CheckpointError& e) {
    if (s_->committed) throw;  // renamed: the file is complete, only the directory sync failed
    s_->abandon();
    throw CheckpointError(path, e.detail() + " (nothing was written under this name)");
  } catch (...) {
    if (!s_->committed) s_->abandon();
    throw;
  }
}

// ================================================================ reader

struct CheckpointReader::State {
  std::string path;
  h5::File file;
  h5::Group tensors, attributes;
  int64_t count = 0;
  std::map<at::ScalarType, h5::Datatype> types;

  hid_t storage_type(at::ScalarType t) {
    auto it = types.find(t);
    if (it == types.end())
      it = types.emplace(t, h5::Datatype(VIA_H5_CHECK(make_storage_type(t), path, "making the storage type"))).first;
    return it->second.get();
  }

  h5::Dataset open_dataset(const std::string& name) const {
    const std::string link = encode_tensor_name(name);
    const std::string where = "tensor " + quoted(name);
    if (VIA_H5_CHECK(H5Lexists(tensors.get(), link.c_str(), H5P_DEFAULT), path, where) <= 0)
      throw CheckpointError(path, "no tensor " + quoted(name));
    return h5::Dataset(VIA_H5_CHECK(H5Dopen2(tensors.get(), link.c_str(), H5P_DEFAULT), path, where));
  }

  // dtype and shape of an open dataset, checked against its storage type.
  TensorMeta meta_of(hid_t ds, const std::string& name) {
    const std::string where = "tensor " + quoted(name);
    if (!attribute_exists(ds, "dtype", path, where))
      throw CheckpointError(path, where + ": no dtype attribute (not written by via)");
    const Attribute dtype_attr = read_attribute(ds, "dtype", path, where);
    TensorMeta meta;
    if (!std::holds_alternative<std::string>(dtype_attr) ||
        !dtype_from_name(std::get<std::string>(dtype_attr), &meta.dtype))
      throw CheckpointError(path, where + ": unknown dtype");
    h5::Datatype stored(VIA_H5_CHECK(H5Dget_type(ds), path, where));
    if (VIA_H5_CHECK(H5Tequal(stored.get(), storage_type(meta.dtype)), path, where) <= 0)
      throw CheckpointError(path, where + ": stored type does not match dtype " + dtype_name(meta.dtype));
    h5::Dataspace space(VIA_H5_CHECK(H5Dget_space(ds), path, where));
    const H5S_class_t cls = H5Sget_simple_extent_type(space.get());
    if (cls == H5S_SIMPLE) {
      const int rank = VIA_H5_CHECK(H5Sget_simple_extent_ndims(space.get()), path, where);
      std::vector<hsize_t> dims(rank);
      VIA_H5_CHECK(H5Sget_simple_extent_dims(space.get(), dims.data(), nullptr), path, where);
      meta.shape.assign(dims.begin(), dims.end());
    } else if (cls != H5S_SCALAR) {
      throw CheckpointError(path, where + ": dataset has no data space");
    }
    int64_t numel = 1;
    for (int64_t d : meta.shape) numel *= d;
    meta.nbytes = numel * static_cast<int64_t>(c10::elementSize(meta.dtype));
    return meta;
  }
};

CheckpointReader::CheckpointReader(const std::string& path) : s_(std::make_unique<State>()) {
  h5::quiet();
  s_->path = path;
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) throw CheckpointError(path, std::strerror(errno));
  if (!S_ISREG(st.st_mode)) throw CheckpointError(path, "not a regular file");
  if (st.st_size == 0) throw CheckpointError(path, "empty file (0 bytes): not a via checkpoint");
  {
    // Our files have the HDF5 superblock at offset 0; anything else is foreign.
    static const char kSignature[8] = {'\x89', 'H', 'D', 'F', '\r', '\n', '\x1a', '\n'};
    char head[8] = {0};
    std::ifstream in(path, std::ios::binary);
    if (!in) throw CheckpointError(path, std::string("cannot open: ") + std::strerror(errno));
    in.read(head, 8);
    if (in.gcount() != 8 || std::memcmp(head, kSignature, 8) != 0)
      throw CheckpointError(path, "not a via checkpoint: not an HDF5 file");
  }
  h5::PropertyList fapl = file_access(path, false);
  const hid_t f = H5Fopen(path.c_str(), H5F_ACC_RDONLY, fapl.get());
  if (f < 0)
    throw CheckpointError(path, "damaged or truncated HDF5 file, not a usable checkpoint: " + h5::error_stack());
  s_->file = h5::File(f);
  const hid_t root = s_->file.get();
  const std::string where = "reading the format";
  if (!attribute_exists(root, "via_format", path, where))
    throw CheckpointError(path, "not a via checkpoint: an HDF5 file without a via_format attribute");
  const Attribute format = read_attribute(root, "via_format", path, where);
  if (!std::holds_alternative<std::string>(format) || std::get<std::string>(format) != kFormat)
    throw CheckpointError(path, "not a via checkpoint: via_format is not '" + std::string(kFormat) + "'");
  const int64_t version = required_int(root, "via_format_version", path);
  if (version != kFormatVersion)
    throw CheckpointError(path, "checkpoint format version " + std::to_string(version) + " (this via reads " +
                                    std::to_string(kFormatVersion) + ")");
  if (required_int(root, "complete", path) != 1)
    throw CheckpointError(path, "incomplete checkpoint: its writer did not finish");
  s_->count = required_int(root, "tensor_count", path);
  for (const char* group : {kTensorsGroup, kAttributesGroup})
    if (VIA_H5_CHECK(H5Lexists(root, group, H5P_DEFAULT), path, where) <= 0)
      throw CheckpointError(path, std::string("damaged via checkpoint: no /") + group + " group");
  s_->tensors = h5::Group(VIA_H5_CHECK(H5Gopen2(root, kTensorsGroup, H5P_DEFAULT), path, where));
  s_->attributes = h5::Group(VIA_H5_CHECK(H5Gopen2(root, kAttributesGroup, H5P_DEFAULT), path, where));
  H5G_info_t info{};
  VIA_H5_CHECK(H5Gget_info(s_->tensors.get(), &info), path, where);
  if (static_cast<int64_t>(info.nlinks) != s_->count)
    throw CheckpointError(path, "damaged via checkpoint: holds " + std::to_string(info.nlinks) +
                                    " tensors, its header says " + std::to_string(s_->count));
}

CheckpointReader::~CheckpointReader() {
  if (!s_) return;
  h5::quiet();
  s_->types.clear();
  s_->attributes.reset();
  s_->tensors.reset();
  s_->file.reset();
}
CheckpointReader::CheckpointReader(CheckpointReader&&) noexcept = default;
CheckpointReader& CheckpointReader::operator=(CheckpointReader&&) noexcept = default;

const std::string& CheckpointReader::path() const { return s_->path; }
int64_t CheckpointReader::size() const { return s_->count; }

std::vector<std::string> CheckpointReader::names() const {
  h5::quiet();
  std::vector<std::string> out;
  out.reserve(static_cast<size_t>(s_->count));
  std::string buffer(256, '\0');
  for (int64_t i = 0; i < s_->count; ++i) {
    auto get = [&] {
      return VIA_H5_CHECK(H5Lget_name_by_idx(s_->tensors.get(), ".", H5_INDEX_CRT_ORDER, H5_ITER_INC,
                                             static_cast<hsize_t>(i), buffer.data(), buffer.size(), H5P_DEFAULT),
                          s_->path, "listing tensors");
    };
    ssize_t len = get();
    if (static_cast<size_t>(len) >= buffer.size()) {
      buffer.resize(static_cast<size_t>(len) + 1);
      len = get();
    }
    try {
      out.push_back(decode_tensor_name(std::string(buffer.data(), static_cast<size_t>(len))));
    } catch (const std::invalid_argument& e) {
      throw CheckpointError(s_->path, std::string("damaged via checkpoint: ") + e.what());
    }
  }
  return out;
}

bool CheckpointReader::contains(const std::string& name) const {
  h5::quiet();
  if (name.empty()) return false;
  return VIA_H5_CHECK(H5Lexists(s_->tensors.get(), encode_tensor_name(name).c_str(), H5P_DEFAULT), s_->path,
                      "tensor " + quoted(name)) > 0;
}

TensorMeta CheckpointReader::meta(const std::string& name) const {
  h5::quiet();
  h5::Dataset ds = s_->open_dataset(name);
  return s_->meta_of(ds.get(), name);
}

at::Tensor CheckpointReader::read(const std::string& name) const {
  h5::quiet();
  const std::string& path = s_->path;
  const std::string where = "tensor " + quoted(name);
  h5::Dataset ds = s_->open_dataset(name);
  const TensorMeta meta = s_->meta_of(ds.get(), name);
  if (!attribute_exists(ds.get(), "xxh64", path, where))
    throw CheckpointError(path, where + ": no checksum (damaged file)");
  uint64_t stored = 0;
  {
    h5::Attribute sum(VIA_H5_CHECK(H5Aopen(ds.get(), "xxh64", H5P_DEFAULT), path, where));
    VIA_H5_CHECK(H5Aread(sum.get(), H5T_NATIVE_UINT64, &stored), path, where);
  }
  at::Tensor t = at::empty(meta.shape, at::TensorOptions().dtype(meta.dtype));
  if (meta.nbytes > 0)
    VIA_H5_CHECK(H5Dread(ds.get(), s_->storage_type(meta.dtype), H5S_ALL, H5S_ALL, H5P_DEFAULT, t.data_ptr()), path,
                 where);
  const uint64_t actual = xxh64(t.data_ptr(), static_cast<size_t>(meta.nbytes));
  if (actual != stored) {
    char text[96];
    std::snprintf(text, sizeof text, "checksum mismatch (stored %016llx, data %016llx)",
                  static_cast<unsigned long long>(stored), static_cast<unsigned long long>(actual));
    throw CheckpointError(path, where + " " + dtype_name(meta.dtype) + shape_text(meta.shape) + ": " + text +
                                    ": the file is damaged");
  }
  return t;
}

std::map<std::string, at::Tensor> CheckpointReader::read_all() const {
  std::map<std::string, at::Tensor> out;
  for (const auto& name : names()) out.emplace(name, read(name));
  return out;
}

void CheckpointReader::verify() const {
  for (const auto& name : names()) read(name);
}

bool CheckpointReader::has_attribute(const std::string& key) const {
  h5::quiet();
  if (key.empty()) return false;
  return attribute_exists(s_->attributes.get(), encode_tensor_name(key), s_->path, "reading attributes");
}

Attribute CheckpointReader::attribute(const std::string& key) const {
  if (!has_attribute(key)) throw CheckpointError(s_->path, "no attribute " + quoted(key));
  return read_attribute(s_->attributes.get(), encode_tensor_name(key), s_->path, "reading attributes");
}

namespace {
template <class T>
T typed_attribute(const CheckpointReader& r, const std::string& key, const char* type) {
  const Attribute a = r.attribute(key);
  if (const auto* v = std::get_if<T>(&a)) return *v;
  throw CheckpointError(r.path(), "attribute " + quoted(key) + " is " + attribute_type_name(a) + ", not " + type);
}
}  // namespace

std::string CheckpointReader::get_string(const std::string& key) const {
  return typed_attribute<std::string>(*this, key, "a string");
}
int64_t CheckpointReader::get_int(const std::string& key) const { return typed_attribute<int64_t>(*this, key, "an integer"); }
double CheckpointReader::get_double(const std::string& key) const { return typed_attribute<double>(*this, key, "a double"); }

std::map<std::string, Attribute> CheckpointReader::attributes() const {
  h5::quiet();
  std::vector<std::string> links;
  auto collect = [](hid_t, const char* name, const H5A_info_t*, void* data) -> herr_t {
    static_cast<std::vector<std::string>*>(data)->emplace_back(name);
    return 0;
  };
  VIA_H5_CHECK(H5Aiterate2(s_->attributes.get(), H5_INDEX_NAME, H5_ITER_INC, nullptr, collect, &links), s_->path,
               "listing attributes");
  std::map<std::string, Attribute> out;
  for (const auto& link : links) {
    std::string key;
    try {
      key = decode_tensor_name(link);
    } catch (const std::invalid_argument& e) {
      throw CheckpointError(s_->path, std::string("damaged via checkpoint: ") + e.what());
    }
    out.emplace(std::move(key), read_attribute(s_->attributes.get(), link, s_->path, "reading attributes"));
  }
  return out;
}

// ================================================================ helpers

bool is_valid_checkpoint(const std::string& path, Verify level, std::string* reason) {
  try {
    CheckpointReader reader(path);
    if (level == Verify::Full) reader.verify();
    return true;
  } catch (const std::exception& e) {
    if (reason) *reason = e.what();
  } catch (...) {
    if (reason) *reason = "checkpoint " + path + ": unknown error";
  }
  return false;
}

void save_checkpoint(const std::string& path, const std::map<std::string, at::Tensor>& tensors,
                     const std::map<std::string, Attribute>& attributes) {
  CheckpointWriter writer(path);
  for (const auto& [key, value] : attributes) writer.set_attribute(key, value);
  for (const auto& [name, tensor] : tensors) writer.write(name, tensor);
  writer.commit();
}

Checkpoint load_checkpoint(const std::string& path) {
  CheckpointReader reader(path);
  return Checkpoint{reader.read_all(), reader.attributes()};
}

}  // namespace via::io
