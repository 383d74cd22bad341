// Progress of a run on stderr; see progress_bar.hpp.
#include "progress_bar.hpp"

#include <algorithm>
#include <cmath>

#include <sys/ioctl.h>
#include <unistd.h>

namespace micromodels::cli {

namespace {

using namespace std::chrono_literals;

constexpr auto kRedrawInterval = 100ms;  // at most 10 redraws a second on a terminal
constexpr auto kLineInterval = 2s;       // a line every 2 s in a log
constexpr auto kRateWindow = 3s;         // the rate over the last seconds, not since the start

std::string format_clock(double seconds) {
  const auto total = static_cast<long long>(std::llround(std::max(seconds, 0.0)));
  const long long h = total / 3600;
  const long long m = total / 60 % 60;
  const long long s = total % 60;
  char text[32];
  if (h > 0) {
    std::snprintf(text, sizeof text, "%lld:%02lld:%02lld", h, m, s);
  } else {
    std::snprintf(text, sizeof text, "%lld:%02lld", m, s);
  }
  return text;
}

// Packets out per second: the word is the metrics' (a frame is a packet of the eye-contact
// pipeline, not of every pipeline).
std::string format_rate(double rate_per_s) {
  if (!(rate_per_s > 0) || !std::isfinite(rate_per_s)) return "-/s";
  char text[32];
  std::snprintf(text, sizeof text, rate_per_s < 10 ? "%.1f/s" : "%.0f/s", rate_per_s);
  return text;
}

std::size_t terminal_columns(std::FILE* out) {
  winsize size{};
  if (::ioctl(::fileno(out), TIOCGWINSZ, &size) == 0 && size.ws_col > 0) return size.ws_col;
  return 80;
}

}  // namespace

std::string format_progress(std::uint64_t done, std::uint64_t total, double rate_per_s,
                            double elapsed_s, std::size_t bar_width) {
  if (total == 0) {
    return std::to_string(done) + " packets  " + format_rate(rate_per_s) + "  elapsed " +
           format_clock(elapsed_s);
  }
  // A stage that fans out can retire more packets than the sources announced; never show >100%.
  const double fraction = std::min(1.0, static_cast<double>(done) / static_cast<double>(total));
  std::string text;
  if (bar_width > 0) {
    const auto filled = static_cast<std::size_t>(fraction * static_cast<double>(bar_width));
    text += '[';
    text.append(filled, '#');
    text.append(bar_width - filled, '-');
    text += "]  ";
  }
  const std::string total_text = std::to_string(total);
  const std::string done_text = std::to_string(done);
  // Pad the count to the total's width so that the line does not jitter as digits are added.
  if (done_text.size() < total_text.size()) text.append(total_text.size() - done_text.size(), ' ');
  text += done_text + '/' + total_text;
  char percent[16];
  std::snprintf(percent, sizeof percent, "  %3d%%  ", static_cast<int>(std::floor(fraction * 100)));
  text += percent;
  text += format_rate(rate_per_s);
  if (done >= total) {
    text += "  elapsed " + format_clock(elapsed_s);
  } else if (rate_per_s > 0) {
    text += "  ETA " + format_clock(static_cast<double>(total - done) / rate_per_s);
  } else {
    text += "  ETA -:--";
  }
  return text;
}

ProgressBar::ProgressBar(bool quiet, std::FILE* out)
    : ProgressBar(quiet                     ? Style::off
                  : ::isatty(::fileno(out)) ? Style::redraw
                                            : Style::lines,
                  out) {}

ProgressBar::ProgressBar(Style style, std::FILE* out)
    : style_(style), out_(out), start_(Clock::now()), last_draw_(start_) {}

ProgressBar::~ProgressBar() {
  if (on_screen_) {
    std::fputc('\n', out_);
    std::fflush(out_);
  }
}

void ProgressBar::record(Clock::time_point now, std::uint64_t done) {
  samples_.emplace_back(now, done);
  // Keep one sample older than the window so that the rate always spans the whole window.
  while (samples_.size() > 2 && now - samples_[1].first >= kRateWindow) samples_.pop_front();
}

double ProgressBar::rate_per_s() const {
  if (samples_.size() < 2) return 0;
  const auto& [t0, n0] = samples_.front();
  const auto& [t1, n1] = samples_.back();
  const double seconds = std::chrono::duration<double>(t1 - t0).count();
  // Below a quarter second the rate is mostly noise from the polling interval.
  if (seconds < 0.25 || n1 < n0) return 0;
  return static_cast<double>(n1 - n0) / seconds;
}

void ProgressBar::update(std::uint64_t done, std::uint64_t total) {
  if (style_ == Style::off) return;
  const Clock::time_point now = Clock::now();
  record(now, done);
  const auto interval =
      style_ == Style::redraw ? Clock::duration(kRedrawInterval) : Clock::duration(kLineInterval);
  // On a terminal the bar appears at once; in a log the first line waits a full interval, so a
  // short run writes none.
  if ((style_ == Style::redraw && !drawn_) || now - last_draw_ >= interval) draw(now, done, total);
}

void ProgressBar::finish(std::uint64_t done, std::uint64_t total) {
  if (style_ != Style::redraw) return;  // in a log, the summary that follows says it all
  const Clock::time_point now = Clock::now();
  record(now, done);
  draw(now, done, total);
  std::fputc('\n', out_);
  std::fflush(out_);
  on_screen_ = false;
}

void ProgressBar::clear() {
  if (!on_screen_) return;
  std::fputs("\r\033[K", out_);
  std::fflush(out_);
  on_screen_ = false;
  drawn_ = false;
}

void ProgressBar::draw(Clock::time_point now, std::uint64_t done, std::uint64_t total) {
  const double elapsed_s = std::chrono::duration<double>(now - start_).count();
  const double rate = rate_per_s();
  last_draw_ = now;
  drawn_ = true;
  if (style_ == Style::lines) {
    std::fprintf(out_, "progress: %s\n", format_progress(done, total, rate, elapsed_s, 0).c_str());
    std::fflush(out_);
    return;
  }
  // Fit the bar to the terminal; a line that wraps cannot be redrawn in place.
  const std::size_t columns = terminal_columns(out_);
  const std::size_t text_width = format_progress(done, total, rate, elapsed_s, 0).size();
  constexpr std::size_t kMaxBar = 30;
  constexpr std::size_t kMinBar = 10;
  const std::size_t room = columns > text_width + 5 ? columns - text_width - 5 : 0;  // "[]  " + 1
  const std::size_t bar = total == 0 || room < kMinBar ? 0 : std::min(room, kMaxBar);
  std::string line = format_progress(done, total, rate, elapsed_s, bar);
  if (line.size() >= columns) line.resize(columns - 1);
  std::fprintf(out_, "\r%s\033[K", line.c_str());
  std::fflush(out_);
  on_screen_ = true;
}

}  // namespace micromodels::cli
