// A lock-free latency histogram: log-linear buckets, ~9% resolution, 1 ns to ~2 minutes.
#pragma once

#include <array>
#include <atomic>
#include <cstdint>

#include "micromodels/metrics.hpp"

namespace micromodels::detail {

class Histogram {
 public:
  /// `exclusive`: the caller is the only thread recording now, so plain loads and stores do.
  void record(std::int64_t nanoseconds, bool exclusive = false) noexcept;
  [[nodiscard]] Latency summary() const;

 private:
  static constexpr int kSubBits = 3;  // 8 buckets per power of two
  static constexpr int kOctaves = 37;
  static constexpr int kBuckets = (kOctaves + 1) << kSubBits;
  static int bucket_of(std::uint64_t ns) noexcept;
  static double upper_bound_ns(int bucket) noexcept;

  std::array<std::atomic<std::uint64_t>, kBuckets> counts_{};
  std::atomic<std::uint64_t> sum_ns_{0};
};

}  // namespace micromodels::detail
