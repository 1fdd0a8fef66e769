#pragma once
// Stopping a render on request (docs/ARCHITECTURE.md §10): Slurm's warning signal before
// a time limit (SIGUSR1), a preemption or `scancel` (SIGTERM), Ctrl-C
// (SIGINT). Work stops at the next denoising step; everything finished is
// already on disk, so a later `--resume` redoes only the frames in hand.
#include <functional>
#include <stdexcept>
#include <string>

namespace via::rank {

/// The exit code of a render stopped by SIGTERM or SIGUSR1 ("stopped; resume
/// me": EX_TEMPFAIL). The Slurm job script turns it into a requeue.
constexpr int kExitRequeue = 75;
/// The exit code of a render stopped by SIGINT (128 + 2, as shells report it).
constexpr int kExitInterrupted = 130;

/// Thrown by throw_if_stopped() once a stop signal has arrived.
class Stopped : public std::runtime_error {
 public:
  explicit Stopped(int signal);
  int signal() const { return signal_; }
  /// kExitRequeue, or kExitInterrupted for SIGINT.
  int exit_code() const;

 private:
  int signal_;
};

/// Installs the handlers for SIGTERM, SIGUSR1 and SIGINT for its lifetime
/// (one at a time per process) and restores the previous ones after. The
/// handlers only record the signal, except inside an IdleScope.
class StopSignals {
 public:
  /// `idle_message` is written to stderr when a signal ends the process
  /// inside an IdleScope ("" for none: the other ranks stay quiet).
  explicit StopSignals(const std::string& idle_message = "");
  ~StopSignals();
  StopSignals(const StopSignals&) = delete;
  StopSignals& operator=(const StopSignals&) = delete;
};

/// The signal received so far (0: none).
int stop_signal();
/// Throws Stopped if a stop signal has arrived.
void throw_if_stopped();
/// Records a stop as if `signal` had arrived (tests).
void request_stop(int signal);
/// Forgets a recorded stop (tests).
void clear_stop();

/// Marks a stretch in which this process holds nothing unfinished (waiting
/// for another rank in a collective): a stop signal then ends the process at
/// once with its exit code (after StopSignals' message) instead of waiting for
/// a collective that may never return, since the other ranks stop too. On
/// entry with a signal already received, it runs the LastWords callback and
/// ends the process the same way.
class IdleScope {
 public:
  IdleScope();
  ~IdleScope();
  IdleScope(const IdleScope&) = delete;
  IdleScope& operator=(const IdleScope&) = delete;
};

/// While alive, `callback(signal)` runs before IdleScope ends the process on
/// entry (in normal context: it may write files), e.g. to record the stop.
class LastWords {
 public:
  explicit LastWords(std::function<void(int signal)> callback);
  ~LastWords();
  LastWords(const LastWords&) = delete;
  LastWords& operator=(const LastWords&) = delete;
};

}  // namespace via::rank
