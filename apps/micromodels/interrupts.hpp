// SIGINT and SIGTERM during a run: the first asks for a graceful stop, the second aborts.
#pragma once

#include <csignal>
#include <cstdint>

namespace micromodels::cli {

/// While alive, SIGINT and SIGTERM are counted instead of killing the process. The main loop
/// polls `count()` and stops the runner on the first; the handler itself ends the process on the
/// second (exit 130), because by then the main loop may be the thing that is stuck.
/// The handler only touches lock-free atomics and calls write(2) and _exit(2), all of which are
/// async-signal-safe. One instance at a time; the destructor restores the previous handlers.
///
///   Interrupts interrupts;
///   while (!runner.wait_for(100)) {
///     if (interrupts.count() > 0) runner.stop();
///   }
class Interrupts {
 public:
  Interrupts();
  ~Interrupts();
  Interrupts(const Interrupts&) = delete;
  Interrupts& operator=(const Interrupts&) = delete;

  /// Signals received since construction.
  [[nodiscard]] int count() const noexcept;
  /// What the abort message reports as abandoned; call it as the number changes.
  void set_in_flight(std::uint64_t packets) noexcept;

 private:
  struct sigaction previous_int_ {};
  struct sigaction previous_term_ {};
};

}  // namespace micromodels::cli
