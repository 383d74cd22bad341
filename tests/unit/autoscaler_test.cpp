// The autoscaler's planning and the capacity model under it, on hand-made snapshots.
#include "runtime/autoscaler.hpp"
#include "core/capacity_model.hpp"

#include <gtest/gtest.h>

#include <cmath>

namespace micromodels::detail {
namespace {

struct Spec {
  std::string name;
  double service_ms = 0;  // mean
  int consumers = 1;
  bool blocking = true;
  bool source = false;
  bool per_stream = false;
};

// A snapshot of a linear pipeline after `packets` entered and passed every stage once.
MetricsSnapshot snapshot(const std::vector<Spec>& specs, std::uint64_t packets, int workers = 2) {
  MetricsSnapshot m;
  m.packets_in = packets;
  m.packets_out = packets;
  m.workers = workers;
  m.streams = 1;
  for (const Spec& spec : specs) {
    StageMetrics s;
    s.name = spec.name;
    s.processed = packets;
    s.emitted = packets;
    s.consumers = spec.consumers;
    s.blocking = spec.blocking;
    s.source = spec.source;
    s.per_stream = spec.per_stream;
    s.service.count = packets;
    s.service.sum_us = spec.service_ms * 1e3 * static_cast<double>(packets);
    m.stages.push_back(s);
  }
  return m;
}

std::vector<Spec> one_four_one(int a, int b, int c, bool blocking = true) {
  return {{.name = "source", .service_ms = 0.001, .source = true},
          {.name = "a", .service_ms = 1, .consumers = a, .blocking = blocking},
          {.name = "b", .service_ms = 4, .consumers = b, .blocking = blocking},
          {.name = "c", .service_ms = 1, .consumers = c, .blocking = blocking}};
}

AutoscalePolicy policy(int total, int max_consumers = 8) {
  AutoscalePolicy p;
  p.stages = {"a", "b", "c"};
  p.total = total;
  p.max_consumers = max_consumers;
  return p;
}

TEST(CapacityModel, TheSlowestStageOrThePoolLimits) {
  const std::vector<StageLoad> loads = stage_loads(snapshot(one_four_one(1, 1, 1), 100));
  ASSERT_EQ(loads.size(), 4u);
  EXPECT_NEAR(loads[2].demand_s, 0.004, 1e-9);
  const Capacity blocking = capacity(loads, 2);
  ASSERT_TRUE(blocking.stage.has_value());
  EXPECT_EQ(*blocking.stage, 2u);
  EXPECT_NEAR(blocking.rate, 250, 1e-6);

  // On the pool: 6 ms of CPU per packet on 2 threads is 333/s, below b's 2 x 250.
  const std::vector<StageLoad> cpu = stage_loads(snapshot(one_four_one(1, 2, 1, false), 100));
  const Capacity pool = capacity(cpu, 2);
  EXPECT_FALSE(pool.stage.has_value());
  EXPECT_NEAR(pool.rate, 2 / 0.006, 0.5);
}

TEST(CapacityModel, PerStreamStagesUseNoMoreConsumersThanStreams) {
  std::vector<Spec> specs = one_four_one(1, 3, 1);
  specs[2].per_stream = true;
  const Capacity limit = capacity(stage_loads(snapshot(specs, 100)), 2);
  EXPECT_NEAR(limit.rate, 250, 1e-6);  // one stream: one of b's three consumers can work
}

TEST(Autoscaler, MovesConsumersToTheSlowStageWithinTheBudget) {
  const MetricsSnapshot before = snapshot(one_four_one(1, 1, 1), 100);
  const MetricsSnapshot now = snapshot(one_four_one(1, 1, 1), 600);
  const std::optional<ScalingPlan> plan = plan_scaling(now, before, policy(6));
  ASSERT_TRUE(plan.has_value());
  EXPECT_EQ(plan->consumers.at("a"), 1);
  EXPECT_EQ(plan->consumers.at("b"), 4);
  EXPECT_EQ(plan->consumers.at("c"), 1);
  EXPECT_NEAR(plan->rate_now, 250, 1e-6);
  EXPECT_NEAR(plan->rate_planned, 1000, 1e-6);
  EXPECT_NE(plan->reason.find("b limits"), std::string::npos) << plan->reason;
}

TEST(Autoscaler, StaysPutWhenNothingBetterFits) {
  // Already the best use of 6 consumers: no plan, however often it is asked.
  const MetricsSnapshot before = snapshot(one_four_one(1, 4, 1), 100);
  const MetricsSnapshot now = snapshot(one_four_one(1, 4, 1), 600);
  EXPECT_FALSE(plan_scaling(now, before, policy(6)).has_value());
  // Service times a few percent off do not tip it either (the gain margin is 10%).
  std::vector<Spec> noisy = one_four_one(1, 4, 1);
  noisy[1].service_ms = 1.04;
  noisy[2].service_ms = 3.9;
  EXPECT_FALSE(plan_scaling(snapshot(noisy, 600), before, policy(6)).has_value());
  // No packet entered since the last look: nothing to measure, no plan.
  EXPECT_FALSE(plan_scaling(before, before, policy(6)).has_value());
}

TEST(Autoscaler, RespectsMaxConsumersAndTheStagesItManages) {
  const MetricsSnapshot before = snapshot(one_four_one(1, 1, 1), 100);
  const MetricsSnapshot now = snapshot(one_four_one(1, 1, 1), 600);
  const std::optional<ScalingPlan> capped = plan_scaling(now, before, policy(20, 2));
  ASSERT_TRUE(capped.has_value());
  EXPECT_EQ(capped->consumers.at("b"), 2);
  EXPECT_NEAR(capped->rate_planned, 500, 1e-6);

  AutoscalePolicy only_a = policy(6);
  only_a.stages = {"a"};  // b limits and is not ours: nothing we may change helps
  EXPECT_FALSE(plan_scaling(now, before, only_a).has_value());
}

TEST(Autoscaler, OnThePoolPlansForTheCores) {
  // CPU-bound 1/4/1 ms on 2 workers: at most 333/s, which b reaches with 2 consumers.
  const MetricsSnapshot before = snapshot(one_four_one(1, 1, 1, false), 100);
  const MetricsSnapshot now = snapshot(one_four_one(1, 1, 1, false), 600);
  const std::optional<ScalingPlan> plan = plan_scaling(now, before, policy(5));
  ASSERT_TRUE(plan.has_value());
  EXPECT_EQ(plan->consumers.at("b"), 2);
  EXPECT_EQ(plan->consumers.at("a"), 1);
  EXPECT_NEAR(plan->rate_planned, 2 / 0.006, 0.5);
}

TEST(Autoscaler, UsesTheIntervalsServiceTime) {
  // b was 10 ms over the first 100 packets and 1 ms since: the interval's 1 ms counts, so three
  // equal stages share the budget equally (the whole run's 2.5 ms mean would plan 1/3/1).
  MetricsSnapshot before = snapshot(one_four_one(1, 1, 1), 100);
  before.stages[2].service.sum_us = 10000.0 * 100;
  MetricsSnapshot now = snapshot(one_four_one(1, 1, 1), 600);
  now.stages[2].service.sum_us = 10000.0 * 100 + 1000.0 * 500;
  const std::optional<ScalingPlan> plan = plan_scaling(now, before, policy(6));
  ASSERT_TRUE(plan.has_value());
  EXPECT_EQ(plan->consumers.at("a"), 2);
  EXPECT_EQ(plan->consumers.at("b"), 2);
  EXPECT_EQ(plan->consumers.at("c"), 2);
}

// b went from 1 to 4 consumers. Where its service time stayed 4 ms it sped up 4x; where each
// packet took 4 times as long (its consumers wait for one another: a Python stage holding the
// GIL) it did not, and goes back to 1 and is held there: the next plan gives it no more.
TEST(Autoscaler, AStageThatDidNotSpeedUpGoesBackAndIsHeld) {
  const std::vector<StageLoad> before = stage_loads(snapshot(one_four_one(1, 1, 1), 100));
  EXPECT_TRUE(did_not_scale(before, stage_loads(snapshot(one_four_one(1, 4, 1), 100))).empty());
  std::vector<Spec> contended = one_four_one(1, 4, 1);
  contended[2].service_ms = 16;
  const std::vector<Unscaled> found = did_not_scale(before, stage_loads(snapshot(contended, 100)));
  ASSERT_EQ(found.size(), 1u);
  EXPECT_EQ(found[0].stage, "b");
  EXPECT_EQ(found[0].consumers, 1);
  EXPECT_NEAR(found[0].rate_before, 250, 1e-6);
  EXPECT_NEAR(found[0].rate_after, 250, 1e-6);
  // Half of the promised gain is a gain: kept.
  contended[2].service_ms = 6.4;  // 4 / 6.4 ms = 625/s against 250, promised 1000
  EXPECT_TRUE(did_not_scale(before, stage_loads(snapshot(contended, 100))).empty());

  AutoscalePolicy held = policy(6);
  held.held["b"] = 1;
  const std::optional<ScalingPlan> plan = plan_scaling(snapshot(one_four_one(1, 1, 1), 600),
                                                       snapshot(one_four_one(1, 1, 1), 100), held);
  EXPECT_FALSE(plan.has_value()) << "b limits, and is held at 1: nothing else helps";
}

TEST(Autoscaler, WaitsForEnoughSamplesInEveryManagedStage) {
  const MetricsSnapshot before = snapshot(one_four_one(1, 1, 1), 100);
  EXPECT_TRUE(measured_enough(snapshot(one_four_one(1, 1, 1), 120), before, policy(6)));
  MetricsSnapshot few = snapshot(one_four_one(1, 1, 1), 120);
  few.stages[3].service.count = 119;  // c served 19 in the interval
  EXPECT_FALSE(measured_enough(few, before, policy(6)));
}

}  // namespace
}  // namespace micromodels::detail
