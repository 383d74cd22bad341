#include "autoscaler.hpp"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <limits>

namespace micromodels::detail {

namespace {

// Consumers stage `load` needs to take `rate` packets/s (at least one).
int needed(const StageLoad& load, double rate) {
  const double exact = rate * load.demand_s;
  // A hair of tolerance: 3.0000001 consumers' worth of work is 3 consumers, not 4.
  return std::max(1, static_cast<int>(std::ceil(exact - 1e-6)));
}

std::string format_rate(double rate) {
  return std::isfinite(rate) ? std::to_string(static_cast<long long>(std::lround(rate)))
                             : std::string("unbounded");
}

// The most consumers `stage` may get.
int most_for(const AutoscalePolicy& policy, const std::string& stage) {
  const auto held = policy.held.find(stage);
  return held != policy.held.end() ? std::min(held->second, policy.max_consumers)
                                   : policy.max_consumers;
}

}  // namespace

std::vector<Unscaled> did_not_scale(const std::vector<StageLoad>& before,
                                    const std::vector<StageLoad>& after) {
  std::vector<Unscaled> found;
  for (const StageLoad& was : before) {
    const auto now = std::find_if(after.begin(), after.end(),
                                  [&](const StageLoad& l) { return l.name == was.name; });
    if (now == after.end() || now->consumers <= was.consumers) continue;
    const double rate_before = stage_rate(was);
    const double rate_after = stage_rate(*now);
    StageLoad promised = was;
    promised.consumers = now->consumers;
    const double gain = stage_rate(promised) - rate_before;
    if (!std::isfinite(rate_before) || !std::isfinite(gain) || gain <= 0) continue;
    if (rate_after - rate_before < gain / 4) {
      found.push_back({.stage = was.name,
                       .consumers = was.consumers,
                       .rate_before = rate_before,
                       .rate_after = rate_after});
    }
  }
  return found;
}

bool measured_enough(const MetricsSnapshot& now, const MetricsSnapshot& before,
                     const AutoscalePolicy& policy) {
  for (const std::string& name : policy.stages) {
    const StageMetrics* after = now.stage(name);
    const StageMetrics* earlier = before.stage(name);
    if (after == nullptr) continue;
    const std::uint64_t served = after->service.count - (earlier ? earlier->service.count : 0);
    if (served < policy.min_samples) return false;
  }
  return true;
}

std::optional<ScalingPlan> plan_scaling(const MetricsSnapshot& now, const MetricsSnapshot& before,
                                        const AutoscalePolicy& policy) {
  if (now.packets_in <= before.packets_in) return std::nullopt;  // nothing new measured
  std::vector<StageLoad> loads =
      stage_loads(now, &before, policy.inputs.empty() ? nullptr : &policy.inputs);
  std::vector<std::size_t> managed;
  double ceiling = std::numeric_limits<double>::infinity();  // what no count of ours can pass
  double pool_demand = 0;
  for (std::size_t i = 0; i < loads.size(); ++i) {
    const StageLoad& load = loads[i];
    if (!load.blocking) pool_demand += load.demand_s;
    const bool ours =
        std::find(policy.stages.begin(), policy.stages.end(), load.name) != policy.stages.end();
    if (!ours) {
      ceiling = std::min(ceiling, stage_rate(load));
      continue;
    }
    managed.push_back(i);
    StageLoad at_most = load;
    at_most.consumers = most_for(policy, load.name);
    ceiling = std::min(ceiling, stage_rate(at_most));
  }
  if (managed.empty()) return std::nullopt;
  if (pool_demand > 0) ceiling = std::min(ceiling, now.workers / pool_demand);

  // The highest rate whose consumer counts fit the budget: counts grow with the rate, so bisect.
  auto total_at = [&](double rate) {
    int total = 0;
    for (std::size_t i : managed) total += needed(loads[i], rate);
    return total;
  };
  double low = 0;
  double high = ceiling;
  if (!std::isfinite(high)) {
    high = 1;
    while (total_at(high) <= policy.total && high < 1e12) high *= 2;
  }
  if (total_at(high) <= policy.total) {
    low = high;
  } else {
    for (int step = 0; step < 60; ++step) {
      const double mid = (low + high) / 2;
      (total_at(mid) <= policy.total ? low : high) = mid;
    }
  }
  ScalingPlan plan;
  plan.rate_now = capacity(loads, now.workers).rate;
  std::vector<StageLoad> planned = loads;
  bool changed = false;
  for (std::size_t i : managed) {
    int count = std::min(needed(loads[i], low), most_for(policy, loads[i].name));
    if (loads[i].max_parallel > 0) count = std::min(count, loads[i].max_parallel);
    planned[i].consumers = count;
    plan.consumers[loads[i].name] = count;
    changed = changed || count != loads[i].consumers;
  }
  const Capacity after = capacity(planned, now.workers);
  plan.rate_planned = after.rate;
  if (!changed || !(plan.rate_planned >= plan.rate_now * (1 + policy.min_gain))) {
    return std::nullopt;
  }
  const Capacity limit = capacity(loads, now.workers);
  plan.reason = limit.stage ? loads[*limit.stage].name + " limits (" +
                                  std::to_string(loads[*limit.stage].consumers) + " x " +
                                  std::to_string(std::lround(loads[*limit.stage].demand_s * 1e6)) +
                                  " us per packet)"
                            : "the worker pool limits";
  return plan;
}

AutoscalePolicy autoscale_policy(const Plan& plan, const std::vector<std::string>& served,
                                 int workers) {
  const AutoscaleConfig& config = plan.pipeline().autoscale();
  const auto here = [&](const std::string& name) {
    return std::find(served.begin(), served.end(), name) != served.end();
  };
  AutoscalePolicy policy;
  policy.max_consumers = config.max_consumers;
  for (const std::string& name : config.stages) {
    if (here(name)) policy.stages.push_back(name);
  }
  if (config.stages.empty()) {
    for (const PlanStage& stage : plan.stages()) {
      if (here(stage.name()) && !stage.source() && !stage.config.ordered &&
          !stage.config.per_stream && !stage.dead_letter) {
        policy.stages.push_back(stage.name());
      }
    }
  }
  // Inputs by index into `served` (the metrics' stages): an input run by another process is
  // left out, and the stage's own packet count then gives its visits.
  for (const std::string& name : served) {
    std::vector<std::size_t>& from = policy.inputs.emplace_back();
    for (std::size_t input : plan.stage(name).inputs) {
      const auto found = std::find(served.begin(), served.end(), plan.stages()[input].name());
      if (found != served.end()) from.push_back(static_cast<std::size_t>(found - served.begin()));
    }
  }
  policy.total = static_cast<int>(policy.stages.size()) + (config.budget > 0 ? config.budget : workers);
  return policy;
}

Autoscaler::Autoscaler(AutoscalePolicy policy, double interval_ms, Metrics metrics, Scale scale)
    : policy_(std::move(policy)),
      interval_ms_(interval_ms),
      metrics_(std::move(metrics)),
      scale_(std::move(scale)),
      thread_([this] { run(); }) {}

Autoscaler::~Autoscaler() {
  {
    std::lock_guard lock(mutex_);
    stopping_ = true;
  }
  wake_.notify_all();
  thread_.join();
}

void Autoscaler::run() {
  const auto interval = std::chrono::duration<double, std::milli>(interval_ms_);
  MetricsSnapshot before = metrics_();
  std::unique_lock lock(mutex_);
  while (!wake_.wait_for(lock, interval, [this] { return stopping_; })) {
    lock.unlock();
    MetricsSnapshot now = metrics_();
    if (!measured_enough(now, before, policy_)) {
      lock.lock();
      continue;  // keep measuring from `before`
    }
    const auto loads = [&] {
      return stage_loads(now, &before, policy_.inputs.empty() ? nullptr : &policy_.inputs);
    };
    if (changed_from_) {
      // The first interval after a change: did the stages given consumers speed up?
      const std::vector<Unscaled> unscaled = did_not_scale(*changed_from_, loads());
      changed_from_.reset();
      for (const Unscaled& u : unscaled) {
        const StageMetrics* current = now.stage(u.stage);
        spdlog::info(
            "autoscale: {} {}->{}: with {} consumers it could take {} packets/s, with {} it "
            "took {}: its consumers do not run in parallel here (a Python stage holding the "
            "GIL, a service at its own limit, no free core); it stays at {}",
            u.stage, current ? current->consumers : 0, u.consumers,
            current ? current->consumers : 0, format_rate(u.rate_after), u.consumers,
            format_rate(u.rate_before), u.consumers);
        policy_.held[u.stage] = u.consumers;
        scale_(u.stage, u.consumers);
      }
      if (!unscaled.empty()) {
        pending_.reset();
        lock.lock();
        if (wake_.wait_for(lock, interval, [this] { return stopping_; })) return;
        lock.unlock();
        before = metrics_();
        lock.lock();
        continue;
      }
    }
    std::optional<ScalingPlan> plan = plan_scaling(now, before, policy_);
    // A plan is acted on only when two intervals in a row ask for the same counts: one interval
    // of slow packets (another process took the core) must not move consumers around.
    const bool confirmed = plan && pending_ && pending_->consumers == plan->consumers;
    pending_ = confirmed ? std::nullopt : std::move(plan);
    if (confirmed) {
      std::string changes;
      const ScalingPlan& chosen = *plan;
      for (const auto& [stage, count] : chosen.consumers) {
        const StageMetrics* current = now.stage(stage);
        if (current == nullptr || current->consumers == count) continue;
        changes += (changes.empty() ? "" : ", ") + stage + " " +
                   std::to_string(current->consumers) + "->" + std::to_string(count);
        scale_(stage, count);
      }
      spdlog::info("autoscale: {}: {}; at most {} -> {} packets/s", changes, chosen.reason,
                   format_rate(chosen.rate_now), format_rate(chosen.rate_planned));
      changed_from_ = loads();
      // Let the queues settle before measuring again.
      lock.lock();
      if (wake_.wait_for(lock, interval, [this] { return stopping_; })) return;
      lock.unlock();
      now = metrics_();
    }
    before = std::move(now);
    lock.lock();
  }
}

}  // namespace micromodels::detail
