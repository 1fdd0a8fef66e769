#include "comm/communicator.h"

#include <ATen/ops/empty.h>
#include <c10/core/ScalarType.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>

#include "base/random.h"

namespace via::comm {

const char* op_name(Op op) {
  switch (op) {
    case Op::Broadcast: return "broadcast";
    case Op::Barrier: return "barrier";
    case Op::AllReduce: return "all_reduce";
    case Op::Gather: return "gather";
    case Op::AllGather: return "all_gather";
  }
  return "?";
}

void Communicator::abort(int code, const std::string& message) {
  abort_job(code, message);
  std::_Exit(code);
}

std::string Communicator::describe(Op op, const std::string& what) const {
  return backend() + " rank " + std::to_string(rank()) + "/" + std::to_string(size()) + ": " + op_name(op) + ": " +
         what;
}

void Communicator::unsupported(Op op, const std::string& why) const {
  throw CommError(describe(op, "not supported by the " + backend() + " backend" + (why.empty() ? "" : " (" + why + ")")));
}

void Communicator::check_root(Op op, int root) const {
  if (root < 0 || root >= size())
    throw CommError(describe(op, "root " + std::to_string(root) + " is not a rank of this group of " +
                                     std::to_string(size())));
}

void Communicator::broadcast(std::vector<at::Tensor>& tensors, int root) { unsupported(Op::Broadcast); }
void Communicator::broadcast(at::Tensor& tensor, int root) {
  std::vector<at::Tensor> one{tensor};
  broadcast(one, root);
}
void Communicator::barrier() { unsupported(Op::Barrier); }
std::vector<int64_t> Communicator::all_reduce(const std::vector<int64_t>& values, ReduceOp op) {
  unsupported(Op::AllReduce);
}
int64_t Communicator::all_reduce(int64_t value, ReduceOp op) { return all_reduce(std::vector<int64_t>{value}, op)[0]; }
std::vector<std::string> Communicator::gather(const std::string& value, int root) { unsupported(Op::Gather); }
std::vector<std::string> Communicator::all_gather(const std::string& value) { unsupported(Op::AllGather); }

std::string layout_of(const std::vector<at::Tensor>& tensors) {
  std::string s;
  for (size_t i = 0; i < tensors.size(); ++i) {
    const at::Tensor& t = tensors[i];
    if (i) s += ';';
    if (!t.defined()) {
      s += "undefined";
      continue;
    }
    s += c10::toString(t.scalar_type());
    s += '[';
    for (int64_t d = 0; d < t.dim(); ++d) s += (d ? "," : "") + std::to_string(t.size(d));
    s += ']';
    s += '@';
    s += c10::DeviceTypeName(t.device().type(), /*lower_case=*/true);
  }
  return s;
}

void Communicator::verify_layout(Communicator& host, const std::vector<at::Tensor>& tensors, int root) const {
  const std::string layout = layout_of(tensors);
  const std::string signature = "root " + std::to_string(root) + ": " + layout;
  const uint64_t hash = random::fnv1a(signature);
  const std::vector<std::string> all = host.all_gather(std::string(reinterpret_cast<const char*>(&hash), sizeof hash));
  std::string differing;
  for (size_t r = 1; r < all.size(); ++r)
    if (all[r] != all[0]) differing += (differing.empty() ? "" : ", ") + std::to_string(r);
  if (differing.empty()) return;
  const std::string shown = layout.size() > 300 ? layout.substr(0, 300) + "..." : layout;
  throw CommError(describe(Op::Broadcast, "rank(s) " + differing +
                                              " passed another root, or tensors of other dtypes, shapes or devices, "
                                              "than rank 0; this rank passed root " + std::to_string(root) + " and " +
                                              std::to_string(tensors.size()) + " tensor(s): " + shown));
}

void Communicator::check_tensors(const std::vector<at::Tensor>& tensors, c10::DeviceType device) const {
  for (size_t i = 0; i < tensors.size(); ++i) {
    const at::Tensor& t = tensors[i];
    if (!t.defined()) throw CommError(describe(Op::Broadcast, "tensor " + std::to_string(i) + " is undefined"));
    if (t.device().type() != device)
      throw CommError(describe(Op::Broadcast, "tensor " + std::to_string(i) + " is on " + t.device().str() +
                                                  "; the " + backend() + " backend takes " +
                                                  c10::DeviceTypeName(device, true) + " tensors"));
  }
}

std::string broadcast_string(Communicator& comm, const std::string& value, int root) {
  at::Tensor length = at::empty({1}, at::kLong);
  length.data_ptr<int64_t>()[0] = static_cast<int64_t>(value.size());
  comm.broadcast(length, root);
  const int64_t n = length.data_ptr<int64_t>()[0];
  at::Tensor bytes = at::empty({n}, at::kByte);
  if (comm.rank() == root && n > 0) std::memcpy(bytes.data_ptr(), value.data(), static_cast<size_t>(n));
  comm.broadcast(bytes, root);
  return std::string(static_cast<const char*>(bytes.data_ptr()), static_cast<size_t>(n));
}

namespace {

// The header broadcast_named sends first: per tensor, the name, the dtype and
// the shape, as text lines "<dtype> <ndim> <d0> ... <name length> <name>".
std::string encode_header(const std::map<std::string, at::Tensor>& tensors) {
  std::string h;
  for (const auto& [name, t] : tensors) {
    h += std::to_string(static_cast<int>(t.scalar_type())) + ' ' + std::to_string(t.dim());
    for (int64_t d = 0; d < t.dim(); ++d) h += ' ' + std::to_string(t.size(d));
    h += ' ' + std::to_string(name.size()) + ' ' + name + '\n';
  }
  return h;
}

struct HeaderEntry {
  std::string name;
  at::ScalarType dtype;
  std::vector<int64_t> shape;
};

std::vector<HeaderEntry> decode_header(const std::string& h) {
  std::vector<HeaderEntry> out;
  size_t pos = 0;
  auto number = [&]() -> int64_t {
    const size_t end = h.find_first_of(" \n", pos);
    const int64_t v = std::stoll(h.substr(pos, end - pos));
    pos = end + 1;
    return v;
  };
  while (pos < h.size()) {
    HeaderEntry e;
    e.dtype = static_cast<at::ScalarType>(number());
    const int64_t ndim = number();
    for (int64_t d = 0; d < ndim; ++d) e.shape.push_back(number());
    const auto len = static_cast<size_t>(number());
    e.name = h.substr(pos, len);
    pos += len + 1;  // the name and its '\n'
    out.push_back(std::move(e));
  }
  return out;
}

}  // namespace

std::map<std::string, at::Tensor> broadcast_named(Communicator& comm, const std::map<std::string, at::Tensor>& tensors,
                                                  int root, const at::Device& device) {
  const bool is_root = comm.rank() == root;
  if (!is_root && !tensors.empty())
    throw CommError("broadcast_named: rank " + std::to_string(comm.rank()) + " passed " +
                    std::to_string(tensors.size()) + " tensors; only root " + std::to_string(root) + " may");
  const std::vector<HeaderEntry> header = decode_header(broadcast_string(comm, is_root ? encode_header(tensors) : "", root));
  std::map<std::string, at::Tensor> out;
  std::vector<at::Tensor> list;
  list.reserve(header.size());
  for (const auto& e : header) {
    at::Tensor t;
    if (is_root) {
      t = tensors.at(e.name);
      if (t.device().type() != device.type()) t = t.to(device);
    } else {
      t = at::empty(e.shape, at::TensorOptions().dtype(e.dtype).device(device));
    }
    list.push_back(t);
    out.emplace(e.name, t);
  }
  if (!list.empty()) comm.broadcast(list, root);  // every rank knows the header: all skip together
  return out;
}

}  // namespace via::comm
