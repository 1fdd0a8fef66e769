#include "comm/single_process.h"

#include <cstdio>
#include <cstdlib>

namespace via::comm {

void SingleProcessCommunicator::enter(Op op) {
  const int64_t n = ++calls_[op];
  auto it = injections_.find(op);
  if (it != injections_.end() && it->second.at_call == n) {
    const std::string message = it->second.message;
    injections_.erase(it);
    throw CommError(describe(op, message + " (call " + std::to_string(n) + ")"));
  }
}

void SingleProcessCommunicator::fail_on(Op op, int64_t nth, const std::string& message) {
  if (nth < 1) throw std::invalid_argument("fail_on: nth must be >= 1");
  injections_[op] = Injection{calls(op) + nth, message};
}

int64_t SingleProcessCommunicator::calls(Op op) const {
  auto it = calls_.find(op);
  return it == calls_.end() ? 0 : it->second;
}

void SingleProcessCommunicator::broadcast(std::vector<at::Tensor>& tensors, int root) {
  enter(Op::Broadcast);
  check_root(Op::Broadcast, root);
  for (size_t i = 0; i < tensors.size(); ++i)
    if (!tensors[i].defined()) throw CommError(describe(Op::Broadcast, "tensor " + std::to_string(i) + " is undefined"));
}

void SingleProcessCommunicator::barrier() { enter(Op::Barrier); }

std::vector<int64_t> SingleProcessCommunicator::all_reduce(const std::vector<int64_t>& values, ReduceOp) {
  enter(Op::AllReduce);
  return values;
}

std::vector<std::string> SingleProcessCommunicator::gather(const std::string& value, int root) {
  enter(Op::Gather);
  check_root(Op::Gather, root);
  return {value};
}

std::vector<std::string> SingleProcessCommunicator::all_gather(const std::string& value) {
  enter(Op::AllGather);
  return {value};
}

void SingleProcessCommunicator::abort_job(int code, const std::string& message) {
  std::fprintf(stderr, "via: rank 0: %s\n", message.c_str());
  std::fflush(stderr);
  std::fflush(stdout);
  std::_Exit(code);
}

}  // namespace via::comm
