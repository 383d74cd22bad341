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

  // A reading of both clocks at one instant: the counter read on each side of the steady
  // clock, the tightest of a few tries, so that a preemption between the two reads cannot skew
  // the rate.
  struct Reading {
    std::uint64_t tsc;
    std::int64_t ns;
  };
  static Reading read_both() noexcept {
    Reading best{0, 0};
    std::uint64_t best_width = ~std::uint64_t{0};
    for (int attempt = 0; attempt < 5; ++attempt) {
      const std::uint64_t before = __rdtsc();
      const std::int64_t ns = steady_ns();
      const std::uint64_t after = __rdtsc();
      if (after >= before && after - before < best_width) {
        best_width = after - before;
        best = {before + (after - before) / 2, ns};
      }
    }
    return best;
  }

  TscScale() {
    const Reading start = read_both();
    while (steady_ns() - start.ns < 2'000'000) {
    }
    const Reading end = read_both();
    tsc0 = end.tsc;
    ns0 = end.ns;
    ns_per_tick = end.tsc > start.tsc ? static_cast<double>(end.ns - start.ns) /
                                            static_cast<double>(end.tsc - start.tsc)
                                      : 0.0;
  }
};

const TscScale& scale() {
  static const TscScale instance;
  return instance;
}

// Measured when the library loads, so that the first reading a run takes (the first frame's
// capture stamp) is not 2 ms late.
[[maybe_unused]] const TscScale& measured_at_load = scale();
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
