// Signal handling for `micromodels run`; see interrupts.hpp for the protocol.
#include "interrupts.hpp"

#include <atomic>

#include <unistd.h>

#include "exit_codes.hpp"

namespace micromodels::cli {

namespace {

// Only lock-free atomics may be touched from a signal handler.
static_assert(std::atomic<int>::is_always_lock_free);
static_assert(std::atomic<std::uint64_t>::is_always_lock_free);

constexpr std::uint64_t kUnknown = ~std::uint64_t{0};
std::atomic<int> g_signals{0};
std::atomic<std::uint64_t> g_in_flight{kUnknown};

// No snprintf in a signal handler: it may allocate or take locks.
char* append(char* out, const char* text) {
  while (*text != '\0') *out++ = *text++;
  return out;
}

char* append_decimal(char* out, std::uint64_t value) {
  char digits[20];
  int n = 0;
  do {
    digits[n++] = static_cast<char>('0' + value % 10);
    value /= 10;
  } while (value != 0);
  while (n > 0) *out++ = digits[--n];
  return out;
}

void on_signal(int /*signal*/) {
  if (g_signals.fetch_add(1) == 0) return;  // the main loop sees it and drains
  char message[128];
  char* end = append(message, "\ninterrupted: ");
  const std::uint64_t in_flight = g_in_flight.load();
  if (in_flight == kUnknown) {
    end = append(end, "aborting\n");
  } else {
    end = append(end, "aborting with ");
    end = append_decimal(end, in_flight);
    end = append(end, " packets still in flight\n");
  }
  // Nothing useful can be done if stderr is gone; the exit code still says what happened.
  [[maybe_unused]] const ssize_t written =
      ::write(STDERR_FILENO, message, static_cast<std::size_t>(end - message));
  ::_exit(kExitInterrupted);
}

}  // namespace

Interrupts::Interrupts() {
  g_signals.store(0);
  g_in_flight.store(kUnknown);
  struct sigaction action {};
  action.sa_handler = on_signal;
  sigemptyset(&action.sa_mask);
  // SA_RESTART: the runner's threads must not see EINTR from their own blocking calls.
  action.sa_flags = SA_RESTART;
  sigaction(SIGINT, &action, &previous_int_);
  sigaction(SIGTERM, &action, &previous_term_);
}

Interrupts::~Interrupts() {
  sigaction(SIGINT, &previous_int_, nullptr);
  sigaction(SIGTERM, &previous_term_, nullptr);
}

int Interrupts::count() const noexcept { return g_signals.load(); }

void Interrupts::set_in_flight(std::uint64_t packets) noexcept { g_in_flight.store(packets); }

}  // namespace micromodels::cli
