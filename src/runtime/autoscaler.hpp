// Moves consumers to the stages that limit throughput, from measured service times.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <functional>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "micromodels/metrics.hpp"
#include "micromodels/plan.hpp"

#include "core/capacity_model.hpp"

namespace micromodels::detail {

/// What the autoscaler may do: which stages it manages and how many consumers it hands out.
struct AutoscalePolicy {
  std::vector<std::string> stages;  // managed; the others keep their consumers
  std::vector<std::vector<std::size_t>> inputs;  // each stage's input stages, by index
  int total = 0;                    // consumers over the managed stages, at most
  int max_consumers = 8;            // per stage
  double min_gain = 0.1;            // a change must promise this much more throughput
  std::uint64_t min_samples = 20;   // packets each managed stage must serve in an interval
  std::map<std::string, int> held;  // stages found not to speed up past this many consumers
};

/// A change of consumer counts, and why.
struct ScalingPlan {
  std::map<std::string, int> consumers;  // the managed stages' new counts
  double rate_now = 0;                   // packets/s the current counts allow
  double rate_planned = 0;               // and the new ones
  std::string reason;
};

/// Whether every managed stage served `policy.min_samples` packets between `before` and `now`:
/// until then an interval's service times are too noisy to act on, and it is extended.
[[nodiscard]] bool measured_enough(const MetricsSnapshot& now, const MetricsSnapshot& before,
                                   const AutoscalePolicy& policy);

/// The most throughput `policy` allows from the loads measured between `before` and `now`, if
/// it beats the current counts by the policy's margin. Pure: no clock, no threads.
[[nodiscard]] std::optional<ScalingPlan> plan_scaling(const MetricsSnapshot& now,
                                                      const MetricsSnapshot& before,
                                                      const AutoscalePolicy& policy);

/// A stage whose consumers grew in the last change but did not speed up: more of them took no
/// more packets per second (a Python stage holding the GIL, a service at its own limit).
struct Unscaled {
  std::string stage;
  int consumers = 0;                       // before the change: what it goes back to
  double rate_before = 0, rate_after = 0;  // packets/s its consumers could take (stage_rate)
};

/// The stages whose consumers grew from `before` to `after` (loads measured before the change
/// and in the first interval after it) while their rate rose by less than a quarter of what
/// the added consumers promised.
[[nodiscard]] std::vector<Unscaled> did_not_scale(const std::vector<StageLoad>& before,
                                                  const std::vector<StageLoad>& after);

/// The policy a pipeline's `autoscale:` asks for, over the stages `served` in this process (in
/// the order of the metrics): the listed stages (default: every stage that is not a source,
/// ordered, per_stream or the dead-letter stage) and a budget of one consumer per managed stage
/// plus `budget` (default: `workers`).
[[nodiscard]] AutoscalePolicy autoscale_policy(const Plan& plan,
                                               const std::vector<std::string>& served, int workers);

/// Runs plan_scaling every `interval_ms` on a thread of its own and applies a plan once two
/// intervals in a row agree on it, logging each decision with its reason; after a change it waits
/// an interval before measuring again, and checks in the next that the stages it gave
/// consumers sped up: one that did not goes back to its count and is held there.
class Autoscaler {
 public:
  using Metrics = std::function<MetricsSnapshot()>;
  using Scale = std::function<void(const std::string&, int)>;

  Autoscaler(AutoscalePolicy policy, double interval_ms, Metrics metrics, Scale scale);
  ~Autoscaler();
  Autoscaler(const Autoscaler&) = delete;
  Autoscaler& operator=(const Autoscaler&) = delete;

 private:
  void run();

  AutoscalePolicy policy_;
  double interval_ms_;
  Metrics metrics_;
  Scale scale_;
  std::mutex mutex_;
  std::condition_variable wake_;
  bool stopping_ = false;
  std::optional<ScalingPlan> pending_;  // planned in the last interval, not yet confirmed
  std::optional<std::vector<StageLoad>> changed_from_;  // the loads the last change was made on
  std::thread thread_;
};

}  // namespace micromodels::detail
