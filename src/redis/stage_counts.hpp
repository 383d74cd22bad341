// What the processes of a run counted of the stages they serve, added up in the pipeline's
// counters hash (`mm:{P}:counters`, fields `STAGE:processed`, `STAGE:failed`, ...): each
// process's keeper adds its part; the run's report and exit rule, `micromodels status` and the
// dashboard read the totals.
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <string_view>

#include "micromodels/metrics.hpp"

#include "redis_connection.hpp"

namespace micromodels::detail {

/// A counted field: its suffix in the hash after the stage's name, and where StageMetrics has it.
struct StageCount {
  std::string_view suffix;
  std::uint64_t StageMetrics::*member;
};

inline constexpr std::array<StageCount, 7> kStageCounts{{
    {":processed", &StageMetrics::processed},
    {":failed", &StageMetrics::failed},
    {":dropped", &StageMetrics::dropped},
    {":dropped_age", &StageMetrics::dropped_age},
    {":dropped_newest", &StageMetrics::dropped_newest},
    {":dropped_unserved", &StageMetrics::dropped_unserved},
    {":dead_lettered", &StageMetrics::dead_lettered},
}};

/// `stage`'s totals in `counters` (the reply of HGETALL on the hash); the other fields empty.
inline StageMetrics stage_counts(const redisReply* counters, const std::string& stage) {
  StageMetrics counts{.name = stage};
  for (const StageCount& count : kStageCounts) {
    counts.*count.member = static_cast<std::uint64_t>(
        integer(field(counters, stage + std::string(count.suffix))));
  }
  return counts;
}

}  // namespace micromodels::detail
