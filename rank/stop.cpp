#include "rank/stop.h"

#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <cstring>

namespace via::rank {
namespace {

std::atomic<int> g_signal{0};
std::atomic<int> g_idle{0};
char g_message[512] = {0};  // written by the handler: no allocation there
size_t g_message_len = 0;
std::function<void(int)> g_last_words;

constexpr int kSignals[] = {SIGTERM, SIGUSR1, SIGINT};
struct sigaction g_previous[3];

int exit_code_of(int signal) { return signal == SIGINT ? kExitInterrupted : kExitRequeue; }

extern "C" void on_stop_signal(int signal) {
  int expected = 0;
  g_signal.compare_exchange_strong(expected, signal);
  if (g_idle.load() > 0) {
    // Only async-signal-safe calls here.
    if (g_message_len > 0) {
      ssize_t ignored = write(STDERR_FILENO, g_message, g_message_len);
      (void)ignored;
    }
    _exit(exit_code_of(signal));
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
  struct sigaction action {};
  action.sa_handler = on_stop_signal;
  sigemptyset(&action.sa_mask);
  action.sa_flags = SA_RESTART;  // file and MPI calls in flight go on
  for (int i = 0; i < 3; ++i) sigaction(kSignals[i], &action, &g_previous[i]);
}

StopSignals::~StopSignals() {
  for (int i = 0; i < 3; ++i) sigaction(kSignals[i], &g_previous[i], nullptr);
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
    if (g_last_words) g_last_words(s);
    if (g_message_len > 0) {
      ssize_t ignored = write(STDERR_FILENO, g_message, g_message_len);
      (void)ignored;
    }
    _exit(exit_code_of(s));
  }
}

LastWords::LastWords(std::function<void(int signal)> callback) { g_last_words = std::move(callback); }
LastWords::~LastWords() { g_last_words = nullptr; }

IdleScope::~IdleScope() { g_idle.fetch_sub(1); }

}  // namespace via::rank
