// Progress of a run on stderr: a bar redrawn in place on a terminal, periodic lines in a log.
#pragma once

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <deque>
#include <string>
#include <utility>

namespace micromodels::cli {

/// Shows packets out of the total the sources announced (when known), percentage, packets out
/// per second and ETA.
/// On a terminal the bar is redrawn in place at most 10 times a second; otherwise a plain line
/// is written every 2 seconds, so that logs stay readable. `quiet` shows nothing.
/// Call `update` as often as convenient: it decides itself when to draw.
///
///   ProgressBar progress(options.quiet);
///   while (!run.wait_for(100)) progress.update(run.progress().done, run.progress().expected);
///   progress.finish(run.progress().done, run.progress().expected);
class ProgressBar {
 public:
  enum class Style { off, redraw, lines };
  using Clock = std::chrono::steady_clock;

  /// Picks `redraw` when `out` is a terminal, `lines` otherwise, `off` when quiet.
  explicit ProgressBar(bool quiet, std::FILE* out = stderr);
  ProgressBar(Style style, std::FILE* out);
  /// Ends the line of a bar still on screen, so that whatever is printed next starts clean.
  ~ProgressBar();
  ProgressBar(const ProgressBar&) = delete;
  ProgressBar& operator=(const ProgressBar&) = delete;

  /// `total` 0 means unknown.
  void update(std::uint64_t done, std::uint64_t total);
  /// Draws the final state (on a terminal) and ends the line.
  void finish(std::uint64_t done, std::uint64_t total);
  /// Erases a bar on screen so that a message can be printed; the next update redraws it.
  void clear();

  [[nodiscard]] Style style() const noexcept { return style_; }

 private:
  void record(Clock::time_point now, std::uint64_t done);
  [[nodiscard]] double rate_per_s() const;
  void draw(Clock::time_point now, std::uint64_t done, std::uint64_t total);

  Style style_;
  std::FILE* out_;
  Clock::time_point start_;
  Clock::time_point last_draw_;
  bool drawn_ = false;      // something was drawn since start or the last clear
  bool on_screen_ = false;  // a bar without its newline is on the terminal
  std::deque<std::pair<Clock::time_point, std::uint64_t>> samples_;  // recent (time, done)
};

/// The text of one progress report, without control characters; `bar_width` 0 omits the bar.
/// "[#####-----]  450/1000  45%  120/s  ETA 0:04" or "450 packets  120/s  elapsed 0:04".
[[nodiscard]] std::string format_progress(std::uint64_t done, std::uint64_t total,
                                          double rate_per_s, double elapsed_s,
                                          std::size_t bar_width);

}  // namespace micromodels::cli
