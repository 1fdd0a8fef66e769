#include "slurm/process.h"

#include <fcntl.h>
#include <poll.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "base/posix.h"
#include "slurm/errors.h"

extern char** environ;

namespace via::slurm {
namespace {

struct Pipe {
  Fd read, write;
};

Pipe make_pipe(const std::string& program) {
  int fds[2];
  VIA_SYS_CHECK(SlurmError, ::pipe2(fds, O_CLOEXEC), "cannot run " + program + ": pipe");
  return {Fd(fds[0]), Fd(fds[1])};
}

/// posix_spawn's file actions, destroyed with the object.
class SpawnActions {
 public:
  SpawnActions() { posix_spawn_file_actions_init(&actions_); }
  ~SpawnActions() { posix_spawn_file_actions_destroy(&actions_); }
  SpawnActions(const SpawnActions&) = delete;
  SpawnActions& operator=(const SpawnActions&) = delete;
  posix_spawn_file_actions_t* get() { return &actions_; }

 private:
  posix_spawn_file_actions_t actions_;
};

// Reads both pipes to their ends (alternating, so neither fills up and blocks the child).
void drain(Fd& out_fd, Fd& err_fd, std::string& out, std::string& err, const std::string& program) {
  char buffer[4096];
  while (out_fd.get() >= 0 || err_fd.get() >= 0) {
    pollfd fds[2] = {{out_fd.get(), POLLIN, 0}, {err_fd.get(), POLLIN, 0}};
    if (::poll(fds, 2, -1) == -1) {
      if (errno == EINTR) continue;
      throw SlurmError("cannot read the output of " + program + ": " + std::strerror(errno));
    }
    Fd* fd_of[2] = {&out_fd, &err_fd};
    std::string* text_of[2] = {&out, &err};
    for (int i = 0; i < 2; ++i) {
      if (fds[i].fd < 0 || fds[i].revents == 0) continue;
      const ssize_t n = ::read(fds[i].fd, buffer, sizeof buffer);
      if (n > 0) text_of[i]->append(buffer, static_cast<size_t>(n));
      else if (n == 0 || errno != EINTR) fd_of[i]->reset();
    }
  }
}

}  // namespace

ProcessResult run_process(const std::vector<std::string>& argv) {
  if (argv.empty()) throw SlurmError("run_process: no program given");
  const std::string& program = argv.front();
  Pipe out = make_pipe(program), err = make_pipe(program);
  SpawnActions actions;
  posix_spawn_file_actions_addopen(actions.get(), STDIN_FILENO, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_adddup2(actions.get(), out.write.get(), STDOUT_FILENO);
  posix_spawn_file_actions_adddup2(actions.get(), err.write.get(), STDERR_FILENO);
  std::vector<char*> args;
  for (const auto& arg : argv) args.push_back(const_cast<char*>(arg.c_str()));
  args.push_back(nullptr);
  pid_t pid = -1;
  // posix_spawnp reports a program it cannot execute (ENOENT, EACCES) as its result.
  const int spawned = ::posix_spawnp(&pid, program.c_str(), actions.get(), nullptr, args.data(), environ);
  if (spawned == ENOENT)
    throw SlurmError(program.find('/') == std::string::npos ? program + " not found on PATH"
                                                             : program + " does not exist");
  if (spawned != 0) throw SlurmError("cannot run " + program + ": " + std::strerror(spawned));
  out.write.reset();
  err.write.reset();
  ProcessResult result;
  try {
    drain(out.read, err.read, result.out, result.err, program);
  } catch (...) {
    ::waitpid(pid, nullptr, 0);  // reap it before reporting
    throw;
  }
  int status = 0;
  while (::waitpid(pid, &status, 0) == -1) {
    if (errno != EINTR) throw SlurmError("cannot wait for " + program + ": " + std::strerror(errno));
  }
  result.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  return result;
}

}  // namespace via::slurm
