// A lock-free latency histogram: log-linear buckets, ~9% resolution, 1 ns to ~2 minutes.
#pragma once

#include <algorithm>
#include <array>
#include <atomic>
#include <bit>
#include <cstdint>

#include "micromodels/metrics.hpp"

namespace micromodels::detail {

class Histogram {
 public:
  /// `exclusive`: the caller is the only thread recording now, so plain loads and stores do.
  /// Inline: it runs twice on every hop.
  void record(std::int64_t nanoseconds, bool exclusive = false) noexcept {
    const auto ns = static_cast<std::uint64_t>(std::max<std::int64_t>(nanoseconds, 0));
    auto& count = counts_[static_cast<std::size_t>(bucket_of(ns))];
    if (exclusive) {
      count.store(count.load(std::memory_order_relaxed) + 1, std::memory_order_relaxed);
      sum_ns_.store(sum_ns_.load(std::memory_order_relaxed) + ns, std::memory_order_relaxed);
      return;
    }
    count.fetch_add(1, std::memory_order_relaxed);
    sum_ns_.fetch_add(ns, std::memory_order_relaxed);
  }
  [[nodiscard]] Latency summary() const;

 private:
  static constexpr int kSubBits = 3;  // 8 buckets per power of two
  static constexpr int kOctaves = 37;
  static constexpr int kBuckets = (kOctaves + 1) << kSubBits;
  static int bucket_of(std::uint64_t ns) noexcept {
    // Values below 2^kSubBits get exact buckets; above, the top kSubBits+1 bits pick the bucket.
    if (ns < (1u << kSubBits)) return static_cast<int>(ns);
    const int msb = std::bit_width(ns) - 1;  // >= kSubBits
    const int octave = msb - kSubBits + 1;
    const int sub = static_cast<int>((ns >> (msb - kSubBits)) & ((1u << kSubBits) - 1));
    return std::min((octave << kSubBits) + sub, kBuckets - 1);
  }
  static double upper_bound_ns(int bucket) noexcept;

  std::array<std::atomic<std::uint64_t>, kBuckets> counts_{};
  std::atomic<std::uint64_t> sum_ns_{0};
};

}  // namespace micromodels::detail
