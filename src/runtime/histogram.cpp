#include "histogram.hpp"

#include <algorithm>
#include <bit>
#include <cmath>

namespace micromodels::detail {

namespace {
// Bounds exported as Prometheus buckets, in microseconds.
constexpr std::array<double, 20> kExportBoundsUs = {1,    2.5,   5,     10,    25,    50,   100,
                                                    250,  500,   1e3,   2.5e3, 5e3,   1e4,  2.5e4,
                                                    5e4,  1e5,   2.5e5, 1e6,   2.5e6, 1e7};
}  // namespace

double Histogram::upper_bound_ns(int bucket) noexcept {
  const int octave = bucket >> kSubBits;
  const int sub = bucket & ((1 << kSubBits) - 1);
  if (octave == 0) return sub + 1;
  const double base = std::ldexp(1.0, octave + kSubBits - 1);
  return base + (sub + 1) * (base / (1 << kSubBits));
}

Latency Histogram::summary() const {
  std::array<std::uint64_t, kBuckets> counts{};
  std::uint64_t total = 0;
  for (int i = 0; i < kBuckets; ++i) {
    counts[static_cast<std::size_t>(i)] = counts_[static_cast<std::size_t>(i)].load(std::memory_order_relaxed);
    total += counts[static_cast<std::size_t>(i)];
  }
  Latency latency;
  latency.count = total;
  latency.sum_us = static_cast<double>(sum_ns_.load(std::memory_order_relaxed)) / 1e3;
  latency.mean_us = total == 0 ? 0 : latency.sum_us / static_cast<double>(total);
  const auto percentile = [&](double q) {
    if (total == 0) return 0.0;
    const auto rank = static_cast<std::uint64_t>(std::ceil(q * static_cast<double>(total)));
    std::uint64_t seen = 0;
    for (int i = 0; i < kBuckets; ++i) {
      seen += counts[static_cast<std::size_t>(i)];
      if (seen >= rank) return upper_bound_ns(i) / 1e3;
    }
    return upper_bound_ns(kBuckets - 1) / 1e3;
  };
  latency.p50_us = percentile(0.50);
  latency.p95_us = percentile(0.95);
  latency.p99_us = percentile(0.99);
  std::uint64_t cumulative = 0;
  int bucket = 0;
  for (double bound_us : kExportBoundsUs) {
    while (bucket < kBuckets && upper_bound_ns(bucket) <= bound_us * 1e3) {
      cumulative += counts[static_cast<std::size_t>(bucket++)];
    }
    latency.buckets.emplace_back(bound_us, cumulative);
  }
  return latency;
}

}  // namespace micromodels::detail
