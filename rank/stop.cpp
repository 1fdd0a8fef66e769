#include "rank/stop.h"

#include <fcntl.h>
#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstring>
#include <mutex>
#include <stdexcept>
#include <thread>

#include "base/posix.h"

namespace via::rank {
namespace {

std::atomic<int> g_signal{0};
std::atomic<int> g_idle{0};
char g_message[512] = {0};  // written by the handler: no allocation there
size_t g_message_len = 0;

// LastWords' callback. It runs at most once per process, from the watcher
// thread as soon as a signal arrives, or from IdleScope's constructor.
std::mutex g_last_words_mutex;
std::function<void(int)> g_last_words;
std::atomic<bool> g_has_last_words{false};  // readable from the handler
bool g_last_words_done = false;

// The handler wakes the watcher thread through this pipe (write() is
// async-signal-safe; recording a stop in a file is not). Plain descriptors,
// not Fd: the handler reads them, and StopSignals' destructor closes them
// after the handler is gone.
int g_pipe[2] = {-1, -1};
// A pointer: an exit() while StopSignals lives must not destroy a joinable
// std::thread (std::terminate).
std::thread* g_watcher = nullptr;

constexpr int kSignals[] = {SIGTERM, SIGUSR1, SIGINT};
struct sigaction g_previous[3];

int exit_code_of(int signal) { return signal == SIGINT ? kExitInterrupted : kExitRequeue; }

void say_message() {
  if (g_message_len > 0) {
    ssize_t ignored = write(STDERR_FILENO, g_message, g_message_len);
    (void)ignored;
  }
}

void run_last_words(int signal) {
  std::lock_guard<std::mutex> lock(g_last_words_mutex);
  if (g_last_words_done || !g_last_words) return;
  g_last_words_done = true;
  try {
    g_last_words(signal);
  } catch (...) {
    // Informative only: the stop goes on.
  }
}

extern "C" void on_stop_signal(int signal) {
  const int saved_errno = errno;
  int expected = 0;
  g_signal.compare_exchange_strong(expected, signal);
  if (g_idle.load() > 0 && !g_has_last_words.load()) {
    // Nothing to record: end at once (only async-signal-safe calls here).
    say_message();
    _exit(exit_code_of(g_signal.load()));
  }
  // The watcher records the stop now, not when the work in hand ends: a
  // launcher may kill the process before that (Open MPI's orted sends
  // SIGKILL 1 s after its SIGTERM), and a rank waiting in a collective
  // ends from the watcher.
  const char wake = 's';
  ssize_t ignored = write(g_pipe[1], &wake, 1);
  (void)ignored;
  errno = saved_errno;
}

void watch() {
  for (;;) {
    char c = 0;
    const ssize_t n = read(g_pipe[0], &c, 1);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0 || c == 'q') return;
    const int s = g_signal.load();
    if (s == 0) continue;
    run_last_words(s);
    if (g_idle.load() > 0) {
      say_message();
      _exit(exit_code_of(s));
    }
  }
}

}  // namespace

Stopped::Stopped(int signal)
    : std::runtime_error(std::string("stopped by ") + (signal == SIGINT    ? "SIGINT"
                                                       : signal == SIGUSR1 ? "SIGUSR1"
                                                       : signal == SIGTERM ? "SIGTERM"
                                                                           : "signal " + std::to_string(signal))),
      signal_(signal) {}

int Stopped::exit_code() const { return exit_code_of(signal_); }

StopSignals::StopSignals(const std::string& idle_message) {
  g_message_len = std::min(idle_message.size(), sizeof(g_message) - 1);
  std::memcpy(g_message, idle_message.data(), g_message_len);
  VIA_SYS_CHECK(std::runtime_error, pipe2(g_pipe, O_CLOEXEC), "pipe");
  fcntl(g_pipe[1], F_SETFL, O_NONBLOCK);  // the handler never blocks
  g_watcher = new std::thread(watch);
  struct sigaction action {};
  action.sa_handler = on_stop_signal;
  sigemptyset(&action.sa_mask);
  action.sa_flags = SA_RESTART;  // file and MPI calls in flight go on
  for (int i = 0; i < 3; ++i) sigaction(kSignals[i], &action, &g_previous[i]);
}

StopSignals::~StopSignals() {
  for (int i = 0; i < 3; ++i) sigaction(kSignals[i], &g_previous[i], nullptr);
  const char quit = 'q';
  ssize_t ignored = write(g_pipe[1], &quit, 1);
  (void)ignored;
  g_watcher->join();
  delete g_watcher;
  g_watcher = nullptr;
  close(g_pipe[0]);
  close(g_pipe[1]);
  g_pipe[0] = g_pipe[1] = -1;
  g_message_len = 0;
}

int stop_signal() { return g_signal.load(); }

void throw_if_stopped() {
  if (const int s = g_signal.load()) throw Stopped(s);
}

void request_stop(int signal) { g_signal.store(signal); }
void clear_stop() { g_signal.store(0); }

IdleScope::IdleScope() {
  g_idle.fetch_add(1);
  if (const int s = g_signal.load()) {
    run_last_words(s);
    say_message();
    _exit(exit_code_of(s));
  }
}

IdleScope::~IdleScope() { g_idle.fetch_sub(1); }

LastWords::LastWords(std::function<void(int signal)> callback) {
  std::lock_guard<std::mutex> lock(g_last_words_mutex);
  g_last_words = std::move(callback);
  g_last_words_done = false;
  g_has_last_words.store(static_cast<bool>(g_last_words));
}

LastWords::~LastWords() {
  std::lock_guard<std::mutex> lock(g_last_words_mutex);
  g_has_last_words.store(false);
  g_last_words = nullptr;
}

}  // namespace via::rank
