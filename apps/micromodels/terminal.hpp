// The terminal of a full-screen view (`micromodels top`): raw keys, alternate screen, signals.
#pragma once

#include <chrono>
#include <csignal>
#include <optional>
#include <string>

#include <termios.h>

namespace micromodels::cli {

/// While alive, the terminal on stdin/stdout is in raw mode (keys arrive one at a time, no
/// echo) on the alternate screen with the cursor hidden, as htop does; the destructor restores
/// all of it. SIGINT, SIGTERM and SIGHUP do not kill the process but end `wait_key` so that the
/// destructor runs; SIGWINCH makes `wait_key` return so that the view redraws at the new size.
/// Plain ANSI escapes: it works over SSH and in any terminal emulator. One instance at a time.
///
///   Terminal terminal;
///   while (!terminal.interrupted()) {
///     terminal.draw(render(terminal.columns()));
///     if (terminal.wait_key(500ms) == 'q') break;
///   }
class Terminal {
 public:
  Terminal();
  ~Terminal();
  Terminal(const Terminal&) = delete;
  Terminal& operator=(const Terminal&) = delete;

  /// The next key pressed within `timeout`, or nothing (time out, a signal, a resize).
  std::optional<char> wait_key(std::chrono::milliseconds timeout);
  /// A signal asked the view to end.
  [[nodiscard]] bool interrupted() const noexcept;
  [[nodiscard]] int columns() const;
  [[nodiscard]] int rows() const;
  /// Replaces the screen's contents with `text` (lines ending in '\n'), without flicker.
  void draw(const std::string& text) const;

 private:
  termios saved_{};
  struct sigaction previous_int_ {};
  struct sigaction previous_term_ {};
  struct sigaction previous_hup_ {};
  struct sigaction previous_winch_ {};
};

}  // namespace micromodels::cli
