#pragma once
// POSIX file descriptors: one RAII owner and one check macro, so that no
// error path leaks a descriptor (work-directory lock, chunk claims, fsyncs,
// child-process pipes, memory-mapped weights).
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <string>

namespace via {

/// strerror(errno), read at once (before anything else can change errno).
inline std::string errno_text() { return std::strerror(errno); }

/// Owns one file descriptor; closes it when destroyed or reset.
class Fd {
 public:
  Fd() = default;
  explicit Fd(int fd) : fd_(fd) {}
  ~Fd() { reset(); }
  Fd(Fd&& other) noexcept : fd_(other.release()) {}
  Fd& operator=(Fd&& other) noexcept {
    if (this != &other) {
      reset();
      fd_ = other.release();
    }
    return *this;
  }
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;

  int get() const { return fd_; }
  bool valid() const { return fd_ >= 0; }
  int release() {
    const int fd = fd_;
    fd_ = -1;
    return fd;
  }
  void reset() {
    if (fd_ >= 0) ::close(fd_);
    fd_ = -1;
  }

 private:
  int fd_ = -1;
};

}  // namespace via

/// Checks a POSIX call that returns -1 and sets errno on failure: returns its
/// result, or throws `Error(context + ": " + strerror(errno))`, `context`
/// evaluated only then.
#define VIA_SYS_CHECK(Error, call, context)                                                     \
  ([&]() {                                                                                      \
    auto via_sys_result_ = (call);                                                              \
    if (via_sys_result_ == -1) throw Error(std::string(context) + ": " + ::via::errno_text()); \
    return via_sys_result_;                                                                     \
  }())
