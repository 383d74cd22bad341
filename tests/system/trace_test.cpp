// Per-packet tracing in one process (`trace:`): the file is Chrome trace-event JSON that Perfetto
// reads, every sampled packet shows in every stage in order, sampling keeps the same packets in
// every stage, and the size bound holds.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <set>
#include <string>
#include <vector>

#include <unistd.h>

#include "micromodels/micromodels.hpp"
#include "trace_checks.hpp"

using namespace micromodels;
namespace fs = std::filesystem;

namespace {

const std::vector<std::string> kStages = {"source", "spin", "pass", "work", "sink"};

/// source (2 streams) -> spin (2 consumers) -> pass -> work (3 consumers) -> sink
Pipeline linear(std::int64_t count, TraceConfig trace) {
  Pipeline pipeline("trace_demo");
  pipeline.add({.name = "source",
                .type = "synthetic.source",
                .params = {{"count", ParamValue{count}}, {"streams", ParamValue{std::int64_t{2}}}}});
  pipeline.add({.name = "spin",
                .type = "model.spin",
                .params = {{"service_ms", ParamValue{0.02}}},
                .consumers = 2});
  pipeline.add({.name = "pass", .type = "pass"});
  pipeline.add({.name = "work",
                .type = "model.sleep",
                .params = {{"service_ms", ParamValue{0.05}}},
                .consumers = 3});
  pipeline.add({.name = "sink", .type = "pass"});
  pipeline.set_trace(std::move(trace));
  return pipeline;
}

class TraceTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() /
           ("micromodels_trace_" + std::to_string(::getpid()) + "_" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir_);
    fs::create_directories(dir_);
  }
  void TearDown() override {
    if (!HasFailure()) fs::remove_all(dir_);
  }
  fs::path dir_;
};

TEST_F(TraceTest, EveryPacketInEveryStageInOrder) {
  const fs::path path = dir_ / "trace.json";
  {
    Runner runner(linear(200, {.path = path.string()}));
    runner.start();
    runner.wait();
  }
  const auto content = micromodels::testing::read_trace(path, kStages);
  ASSERT_EQ(content.packets.size(), 400U);  // 200 per stream, 2 streams
  for (std::uint64_t stream = 0; stream < 2; ++stream) {
    for (std::uint64_t seq = 0; seq < 200; ++seq) {
      micromodels::testing::expect_path(content, {stream, seq}, kStages);
    }
  }
  EXPECT_EQ(content.pids, std::set<std::int64_t>{::getpid()});
  // One flow per packet: a start, a step per middle stage, an end.
  EXPECT_EQ(content.flow_steps, 400U * kStages.size());
  // `work` blocks (model.sleep): its 3 consumers are threads of its own, apart from the pool
  // threads that run `spin`.
  std::set<std::int64_t> work_threads;
  std::set<std::int64_t> spin_threads;
  double slow_service = 0;
  for (const auto& [key, slices] : content.packets) {
    spin_threads.insert(slices[1].tid);
    work_threads.insert(slices[3].tid);
    slow_service += slices[3].dur;
  }
  EXPECT_LE(work_threads.size(), 3U);
  for (const std::int64_t tid : work_threads) EXPECT_FALSE(spin_threads.contains(tid)) << tid;
  // model.sleep's 50 µs shows as its service time (at least that, on average).
  EXPECT_GE(slow_service / 400, 50.0);
}

TEST_F(TraceTest, SamplesTheSamePacketsInEveryStage) {
  const fs::path path = dir_ / "every4.json";
  {
    Runner runner(linear(100, {.path = path.string(), .every = 4}));
    runner.start();
    runner.wait();
  }
  const auto content = micromodels::testing::read_trace(path, kStages);
  ASSERT_EQ(content.packets.size(), 50U);  // seq 0, 4, ..., 96 of each stream
  for (std::uint64_t stream = 0; stream < 2; ++stream) {
    for (std::uint64_t seq = 0; seq < 100; seq += 4) {
      micromodels::testing::expect_path(content, {stream, seq}, kStages);
    }
  }
}

TEST_F(TraceTest, SizeBoundThinsTheSampling) {
  const fs::path path = dir_ / "bounded.json";
  constexpr double kMaxMb = 0.5;
  {
    Runner runner(linear(10'000, {.path = path.string(), .max_mb = kMaxMb}));
    runner.start();
    runner.wait();
  }
  EXPECT_LE(fs::file_size(path), static_cast<std::uintmax_t>(kMaxMb * 1e6));
  const auto content = micromodels::testing::read_trace(path, kStages);
  // 20,000 packets of 5 stages do not fit in half a megabyte: some were left out...
  EXPECT_LT(content.packets.size(), 20'000U);
  EXPECT_GT(content.packets.size(), 100U);
  // ...but the first ones, traced before it thinned, went all the way through.
  micromodels::testing::expect_path(content, {0, 0}, kStages);
  micromodels::testing::expect_path(content, {1, 0}, kStages);
}

TEST_F(TraceTest, FailedPacketsAreMarked) {
  const fs::path path = dir_ / "failed.json";
  Pipeline pipeline("trace_failures");
  pipeline.add({.name = "source",
                .type = "synthetic.source",
                .params = {{"count", ParamValue{std::int64_t{20}}}}});
  pipeline.add({.name = "work",
                .type = "model.spin",
                .params = {{"service_ms", ParamValue{0.0}}, {"fail_every", ParamValue{std::int64_t{5}}}}});
  pipeline.add({.name = "sink", .type = "pass"});
  pipeline.set_trace({.path = path.string()});
  {
    Runner runner(pipeline);
    runner.start();
    runner.wait();
    EXPECT_EQ(runner.metrics().stage("work")->failed, 4U);
  }
  std::ifstream in(path);
  const auto trace = nlohmann::json::parse(in);
  int failed = 0;
  for (const auto& event : trace["traceEvents"]) {
    if (event["ph"] == "X" && event["args"].value("failed", false)) {
      EXPECT_EQ(event["name"], "work");
      ++failed;
    }
  }
  EXPECT_EQ(failed, 4);
}

// A packet the stage's queue had no room for ends there: its path shows where it went.
TEST_F(TraceTest, PacketsAQueueDroppedAreMarkedWhereTheyWereDropped) {
  const fs::path path = dir_ / "dropped.json";
  Pipeline pipeline("trace_drops");
  pipeline.add({.name = "source",
                .type = "synthetic.source",
                .params = {{"count", ParamValue{std::int64_t{300}}}}});
  pipeline.add({.name = "work",
                .type = "model.sleep",
                .params = {{"service_ms", ParamValue{1.0}}},
                .queue_capacity = 4,
                .overflow = Overflow::drop_newest});
  pipeline.add({.name = "sink", .type = "pass"});
  pipeline.set_trace({.path = path.string()});
  std::uint64_t dropped = 0;
  {
    Runner runner(pipeline);
    runner.start();
    runner.wait();
    dropped = runner.metrics().stage("work")->dropped;
  }
  ASSERT_GT(dropped, 0U) << "an unpaced source into a 1 ms stage with a queue of 4";
  std::ifstream in(path);
  const auto trace = nlohmann::json::parse(in);
  std::uint64_t marked = 0;
  for (const auto& event : trace["traceEvents"]) {
    if (event["ph"] == "X" && event["args"].value("dropped", false)) {
      EXPECT_EQ(event["name"], "work");
      EXPECT_EQ(event["dur"], 0);
      ++marked;
    }
  }
  EXPECT_EQ(marked, dropped);
}

TEST_F(TraceTest, UnwritablePathFailsBeforeTheRun) {
  const std::string path = (dir_ / "no_such_dir" / "t.json").string();
  try {
    Runner runner(linear(10, {.path = path}));
    FAIL() << "a trace file that cannot be written was accepted";
  } catch (const ConfigError& error) {
    EXPECT_NE(std::string(error.what()).find(path), std::string::npos) << error.what();
  }
}

TEST(TraceYaml, ReadsTheKeyAndRefusesBadValues) {
  const Pipeline pipeline = Pipeline::from_yaml_string(
      "pipeline: p\n"
      "trace: { path: t.json, every: 3, max_mb: 16 }\n"
      "stages:\n"
      "  - { name: source, type: synthetic.source }\n");
  EXPECT_EQ(pipeline.trace().path, "t.json");
  EXPECT_EQ(pipeline.trace().every, 3);
  EXPECT_DOUBLE_EQ(pipeline.trace().max_mb, 16);

  const auto refused = [](const std::string& trace) {
    try {
      (void)Pipeline::from_yaml_string("pipeline: p\ntrace: " + trace +
                                           "\nstages:\n  - { name: source, type: synthetic.source }\n",
                                       "p.yaml");
    } catch (const ConfigError& error) {
      return std::string(error.what());
    }
    return std::string("accepted");
  };
  EXPECT_NE(refused("{ path: t.json, every: 0 }").find("p.yaml:2"), std::string::npos);
  EXPECT_NE(refused("{ path: t.json, every: 0 }").find("trace.every"), std::string::npos);
  EXPECT_NE(refused("{ path: t.json, max_mb: -1 }").find("trace.max_mb"), std::string::npos);
  EXPECT_NE(refused("{ every: 2 }").find("trace.path"), std::string::npos);
  EXPECT_NE(refused("{ path: t.json, sample: 2 }").find("unknown key"), std::string::npos);
  EXPECT_NE(refused("t.json").find("must be a map"), std::string::npos);
}

}  // namespace
