// What the processes of a run counted of the stages they serve, added up in the pipeline's
// counters hash (`mm:{P}:counters`, fields `STAGE:processed`, `STAGE:failed`, ...), and of the
// hops they sent (`mm:{P}:hops`, fields `FROM>TO:packets`, `:bytes`, `:images`): each process's
// keeper adds its part; the run's report and exit rule, `micromodels status`, the dashboard and
// the memory gate read the totals.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "micromodels/metrics.hpp"
#include "micromodels/plan.hpp"
#include "micromodels/redis.hpp"

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

/// The hops' field in the hops hash: "FROM>TO" (RedisOutlet::hop).
inline std::string hop_field(std::string_view from, std::string_view to) {
  return std::string(from) + '>' + std::string(to);
}

/// Each hop of `plan` with its totals in `hops` (the reply of HGETALL on the hops hash).
inline std::vector<HopBytes> hop_counts(const redisReply* hops, const Plan& plan) {
  std::vector<HopBytes> counts;
  for (const PlanStage& to : plan.stages()) {
    for (std::size_t from : to.inputs) {
      const std::string& name = plan.stages()[from].name();
      const std::string hop = hop_field(name, to.name());
      const auto count = [&](const char* what) {
        return static_cast<std::uint64_t>(integer(field(hops, hop + what)));
      };
      counts.push_back({.from = name,
                        .to = to.name(),
                        .packets = count(":packets"),
                        .bytes = count(":bytes"),
                        .image_bytes = count(":images")});
    }
  }
  return counts;
}

}  // namespace micromodels::detail
