// What the conformance tests share: the transports they run on, a pipeline name of their own,
// and the stages that record what reached them.
//
// Each guarantee is checked on every transport the build has: `memory` (one process) and
// `redis` (a Runner on a RedisTransport against the redis-server that scripts/test.sh starts and
// names in MICROMODELS_REDIS_URL; without it those cases skip, or fail when
// MICROMODELS_REQUIRE_REDIS is set).
#pragma once

#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "micromodels/micromodels.hpp"
#ifdef MICROMODELS_HAS_REDIS
#include "micromodels/redis.hpp"
#endif

namespace micromodels::conformance {

enum class Transport { memory, redis };

inline std::string transport_name(const ::testing::TestParamInfo<Transport>& info) {
  return info.param == Transport::memory ? "memory" : "redis";
}

inline std::vector<Transport> transports() {
#ifdef MICROMODELS_HAS_REDIS
  return {Transport::memory, Transport::redis};
#else
  return {Transport::memory};
#endif
}

inline std::string redis_url() {
  const char* url = std::getenv("MICROMODELS_REDIS_URL");
  return url != nullptr ? url : "";
}

/// One packet as a recording stage saw it.
struct Record {
  std::uint32_t stream = 0;
  std::uint64_t seq = 0;
  Packet packet;
};

/// What a recording stage saw, in arrival order.
struct Records {
  std::mutex mutex;
  std::vector<Record> seen;
  std::vector<Record> take() {
    std::lock_guard lock(mutex);
    return seen;
  }
};

/// Checks the records of one sink: every seq of every stream exactly once and, per stream, in
/// seq order; `missing` lists the seqs (of every stream) that must not be there.
inline void expect_every_packet_once_in_order(const std::vector<Record>& records,
                                              std::uint32_t streams, std::uint64_t count,
                                              const std::set<std::uint64_t>& missing = {}) {
  std::map<std::uint32_t, std::vector<std::uint64_t>> seqs;
  for (const Record& r : records) seqs[r.stream].push_back(r.seq);
  std::vector<std::uint64_t> want;
  for (std::uint64_t seq = 0; seq < count; ++seq) {
    if (!missing.contains(seq)) want.push_back(seq);
  }
  ASSERT_EQ(seqs.size(), want.empty() ? 0u : streams) << "streams at the sink";
  for (const auto& [stream, got] : seqs) EXPECT_EQ(got, want) << "stream " << stream;
}

/// The run under test, on the transport of the test's parameter.
class ConformanceTest : public ::testing::TestWithParam<Transport> {
 protected:
  void SetUp() override {
    if (GetParam() == Transport::redis && redis_url().empty()) {
      if (std::getenv("MICROMODELS_REQUIRE_REDIS") != nullptr) {
        FAIL() << "MICROMODELS_REDIS_URL is not set (MICROMODELS_REQUIRE_REDIS is)";
      }
      GTEST_SKIP() << "no Redis: scripts/test.sh starts one and sets MICROMODELS_REDIS_URL";
    }
    registry_ = Registry::with_builtins();
    const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
    name_ = "c" + std::to_string(::getpid()) + "_" + info->name();
    for (char& c : name_) {
      c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
      if (!std::isalnum(static_cast<unsigned char>(c))) c = '_';
    }
  }

  /// A stage type `name` that records every packet into `records` and passes it on.
  void add_recorder(const std::string& type, std::shared_ptr<Records> records,
                    StageInfo info = {.reads_all = true});

  /// A runner for `pipeline` (named after the test) on this test's transport: in one process,
  /// or as the run process of a Redis run that serves every stage itself.
  std::unique_ptr<Runner> runner(Pipeline pipeline) const {
    pipeline = renamed(pipeline);
    if (GetParam() == Transport::memory) return std::make_unique<Runner>(pipeline, registry_);
#ifdef MICROMODELS_HAS_REDIS
    return std::make_unique<Runner>(
        pipeline,
        std::make_unique<RedisTransport>(
            RedisOptions{.url = redis_url(), .serve = RedisOptions::Serve::all}),
        registry_);
#else
    return nullptr;
#endif
  }

  /// Runs `pipeline` to its end (60 s at most) and returns its metrics.
  MetricsSnapshot run(const Pipeline& pipeline) const {
    std::unique_ptr<Runner> r = runner(pipeline);
    r->start();
    EXPECT_TRUE(r->wait_for(60'000)) << "the run did not finish";
    return r->metrics();
  }

  [[nodiscard]] Pipeline renamed(const Pipeline& pipeline) const {
    Pipeline copy(name_);
    for (const StageConfig& stage : pipeline.stages()) copy.add(stage);
    copy.set_dead_letter(pipeline.dead_letter());
    copy.set_workers(pipeline.workers());
    copy.set_autoscale(pipeline.autoscale());
    copy.set_live(pipeline.live());
    return copy;
  }

  Registry registry_;
  std::string name_;
};

template <class MakeStage>
StageType stage_type(std::string name, StageInfo info, MakeStage make) {
  return {.name = std::move(name),
          .info = [info](const Params&) { return info; },
          .make = [make](const Params&) -> std::unique_ptr<Stage> { return make(); }};
}

/// Records every packet it gets, in arrival order, and passes it on.
class Recorder final : public Stage {
 public:
  explicit Recorder(std::shared_ptr<Records> records) : records_(std::move(records)) {}
  void process(Packet packet, std::vector<Packet>& out) override {
    {
      std::lock_guard lock(records_->mutex);
      records_->seen.push_back({packet.stream, packet.seq, packet});
    }
    out.push_back(std::move(packet));
  }

 private:
  std::shared_ptr<Records> records_;
};

inline void ConformanceTest::add_recorder(const std::string& type, std::shared_ptr<Records> records,
                                          StageInfo info) {
  registry_.add(stage_type(type, info, [records] { return std::make_unique<Recorder>(records); }));
}

inline StageConfig source(std::int64_t count, std::int64_t streams = 1, double rate = 0) {
  return {.name = "source",
          .type = "synthetic.source",
          .params = {{"count", count}, {"streams", streams}, {"rate", rate}}};
}

}  // namespace micromodels::conformance
