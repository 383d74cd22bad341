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

/// What a stage counted itself (Stage::count) goes in fields `STAGE:event:NAME`.
inline constexpr std::string_view kEventField = ":event:";

/// `stage`'s totals in `counters` (the reply of HGETALL on the hash), its events included; the
/// other fields empty.
inline StageMetrics stage_counts(const redisReply* counters, const std::string& stage) {
  StageMetrics counts{.name = stage};
  for (const StageCount& count : kStageCounts) {
    counts.*count.member =
        static_cast<std::uint64_t>(integer(field(counters, stage + ':' + std::string(count.name))));
  }
  const std::string events = stage + std::string(kEventField);
  for (std::size_t i = 0; i + 1 < size(counters); i += 2) {
    const std::string_view key = text(at(counters, i));
    if (!key.starts_with(events)) continue;
    counts.events[std::string(key.substr(events.size()))] =
        static_cast<std::uint64_t>(integer(at(counters, i + 1)));
  }
  return counts;
}

}  // namespace micromodels::detail
