// Whole pipelines on the in-memory runner: order, affinity, DAGs, overflow, failures, scaling.
// About 780 lines: one test per guarantee of the runner, on shared test stages.
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <map>
#include <mutex>
#include <set>
#include <stdexcept>
#include <thread>

#include <spdlog/sinks/ringbuffer_sink.h>
#include <spdlog/spdlog.h>

#include "micromodels/micromodels.hpp"

using namespace micromodels;

namespace {

using Clock = std::chrono::steady_clock;

/// What a collecting sink saw, in arrival order.
struct Seen {
  std::mutex mutex;
  std::vector<std::pair<std::uint32_t, std::uint64_t>> keys;
  std::vector<Packet> packets;
  std::atomic<int> concurrent_same_stream{0};

  std::size_t size() {
    std::lock_guard lock(mutex);
    return keys.size();
  }
};

class Collect final : public Stage {
 public:
  explicit Collect(std::shared_ptr<Seen> seen) : seen_(std::move(seen)) {}
  void process(Packet packet, std::vector<Packet>& out) override {
    std::lock_guard lock(seen_->mutex);
    seen_->keys.emplace_back(packet.stream, packet.seq);
    seen_->packets.push_back(packet);
    out.push_back(std::move(packet));
  }

 private:
  std::shared_ptr<Seen> seen_;
};

/// Checks that no two packets of one stream are processed at once, and that each stream arrives
/// in seq order; sleeps a little so that overlaps would show.
class StreamProbe final : public Stage {
 public:
  explicit StreamProbe(std::shared_ptr<Seen> seen) : seen_(std::move(seen)) {}
  void process(Packet packet, std::vector<Packet>& out) override {
    {
      std::lock_guard lock(mutex_);
      if (!busy_.insert(packet.stream).second) seen_->concurrent_same_stream++;
    }
    std::this_thread::sleep_for(std::chrono::microseconds(200));
    {
      std::lock_guard lock(mutex_);
      busy_.erase(packet.stream);
    }
    {
      std::lock_guard lock(seen_->mutex);
      seen_->keys.emplace_back(packet.stream, packet.seq);
    }
    out.push_back(std::move(packet));
  }

 private:
  std::shared_ptr<Seen> seen_;
  std::mutex mutex_;
  std::set<std::uint32_t> busy_;
};

/// Writes a field, to test fan-out and fan-in.
class Tag final : public Stage {
 public:
  explicit Tag(std::string field) : field_(std::move(field)) {}
  void process(Packet packet, std::vector<Packet>& out) override {
    packet.set(field_, static_cast<std::int64_t>(packet.seq));
    out.push_back(std::move(packet));
  }

 private:
  std::string field_;
};

/// Drops packets whose seq is odd.
class DropOdd final : public Stage {
 public:
  void process(Packet packet, std::vector<Packet>& out) override {
    if (packet.seq % 2 == 0) out.push_back(std::move(packet));
  }
};

/// A stage with a real batch method, recording batch sizes.
class Batcher final : public Stage {
 public:
  explicit Batcher(std::shared_ptr<std::vector<std::size_t>> sizes) : sizes_(std::move(sizes)) {}
  void process(Packet packet, std::vector<Packet>& out) override { out.push_back(std::move(packet)); }
  void process_batch(std::vector<Packet>& batch, std::vector<Packet>& out) override {
    sizes_->push_back(batch.size());
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
    for (Packet& packet : batch) out.push_back(std::move(packet));
  }

 private:
  std::shared_ptr<std::vector<std::size_t>> sizes_;
};

/// Emits each packet, then a copy with `copy` = 1 (two packets for one input).
class Twice final : public Stage {
 public:
  void process(Packet packet, std::vector<Packet>& out) override {
    out.push_back(packet);
    packet.set("copy", std::int64_t{1});
    out.push_back(std::move(packet));
  }
};

/// Passes packets on; holds the copy of stream 0 seq 5 for 100 ms, so that later seqs pass it.
class HoldCopy final : public Stage {
 public:
  void process(Packet packet, std::vector<Packet>& out) override {
    if (packet.stream == 0 && packet.seq == 5 && packet.has("copy")) {
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
    out.push_back(std::move(packet));
  }
};

struct Fixture {
  Registry registry = Registry::with_builtins();
  std::shared_ptr<Seen> seen = std::make_shared<Seen>();
  std::shared_ptr<std::vector<std::size_t>> batch_sizes = std::make_shared<std::vector<std::size_t>>();

  Fixture() {
    auto seen_ptr = seen;
    registry.add({.name = "test.collect",
                  .info = [](const Params&) { return StageInfo{}; },
                  .make = [seen_ptr](const Params&) -> std::unique_ptr<Stage> {
                    return std::make_unique<Collect>(seen_ptr);
                  }});
    registry.add({.name = "test.stream_probe",
                  .info = [](const Params&) { return StageInfo{.blocking = true}; },
                  .make = [seen_ptr](const Params&) -> std::unique_ptr<Stage> {
                    return std::make_unique<StreamProbe>(seen_ptr);
                  }});
    registry.add({.name = "test.tag",
                  .params = {{"field", ParamType::text, std::nullopt, ""}},
                  .info = [](const Params& p) { return StageInfo{.writes = {p.text("field")}}; },
                  .make = [](const Params& p) -> std::unique_ptr<Stage> {
                    return std::make_unique<Tag>(p.text("field"));
                  }});
    registry.add({.name = "test.drop_odd",
                  .info = [](const Params&) { return StageInfo{}; },
                  .make = [](const Params&) -> std::unique_ptr<Stage> {
                    return std::make_unique<DropOdd>();
                  }});
    registry.add({.name = "test.twice",
                  .info = [](const Params&) { return StageInfo{.writes = {"copy"}}; },
                  .make = [](const Params&) -> std::unique_ptr<Stage> {
                    return std::make_unique<Twice>();
                  }});
    registry.add({.name = "test.hold_copy",
                  .info = [](const Params&) { return StageInfo{.blocking = true}; },
                  .make = [](const Params&) -> std::unique_ptr<Stage> {
                    return std::make_unique<HoldCopy>();
                  }});
    auto sizes = batch_sizes;
    registry.add({.name = "test.batcher",
                  .info = [](const Params&) { return StageInfo{.batching = true}; },
                  .make = [sizes](const Params&) -> std::unique_ptr<Stage> {
                    return std::make_unique<Batcher>(sizes);
                  }});
  }

  MetricsSnapshot run(const Pipeline& pipeline) {
    Runner runner(pipeline, registry);
    runner.start();
    EXPECT_TRUE(runner.wait_for(60'000)) << "pipeline did not finish";
    return runner.metrics();
  }
};

StageConfig source(std::int64_t count, std::int64_t streams = 1, double rate = 0) {
  return {.name = "source",
          .type = "synthetic.source",
          .params = {{"count", count}, {"streams", streams}, {"rate", rate}}};
}

StageConfig model(std::string name, double service_ms, int consumers, double jitter = 0) {
  return {.name = std::move(name),
          .type = "model.spin",
          .params = {{"service_ms", service_ms}, {"jitter", jitter}},
          .consumers = consumers};
}

void expect_each_stream_in_order(const std::vector<std::pair<std::uint32_t, std::uint64_t>>& keys,
                                 std::uint32_t streams, std::uint64_t count) {
  std::map<std::uint32_t, std::uint64_t> next;
  for (const auto& [stream, seq] : keys) {
    ASSERT_EQ(seq, next[stream]) << "stream " << stream << " out of order";
    ++next[stream];
  }
  ASSERT_EQ(next.size(), streams);
  for (const auto& [stream, n] : next) EXPECT_EQ(n, count) << "stream " << stream;
}

}  // namespace

TEST(Runner, OrderedSinkGetsEveryPacketInOrderFromManyConsumers) {
  Fixture f;
  Pipeline p("order");
  p.add(source(3000, 2));
  p.add(model("work", 0.05, 4, 0.9));  // jittered service times finish out of order
  p.add({.name = "sink", .type = "test.collect", .ordered = true});
  const MetricsSnapshot m = f.run(p);
  expect_each_stream_in_order(f.seen->keys, 2, 3000);
  EXPECT_EQ(m.packets_in, 6000u);
  EXPECT_EQ(m.packets_out, 6000u);
  EXPECT_EQ(m.stage("work")->processed, 6000u);
}

TEST(Runner, APipelineOnABrokerIsNotRunInMemoryWithoutAWord) {
  const std::string yaml =
      "pipeline: elsewhere\n"
      "broker: redis://10.0.0.5:6379\n"
      "stages:\n"
      "  - { name: source, type: synthetic.source, params: { count: 3 } }\n"
      "  - { name: sink, type: pass }\n";
  try {
    Runner runner(Pipeline::from_yaml_string(yaml, "elsewhere.yaml"));
    FAIL() << "a pipeline on Redis ran in memory";
  } catch (const ConfigError& e) {
    EXPECT_EQ(e.key(), "broker");
    EXPECT_NE(std::string(e.what()).find("elsewhere.yaml:2:"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("runs on redis://10.0.0.5:6379, and Runner(pipeline) "
                                         "runs in this process"),
              std::string::npos)
        << e.what();
  }
  Pipeline here = Pipeline::from_yaml_string(yaml, "elsewhere.yaml");
  here.set_broker("memory");
  Runner runner(here);
  runner.start();
  runner.wait();
  EXPECT_EQ(runner.metrics().packets_out, 3u);
}

TEST(Runner, AnExtraPacketPassedByALaterSeqGoesOnLateWithOneWarning) {
  // Two packets for each input, then a stage with several consumers that holds one copy back:
  // later seqs pass it, and the ordered sink gets it late (the README's "Not guaranteed"). It
  // is not lost, and the sink's stage says once what happened and what keeps the order.
  auto logged = std::make_shared<spdlog::sinks::ringbuffer_sink_mt>(100);
  auto& sinks = spdlog::default_logger()->sinks();
  sinks.push_back(logged);
  Fixture f;
  Pipeline p("late");
  p.add(source(20, 1));
  p.add({.name = "twice", .type = "test.twice"});
  p.add({.name = "hold", .type = "test.hold_copy", .consumers = 3});
  p.add({.name = "sink", .type = "test.collect", .ordered = true});
  const MetricsSnapshot m = f.run(p);
  sinks.pop_back();
  std::vector<std::uint64_t> seqs;
  for (const auto& key : f.seen->keys) seqs.push_back(key.second);
  ASSERT_EQ(seqs.size(), 40u);
  const auto copy_of_5 = std::find_if(f.seen->packets.begin(), f.seen->packets.end(),
                                      [](const Packet& q) { return q.seq == 5 && q.has("copy"); });
  ASSERT_NE(copy_of_5, f.seen->packets.end());
  EXPECT_GT(copy_of_5 - f.seen->packets.begin(), 12) << "seq 6 and later came before it";
  EXPECT_EQ(m.stage("sink")->processed, 40u);
  int warnings = 0;
  for (const std::string& line : logged->last_formatted()) {
    // Seq 5's copy at least comes late; another copy may come after its next seq too.
    if (line.find("stage 'sink': a packet of stream 0 seq ") == std::string::npos) {
      continue;
    }
    ++warnings;
    EXPECT_NE(line.find("give the stages between 'consumers: 1'"), std::string::npos) << line;
  }
  EXPECT_EQ(warnings, 1);
}

TEST(Runner, PerStreamStateSeesOneStreamAtATimeInOrder) {
  Fixture f;
  Pipeline p("affinity");
  p.add(source(200, 4));
  p.add(model("shuffle", 0.02, 3, 0.9));
  p.add({.name = "track", .type = "test.stream_probe", .consumers = 3, .per_stream = true});
  f.run(p);
  EXPECT_EQ(f.seen->concurrent_same_stream.load(), 0);
  expect_each_stream_in_order(f.seen->keys, 4, 200);
}

TEST(Runner, FanOutAndJoinMergesFieldsOnStreamAndSeq) {
  Fixture f;
  Pipeline p("dag");
  p.add(source(500));
  p.add({.name = "a", .type = "test.tag", .params = {{"field", std::string("a")}}, .consumers = 2,
         .inputs = {"source"}});
  p.add({.name = "b", .type = "test.tag", .params = {{"field", std::string("b")}}, .consumers = 2,
         .inputs = {"source"}});
  p.add({.name = "sink", .type = "test.collect", .ordered = true, .inputs = {"a", "b"}});
  const MetricsSnapshot m = f.run(p);
  ASSERT_EQ(f.seen->packets.size(), 500u);
  for (std::size_t i = 0; i < 500; ++i) {
    const Packet& packet = f.seen->packets[i];
    EXPECT_EQ(packet.seq, i);
    EXPECT_EQ(packet.get<std::int64_t>("a"), static_cast<std::int64_t>(i));
    EXPECT_EQ(packet.get<std::int64_t>("b"), static_cast<std::int64_t>(i));
  }
  EXPECT_EQ(m.stage("sink")->processed, 500u);
}

TEST(Runner, JoinDropsWhenOneBranchFiltersAndOrderContinues) {
  Fixture f;
  Pipeline p("dag_filter");
  p.add(source(400));
  p.add({.name = "a", .type = "test.drop_odd", .inputs = {"source"}});
  p.add({.name = "b", .type = "test.tag", .params = {{"field", std::string("b")}}, .inputs = {"source"}});
  p.add({.name = "sink", .type = "test.collect", .ordered = true, .inputs = {"a", "b"},
         .join_on_timeout = JoinTimeout::drop});
  f.run(p);
  ASSERT_EQ(f.seen->keys.size(), 200u);
  for (std::size_t i = 0; i < 200; ++i) EXPECT_EQ(f.seen->keys[i].second, 2 * i);
}

TEST(Runner, FilteredPacketsDoNotStallAnOrderedStage) {
  Fixture f;
  Pipeline p("filter");
  p.add(source(1000));
  p.add({.name = "filter", .type = "test.drop_odd", .consumers = 2});
  p.add(model("work", 0.01, 2, 0.9));
  p.add({.name = "sink", .type = "test.collect", .ordered = true});
  const MetricsSnapshot m = f.run(p);
  ASSERT_EQ(f.seen->keys.size(), 500u);
  for (std::size_t i = 0; i < 500; ++i) EXPECT_EQ(f.seen->keys[i].second, 2 * i);
  EXPECT_EQ(m.packets_out, 1000u);
}

TEST(Runner, BlockPolicyBoundsQueuesAndLosesNothing) {
  Fixture f;
  Pipeline p("block");
  p.add(source(2000));
  StageConfig slow = model("slow", 0.05, 1);
  slow.queue_capacity = 8;
  p.add(slow);
  p.add({.name = "sink", .type = "test.collect"});
  const MetricsSnapshot m = f.run(p);
  EXPECT_EQ(f.seen->size(), 2000u);
  EXPECT_EQ(m.stage("slow")->dropped, 0u);
  // A producer checks for room before each packet it sends, so a queue overshoots by one at most.
  EXPECT_LE(m.stage("slow")->queue_max, 9u);
}

TEST(Runner, AFastStageFeedingASlowOneDoesNotOverfillItsQueue) {
  // A fast stage with one consumer takes packets in chunks; a chunk is no larger than the room
  // the queue it feeds has, so the queue never holds more than its capacity.
  Fixture f;
  Pipeline p("chunks");
  p.add(source(2000));
  p.add({.name = "fast", .type = "pass"});
  StageConfig slow = model("slow", 0.05, 1);
  slow.queue_capacity = 8;
  p.add(slow);
  p.add({.name = "sink", .type = "test.collect", .ordered = true});
  const MetricsSnapshot m = f.run(p);
  EXPECT_EQ(f.seen->size(), 2000u);
  EXPECT_EQ(m.stage("slow")->queue_max, 8u) << "filled to its capacity, and no further";
}

TEST(Runner, DropPoliciesCountEveryDroppedPacket) {
  for (Overflow overflow : {Overflow::drop_newest, Overflow::drop_oldest}) {
    Fixture f;
    Pipeline p("drop");
    p.add(source(3000));
    StageConfig slow = model("slow", 0.05, 1);
    slow.queue_capacity = 4;
    slow.overflow = overflow;
    p.add(slow);
    p.add({.name = "sink", .type = "test.collect", .ordered = true});
    const MetricsSnapshot m = f.run(p);
    const StageMetrics& s = *m.stage("slow");
    EXPECT_GT(s.dropped, 0u);
    EXPECT_EQ(s.processed + s.dropped, 3000u);
    EXPECT_EQ(f.seen->size(), s.processed);
    EXPECT_LE(s.queue_max, 4u);
    // What survives still arrives in order.
    for (std::size_t i = 1; i < f.seen->keys.size(); ++i) {
      EXPECT_LT(f.seen->keys[i - 1].second, f.seen->keys[i].second);
    }
  }
}

TEST(Runner, FailingPacketsAreCountedAndDeadLetteredWhileOthersFlow) {
  Fixture f;
  auto letters = std::make_shared<Seen>();
  f.registry.add({.name = "test.letters",
                  .info = [](const Params&) { return StageInfo{}; },
                  .make = [letters](const Params&) -> std::unique_ptr<Stage> {
                    return std::make_unique<Collect>(letters);
                  }});
  Pipeline p("fail");
  p.add(source(1000));
  p.add({.name = "flaky", .type = "model.spin",
         .params = {{"service_ms", 0.0}, {"fail_every", std::int64_t{10}}}, .consumers = 2});
  p.add({.name = "sink", .type = "test.collect", .ordered = true});
  p.add({.name = "letters", .type = "test.letters", .inputs = {}});
  p.set_dead_letter("letters");
  const MetricsSnapshot m = f.run(p);
  EXPECT_EQ(m.stage("flaky")->failed, 100u);
  EXPECT_EQ(m.stage("flaky")->processed, 900u);
  EXPECT_EQ(f.seen->size(), 900u);
  ASSERT_EQ(letters->packets.size(), 100u);
  for (const Packet& letter : letters->packets) {
    EXPECT_EQ((letter.seq + 1) % 10, 0u);
    EXPECT_EQ(letter.get<std::string>("failed_stage"), "flaky");
    EXPECT_NE(letter.get<std::string>("error").find("fail_every"), std::string::npos);
  }
  for (std::size_t i = 1; i < f.seen->keys.size(); ++i) {
    EXPECT_LT(f.seen->keys[i - 1].second, f.seen->keys[i].second);
  }
}

/// Sleeps 1 ms per packet and records how many calls overlap, to see consumers at work.
class Overlap final : public Stage {
 public:
  explicit Overlap(std::shared_ptr<std::atomic<int>> max_seen) : max_seen_(std::move(max_seen)) {}
  void process(Packet packet, std::vector<Packet>& out) override {
    const int now = ++current_;
    int seen = max_seen_->load();
    while (now > seen && !max_seen_->compare_exchange_weak(seen, now)) {
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
    --current_;
    out.push_back(std::move(packet));
  }

 private:
  std::atomic<int> current_{0};
  std::shared_ptr<std::atomic<int>> max_seen_;
};

TEST(Runner, ScalingUpAndDownUnderLoadLosesAndDuplicatesNothing) {
  Fixture f;
  auto overlap = std::make_shared<std::atomic<int>>(0);
  f.registry.add({.name = "test.overlap",
                  .info = [](const Params&) { return StageInfo{.blocking = true}; },
                  .make = [overlap](const Params&) -> std::unique_ptr<Stage> {
                    return std::make_unique<Overlap>(overlap);
                  }});
  Pipeline p("scale");
  p.add(source(3000, 1, 3000));  // paced: about a second, faster than one consumer can go
  p.add({.name = "work", .type = "test.overlap", .consumers = 1});
  p.add({.name = "sink", .type = "test.collect", .ordered = true});
  Runner runner(p, f.registry);
  runner.start();
  // No timing is asserted: only that extra consumers really work side by side, and that
  // scaling up and down while packets flow loses and duplicates nothing.
  while (runner.metrics().stage("work")->processed < 50) std::this_thread::sleep_for(std::chrono::milliseconds(5));
  EXPECT_EQ(overlap->load(), 1);
  runner.scale("work", 6);
  const auto deadline = Clock::now() + std::chrono::seconds(30);
  while (overlap->load() < 2 && Clock::now() < deadline && !runner.finished()) {
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  EXPECT_GE(overlap->load(), 2) << "scaled-up consumers never ran side by side";
  runner.scale("work", 2);
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  runner.scale("work", 5);
  ASSERT_TRUE(runner.wait_for(60'000));
  EXPECT_EQ(runner.metrics().stage("work")->consumers, 5);
  expect_each_stream_in_order(f.seen->keys, 1, 3000);
}

TEST(Runner, ScaleRejectsBadRequests) {
  Fixture f;
  Pipeline p("bad_scale");
  p.add(source(10));
  p.add({.name = "sink", .type = "test.collect"});
  Runner runner(p, f.registry);
  EXPECT_THROW(runner.scale("nope", 2), std::invalid_argument);
  EXPECT_THROW(runner.scale("sink", 0), std::invalid_argument);
  EXPECT_THROW(runner.scale("source", 2), std::invalid_argument);
  runner.start();
  EXPECT_TRUE(runner.wait_for(10'000));
}

/// Writes its `version` param into each packet; version -1 fails to build, like a missing model.
class Versioned final : public Stage {
 public:
  explicit Versioned(std::int64_t version) : version_(version) {
    if (version < 0) throw std::runtime_error("model file 'v" + std::to_string(version) + "' not found");
  }
  void process(Packet packet, std::vector<Packet>& out) override {
    std::this_thread::sleep_for(std::chrono::microseconds(300));
    packet.set("version", version_);
    out.push_back(std::move(packet));
  }

 private:
  std::int64_t version_;
};

void add_versioned(Registry& registry) {
  registry.add({.name = "test.versioned",
                .params = {{"version", ParamType::integer, std::int64_t{1}, ""}},
                .info = [](const Params&) { return StageInfo{.writes = {"version"}}; },
                .make = [](const Params& p) -> std::unique_ptr<Stage> {
                  return std::make_unique<Versioned>(p.integer("version"));
                }});
}

TEST(Runner, SwapUnderLoadTakesOverWithoutLossDuplicationOrReordering) {
  Fixture f;
  add_versioned(f.registry);
  Pipeline p("swap");
  p.add(source(2000, 2, 2000));  // 2 streams of 2000, paced: about a second
  p.add({.name = "work", .type = "test.versioned", .consumers = 2});
  p.add({.name = "sink", .type = "test.collect", .ordered = true});
  Runner runner(p, f.registry);
  runner.start();
  while (runner.metrics().stage("work")->processed < 200) {
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  // Refused swaps change nothing: version 1 keeps running.
  EXPECT_THROW(runner.swap("nope", {{"version", "2"}}), std::invalid_argument);
  EXPECT_THROW(runner.swap("source", {{"count", "5"}}), std::invalid_argument);
  EXPECT_THROW(runner.swap("work", {{"versoin", "2"}}), ConfigError);
  EXPECT_THROW(runner.swap("work", {{"version", "two"}}), ConfigError);
  EXPECT_THROW(runner.swap("work", {{"version", "-1"}}), ConfigError);
  EXPECT_THROW(runner.swap("work", {}, "no.such.type"), ConfigError);
  runner.swap("work", {{"version", "2"}});
  ASSERT_TRUE(runner.wait_for(60'000));
  EXPECT_EQ(runner.metrics().stage("work")->failed, 0u);

  std::lock_guard lock(f.seen->mutex);
  expect_each_stream_in_order(f.seen->keys, 2, 2000);
  std::map<std::uint32_t, std::int64_t> last;
  std::map<std::int64_t, int> count;
  for (const Packet& packet : f.seen->packets) {
    const std::int64_t version = packet.get<std::int64_t>("version");
    EXPECT_GE(version, last[packet.stream]) << "stream " << packet.stream << " seq " << packet.seq
                                             << " went back to the old instance";
    last[packet.stream] = version;
    ++count[version];
  }
  EXPECT_GT(count[1], 0);
  EXPECT_GT(count[2], 0) << "the swapped-in instance never ran";
}

TEST(Runner, SwapRefusesATypeThatNoLongerWritesWhatIsReadDownstream) {
  Fixture f;
  add_versioned(f.registry);
  f.registry.add({.name = "test.needs_version",
                  .info = [](const Params&) { return StageInfo{.reads = {"version"}}; },
                  .make = [](const Params&) -> std::unique_ptr<Stage> {
                    return std::make_unique<DropOdd>();
                  }});
  Pipeline p("swap_type");
  p.add(source(10));
  p.add({.name = "work", .type = "test.versioned"});
  p.add({.name = "check", .type = "test.needs_version"});
  Runner runner(p, f.registry);
  try {
    runner.swap("work", {}, "pass");
    FAIL() << "swap to a type that does not write 'version' was accepted";
  } catch (const ConfigError& error) {
    EXPECT_NE(std::string(error.what()).find("version"), std::string::npos) << error.what();
  }
  runner.start();
  ASSERT_TRUE(runner.wait_for(10'000));
  EXPECT_EQ(runner.metrics().stage("check")->processed, 10u);
}

// A swap to another type drops the params of the old type that the new one does not have (a
// swap cannot remove a param, so keeping them would refuse every such swap), keeps those it has,
// and takes the ones given.
TEST(Runner, SwapToAnotherTypeKeepsOnlyTheParamsItHas) {
  Fixture f;
  Pipeline p("swap_params");
  p.add(source(10000, 1, 2000));
  p.add({.name = "work", .type = "model.spin", .params = {{"service_ms", 0.5}}});
  p.add({.name = "sink", .type = "test.collect", .ordered = true});
  Runner runner(p, f.registry);
  runner.start();
  runner.swap("work", {}, "pass");                             // pass has no service_ms
  runner.swap("work", {{"service_ms", "0.2"}}, "model.spin");  // model.spin has one
  runner.stop();
  ASSERT_TRUE(runner.wait_for(10'000));
  EXPECT_EQ(runner.metrics().stage("work")->type, "model.spin");
  EXPECT_EQ(runner.metrics().stage("work")->failed, 0u);
}

TEST(Runner, StopDrainsInFlightPackets) {
  Fixture f;
  Pipeline p("stop");
  p.add(source(100000, 1, 2000));
  p.add({.name = "work", .type = "model.sleep", .params = {{"service_ms", 2.0}}, .consumers = 2});
  p.add({.name = "sink", .type = "test.collect", .ordered = true});
  Runner runner(p, f.registry);
  runner.start();
  std::this_thread::sleep_for(std::chrono::milliseconds(150));
  runner.stop();
  ASSERT_TRUE(runner.wait_for(10'000));
  const MetricsSnapshot m = runner.metrics();
  EXPECT_GT(m.packets_in, 0u);
  EXPECT_LT(m.packets_in, 100000u);
  EXPECT_EQ(m.packets_out, m.packets_in);
  expect_each_stream_in_order(f.seen->keys, 1, m.packets_in);
}

TEST(Runner, TapsHandOnThePacketsLeavingAStageWhileItRuns) {
  Fixture f;
  Pipeline p("tap");
  p.add(source(100000, 1, 2000));
  p.add({.name = "work", .type = "model.spin", .params = {{"service_ms", 0.05}, {"writes", std::string("ms")}},
         .consumers = 2});
  p.add({.name = "sink", .type = "test.collect", .ordered = true});
  Runner runner(p, f.registry);
  runner.start();
  using std::chrono::seconds;
  // A stage's outputs (with what it wrote), a source's packets, and what a last stage takes (it
  // emits nothing: its packets leave the pipeline there).
  const PacketTap::Next work = runner.tap("work").next(seconds(10));
  ASSERT_NE(work.packet, nullptr);
  EXPECT_TRUE(work.packet->has("ms"));
  EXPECT_EQ(work.packet->get<std::int64_t>("value"), static_cast<std::int64_t>(work.packet->seq));
  const PacketTap::Next later = runner.tap("work").next(seconds(10));
  ASSERT_NE(later.packet, nullptr);
  EXPECT_NE(later.packet->seq, work.packet->seq) << "the same packet twice";
  const PacketTap::Next source_packet = runner.tap("source").next(seconds(10));
  ASSERT_NE(source_packet.packet, nullptr);
  EXPECT_FALSE(source_packet.packet->has("ms"));
  const PacketTap::Next sink = runner.tap("sink").next(seconds(10));
  ASSERT_NE(sink.packet, nullptr);
  EXPECT_TRUE(sink.packet->has("ms"));
  try {
    (void)runner.tap("nosuch");
    ADD_FAILURE() << "an unknown stage was tapped";
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("the stages are source, work, sink"), std::string::npos)
        << e.what();
  }
  // The run's end closes the taps: a watcher is told at once.
  runner.stop();
  ASSERT_TRUE(runner.wait_for(10'000));
  const auto start = std::chrono::steady_clock::now();
  EXPECT_TRUE(runner.tap("work").next(seconds(30)).closed);
  EXPECT_LT(std::chrono::steady_clock::now() - start, seconds(1));
}

TEST(Runner, BatchingStageGetsBatchesAndEveryPacket) {
  Fixture f;
  Pipeline p("batch");
  p.add(source(500));
  p.add({.name = "batch", .type = "test.batcher", .max_batch = 8, .max_delay_ms = 5});
  p.add({.name = "sink", .type = "test.collect", .ordered = true});
  f.run(p);
  expect_each_stream_in_order(f.seen->keys, 1, 500);
  std::size_t total = 0;
  std::size_t largest = 0;
  for (std::size_t size : *f.batch_sizes) {
    total += size;
    largest = std::max(largest, size);
    EXPECT_LE(size, 8u);
  }
  EXPECT_EQ(total, 500u);
  EXPECT_EQ(largest, 8u);
}

TEST(Runner, MetricsDescribeWhatHappened) {
  Fixture f;
  Pipeline p("metrics");
  p.add(source(300));
  p.add({.name = "slow", .type = "model.sleep", .params = {{"service_ms", 1.0}}, .consumers = 1});
  p.add({.name = "sink", .type = "test.collect"});
  const MetricsSnapshot m = f.run(p);
  const StageMetrics& slow = *m.stage("slow");
  EXPECT_EQ(slow.processed, 300u);
  EXPECT_GE(slow.service.p50_us, 900.0);
  EXPECT_LT(slow.service.p50_us, 1e6);  // microseconds, not nanoseconds or seconds
  EXPECT_GT(slow.busy_share, 0.5);
  EXPECT_EQ(m.bottleneck()->name, "slow");
  EXPECT_GT(m.elapsed_s, 0.25);
}

/// Counts "built" when it is made and "odd" for each packet with an odd seq.
class CountsOdd final : public Stage {
 public:
  CountsOdd() { count("built"); }
  void process(Packet packet, std::vector<Packet>& out) override {
    if (packet.seq % 2 == 1) count("odd");
    out.push_back(std::move(packet));
  }
};

TEST(Runner, EventsAStageCountsAreItsMetricsAndASwapKeepsThem) {
  Fixture f;
  f.registry.add({.name = "test.counts_odd",
                  .params = {{"version", ParamType::integer, std::int64_t{1}, ""}},
                  .make = [](const Params&) -> std::unique_ptr<Stage> {
                    return std::make_unique<CountsOdd>();
                  }});
  Pipeline p("events");
  p.add(source(1000, 2, 2000));  // 2 streams of 1000, paced: about half a second
  p.add({.name = "work", .type = "test.counts_odd", .consumers = 2});
  p.add({.name = "sink", .type = "test.collect"});
  Runner runner(p, f.registry);
  runner.start();
  while (runner.metrics().stage("work")->processed < 200) {
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  runner.swap("work", {{"version", "2"}});
  ASSERT_TRUE(runner.wait_for(60'000));
  const MetricsSnapshot m = runner.metrics();
  const std::map<std::string, std::uint64_t> expected = {{"built", 2}, {"odd", 1000}};
  EXPECT_EQ(m.stage("work")->events, expected)
      << "one count per instance built, and every odd packet once, across the swap";
  EXPECT_TRUE(m.stage("sink")->events.empty());
  EXPECT_TRUE(m.stage("source")->events.empty());

  const std::string table = m.to_table();
  EXPECT_NE(table.find("\nevents: work built 2 odd 1000\n"), std::string::npos) << table;
  const std::string json = m.to_json();
  EXPECT_NE(json.find("\"events\": {\n        \"built\": 2,\n        \"odd\": 1000\n      }"),
            std::string::npos)
      << json;
  const std::string prometheus = m.to_prometheus();
  EXPECT_NE(prometheus.find("# TYPE micromodels_stage_events_total counter\n"), std::string::npos);
  EXPECT_NE(prometheus.find("micromodels_stage_events_total{pipeline=\"events\",stage=\"work\","
                            "event=\"odd\"} 1000\n"),
            std::string::npos)
      << prometheus;
  EXPECT_EQ(prometheus.find("micromodels_stage_events_total{pipeline=\"events\",stage=\"sink\""),
            std::string::npos)
      << "a stage that counted nothing has no events";
}

TEST(StageHarness, RunsOneStageWithoutThreads) {
  Fixture f;
  StageHarness source_harness("synthetic.source", {{"count", std::int64_t{3}}}, f.registry);
  std::vector<Packet> packets = source_harness.drain();
  ASSERT_EQ(packets.size(), 3u);
  EXPECT_EQ(packets[2].seq, 2u);
  StageHarness tag("test.tag", {{"field", std::string("x")}}, f.registry);
  std::vector<Packet> out = tag.process(packets[1]);
  ASSERT_EQ(out.size(), 1u);
  EXPECT_EQ(out[0].get<std::int64_t>("x"), 1);
  StageHarness flaky("model.spin", {{"service_ms", 0.0}, {"fail_every", std::int64_t{1}}},
                     f.registry);
  EXPECT_THROW(flaky.process(packets[0]), std::runtime_error);
}

namespace {

// A transport that can neither join, nor restore order, nor take a dead-letter stage, nor run
// live mode. It is
// never started: the runner must refuse what it cannot do before it binds anything.
class LimitedTransport final : public Transport {
 public:
  explicit LimitedTransport(bool& bound) : bound_(bound) {}
  [[nodiscard]] std::string name() const override { return "limited://test"; }
  [[nodiscard]] Capabilities capabilities() const override {
    return {.joins = false, .ordered = false, .dead_letter = false};
  }
  void bind(const Plan&) override { bound_ = true; }
  [[nodiscard]] bool serves(const PlanStage&) const override { return true; }
  std::unique_ptr<Inlet> inlet(const PlanStage&) override { return nullptr; }
  std::unique_ptr<Outlet> outlet(const PlanStage&, const PlanStage*, std::size_t) override {
    return nullptr;
  }
  void start(Host&) override {}
  [[nodiscard]] bool finished() const override { return true; }
  void stop_taking() override {}
  void stop() override {}

 private:
  bool& bound_;
};

// What() of the refusal of `stage_lines` (after a source) on LimitedTransport; "" if accepted.
std::string refusal_on_limited_transport(const std::string& stage_lines, bool& bound,
                                         const std::string& head = "") {
  const std::string yaml = "pipeline: limited\n" + head +
                           "stages:\n"
                           "  - name: source\n"
                           "    type: synthetic.source\n" +
                           stage_lines;
  try {
    Runner runner(Pipeline::from_yaml_string(yaml, "limited.yaml"),
                  std::make_unique<LimitedTransport>(bound), Registry::with_builtins());
  } catch (const ConfigError& error) {
    return error.what();
  }
  return "";
}

}  // namespace

TEST(Runner, ATransportThatCannotDoAKeyRefusesItNamingTheKeyItsLineAndTheBroker) {
  bool bound = false;
  const std::string join = refusal_on_limited_transport(
      "  - name: a\n    type: pass\n    inputs: source\n"
      "  - name: b\n    type: pass\n    inputs: source\n"
      "  - name: both\n    type: pass\n    inputs: [a, b]\n",
      bound);
  EXPECT_NE(join.find("limited.yaml:13"), std::string::npos) << join;
  EXPECT_NE(join.find("key 'inputs'"), std::string::npos) << join;
  EXPECT_NE(join.find("joining several inputs is not supported on limited://test"),
            std::string::npos)
      << join;
  const std::string ordered =
      refusal_on_limited_transport("  - name: sink\n    type: pass\n    ordered: true\n", bound);
  EXPECT_NE(ordered.find("limited.yaml:7"), std::string::npos) << ordered;
  EXPECT_NE(ordered.find("key 'ordered'"), std::string::npos) << ordered;
  const std::string state =
      refusal_on_limited_transport("  - name: track\n    type: pass\n    state: per_stream\n", bound);
  EXPECT_NE(state.find("limited.yaml:7"), std::string::npos) << state;
  EXPECT_NE(state.find("key 'state'"), std::string::npos) << state;
  const std::string live = refusal_on_limited_transport("  - name: sink\n    type: pass\n", bound,
                                                        "live: { max_age_ms: 120 }\n");
  EXPECT_NE(live.find("limited.yaml:2:1: key 'live': a latency budget (live mode) is not "
                      "supported on limited://test yet; run this pipeline with broker: memory, "
                      "or remove live:"),
            std::string::npos)
      << live;
  EXPECT_FALSE(bound) << "refused before the transport was bound";
  EXPECT_EQ(refusal_on_limited_transport("  - name: work\n    type: pass\n", bound), "");
  EXPECT_TRUE(bound) << "what the transport can do is accepted";
}
