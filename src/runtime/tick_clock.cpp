#include "tick_clock.hpp"

#include "micromodels/packet.hpp"

#include <chrono>

#if defined(__x86_64__)
#include <x86intrin.h>
#endif

namespace micromodels::detail {

namespace {

std::int64_t steady_ns() noexcept {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

#if defined(__x86_64__)
// Processors of the last decade keep the counter at a constant rate, in step across cores
// (constant_tsc, nonstop_tsc); the rate is measured once over a couple of milliseconds.
struct TscScale {
  std::uint64_t tsc0;
  std::int64_t ns0;
  double ns_per_tick;

  TscScale() {
    const std::int64_t start_ns = steady_ns();
    const std::uint64_t start_tsc = __rdtsc();
    std::int64_t end_ns = start_ns;
    while (end_ns - start_ns < 2'000'000) end_ns = steady_ns();
    const std::uint64_t end_tsc = __rdtsc();
    tsc0 = end_tsc;
    ns0 = end_ns;
    ns_per_tick = end_tsc > start_tsc ? static_cast<double>(end_ns - start_ns) /
                                            static_cast<double>(end_tsc - start_tsc)
                                      : 0.0;
  }
};

const TscScale& scale() {
  static const TscScale instance;
  return instance;
}
#endif

}  // namespace

std::int64_t tick_ns() noexcept {
#if defined(__x86_64__)
  const TscScale& s = scale();
  if (s.ns_per_tick > 0) {
    const auto ticks = static_cast<std::int64_t>(__rdtsc() - s.tsc0);
    return s.ns0 + static_cast<std::int64_t>(static_cast<double>(ticks) * s.ns_per_tick);
  }
#endif
  return steady_ns();
}

}  // namespace micromodels::detail

namespace micromodels {

std::int64_t capture_clock_ns() noexcept { return detail::tick_ns(); }

}  // namespace micromodels
