// What the processes of a run counted of the stages they serve, added up in the pipeline's
// counters hash (`mm:{P}:counters`, fields `STAGE:processed`, `STAGE:failed`, ...): each
// process's keeper adds its part; the run's report and exit rule, `micromodels status` and the
// dashboard read the totals.
#pragma once

#include <cstdint>
#include <string>

#include "micromodels/metrics.hpp"

#include "core/detail/stage_counts.hpp"
#include "redis_connection.hpp"

namespace micromodels::detail {

/// `stage`'s totals in `counters` (the reply of HGETALL on the hash); the other fields empty.
inline StageMetrics stage_counts(const redisReply* counters, const std::string& stage) {
  StageMetrics counts{.name = stage};
  for (const StageCount& count : kStageCounts) {
    counts.*count.member =
        static_cast<std::uint64_t>(integer(field(counters, stage + ':' + std::string(count.name))));
  }
  return counts;
}

}  // namespace micromodels::detail
