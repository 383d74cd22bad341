// RedisRunner in one process: a run and a worker as two objects, on the test's Redis. These are
// the broker's tests that also run under the sanitizers (no child processes).
#include <algorithm>
#include <set>
#include <thread>

#include "micromodels/redis.hpp"
#include "micromodels/registry.hpp"
#include "micromodels/stage.hpp"
#include "redis_test_support.hpp"

namespace micromodels {
namespace {

using redis_testing::field_text;
using redis_testing::lines_of;
using redis_testing::Redis;
using redis_testing::redis_url;

class RedisRunnerTest : public redis_testing::RedisTest {
 protected:
  Pipeline pipeline(int count, const std::string& work_params, int streams = 1,
                    bool per_stream = false) {
    return Pipeline::from_yaml_string(
        "pipeline: " + name_ +
        "\nstages:\n"
        "  - { name: source, type: synthetic.source, params: { count: " +
        std::to_string(count) + ", streams: " + std::to_string(streams) +
        " } }\n"
        "  - { name: work, type: model.sleep, consumers: 2" +
        (per_stream ? std::string(", state: per_stream") : std::string()) +
        ", params: { " + work_params +
        " } }\n"
        "  - { name: sink, type: sink.jsonl, ordered: true, params: { path: " +
        (dir_ / "out.jsonl").string() + " } }\n");
  }

  // Every (stream, seq) exactly once and, per stream, in seq order.
  void expect_complete(int count, int streams = 1, const std::set<std::uint64_t>& missing = {}) {
    const auto lines = lines_of(dir_ / "out.jsonl");
    std::map<int, std::vector<std::uint64_t>> seen;
    for (const std::string& line : lines) {
      const auto s = line.find("\"stream\":");
      const auto q = line.find("\"seq\":");
      ASSERT_NE(s, std::string::npos) << line;
      seen[std::stoi(line.substr(s + 9))].push_back(std::stoull(line.substr(q + 6)));
    }
    ASSERT_EQ(static_cast<int>(seen.size()), streams);
    for (const auto& [stream, seqs] : seen) {
      std::vector<std::uint64_t> want;
      for (std::uint64_t i = 0; i < static_cast<std::uint64_t>(count); ++i) {
        if (!missing.contains(i)) want.push_back(i);
      }
      EXPECT_EQ(seqs, want) << "stream " << stream;
    }
  }
};

TEST_F(RedisRunnerTest, RunAloneServesEveryStageAndDeliversEachPacketOnceInOrder) {
  RedisRunner run(pipeline(300, "service_ms: 0.2, jitter: 0.9"), {.url = redis_url()});
  run.start();
  ASSERT_TRUE(run.wait_for(30000));
  EXPECT_EQ(run.served_stages(), std::vector<std::string>{"work"});
  EXPECT_EQ(run.retired_packets(), 300u);
  expect_complete(300);
  // One consumer group per stage, named after it.
  Redis redis(redis_url());
  for (const std::string stage : {"work", "sink"}) {
    auto groups = redis.command({"XINFO", "GROUPS", key(stage)});
    ASSERT_TRUE(groups && groups->elements == 1) << stage;
    EXPECT_EQ(field_text(groups->element[0], "name"), stage);
  }
}

TEST_F(RedisRunnerTest, WorkerInTheSameProcessDoesTheWorkWhenTheRunServesNothing) {
  const Pipeline p = pipeline(200, "service_ms: 0.5");
  RedisRunner worker(p, {.role = RedisOptions::Role::worker, .url = redis_url(), .stages = {"work"}});
  worker.start();
  RedisRunner run(p, {.url = redis_url(), .serve = RedisOptions::Serve::none});
  run.start();
  ASSERT_TRUE(run.wait_for(30000));
  EXPECT_TRUE(run.served_stages().empty());
  worker.stop();
  ASSERT_TRUE(worker.wait_for(10000));
  EXPECT_GE(worker.metrics().stage("work")->processed, 200u);
  expect_complete(200);
}

TEST_F(RedisRunnerTest, PerStreamStageKeepsEachStreamInOrderAcrossPartitions) {
  // Three streams over two partitions; the sink checks order and completeness per stream.
  RedisRunner run(pipeline(100, "service_ms: 0.3, jitter: 0.9", 3, true), {.url = redis_url()});
  run.start();
  ASSERT_TRUE(run.wait_for(30000));
  expect_complete(100, 3);
  Redis redis(redis_url());
  EXPECT_EQ(redis.command({"EXISTS", key("work:p0"), key("work:p1")})->integer, 2);
}

TEST_F(RedisRunnerTest, FailingPacketsAreDeadLetteredWithTheirErrorAndTheRestArrive) {
  // Packets 24, 49, 74 and 99 fail every time: after two deliveries they are dead letters.
  RedisRunner run(pipeline(100, "service_ms: 0.1, fail_every: 25"),
                  {.url = redis_url(), .max_deliveries = 2, .reclaim_idle_ms = 100});
  run.start();
  ASSERT_TRUE(run.wait_for(30000));
  expect_complete(100, 1, {24, 49, 74, 99});
  EXPECT_EQ(run.dead_lettered(), 4u);
  Redis redis(redis_url());
  auto dead = redis.command({"XRANGE", key("dead"), "-", "+"});
  ASSERT_TRUE(dead);
  ASSERT_EQ(dead->elements, 4u);
  for (std::size_t i = 0; i < dead->elements; ++i) {
    const redisReply* fields = dead->element[i]->element[1];
    EXPECT_EQ(field_text(fields, "stage"), "work");
    EXPECT_NE(field_text(fields, "error").find("failed on purpose"), std::string::npos);
    EXPECT_EQ(field_text(fields, "deliveries"), "2");
  }
}

TEST_F(RedisRunnerTest, UnreachableRedisIsABrokerErrorNamingTheAddress) {
  try {
    RedisRunner run(pipeline(1, ""), {.url = "redis://127.0.0.1:1"});
    ADD_FAILURE() << "connected to port 1";
  } catch (const BrokerError& e) {
    EXPECT_EQ(e.kind(), BrokerError::Kind::unreachable);
    EXPECT_NE(std::string(e.what()).find("127.0.0.1:1"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("start redis-server"), std::string::npos) << e.what();
  }
}

TEST_F(RedisRunnerTest, WorkerRefusesStagesItCannotServe) {
  const Pipeline p = pipeline(1, "");
  EXPECT_THROW(RedisRunner(p, {.role = RedisOptions::Role::worker, .url = redis_url(),
                               .stages = {"wrok"}}),
               ConfigError);
  EXPECT_THROW(RedisRunner(p, {.role = RedisOptions::Role::worker, .url = redis_url(),
                               .stages = {"sink"}}),
               ConfigError);
}

}  // namespace
}  // namespace micromodels
