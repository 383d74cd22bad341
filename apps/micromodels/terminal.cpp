#include "terminal.hpp"

#include <atomic>
#include <csignal>
#include <string>

#include <poll.h>
#include <sys/ioctl.h>
#include <unistd.h>

namespace micromodels::cli {

namespace {

static_assert(std::atomic<int>::is_always_lock_free);
std::atomic<int> g_stop_signals{0};

// Flags only: the main loop, woken from poll() by EINTR, restores the terminal itself.
void on_stop(int /*signal*/) { g_stop_signals.fetch_add(1); }
void on_resize(int /*signal*/) {}

void write_all(const std::string& text) {
  std::size_t done = 0;
  while (done < text.size()) {
    const ssize_t n = ::write(STDOUT_FILENO, text.data() + done, text.size() - done);
    if (n <= 0) return;  // the terminal is gone; nothing to do about it
    done += static_cast<std::size_t>(n);
  }
}

constexpr const char* kEnter = "\x1b[?1049h\x1b[?25l\x1b[H\x1b[2J";  // alternate screen, no cursor
constexpr const char* kLeave = "\x1b[0m\x1b[?25h\x1b[?1049l";        // cursor back, main screen

}  // namespace

Terminal::Terminal() {
  g_stop_signals.store(0);
  ::tcgetattr(STDIN_FILENO, &saved_);
  termios raw = saved_;
  raw.c_lflag &= ~static_cast<tcflag_t>(ICANON | ECHO);
  raw.c_cc[VMIN] = 0;
  raw.c_cc[VTIME] = 0;
  // Ctrl-C still interrupts (ISIG stays on); Ctrl-Z would leave a raw terminal behind, so it is
  // off.
  raw.c_cc[VSUSP] = _POSIX_VDISABLE;
  ::tcsetattr(STDIN_FILENO, TCSAFLUSH, &raw);

  struct sigaction action {};
  action.sa_handler = on_stop;
  sigemptyset(&action.sa_mask);
  action.sa_flags = 0;  // no SA_RESTART: poll() must return on a signal
  sigaction(SIGINT, &action, &previous_int_);
  sigaction(SIGTERM, &action, &previous_term_);
  sigaction(SIGHUP, &action, &previous_hup_);
  action.sa_handler = on_resize;
  sigaction(SIGWINCH, &action, &previous_winch_);
  write_all(kEnter);
}

Terminal::~Terminal() {
  write_all(kLeave);
  ::tcsetattr(STDIN_FILENO, TCSAFLUSH, &saved_);
  sigaction(SIGINT, &previous_int_, nullptr);
  sigaction(SIGTERM, &previous_term_, nullptr);
  sigaction(SIGHUP, &previous_hup_, nullptr);
  sigaction(SIGWINCH, &previous_winch_, nullptr);
}

std::optional<char> Terminal::wait_key(std::chrono::milliseconds timeout) {
  pollfd input{.fd = STDIN_FILENO, .events = POLLIN, .revents = 0};
  if (::poll(&input, 1, static_cast<int>(timeout.count())) <= 0) return std::nullopt;
  char key = 0;
  if (::read(STDIN_FILENO, &key, 1) != 1) return std::nullopt;
  return key;
}

bool Terminal::interrupted() const noexcept { return g_stop_signals.load() > 0; }

int Terminal::columns() const {
  winsize size{};
  return ::ioctl(STDOUT_FILENO, TIOCGWINSZ, &size) == 0 && size.ws_col > 0 ? size.ws_col : 80;
}

int Terminal::rows() const {
  winsize size{};
  return ::ioctl(STDOUT_FILENO, TIOCGWINSZ, &size) == 0 && size.ws_row > 0 ? size.ws_row : 24;
}

void Terminal::draw(const std::string& text) const {
  // Home, each line followed by "erase to end of line", then erase below: no blank frame, and
  // never more lines than fit, which would scroll the screen.
  const int fit = rows();
  std::string screen = "\x1b[H";
  std::size_t start = 0;
  for (int line = 0; line < fit && start < text.size(); ++line) {
    std::size_t end = text.find('\n', start);
    if (end == std::string::npos) end = text.size();
    if (line > 0) screen += "\r\n";
    screen.append(text, start, end - start);
    screen += "\x1b[K";
    start = end + 1;
  }
  screen += "\x1b[J";
  write_all(screen);
}

}  // namespace micromodels::cli
