// The order statistics the benchmarks report: nearest rank on a sorted copy.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <vector>

namespace micromodels::bench {

/// The value below which `fraction` of `values` lie (nearest rank on a sorted copy); 0 when empty.
inline double percentile(std::vector<double> values, double fraction) {
  if (values.empty()) return 0;
  std::sort(values.begin(), values.end());
  const auto rank =
      static_cast<std::size_t>(std::lround(fraction * static_cast<double>(values.size() - 1)));
  return values[std::min(rank, values.size() - 1)];
}

/// The middle value (the upper one of an even count); 0 when empty.
inline double median(std::vector<double> values) { return percentile(std::move(values), 0.5); }

}  // namespace micromodels::bench
