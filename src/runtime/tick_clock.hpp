// A cheap monotonic clock for per-packet timing on the hot path.
#pragma once

#include <cstdint>

namespace micromodels::detail {

/// Nanoseconds since an arbitrary start. On x86-64 it reads the time-stamp counter (a few
/// nanoseconds, against tens for clock_gettime on a virtual machine's clock source), scaled by a
/// rate measured against steady_clock at start-up; elsewhere it is steady_clock.
[[nodiscard]] std::int64_t tick_ns() noexcept;

}  // namespace micromodels::detail
