// The counts of a stage that add up over the processes serving it, by name: what a process
// adds to a distributed run's totals (src/redis/stage_counts.hpp) and what the run's report
// gives for the stages other processes served (`served_elsewhere`).
#pragma once

#include <array>
#include <cstdint>
#include <string_view>

#include "micromodels/metrics.hpp"

namespace micromodels::detail {

struct StageCount {
  std::string_view name;  // as in the metrics JSON
  std::uint64_t StageMetrics::*member;
};

inline constexpr std::array<StageCount, 7> kStageCounts{{
    {"processed", &StageMetrics::processed},
    {"failed", &StageMetrics::failed},
    {"dropped", &StageMetrics::dropped},
    {"dropped_age", &StageMetrics::dropped_age},
    {"dropped_newest", &StageMetrics::dropped_newest},
    {"dropped_unserved", &StageMetrics::dropped_unserved},
    {"dead_lettered", &StageMetrics::dead_lettered},
}};

}  // namespace micromodels::detail
