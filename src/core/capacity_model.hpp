// How fast a pipeline can go with given consumer counts, from measured service times. Shared by
// the end-of-run bottleneck report and the autoscaler.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "micromodels/metrics.hpp"

namespace micromodels::detail {

/// One stage's share of the work.
struct StageLoad {
  std::string name;
  double demand_s = 0;       // service seconds per packet entering the pipeline (visits × mean)
  int consumers = 1;
  bool blocking = false;     // on its own threads; otherwise on the shared worker pool
  int max_parallel = 0;      // per_stream: streams that can be served at once; 0: no limit
  bool sheds = false;        // drops what does not fit: limits its own packets, not the rate
};

/// What limits a pipeline's rate: one stage, or the worker pool shared by CPU-bound stages.
struct Capacity {
  double rate = 0;          // packets per second entering the pipeline, at most
  std::optional<std::size_t> stage{};  // the limiting stage; empty: the worker pool
};

/// Packets per second stage `load` can take: its usable consumers / its demand (infinite when it
/// measured no work).
[[nodiscard]] double stage_rate(const StageLoad& load);

/// The pipeline's rate: the least of the rates of the stages that do not shed and of the pool's
/// (`workers` threads / the total demand of CPU-bound stages).
[[nodiscard]] Capacity capacity(const std::vector<StageLoad>& loads, int workers);

/// Every stage's load from a snapshot: demand = mean service time x visits per packet the
/// sources produced. With `before` (an earlier snapshot of the same run) the mean service time is
/// that of the interval since, when the stage measured any. Visits are the stage's packets / the
/// packets produced, which packets still queued upstream bias low while a run is young; `inputs`
/// (each stage's input stages, by index) gives instead the product of the pass ratios (emitted /
/// processed) upstream, which is right from the first packets. Empty before the first packet.
[[nodiscard]] std::vector<StageLoad> stage_loads(
    const MetricsSnapshot& now, const MetricsSnapshot* before = nullptr,
    const std::vector<std::vector<std::size_t>>* inputs = nullptr);

}  // namespace micromodels::detail
