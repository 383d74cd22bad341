#include "capacity_model.hpp"

#include <algorithm>
#include <limits>

namespace micromodels::detail {

double stage_rate(const StageLoad& load) {
  if (load.demand_s <= 0) return std::numeric_limits<double>::infinity();
  const int usable =
      load.max_parallel > 0 ? std::min(load.consumers, load.max_parallel) : load.consumers;
  return usable / load.demand_s;
}

Capacity capacity(const std::vector<StageLoad>& loads, int workers) {
  Capacity result{.rate = std::numeric_limits<double>::infinity()};
  double pool_demand = 0;
  for (std::size_t i = 0; i < loads.size(); ++i) {
    if (!loads[i].blocking) pool_demand += loads[i].demand_s;
    if (loads[i].sheds) continue;  // the stages before it never wait for it
    const double rate = stage_rate(loads[i]);
    if (rate < result.rate) result = {.rate = rate, .stage = i};
  }
  // The pool limits only when it is the tighter bound, so that a stage is named when a stage's
  // own consumers are the limit.
  if (workers > 0 && pool_demand > 0 && workers / pool_demand < result.rate) {
    result = {.rate = workers / pool_demand, .stage = std::nullopt};
  }
  return result;
}

namespace {

// Packets offered to a stage: those it served, and those it dropped (its queue full under a drop
// policy, too old or replaced by a newer one in live mode, a join that timed out): load it did
// not keep up with.
double offered(const StageMetrics& s) { return static_cast<double>(s.service.count + s.dropped); }

// Packets each stage sees per packet the sources produce, from the pass ratios upstream. Stages
// are listed in an order where inputs come first (Pipeline::validate refuses cycles, but does
// not sort): repeat until settled.
std::vector<double> visits_through(const MetricsSnapshot& now,
                                   const std::vector<std::vector<std::size_t>>& inputs) {
  const std::size_t n = now.stages.size();
  std::vector<double> visits(n, 0.0);
  auto pass = [&](std::size_t i) {
    const StageMetrics& s = now.stages[i];
    return s.processed > 0 ? static_cast<double>(s.emitted) / static_cast<double>(s.processed)
                           : 1.0;
  };
  for (std::size_t round = 0; round < n; ++round) {
    for (std::size_t i = 0; i < n; ++i) {
      const StageMetrics& s = now.stages[i];
      if (s.source) {
        visits[i] = static_cast<double>(s.service.count) / static_cast<double>(now.packets_in);
        continue;
      }
      // A join emits one packet per key whatever its number of inputs: the least input counts.
      // A stage whose inputs run in another process (or the dead-letter stage) counts its own.
      double least = inputs[i].empty() ? offered(s) / static_cast<double>(now.packets_in)
                                       : std::numeric_limits<double>::infinity();
      for (std::size_t from : inputs[i]) {
        const StageMetrics& up = now.stages[from];
        least = std::min(least, up.source ? static_cast<double>(up.processed) /
                                                static_cast<double>(now.packets_in)
                                          : visits[from] * pass(from));
      }
      visits[i] = least;
    }
  }
  return visits;
}

}  // namespace

std::vector<StageLoad> stage_loads(const MetricsSnapshot& now, const MetricsSnapshot* before,
                                   const std::vector<std::vector<std::size_t>>* inputs) {
  std::vector<StageLoad> loads;
  if (now.packets_in == 0) return loads;
  std::vector<double> graph_visits;
  if (inputs != nullptr && inputs->size() == now.stages.size()) {
    graph_visits = visits_through(now, *inputs);
  }
  for (std::size_t i = 0; i < now.stages.size(); ++i) {
    const StageMetrics& stage = now.stages[i];
    // Visits per packet entering the pipeline come from the whole run (steady under scaling);
    // the service time from the interval when it measured any, so that it follows changes.
    double sum_us = stage.service.sum_us;
    double count = static_cast<double>(stage.service.count);
    if (before != nullptr && i < before->stages.size()) {
      const Latency& earlier = before->stages[i].service;
      if (stage.service.count > earlier.count) {
        sum_us -= earlier.sum_us;
        count -= static_cast<double>(earlier.count);
      }
    }
    const double mean_s = count > 0 ? std::max(0.0, sum_us) * 1e-6 / count : 0.0;
    double visits = !graph_visits.empty() ? graph_visits[i]
                                          : offered(stage) / static_cast<double>(now.packets_in);
    // A stage that sheds works only on the packets it kept: its share of the pool.
    if (stage.sheds && offered(stage) > 0) {
      visits *= static_cast<double>(stage.service.count) / offered(stage);
    }
    loads.push_back({.name = stage.name,
                     .demand_s = mean_s * visits,
                     .consumers = stage.consumers,
                     .blocking = stage.blocking,
                     .max_parallel = stage.per_stream ? static_cast<int>(now.streams) : 0,
                     .sheds = stage.sheds});
  }
  return loads;
}

}  // namespace micromodels::detail
