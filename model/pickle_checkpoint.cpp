// Zip + pickle reading of torch.save checkpoints; see pickle_checkpoint.h.
// Formats: PKWARE APPNOTE.TXT 6.3 (zip, zip64), CPython Lib/pickletools.py
// (opcodes), torch/serialization.py (_save: persistent ids
// ('storage', storage_type, key, location, numel); torch/_utils.py
// _rebuild_tensor_v2(storage, offset, size, stride, requires_grad, hooks[, metadata])).
#include "model/pickle_checkpoint.h"

#include <ATen/ops/empty.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <memory>

namespace via::model {
namespace {

constexpr size_t kMaxStack = 1u << 22;  // values on the pickle stack / in the memo

uint64_t le(const std::string& b, size_t at, int n) {
  uint64_t v = 0;
  for (int i = n - 1; i >= 0; --i) v = (v << 8) | static_cast<unsigned char>(b[at + static_cast<size_t>(i)]);
  return v;
}

class Reader {
 public:
  explicit Reader(const std::string& path) : path_(path), in_(path, std::ios::binary) {
    if (!in_) throw ModelError(path + ": cannot open (missing or unreadable)");
    in_.seekg(0, std::ios::end);
    size_ = static_cast<uint64_t>(in_.tellg());
  }
  uint64_t size() const { return size_; }
  std::string read(uint64_t offset, uint64_t n, const char* what) {
    if (offset > size_ || n > size_ - offset)
      throw ModelError(path_ + ": truncated or corrupt zip (" + what + " lies past the end of the file)");
    std::string out(n, '\0');
    in_.seekg(static_cast<std::streamoff>(offset));
    in_.read(out.data(), static_cast<std::streamsize>(n));
    if (static_cast<uint64_t>(in_.gcount()) != n) throw ModelError(path_ + ": read error");
    return out;
  }

 private:
  std::string path_;
  std::ifstream in_;
  uint64_t size_ = 0;
};

at::ScalarType storage_dtype(const std::string& global) {
  static const std::map<std::string, at::ScalarType> kTypes = {
      {"torch.FloatStorage", at::kFloat},   {"torch.HalfStorage", at::kHalf},   {"torch.BFloat16Storage", at::kBFloat16},
      {"torch.DoubleStorage", at::kDouble}, {"torch.LongStorage", at::kLong},   {"torch.IntStorage", at::kInt},
      {"torch.ShortStorage", at::kShort},   {"torch.CharStorage", at::kChar},   {"torch.ByteStorage", at::kByte},
      {"torch.BoolStorage", at::kBool}};
  auto it = kTypes.find(global);
  return it == kTypes.end() ? at::ScalarType::Undefined : it->second;
}

// A value of the pickle machine. Containers are shared so that memo entries alias.
struct Value;
using ValuePtr = std::shared_ptr<Value>;
struct Value {
  enum Kind { None, Bool, Int, Float, Str, Tuple, List, Dict, Global, Storage, Tensor, Mark } kind = None;
  int64_t i = 0;
  std::string s;                // Str; Global "module.name"; Storage: zip entry key
  std::vector<ValuePtr> items;  // Tuple, List; Dict: key, value, key, value, ...
  at::ScalarType dtype = at::ScalarType::Undefined;  // Storage, Tensor
  int64_t numel = 0;                                  // Storage
  ValuePtr storage;                                   // Tensor
  int64_t offset = 0;                                 // Tensor
  std::vector<int64_t> size, stride;                  // Tensor
};

ValuePtr make(Value::Kind k) {
  auto v = std::make_shared<Value>();
  v->kind = k;
  return v;
}

}  // namespace

const std::vector<std::string>& PickleCheckpoint::allowed_globals() {
  static const std::vector<std::string> kGlobals = {
      "collections.OrderedDict",           "torch._utils._rebuild_tensor_v2", "torch._utils._rebuild_parameter",
      "torch.FloatStorage",                "torch.HalfStorage",               "torch.BFloat16Storage",
      "torch.DoubleStorage",               "torch.LongStorage",               "torch.IntStorage",
      "torch.ShortStorage",                "torch.CharStorage",               "torch.ByteStorage",
      "torch.BoolStorage"};
  return kGlobals;
}

PickleCheckpoint::PickleCheckpoint(const std::string& path) : path_(path) {
  read_zip();
  Reader reader(path_);
  const auto it = entries_.find(archive_ + "data.pkl");
  run_pickle(reader.read(it->second.data_offset, it->second.size, "data.pkl"));
}

void PickleCheckpoint::read_zip() {
  Reader r(path_);
  if (r.size() < 4 || r.read(0, 4, "signature") != std::string("PK\x03\x04", 4))
    throw ModelError(path_ + ": not a zip-format PyTorch checkpoint (torch.save's format since torch 1.6; "
                     "older or other pickle files are not read)");
  // End of central directory: the last "PK\5\6" within the final 64 KiB + 22 bytes.
  const uint64_t tail_len = std::min<uint64_t>(r.size(), 65557);
  const std::string tail = r.read(r.size() - tail_len, tail_len, "end of central directory");
  size_t eocd = std::string::npos;
  for (size_t p = tail.size() >= 22 ? tail.size() - 22 + 1 : 0; p-- > 0;)
    if (tail.compare(p, 4, "PK\x05\x06", 4) == 0) {
      eocd = p;
      break;
    }
  if (eocd == std::string::npos) throw ModelError(path_ + ": truncated or corrupt zip (no end of central directory)");
  uint64_t count = le(tail, eocd + 10, 2), cd_size = le(tail, eocd + 12, 4), cd_offset = le(tail, eocd + 16, 4);
  if (count == 0xFFFF || cd_offset == 0xFFFFFFFF || cd_size == 0xFFFFFFFF) {
    // zip64 (checkpoints over 4 GiB): the locator sits just before the EOCD.
    const uint64_t eocd_abs = r.size() - tail_len + eocd;
    if (eocd_abs < 20) throw ModelError(path_ + ": corrupt zip64 directory");
    const std::string loc = r.read(eocd_abs - 20, 20, "zip64 locator");
    if (loc.compare(0, 4, "PK\x06\x07", 4) != 0) throw ModelError(path_ + ": corrupt zip64 directory (no locator)");
    const std::string z = r.read(le(loc, 8, 8), 56, "zip64 end of central directory");
    if (z.compare(0, 4, "PK\x06\x06", 4) != 0) throw ModelError(path_ + ": corrupt zip64 end of central directory");
    count = le(z, 32, 8), cd_size = le(z, 40, 8), cd_offset = le(z, 48, 8);
  }
  const std::string cd = r.read(cd_offset, cd_size, "central directory");
  size_t p = 0;
  for (uint64_t n = 0; n < count; ++n) {
    if (p + 46 > cd.size() || cd.compare(p, 4, "PK\x01\x02", 4) != 0)
      throw ModelError(path_ + ": corrupt zip central directory (entry " + std::to_string(n) + ")");
    const uint64_t method = le(cd, p + 10, 2), name_len = le(cd, p + 28, 2), extra_len = le(cd, p + 30, 2),
                   comment_len = le(cd, p + 32, 2);
    uint64_t csize = le(cd, p + 20, 4), usize = le(cd, p + 24, 4), local = le(cd, p + 42, 4);
    if (p + 46 + name_len + extra_len + comment_len > cd.size())
      throw ModelError(path_ + ": corrupt zip central directory (entry " + std::to_string(n) + ")");
    const std::string name = cd.substr(p + 46, name_len);
    // zip64 extra field: the 8-byte values of the fields saturated above, in this order.
    for (size_t e = p + 46 + name_len; e + 4 <= p + 46 + name_len + extra_len;) {
      const uint64_t id = le(cd, e, 2), len = le(cd, e + 2, 2);
      if (e + 4 + len > p + 46 + name_len + extra_len) break;
      if (id == 1) {
        size_t f = e + 4;
        for (uint64_t* field : {&usize, &csize, &local}) {
          if (*field != 0xFFFFFFFF) continue;
          if (f + 8 > e + 4 + len) throw ModelError(path_ + ": corrupt zip64 field of '" + name + "'");
          *field = le(cd, f, 8);
          f += 8;
        }
      }
      e += 4 + len;
    }
    p += 46 + name_len + extra_len + comment_len;
    if (method != 0 || csize != usize)
      throw ModelError(path_ + ": zip entry '" + name + "' is compressed (torch.save stores entries uncompressed)");
    const std::string lh = r.read(local, 30, "local file header");
    if (lh.compare(0, 4, "PK\x03\x04", 4) != 0) throw ModelError(path_ + ": corrupt local header of '" + name + "'");
    const uint64_t data = local + 30 + le(lh, 26, 2) + le(lh, 28, 2);
    if (data > r.size() || usize > r.size() - data)
      throw ModelError(path_ + ": truncated zip (entry '" + name + "' lies past the end of the file)");
    entries_[name] = Entry{data, usize};
    const size_t slash = name.find('/');
    if (slash != std::string::npos && name.substr(slash + 1) == "data.pkl") archive_ = name.substr(0, slash + 1);
  }
  if (archive_.empty()) throw ModelError(path_ + ": zip without '<archive>/data.pkl': not a torch.save checkpoint");
}

void PickleCheckpoint::run_pickle(const std::string& b) {
  const std::string where = path_ + ": " + archive_ + "data.pkl";
  std::vector<ValuePtr> stack;
  std::vector<size_t> marks;
  std::map<uint64_t, ValuePtr> memo;
  size_t p = 0;
  auto need = [&](size_t n) {
    if (n > b.size() - p) throw ModelError(where + ": pickle ends inside an opcode at byte " + std::to_string(p));
  };
  auto pop = [&]() {
    if (stack.empty() || (!marks.empty() && marks.back() == stack.size()))
      throw ModelError(where + ": pickle stack underflow at byte " + std::to_string(p));
    ValuePtr v = stack.back();
    stack.pop_back();
    return v;
  };
  auto push = [&](ValuePtr v) {
    if (stack.size() >= kMaxStack) throw ModelError(where + ": pickle stack too deep");
    stack.push_back(std::move(v));
  };
  auto pop_mark = [&]() {
    if (marks.empty()) throw ModelError(where + ": pickle has no MARK at byte " + std::to_string(p));
    std::vector<ValuePtr> items(stack.begin() + static_cast<std::ptrdiff_t>(marks.back()), stack.end());
    stack.resize(marks.back());
    marks.pop_back();
    return items;
  };
  auto str = [&](size_t n) {
    need(n);
    auto v = make(Value::Str);
    v->s = b.substr(p, n);
    p += n;
    return v;
  };
  auto integer = [](int64_t x) {
    auto v = make(Value::Int);
    v->i = x;
    return v;
  };
  auto set_items = [&](const ValuePtr& dict, const std::vector<ValuePtr>& kv) {
    if (dict->kind != Value::Dict || kv.size() % 2 != 0) throw ModelError(where + ": SETITEM(S) on a non-dict");
    for (const auto& x : kv) dict->items.push_back(x);
  };
  auto global = [&](const std::string& module, const std::string& name) {
    const std::string full = module + "." + name;
    const auto& allowed = allowed_globals();
    if (std::find(allowed.begin(), allowed.end(), full) == allowed.end())
      throw ModelError(where + ": global '" + full + "' is not allowed (a tensor checkpoint uses only "
                       "collections.OrderedDict, torch._utils._rebuild_tensor_v2/_rebuild_parameter and "
                       "torch.*Storage); refusing to read it");
    auto v = make(Value::Global);
    v->s = full;
    return v;
  };
  auto as_ints = [&](const ValuePtr& t, const char* what) {
    if (t->kind != Value::Tuple) throw ModelError(where + ": tensor " + what + " is not a tuple");
    std::vector<int64_t> out;
    for (const auto& x : t->items) {
      if (x->kind != Value::Int || x->i < 0) throw ModelError(where + ": tensor " + what + " has a bad entry");
      out.push_back(x->i);
    }
    return out;
  };

  for (;;) {
    need(1);
    const auto op = static_cast<unsigned char>(b[p++]);
    switch (op) {
      case 0x80: need(1); ++p; break;        // PROTO
      case 0x95: need(8); p += 8; break;     // FRAME
      case '.': {                            // STOP
        if (stack.size() != 1) throw ModelError(where + ": pickle stops with " + std::to_string(stack.size()) + " values");
        ValuePtr root = stack.back();
        // Lightning checkpoints nest the weights under "state_dict".
        if (root->kind == Value::Dict)
          for (size_t k = 0; k + 1 < root->items.size(); k += 2)
            if (root->items[k]->kind == Value::Str && root->items[k]->s == "state_dict" &&
                root->items[k + 1]->kind == Value::Dict)
              root = root->items[k + 1];
        if (root->kind != Value::Dict) throw ModelError(where + ": the checkpoint is not a dict of tensors");
        for (size_t k = 0; k + 1 < root->items.size(); k += 2) {
          const ValuePtr& key = root->items[k];
          const ValuePtr& t = root->items[k + 1];
          if (key->kind != Value::Str || t->kind != Value::Tensor) continue;  // other entries: not weights
          TensorRef ref;
          ref.info.dtype = t->dtype;
          ref.info.shape = t->size;
          ref.storage = archive_ + "data/" + t->storage->s;
          ref.storage_offset = t->offset;
          ref.stride = t->stride;
          if (tensors_.emplace(key->s, ref).second) names_.push_back(key->s);
        }
        return;
      }
      case '(': marks.push_back(stack.size()); break;  // MARK
      case '}': push(make(Value::Dict)); break;        // EMPTY_DICT
      case ']': push(make(Value::List)); break;        // EMPTY_LIST
      case ')': push(make(Value::Tuple)); break;       // EMPTY_TUPLE
      case 't': {                                      // TUPLE
        auto v = make(Value::Tuple);
        v->items = pop_mark();
        push(v);
        break;
      }
      case 0x85: case 0x86: case 0x87: {  // TUPLE1..3
        auto v = make(Value::Tuple);
        v->items.resize(op - 0x84);
        for (size_t k = v->items.size(); k-- > 0;) v->items[k] = pop();
        push(v);
        break;
      }
      case 'N': push(make(Value::None)); break;
      case 0x88: case 0x89: {  // NEWTRUE, NEWFALSE
        auto v = make(Value::Bool);
        v->i = op == 0x88;
        push(v);
        break;
      }
      case 'J': need(4); push(integer(static_cast<int32_t>(le(b, p, 4)))); p += 4; break;  // BININT
      case 'K': need(1); push(integer(static_cast<unsigned char>(b[p]))); p += 1; break;  // BININT1
      case 'M': need(2); push(integer(static_cast<int64_t>(le(b, p, 2)))); p += 2; break;  // BININT2
      case 0x8a: {  // LONG1
        need(1);
        const size_t n = static_cast<unsigned char>(b[p++]);
        if (n > 8) throw ModelError(where + ": integer wider than 64 bits at byte " + std::to_string(p));
        need(n);
        uint64_t v = n ? le(b, p, static_cast<int>(n)) : 0;
        if (n > 0 && n < 8 && (static_cast<unsigned char>(b[p + n - 1]) & 0x80)) v |= ~0ull << (8 * n);  // sign
        p += n;
        push(integer(static_cast<int64_t>(v)));
        break;
      }
      case 'G': {  // BINFLOAT (big-endian double)
        need(8);
        uint64_t bits = 0;
        for (int k = 0; k < 8; ++k) bits = (bits << 8) | static_cast<unsigned char>(b[p + static_cast<size_t>(k)]);
        p += 8;
        auto v = make(Value::Float);
        v->i = static_cast<int64_t>(bits);
        push(v);
        break;
      }
      case 'X': need(4); { const size_t n = le(b, p, 4); p += 4; push(str(n)); } break;   // BINUNICODE
      case 0x8c: need(1); { const size_t n = static_cast<unsigned char>(b[p++]); push(str(n)); } break;  // SHORT_BINUNICODE
      case 'q': need(1); memo[static_cast<unsigned char>(b[p++])] = stack.empty() ? nullptr : stack.back(); break;  // BINPUT
      case 'r': need(4); memo[le(b, p, 4)] = stack.empty() ? nullptr : stack.back(); p += 4; break;                 // LONG_BINPUT
      case 0x94: memo[memo.size()] = stack.empty() ? nullptr : stack.back(); break;                                 // MEMOIZE
      case 'h': case 'j': {  // BINGET, LONG_BINGET
        const int n = op == 'h' ? 1 : 4;
        need(static_cast<size_t>(n));
        auto it = memo.find(le(b, p, n));
        p += static_cast<size_t>(n);
        if (it == memo.end() || !it->second) throw ModelError(where + ": pickle reads an unset memo entry");
        push(it->second);
        break;
      }
      case 's': {  // SETITEM
        ValuePtr v = pop(), k = pop();
        set_items(stack.empty() ? nullptr : stack.back(), {k, v});
        break;
      }
      case 'u': {  // SETITEMS
        std::vector<ValuePtr> kv = pop_mark();
        if (stack.empty()) throw ModelError(where + ": SETITEMS without a dict");
        set_items(stack.back(), kv);
        break;
      }
      case 'a': case 'e': {  // APPEND, APPENDS
        std::vector<ValuePtr> xs = op == 'a' ? std::vector<ValuePtr>{pop()} : pop_mark();
        if (stack.empty() || stack.back()->kind != Value::List) throw ModelError(where + ": APPEND to a non-list");
        for (auto& x : xs) stack.back()->items.push_back(x);
        break;
      }
      case 'c': {  // GLOBAL "module\nname\n"
        const size_t nl1 = b.find('\n', p), nl2 = nl1 == std::string::npos ? nl1 : b.find('\n', nl1 + 1);
        if (nl2 == std::string::npos) throw ModelError(where + ": GLOBAL without its names");
        const std::string module = b.substr(p, nl1 - p), name = b.substr(nl1 + 1, nl2 - nl1 - 1);
        p = nl2 + 1;
        push(global(module, name));
        break;
      }
      case 0x93: {  // STACK_GLOBAL
        ValuePtr name = pop(), module = pop();
        if (name->kind != Value::Str || module->kind != Value::Str) throw ModelError(where + ": STACK_GLOBAL of non-strings");
        push(global(module->s, name->s));
        break;
      }
      case 'Q': {  // BINPERSID: ('storage', type, key, location, numel)
        ValuePtr pid = pop();
        const auto& it = pid->items;
        if (pid->kind != Value::Tuple || it.size() != 5 || it[0]->kind != Value::Str || it[0]->s != "storage" ||
            it[1]->kind != Value::Global || it[2]->kind != Value::Str || it[4]->kind != Value::Int || it[4]->i < 0)
          throw ModelError(where + ": persistent id is not a ('storage', type, key, location, numel) tuple");
        auto s = make(Value::Storage);
        s->dtype = storage_dtype(it[1]->s);
        if (s->dtype == at::ScalarType::Undefined) throw ModelError(where + ": '" + it[1]->s + "' is not a storage type");
        s->s = it[2]->s;
        s->numel = it[4]->i;
        const auto entry = entries_.find(archive_ + "data/" + s->s);
        if (entry == entries_.end()) throw ModelError(where + ": storage '" + s->s + "' has no zip entry");
        if (static_cast<uint64_t>(s->numel) > entry->second.size / c10::elementSize(s->dtype))
          throw ModelError(where + ": storage '" + s->s + "' is shorter than its " + std::to_string(s->numel) + " elements");
        push(s);
        break;
      }
      case 'R': {  // REDUCE: only the allowed callables, interpreted here
        ValuePtr args = pop(), fn = pop();
        if (fn->kind != Value::Global || args->kind != Value::Tuple) throw ModelError(where + ": REDUCE of a non-global");
        const auto& a = args->items;
        if (fn->s == "collections.OrderedDict") {
          if (!a.empty()) throw ModelError(where + ": OrderedDict with arguments");
          push(make(Value::Dict));
        } else if (fn->s == "torch._utils._rebuild_tensor_v2") {
          if (a.size() < 4 || a[0]->kind != Value::Storage || a[1]->kind != Value::Int)
            throw ModelError(where + ": malformed _rebuild_tensor_v2 arguments");
          auto t = make(Value::Tensor);
          t->storage = a[0];
          t->dtype = a[0]->dtype;
          t->offset = a[1]->i;
          t->size = as_ints(a[2], "size");
          t->stride = as_ints(a[3], "stride");
          if (t->size.size() != t->stride.size() || t->offset < 0) throw ModelError(where + ": tensor size/stride mismatch");
          int64_t last = t->offset;
          bool empty = false;
          for (size_t k = 0; k < t->size.size(); ++k) {
            empty |= t->size[k] == 0;
            if (t->size[k] > 0) last += (t->size[k] - 1) * t->stride[k];
          }
          if (!empty && last >= a[0]->numel) throw ModelError(where + ": a tensor reaches past its storage '" + a[0]->s + "'");
          // No more elements than its storage: bounds what a forged header can make us allocate.
          int64_t count = 1;
          for (int64_t d : t->size)
            if (d != 0 && count > a[0]->numel / d) throw ModelError(where + ": a tensor is larger than its storage");
            else count *= d;
          push(t);
        } else if (fn->s == "torch._utils._rebuild_parameter") {
          if (a.empty() || a[0]->kind != Value::Tensor) throw ModelError(where + ": malformed _rebuild_parameter arguments");
          push(a[0]);
        } else {
          throw ModelError(where + ": '" + fn->s + "' cannot be called");
        }
        break;
      }
      case 'b': {  // BUILD: state of an OrderedDict (_metadata) or a tensor; ignored
        ValuePtr state = pop();
        if (stack.empty() || (stack.back()->kind != Value::Dict && stack.back()->kind != Value::Tensor))
          throw ModelError(where + ": BUILD on an object that is not a dict or tensor");
        break;
      }
      default: {
        char hex[8];
        std::snprintf(hex, sizeof hex, "0x%02x", op);
        throw ModelError(where + ": pickle opcode " + hex + " at byte " + std::to_string(p - 1) +
                         " is not allowed in a tensor checkpoint; refusing to read it");
      }
    }
    if (memo.size() > kMaxStack) throw ModelError(where + ": pickle memo too large");
  }
}

const TensorInfo& PickleCheckpoint::info(const std::string& name) const {
  auto it = tensors_.find(name);
  if (it == tensors_.end()) throw ModelError(path_ + ": no tensor '" + name + "'");
  return it->second.info;
}

at::Tensor PickleCheckpoint::tensor(const std::string& name) const {
  auto it = tensors_.find(name);
  if (it == tensors_.end()) throw ModelError(path_ + ": no tensor '" + name + "'");
  const TensorRef& t = it->second;
  const Entry& e = entries_.at(t.storage);
  const auto item = static_cast<int64_t>(c10::elementSize(t.info.dtype));
  const int64_t numel = static_cast<int64_t>(e.size) / item;
  Reader reader(path_);
  const std::string bytes = reader.read(e.data_offset, static_cast<uint64_t>(numel * item), "tensor data");
  at::Tensor storage = at::empty({numel}, at::TensorOptions().dtype(t.info.dtype));
  if (numel > 0) std::memcpy(storage.data_ptr(), bytes.data(), bytes.size());
  return storage.as_strided(t.info.shape, t.stride, t.storage_offset).contiguous();
}

}  // namespace via::model
