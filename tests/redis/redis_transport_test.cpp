// Runners on the Redis transport in one process: a run and workers as objects, on the test's
// Redis. These are the broker's tests that also run under the sanitizers (no child processes).
// About 1,500 lines: its tests share one fixture (one Redis for the suite, runners as objects,
// the sink's records checked one by one), and the sanitizer builds run this file as one executable.
#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstring>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <thread>

#include "entry.hpp"
#include "hop_codec.hpp"
#include "image_store.hpp"
#include "micromodels/plan.hpp"
#include "micromodels/redis.hpp"
#include "micromodels/registry.hpp"
#include "micromodels/runner.hpp"
#include "micromodels/stage.hpp"
#include "redis_test_support.hpp"
#include "retired_keys.hpp"
#include "session.hpp"

namespace micromodels {
namespace {

using redis_testing::field_text;
using redis_testing::OwnRedis;
using redis_testing::lines_of;
using redis_testing::Redis;
using redis_testing::redis_url;
using namespace std::chrono_literals;

// One process of a distributed run: a Runner on a RedisTransport.
class Part {
 public:
  Part(const Pipeline& pipeline, RedisOptions options, const Registry& registry = Registry::global())
      : Part(pipeline, std::make_unique<RedisTransport>(std::move(options)), registry) {}
  Runner runner;
  RedisTransport& transport;

 private:
  Part(const Pipeline& pipeline, std::unique_ptr<RedisTransport> owned, const Registry& registry)
      : runner(pipeline, std::move(owned), registry),
        transport(*static_cast<RedisTransport*>(runner.transport())) {}
};

class RedisTransportTest : public redis_testing::RedisTest {
 protected:
  // A pipeline named after the test, so that its keys are the test's own: `head` (top-level keys,
  // each line ending in a newline), then `stages` (YAML list items).
  Pipeline pipeline_of(const std::string& stages, const std::string& head = "") const {
    return Pipeline::from_yaml_string("pipeline: " + name_ + "\n" + head + "stages:\n" + stages);
  }

  // synthetic.source with `source_params`, then `stages` (YAML list items), then an ordered
  // sink.jsonl into out.jsonl (which expect_complete reads).
  Pipeline to_sink(const std::string& source_params, const std::string& stages) {
    return pipeline_of(
        "  - { name: source, type: synthetic.source, params: { " + source_params + " } }\n" +
        stages + "  - { name: sink, type: sink.jsonl, ordered: true, params: { path: " +
        (dir_ / "out.jsonl").string() + " } }\n");
  }

  Pipeline pipeline(int count, const std::string& work_params, int streams = 1,
                    bool per_stream = false) {
    return to_sink("count: " + std::to_string(count) + ", streams: " + std::to_string(streams),
                   "  - { name: work, type: model.sleep, consumers: 2" +
                       (per_stream ? std::string(", state: per_stream") : std::string()) +
                       ", params: { " + work_params + " } }\n");
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

TEST_F(RedisTransportTest, RunAloneServesEveryStageAndDeliversEachPacketOnceInOrder) {
  Part run(pipeline(300, "service_ms: 0.2, jitter: 0.9"), {.url = redis_url()});
  run.runner.start();
  ASSERT_TRUE(run.runner.wait_for(30000));
  EXPECT_EQ(run.transport.served(), std::vector<std::string>{"work"});
  EXPECT_EQ(run.runner.progress().done, 300u);
  const MetricsSnapshot m = run.runner.metrics();
  EXPECT_EQ(m.packets_in, 300u);
  EXPECT_EQ(m.packets_out, 300u);
  EXPECT_EQ(m.stage("work")->processed, 300u);
  EXPECT_EQ(m.stage("sink")->processed, 300u);
  expect_complete(300);
  // One consumer group per stage, named after it.
  Redis redis(redis_url());
  for (const std::string stage : {"work", "sink"}) {
    auto groups = redis.command({"XINFO", "GROUPS", stream_key(stage)});
    ASSERT_TRUE(groups && groups->elements == 1) << stage;
    EXPECT_EQ(field_text(groups->element[0], "name"), stage);
  }
}

TEST_F(RedisTransportTest, WorkerInTheSameProcessDoesTheWorkWhenTheRunServesNothing) {
  const Pipeline p = pipeline(200, "service_ms: 0.5");
  Part worker(p, {.role = RedisOptions::Role::worker, .url = redis_url(), .stages = {"work"}});
  worker.runner.start();
  Part run(p, {.url = redis_url(), .serve = RedisOptions::Serve::none});
  run.runner.start();
  ASSERT_TRUE(run.runner.wait_for(30000));
  EXPECT_TRUE(run.transport.served().empty());
  worker.runner.stop();
  ASSERT_TRUE(worker.runner.wait_for(10000));
  // The worker's own table: what entered and left its part, and no source or sink row.
  const MetricsSnapshot m = worker.runner.metrics();
  ASSERT_EQ(m.stages.size(), 1u);
  EXPECT_EQ(m.stages[0].name, "work");
  EXPECT_EQ(m.stages[0].processed, 200u);
  EXPECT_EQ(m.packets_in, 200u);
  EXPECT_EQ(m.packets_out, 200u);
  ASSERT_TRUE(m.bottleneck());
  expect_complete(200);
}

// What `test.numbering` (state: per_stream) saw: each packet with the number its instance gave
// it, from its own memory of the stream (0, 1, 2, ...; a forgotten stream starts again at 0).
struct Numbered {
  struct Record {
    const void* instance;
    std::uint32_t stream;
    std::uint64_t seq;
    std::int64_t n;
  };
  std::mutex mutex;
  std::vector<Record> records;
};

void add_numbering(Registry& registry, const std::shared_ptr<Numbered>& seen) {
  class Numbering final : public Stage {
   public:
    explicit Numbering(std::shared_ptr<Numbered> seen) : seen_(std::move(seen)) {}
    // One consumer per stream at a time, but the streams' consumers share the map.
    void process(Packet packet, std::vector<Packet>& out) override {
      std::int64_t n = 0;
      {
        std::lock_guard lock(mutex_);
        n = next_[packet.stream]++;
      }
      {
        std::lock_guard lock(seen_->mutex);
        seen_->records.push_back({this, packet.stream, packet.seq, n});
      }
      out.push_back(std::move(packet));
    }
    void forget_stream(std::uint32_t stream) override {
      std::lock_guard lock(mutex_);
      next_.erase(stream);
    }

   private:
    std::shared_ptr<Numbered> seen_;
    std::mutex mutex_;
    std::map<std::uint32_t, std::int64_t> next_;
  };
  StageType numbering;
  numbering.name = "test.numbering";
  numbering.info = [](const Params&) { return StageInfo{.per_stream = true}; };
  numbering.make = [seen](const Params&) -> std::unique_ptr<Stage> {
    return std::make_unique<Numbering>(seen);
  };
  registry.add(std::move(numbering));
}

// A worker serves one run after another. A stage with per-stream state starts each run afresh,
// as a new run in one process does: a new instance, not the one that numbered the last run's
// packets of the same stream ids.
TEST_F(RedisTransportTest, AStatefulStageOfAWorkerStartsEachRunAfresh) {
  auto seen = std::make_shared<Numbered>();
  Registry registry = Registry::with_builtins();
  add_numbering(registry, seen);
  const Pipeline p =
      to_sink("count: 20", "  - { name: number, type: test.numbering, state: per_stream }\n");
  Part worker(p, {.role = RedisOptions::Role::worker, .url = redis_url(), .stages = {"number"}},
              registry);
  worker.runner.start();
  for (int run_no = 0; run_no < 2; ++run_no) {
    Part run(p, {.url = redis_url(), .serve = RedisOptions::Serve::none}, registry);
    run.runner.start();
    ASSERT_TRUE(run.runner.wait_for(30000)) << "run " << run_no;
    expect_complete(20);
  }
  worker.runner.stop();
  ASSERT_TRUE(worker.runner.wait_for(10000));
  std::vector<std::int64_t> want;
  for (int run_no = 0; run_no < 2; ++run_no) {
    for (std::int64_t n = 0; n < 20; ++n) want.push_back(n);
  }
  std::lock_guard lock(seen->mutex);
  std::vector<std::int64_t> numbers;
  for (const Numbered::Record& r : seen->records) numbers.push_back(r.n);
  EXPECT_EQ(numbers, want);
}

// A worker that gets a partition back (another worker took it, then left) starts its streams
// afresh, as their other owner did: not from what it kept of them before (docs/distributed.md).
// A per_stream stage numbers each stream's packets from its own memory; wherever an instance
// meets a stream again after a gap (its seqs ran elsewhere meanwhile), it must number from 0.
TEST_F(RedisTransportTest, AWorkerThatGetsAPartitionBackStartsItsStreamsAfresh) {
  auto seen = std::make_shared<Numbered>();
  Registry registry = Registry::with_builtins();
  add_numbering(registry, seen);
  // 4 streams at 100 packets/s each for 5 s: the first worker gets the streams back with
  // seconds to go (the second leaves after about 2 s; a partition moves within a second or two).
  const int count = 500;
  const Pipeline p = to_sink("count: " + std::to_string(count) + ", streams: 4, rate: 100",
                             "  - { name: number, type: test.numbering, state: per_stream, "
                             "partitions: 4, consumers: 4 }\n");
  const RedisOptions worker_options{
      .role = RedisOptions::Role::worker, .url = redis_url(), .stages = {"number"}};
  Part first(p, worker_options, registry);
  first.runner.start();
  Part run(p, {.url = redis_url(), .serve = RedisOptions::Serve::none}, registry);
  run.runner.start();
  const auto numbered_by_others = [&] {
    std::lock_guard lock(seen->mutex);
    return std::count_if(
        seen->records.begin(), seen->records.end(),
        [&](const Numbered::Record& r) { return r.instance != seen->records[0].instance; });
  };
  std::this_thread::sleep_for(500ms);
  {
    // A second worker takes its share of the partitions, works a while, and leaves.
    Part second(p, worker_options, registry);
    second.runner.start();
    for (int i = 0; i < 200 && numbered_by_others() < 40; ++i) std::this_thread::sleep_for(20ms);
    second.runner.stop();
    ASSERT_TRUE(second.runner.wait_for(10000));
  }
  ASSERT_TRUE(run.runner.wait_for(30000));
  expect_complete(count, 4);
  first.runner.stop();
  ASSERT_TRUE(first.runner.wait_for(10000));
  std::lock_guard lock(seen->mutex);
  std::map<std::pair<const void*, std::uint32_t>, std::uint64_t> last;
  int met_again = 0;
  for (const Numbered::Record& r : seen->records) {
    const auto key = std::make_pair(r.instance, r.stream);
    const auto before = last.find(key);
    if (before == last.end() || r.seq != before->second + 1) {
      if (before != last.end()) ++met_again;
      EXPECT_EQ(r.n, 0) << "stream " << r.stream << " seq " << r.seq << " met again after seq "
                        << (before != last.end() ? std::to_string(before->second) : "none");
    }
    last[key] = r.seq;
  }
  EXPECT_GT(met_again, 0) << "the first worker got no stream back: nothing was tested";
}

TEST_F(RedisTransportTest, PerStreamStageKeepsEachStreamInOrderAcrossPartitions) {
  // Three streams over two partitions; the sink checks order and completeness per stream.
  Part run(pipeline(100, "service_ms: 0.3, jitter: 0.9", 3, true), {.url = redis_url()});
  run.runner.start();
  ASSERT_TRUE(run.runner.wait_for(30000));
  expect_complete(100, 3);
  Redis redis(redis_url());
  // Partitions: `partitions:` (default 8), not the consumers.
  EXPECT_EQ(redis.command({"EXISTS", stream_key("work", 0, 8), stream_key("work", 1, 8), stream_key("work", 7, 8)})->integer, 3);
}

// A per_stream partition's lease can expire while its owner is still working on what it read
// (a paused or starved process, or a run resetting the keys): another consumer takes over, and
// the former owner only notices at its next renewal. Whatever the former owner finishes in
// between must not move the partition on under the new owner: here the lease is taken away a few
// times mid-run, and every packet must still arrive once, in order, and the run must end.
TEST_F(RedisTransportTest, LeaseLostMidBatchNeitherStallsNorLosesAStream) {
  const Pipeline p = to_sink("count: 400, rate: 150",
                             "  - { name: work, type: model.sleep, state: per_stream, "
                             "partitions: 1, params: { service_ms: 4 } }\n");
  const RedisOptions worker{.role = RedisOptions::Role::worker, .url = redis_url(),
                            .stages = {"work"}};
  Part w0(p, worker);
  Part w1(p, worker);
  w0.runner.start();
  w1.runner.start();
  Part run(p, {.url = redis_url(), .serve = RedisOptions::Serve::none});
  run.runner.start();
  // The lease goes a few times while packets still arrive, then stays with whoever holds it: a
  // stream that stalled after a hand-over would stay stalled.
  std::thread thief([&] {
    Redis redis(redis_url());
    for (int i = 0; i < 4; ++i) {
      std::this_thread::sleep_for(std::chrono::milliseconds(400));
      redis.command({"DEL", stream_key("work") + ":lease"});
    }
  });
  const bool finished = run.runner.wait_for(30000);
  thief.join();
  w0.runner.stop();
  w1.runner.stop();
  ASSERT_TRUE(w0.runner.wait_for(10000));
  ASSERT_TRUE(w1.runner.wait_for(10000));
  ASSERT_TRUE(finished) << "the run stalled after a lease changed hands";
  expect_complete(400);
}

// A stage that passes packets below seq `held_from` at once and holds the others until the
// test opens the gate: the test decides when they settle.
class Gate {
 public:
  void pass(std::uint64_t seq, std::uint64_t held_from) {
    if (seq < held_from) return;
    std::unique_lock lock(mutex_);
    opened_.wait(lock, [&] { return open_; });
  }
  void open() {
    {
      std::lock_guard lock(mutex_);
      open_ = true;
    }
    opened_.notify_all();
  }

 private:
  std::mutex mutex_;
  std::condition_variable opened_;
  bool open_ = false;
};

StageType gate_type(std::shared_ptr<Gate> gate) {
  class Held final : public Stage {
   public:
    Held(std::shared_ptr<Gate> gate, std::uint64_t held_from)
        : gate_(std::move(gate)), held_from_(held_from) {}
    void process(Packet packet, std::vector<Packet>& out) override {
      gate_->pass(packet.seq, held_from_);
      out.push_back(std::move(packet));
    }

   private:
    std::shared_ptr<Gate> gate_;
    std::uint64_t held_from_;
  };
  return {.name = "test.gate",
          .params = {{"held_from", ParamType::integer, std::int64_t{0}, "first seq held"}},
          .info = [](const Params&) { return StageInfo{.blocking = true}; },
          .make = [gate](const Params& params) -> std::unique_ptr<Stage> {
            const auto held_from = static_cast<std::uint64_t>(params.integer("held_from"));
            return std::make_unique<Held>(gate, held_from);
          }};
}

// Entries of a leased partition can come back to their owner while it still works on them:
// another consumer read them in between (a process that took the lease for a moment, as in the
// test above), and the owner claims them back as strays. They are duplicates of deliveries still
// on their way, so they stay pending until their seqs are recorded as done: a lease lost before
// that must leave every entry past the recorded next seq pending for the new owner, or it waits
// for them for ever. Here the worker holds every packet from seq 5 on, another consumer takes
// every entry the worker has read, the worker claims them back, and then loses its lease.
TEST_F(RedisTransportTest, EntriesClaimedBackStayPendingUntilTheyAreDone) {
  constexpr int kCount = 40;
  auto gate = std::make_shared<Gate>();
  Registry registry = Registry::with_builtins();
  registry.add(gate_type(gate));
  const Pipeline p = to_sink("count: " + std::to_string(kCount),
                             "  - { name: work, type: test.gate, state: per_stream, "
                             "partitions: 1, params: { held_from: 5 } }\n");
  Part worker(p, {.role = RedisOptions::Role::worker, .url = redis_url(), .stages = {"work"}},
              registry);
  Part run(p, {.url = redis_url(), .serve = RedisOptions::Serve::none}, registry);
  const std::unique_ptr<Gate, void (*)(Gate*)> open_at_the_end(gate.get(),
                                                               [](Gate* g) { g->open(); });
  worker.runner.start();
  run.runner.start();
  Redis redis(redis_url());
  const std::string work = stream_key("work");
  const auto pending = [&](const std::string& consumer = {}) {
    std::vector<std::string> args{"XPENDING", work, "work", "-", "+", "1000"};
    if (!consumer.empty()) args.push_back(consumer);
    auto list = redis.command(args);
    return list ? list->elements : 0;
  };
  const auto wait_until = [](const auto& done) {
    const auto deadline = std::chrono::steady_clock::now() + 10s;
    while (!done() && std::chrono::steady_clock::now() < deadline) std::this_thread::sleep_for(5ms);
    return done();
  };
  // Every entry from seq 5 on is read and held (the worker reads ahead while packets are quick).
  constexpr std::size_t kHeld = kCount - 5;
  ASSERT_TRUE(wait_until([&] { return pending() >= kHeld; })) << "the worker read too little ahead";
  auto claimed =
      redis.command({"XAUTOCLAIM", work, "work", "elsewhere", "0", "0-0", "COUNT", "1000"});
  ASSERT_TRUE(claimed && claimed->elements >= 2);
  ASSERT_GE(claimed->element[1]->elements, kHeld);
  ASSERT_TRUE(wait_until([&] { return pending("elsewhere") == 0; }))
      << "the lease holder did not claim its entries back";
  // Held at the gate, none of them is done: none may be acknowledged (progress is sent within
  // a read's wait, 100 ms).
  std::this_thread::sleep_for(500ms);
  EXPECT_EQ(pending(), kHeld) << "entries claimed back were acknowledged before they were done";
  redis.command({"DEL", work + ":lease"});
  std::this_thread::sleep_for(1500ms);  // the worker notices, and takes the partition over again
  gate->open();
  const bool finished = run.runner.wait_for(30000);
  worker.runner.stop();
  ASSERT_TRUE(worker.runner.wait_for(10000));
  ASSERT_TRUE(finished) << "the run stalled after the lease was lost";
  expect_complete(kCount);
}

// A skip reaches a per_stream stage's partition in place of a packet that failed before it.
// Ordering releases the skip, and the engine settles it, at once, while the packets before it
// still wait in the stage's lane: its entry is settled ahead of them. Were it acknowledged then,
// a lease lost before the packets before it settle would leave the partition's recorded next
// seq behind an entry that is never delivered again: the new owner starts from that next seq
// and waits for the skip for ever. Here every third packet fails before the per_stream stage,
// the lease goes a few times mid-run (nearly always with a skip settled ahead), and the run must end
// with every other packet once, in order.
TEST_F(RedisTransportTest, LeaseLostWithASkipSettledAheadOfItsTurnDoesNotStall) {
  constexpr int kCount = 600;
  const Pipeline p = to_sink("count: " + std::to_string(kCount),
                             "  - { name: fail, type: model.sleep, queue: { capacity: 8 }, "
                             "params: { service_ms: 0.5, fail_every: 3 } }\n"
                             "  - { name: work, type: model.sleep, state: per_stream, "
                             "partitions: 1, queue: { capacity: 8 },\n"
                             "      params: { service_ms: 5 } }\n");
  Part run(p, {.url = redis_url()});
  run.runner.start();
  // The lease goes six times while packets still arrive, then stays: a stream that stalled
  // after a take-over would stay stalled.
  std::thread thief([&] {
    Redis redis(redis_url());
    for (int i = 0; i < 6; ++i) {
      std::this_thread::sleep_for(std::chrono::milliseconds(400));
      redis.command({"DEL", stream_key("work") + ":lease"});
    }
  });
  const bool finished = run.runner.wait_for(15000);
  thief.join();
  if (!finished) run.runner.stop();
  ASSERT_TRUE(finished) << "the run stalled after a lease was lost with a skip settled ahead";
  std::set<std::uint64_t> failed;
  for (std::uint64_t seq = 2; seq < kCount; seq += 3) failed.insert(seq);
  expect_complete(kCount, 1, failed);
}

// Seqs that never reach a per_stream stage leave gaps in its partition: a stage before it that
// emits nothing for some packets (a filter), or a queue that drops by its policy. Its inlet
// acknowledges an entry only once every seq before it settled, so a gap that never filled would
// keep every later entry pending (and a new owner would run them all again). Each case must end
// with the stage's and the sink's streams holding no pending entry.
TEST_F(RedisTransportTest, SeqsThatNeverComeLeaveNoEntryPendingBehindThemOnAPerStreamStage) {
  class DropOdd final : public Stage {
   public:
    void process(Packet packet, std::vector<Packet>& out) override {
      if (packet.seq % 2 == 0) out.push_back(std::move(packet));
    }
  };
  Registry registry = Registry::with_builtins();
  registry.add({.name = "test.drop_odd",
                .info = [](const Params&) { return StageInfo{}; },
                .make = [](const Params&) -> std::unique_ptr<Stage> {
                  return std::make_unique<DropOdd>();
                }});
  constexpr int kCount = 300;
  const std::string work = "  - { name: work, type: model.sleep, state: per_stream, partitions: 1, "
                           "params: { service_ms: 0.2 } }\n";
  for (const bool filter : {true, false}) {
    SCOPED_TRACE(filter ? "a filter before it" : "a queue that drops before it");
    name_ += filter ? "_f" : "_q";
    const Pipeline p = to_sink(
        "count: " + std::to_string(kCount),
        (filter ? std::string("  - { name: gap, type: test.drop_odd }\n")
                : std::string("  - { name: gap, type: model.spin, queue: { capacity: 4, overflow: "
                              "drop_newest }, params: { service_ms: 3 } }\n")) +
            work);
    std::filesystem::remove(dir_ / "out.jsonl");
    Part run(p, {.url = redis_url()}, registry);
    run.runner.start();
    const bool finished = run.runner.wait_for(30000);
    if (!finished) run.runner.stop();
    ASSERT_TRUE(finished) << "the run stalled on a gap";
    const MetricsSnapshot m = run.runner.metrics();
    const std::uint64_t passed = m.stage("work")->processed;
    if (filter) {
      EXPECT_EQ(passed, static_cast<std::uint64_t>(kCount / 2));
      std::set<std::uint64_t> odd;
      for (std::uint64_t seq = 1; seq < kCount; seq += 2) odd.insert(seq);
      expect_complete(kCount, 1, odd);
    } else {
      EXPECT_GT(m.stage("gap")->dropped, 0u) << "the queue never overflowed: no gap was made";
      EXPECT_EQ(m.stage("gap")->processed + m.stage("gap")->dropped, static_cast<std::uint64_t>(kCount));
      EXPECT_EQ(passed, m.stage("gap")->processed);
      EXPECT_EQ(lines_of(dir_ / "out.jsonl").size(), passed);
    }
    Redis redis(redis_url());
    for (const std::string stage : {"work", "sink"}) {
      auto length = redis.command({"XLEN", stream_key(stage)});
      ASSERT_TRUE(length && length->type == REDIS_REPLY_INTEGER) << stage;
      EXPECT_GT(length->integer, 0) << "'" << stage << "' kept no entries to look at";
      auto list = redis.command({"XPENDING", stream_key(stage), stage, "-", "+", "1000"});
      ASSERT_TRUE(list && list->type == REDIS_REPLY_ARRAY) << stage;
      EXPECT_EQ(list->elements, 0u) << "entries of '" << stage << "' still pending after the run";
    }
  }
}

// A worker that stops drains what it holds, even when the stage after it has no reader left:
// its consumers were this worker's own inlets (stopped first), or the stage is a finished run's
// sink. Waiting for room in that stage's stream (back-pressure) would wait forever. Here nobody
// serves `b`: once its stream holds its capacity, `a`'s packets wait in `a`'s queue when the
// worker is stopped, and the worker must still end.
TEST_F(RedisTransportTest, AStoppedWorkerDrainsIntoAStageThatNobodyReads) {
  const Pipeline p = pipeline_of(
      "  - { name: source, type: synthetic.source, params: { count: 50 } }\n"
      "  - { name: a, type: model.sleep, queue: { capacity: 2 }, params: { service_ms: 1 } }\n"
      "  - { name: b, type: model.sleep, queue: { capacity: 2 }, params: { service_ms: 1 } }\n"
      "  - { name: sink, type: sink.jsonl, params: { path: " +
      (dir_ / "out.jsonl").string() + " } }\n");
  Part worker(p, {.role = RedisOptions::Role::worker, .url = redis_url(), .stages = {"a"}});
  worker.runner.start();
  Part run(p, {.url = redis_url(), .serve = RedisOptions::Serve::none});
  run.runner.start();
  // `b`'s stream full, and packets of `a` waiting for room in it.
  Redis redis(redis_url());
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
  for (;;) {
    const auto length = redis.command({"XLEN", stream_key("b")});
    const MetricsSnapshot m = worker.runner.metrics();
    const StageMetrics* a = m.stage("a");
    if (length && length->integer >= 2 && a != nullptr && a->queue_depth > 0) break;
    ASSERT_LT(std::chrono::steady_clock::now(), deadline) << "a's packets never waited for b";
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  worker.runner.stop();
  const bool stopped = worker.runner.wait_for(10000);
  EXPECT_TRUE(stopped) << "the stopped worker waits for room in b forever";
  if (!stopped) redis.command({"DEL", stream_key("b")});  // room at last: the test ends, failed
  EXPECT_GT(redis.command({"XLEN", stream_key("b")})->integer, 2) << "what a held went to b";
  run.runner.stop();
}

TEST_F(RedisTransportTest, FailingPacketsAreDeadLetteredWithTheirErrorAndTheRestArrive) {
  // Packets 24, 49, 74 and 99 fail: as in one process, a packet whose stage threw has failed
  // (once); without a dead_letter stage it goes to the dead-letter stream.
  Part run(pipeline(100, "service_ms: 0.1, fail_every: 25"),
           {.url = redis_url(), .max_deliveries = 2, .reclaim_idle_ms = 100});
  run.runner.start();
  ASSERT_TRUE(run.runner.wait_for(30000));
  expect_complete(100, 1, {24, 49, 74, 99});
  EXPECT_EQ(run.transport.dead_lettered(), 4u);
  const MetricsSnapshot m = run.runner.metrics();
  EXPECT_EQ(m.stage("work")->failed, 4u);
  EXPECT_EQ(m.stage("work")->dead_lettered, 4u);
  EXPECT_EQ(m.stage("work")->processed, 96u);
  EXPECT_EQ(m.packets_out, 100u) << "a failed packet is done with: it counts out";
  Redis redis(redis_url());
  auto dead = redis.command({"XRANGE", key("dead"), "-", "+"});
  ASSERT_TRUE(dead);
  ASSERT_EQ(dead->elements, 4u);
  for (std::size_t i = 0; i < dead->elements; ++i) {
    const redisReply* fields = dead->element[i]->element[1];
    EXPECT_EQ(field_text(fields, "stage"), "work");
    EXPECT_NE(field_text(fields, "error").find("failed on purpose"), std::string::npos);
    EXPECT_EQ(field_text(fields, "deliveries"), "1");
  }
}

TEST_F(RedisTransportTest, UnreachableRedisIsABrokerErrorNamingTheAddress) {
  try {
    Part run(pipeline(1, ""), {.url = "redis://127.0.0.1:1"});
    ADD_FAILURE() << "connected to port 1";
  } catch (const BrokerError& e) {
    EXPECT_EQ(e.kind(), BrokerError::Kind::unreachable);
    EXPECT_NE(std::string(e.what()).find("127.0.0.1:1"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("start redis-server"), std::string::npos) << e.what();
  }
}

TEST_F(RedisTransportTest, WorkerRefusesStagesItCannotServe) {
  const Pipeline p = pipeline(1, "");
  EXPECT_THROW(Part(p, {.role = RedisOptions::Role::worker, .url = redis_url(), .stages = {"wrok"}}),
               ConfigError);
  EXPECT_THROW(Part(p, {.role = RedisOptions::Role::worker, .url = redis_url(), .stages = {"sink"}}),
               ConfigError);
}

// ---------------------------------------------------------------------------------------------
// Bytes on the wire: each hop carries what the stages from there on read.

// Every packet a recording stage got, as it arrived.
struct Seen {
  std::mutex mutex;
  std::vector<Packet> packets;
  std::vector<Packet> take() {
    std::lock_guard lock(mutex);
    return std::move(packets);
  }
};

class Record final : public Stage {
 public:
  explicit Record(std::shared_ptr<Seen> seen) : seen_(std::move(seen)) {}
  void process(Packet packet, std::vector<Packet>& out) override {
    {
      std::lock_guard lock(seen_->mutex);
      seen_->packets.push_back(packet);
    }
    out.push_back(std::move(packet));
  }

 private:
  std::shared_ptr<Seen> seen_;
};

// `count` 160x120 gradient frames, different each time, one every `pace` at most.
class Frames final : public Source {
 public:
  explicit Frames(int count, std::chrono::milliseconds pace = {}) : count_(count), pace_(pace) {}
  bool next(std::vector<Packet>& out) override {
    if (emitted_ >= count_) return false;
    std::this_thread::sleep_for(pace_);
    Image image = Image::allocate(160, 120, 3);
    std::byte* p = image.pixels.mutable_data();
    for (std::size_t i = 0; i < image.byte_size(); ++i) {
      p[i] = static_cast<std::byte>((i / 3 % 160 + i / 480 + static_cast<std::size_t>(emitted_)) % 256);
    }
    Packet packet{.seq = static_cast<std::uint64_t>(emitted_++)};
    packet.set("frame", std::move(image));
    out.push_back(std::move(packet));
    return emitted_ < count_;
  }

 private:
  int count_;
  std::chrono::milliseconds pace_;
  int emitted_ = 0;
};

StageType recorder(std::string name, StageInfo info, std::shared_ptr<Seen> seen) {
  StageType type;
  type.name = std::move(name);
  type.info = [info](const Params&) { return info; };
  type.make = [seen](const Params&) -> std::unique_ptr<Stage> {
    return std::make_unique<Record>(seen);
  };
  return type;
}

// Bytes per packet of the hop into `to`: its entries, and with `images` the images stored
// by reference for it too.
double per_packet(const std::vector<HopBytes>& hops, const std::string& to, bool images = false) {
  for (const HopBytes& h : hops) {
    if (h.to == to) {
      EXPECT_GT(h.packets, 0u) << to;
      const std::uint64_t bytes = h.bytes + (images ? h.image_bytes : 0);
      return h.packets == 0 ? 0 : static_cast<double>(bytes) / static_cast<double>(h.packets);
    }
  }
  ADD_FAILURE() << "no hop into " << to;
  return 0;
}

std::set<std::string> field_names(const Packet& packet) {
  std::set<std::string> names;
  for (const Packet::Field& f : packet.fields) names.insert(f.name);
  return names;
}

class HopFieldsTest : public RedisTransportTest {
 protected:
  void SetUp() override {
    RedisTransportTest::SetUp();
    registry_ = Registry::with_builtins();
    registry_.add(recorder("test.values", {.reads = {"value"}, .optional_reads = {"ms"}}, values_));
    registry_.add(recorder("test.payloads", {.reads = {"payload"}}, payloads_));
    registry_.add(recorder("test.everything", {.reads_all = true}, everything_));
  }

  // source (value + a 20 kB payload) -> work (model.sleep, writes ms) -> the given sinks.
  std::vector<HopBytes> run(const std::vector<std::string>& sinks) {
    std::string stages =
        "  - { name: source, type: synthetic.source, params: { count: 40, payload_bytes: 20000 } }\n"
        "  - { name: work, type: model.sleep, params: { service_ms: 0, writes: ms } }\n";
    for (const std::string& sink : sinks) {
      stages += "  - { name: " + sink + ", type: test." + sink + ", inputs: [work] }\n";
    }
    Part run(pipeline_of(stages), {.url = redis_url()}, registry_);
    run.runner.start();
    EXPECT_TRUE(run.runner.wait_for(30000));
    EXPECT_EQ(run.runner.progress().done, 40u);  // packets, each delivered to every sink
    return run.transport.hop_bytes();
  }

  Registry registry_;
  std::shared_ptr<Seen> values_ = std::make_shared<Seen>();
  std::shared_ptr<Seen> payloads_ = std::make_shared<Seen>();
  std::shared_ptr<Seen> everything_ = std::make_shared<Seen>();
};

TEST_F(HopFieldsTest, AFieldNobodyDownstreamReadsIsNotCarriedAndTheResultIsTheSame) {
  const auto hops = run({"values"});
  // Neither `work` (reads nothing) nor `values` (value, ms) reads the payload: no hop carries it.
  EXPECT_LT(per_packet(hops, "work"), 200);
  EXPECT_LT(per_packet(hops, "values"), 200);
  const std::vector<Packet> got = values_->take();
  ASSERT_EQ(got.size(), 40u);
  for (std::size_t i = 0; i < got.size(); ++i) {
    EXPECT_EQ(got[i].seq, i);
    EXPECT_EQ(field_names(got[i]), (std::set<std::string>{"value", "ms"}));
    EXPECT_EQ(got[i].get<std::int64_t>("value"), static_cast<std::int64_t>(i));
    EXPECT_EQ(got[i].get<double>("ms"), 0.0);
  }
}

TEST_F(HopFieldsTest, AFieldReadFurtherDownPassesThroughAStageThatDoesNotReadIt) {
  const auto hops = run({"values", "payloads"});
  EXPECT_GT(per_packet(hops, "work"), 20000);     // `payloads`, after `work`, reads it
  EXPECT_LT(per_packet(hops, "values"), 200);     // one branch carries it, the other not
  EXPECT_GT(per_packet(hops, "payloads"), 20000);
  EXPECT_LT(per_packet(hops, "payloads"), 20100);  // the payload alone
  const std::vector<Packet> got = payloads_->take();
  ASSERT_EQ(got.size(), 40u);
  for (const Packet& p : got) {
    EXPECT_EQ(field_names(p), std::set<std::string>{"payload"});
    EXPECT_EQ(p.get<Buffer>("payload").size(), 20000u);
  }
  EXPECT_EQ(values_->take().size(), 40u);
}

TEST_F(HopFieldsTest, AStageThatReadsEverythingGetsWholePackets) {
  const auto hops = run({"everything"});
  EXPECT_GT(per_packet(hops, "work"), 20000);
  EXPECT_GT(per_packet(hops, "everything"), 20000);
  const std::vector<Packet> got = everything_->take();
  ASSERT_EQ(got.size(), 40u);
  for (const Packet& p : got) {
    EXPECT_EQ(field_names(p), (std::set<std::string>{"value", "payload", "ms"}));
  }
}

TEST_F(HopFieldsTest, ThePipelineFileChoosesTheImageEncodingAndTheCommandLineOverridesIt) {
  auto frames = std::make_shared<Seen>();
  StageType source;
  source.name = "test.frames";
  source.info = [](const Params&) { return StageInfo{.writes = {"frame"}}; };
  source.make_source = [](const Params&) -> std::unique_ptr<Source> {
    return std::make_unique<Frames>(20);
  };
  registry_.add(std::move(source));
  registry_.add(recorder("test.frame_sink", {.reads = {"frame"}}, frames));
  const auto bytes_into_sink = [&](const std::string& wire, const RedisOptions& options) {
    const Pipeline p = pipeline_of(
        "  - { name: source, type: test.frames }\n"
        "  - { name: sink, type: test.frame_sink }\n",
        wire);
    Part run(p, options, registry_);
    run.runner.start();
    EXPECT_TRUE(run.runner.wait_for(30000));
    EXPECT_EQ(frames->take().size(), 20u);
    return per_packet(run.transport.hop_bytes(), "sink", true);
  };
  const double pixels = 160 * 120 * 3;
  const double raw = bytes_into_sink("", {.url = redis_url()});
  EXPECT_GT(raw, pixels);
#ifdef MICROMODELS_WIRE_HAS_OPENCV
  const std::string jpeg = "wire: { images: jpeg, jpeg_quality: 80 }\n";
  const double from_file = bytes_into_sink(jpeg, {.url = redis_url()});
  EXPECT_LT(from_file, raw / 4);
  // --wire-images raw over the file's jpeg; --jpeg-quality over the file's quality.
  EXPECT_GT(bytes_into_sink(jpeg, {.url = redis_url(), .wire_images = "raw"}), pixels);
  EXPECT_LT(bytes_into_sink(jpeg, {.url = redis_url(), .jpeg_quality = 20}), from_file);
  EXPECT_LT(bytes_into_sink("wire: { images: png }\n", {.url = redis_url()}), raw);
#else
  try {
    bytes_into_sink("wire: { images: jpeg }\n", {.url = redis_url()});
    ADD_FAILURE() << "jpeg without OpenCV";
  } catch (const ConfigError& e) {
    EXPECT_NE(std::string(e.what()).find("wire.images"), std::string::npos) << e.what();
  }
#endif
}

// ---------------------------------------------------------------------------------------------
// Images by reference: stored once, fetched only where read, gone images fail their packets.

// The image's bytes stored for the hop into `to`, per packet.
double images_per_packet(const std::vector<HopBytes>& hops, const std::string& to) {
  for (const HopBytes& h : hops) {
    if (h.to == to) return h.packets == 0 ? 0 : static_cast<double>(h.image_bytes) / static_cast<double>(h.packets);
  }
  ADD_FAILURE() << "no hop into " << to;
  return 0;
}

// Writes a new frame: the old one with every byte inverted.
class Invert final : public Stage {
 public:
  void process(Packet packet, std::vector<Packet>& out) override {
    const Image& in = packet.get<Image>("frame");
    Image inverted = Image::allocate(in.width, in.height, in.channels);
    std::byte* p = inverted.pixels.mutable_data();
    for (std::size_t i = 0; i < in.byte_size(); ++i) p[i] = ~in.pixels.data()[i];
    packet.set("frame", std::move(inverted));
    out.push_back(std::move(packet));
  }
};

class ImageRefsTest : public HopFieldsTest {
 protected:
  void SetUp() override {
    HopFieldsTest::SetUp();
    StageType source;
    source.name = "test.frames";
    source.info = [](const Params&) { return StageInfo{.writes = {"frame"}}; };
    source.make_source = [this](const Params&) -> std::unique_ptr<Source> {
      return std::make_unique<Frames>(frames_, pace_);
    };
    registry_.add(std::move(source));
    registry_.add(recorder("test.blind", {.reads = {}}, blind_));   // reads no image
    registry_.add(recorder("test.peek", {.reads = {"frame"}}, peek_));  // reads it, changes nothing
    registry_.add(recorder("test.frame_sink", {.reads = {"frame"}}, sink_));
    StageType invert;
    invert.name = "test.invert";
    invert.info = [](const Params&) { return StageInfo{.reads = {"frame"}, .writes = {"frame"}}; };
    invert.make = [](const Params&) -> std::unique_ptr<Stage> { return std::make_unique<Invert>(); };
    registry_.add(std::move(invert));
  }

  Pipeline chain(const std::vector<std::string>& middle, const std::string& wire = "") const {
    std::string stages = "  - { name: source, type: test.frames }\n";
    for (const std::string& type : middle) stages += "  - { name: " + type + ", type: test." + type + " }\n";
    stages += "  - { name: sink, type: test.frame_sink, ordered: true }\n";
    return pipeline_of(stages, wire);
  }

  // source -> invert -> two sinks that read the inverted frame: `sink` (ordered) and `also`.
  Pipeline inverted_to_two_sinks() const {
    return pipeline_of(
        "  - { name: source, type: test.frames }\n"
        "  - { name: invert, type: test.invert }\n"
        "  - { name: sink, type: test.frame_sink, ordered: true, inputs: [invert] }\n"
        "  - { name: also, type: test.peek, inputs: [invert] }\n");
  }

  // The run serves the source and the sink; a worker (a Session of its own, so a cache of its
  // own: like another process) serves the stages between. Both start at construction, the
  // worker first; a test may look at Redis meanwhile, then `finish` waits for the run.
  class WorkerAndRun {
   public:
    WorkerAndRun(const Pipeline& p, const std::vector<std::string>& middle, const Registry& registry,
                 double reclaim_idle_ms = RedisOptions{}.reclaim_idle_ms)
        : worker(p, {.role = RedisOptions::Role::worker, .url = redis_url(), .stages = middle,
                     .reclaim_idle_ms = reclaim_idle_ms}, registry),
          run(p, {.url = redis_url(), .serve = RedisOptions::Serve::none,
                  .reclaim_idle_ms = reclaim_idle_ms}, registry) {
      worker.runner.start();
      run.runner.start();
    }
    // The run ends, then the worker; `dead` packets were dead-lettered.
    void finish(std::uint64_t dead = 0) {
      EXPECT_TRUE(run.runner.wait_for(30000));
      worker.runner.stop();
      EXPECT_TRUE(worker.runner.wait_for(10000));
      EXPECT_EQ(run.transport.dead_lettered(), dead);
    }
    Part worker;
    Part run;
  };

  std::vector<HopBytes> run_with_worker(const Pipeline& p, const std::vector<std::string>& middle,
                                        std::uint64_t dead = 0) {
    WorkerAndRun both(p, middle, registry_);
    both.finish(dead);
    return both.run.transport.hop_bytes();
  }

  // Frame `seq` as test.frames made it (inverted: as test.invert made it), in field `field`.
  static void expect_frame(const Packet& p, bool inverted, const std::string& field = "frame") {
    const Image& image = p.get<Image>(field);
    ASSERT_EQ(image.byte_size(), 160u * 120u * 3u);
    for (std::size_t i = 0; i < image.byte_size(); i += 997) {
      auto want = static_cast<std::byte>((i / 3 % 160 + i / 480 + p.seq) % 256);
      if (inverted) want = ~want;
      ASSERT_EQ(image.pixels.data()[i], want) << field << " seq " << p.seq << " byte " << i;
    }
  }

  // The sink got `frames` frames, inverted; each of the 40 image keys (20 frames, 20 inverted)
  // goes within 4 x the reclaim time (20 s with the tests' 5 s), not the 60 s TTL.
  void expect_inverted_and_every_key_going(std::size_t frames) {
    const std::vector<Packet> got = sink_->take();
    ASSERT_EQ(got.size(), frames);
    for (const Packet& packet : got) expect_frame(packet, true);
    Redis redis(redis_url());
    const auto ttls = image_ttls(redis);
    EXPECT_EQ(ttls.size(), 40u);  // 20 frames, 20 inverted
    EXPECT_EQ(at_most(ttls, 20000), 40) << "4 x the reclaim time, not the 60 s TTL";
  }

  // The time to live (ms) of each image key of the test's pipeline.
  std::map<std::string, long long> image_ttls(Redis& redis) const {
    std::map<std::string, long long> ttls;
    const auto keys = redis.command({"KEYS", "mm:{" + name_ + ":img:*"});
    for (std::size_t i = 0; i < keys->elements; ++i) {
      const std::string key(keys->element[i]->str, keys->element[i]->len);
      ttls[key] = redis.command({"PTTL", key})->integer;
    }
    return ttls;
  }
  // How many of `ttls` are at most `ms`, and still there.
  static int at_most(const std::map<std::string, long long>& ttls, long long ms) {
    return static_cast<int>(std::count_if(ttls.begin(), ttls.end(), [&](const auto& kept) {
      return kept.second > 0 && kept.second <= ms;
    }));
  }

  // The packets in `stage`'s stream as the hop into it carried them (entries not acknowledged yet
  // stay in the stream): references not fetched, the retired keys in their field.
  std::vector<Packet> hop_packets(Redis& redis, const std::string& stage) const {
    std::vector<Packet> packets;
    const auto entries = redis.command({"XRANGE", stream_key(stage), "-", "+"});
    for (std::size_t i = 0; i < entries->elements; ++i) {
      const redisReply* fields = entries->element[i]->element[1];
      const std::string value(fields->element[1]->str, fields->element[1]->len);
      const detail::Entry entry = detail::decode_entry(value);
      if (entry.kind == detail::Entry::Kind::packet) {
        packets.push_back(detail::decode_hop(entry.payload));
      }
    }
    return packets;
  }
  // Waits until `stage`'s stream holds `n` entries.
  bool wait_for_entries(Redis& redis, const std::string& stage, long long n) const {
    for (int i = 0; i < 3000 && redis.command({"XLEN", stream_key(stage)})->integer < n; ++i) {
      std::this_thread::sleep_for(10ms);
    }
    return redis.command({"XLEN", stream_key(stage)})->integer == n;
  }
  // The key of image field `field` in a packet as a hop carried it.
  static std::string ref_key(const Packet& p, const std::string& field) {
    for (const auto& [name, ref] : detail::references(p)) {
      if (name == field) return ref.key;
    }
    ADD_FAILURE() << "no reference in field " << field << " of seq " << p.seq;
    return {};
  }

  // A stage type that records what it gets, as `recorder`, once `gate_` is open (a thread of its
  // own: it blocks).
  StageType held_recorder(std::string name, StageInfo info, std::shared_ptr<Seen> seen) {
    class HeldRecord final : public Stage {
     public:
      HeldRecord(std::shared_ptr<Gate> gate, std::shared_ptr<Seen> seen)
          : gate_(std::move(gate)), record_(std::move(seen)) {}
      void process(Packet packet, std::vector<Packet>& out) override {
        gate_->pass(packet.seq, 0);
        record_.process(std::move(packet), out);
      }

     private:
      std::shared_ptr<Gate> gate_;
      Record record_;
    };
    info.blocking = true;
    StageType type;
    type.name = std::move(name);
    type.info = [info](const Params&) { return info; };
    type.make = [gate = gate_, seen](const Params&) -> std::unique_ptr<Stage> {
      return std::make_unique<HeldRecord>(gate, seen);
    };
    return type;
  }
  // Opens the gate when the test ends, however it ends. Made after the runners, so that it
  // opens before they are destroyed (they wait for their held packets).
  std::unique_ptr<Gate, void (*)(Gate*)> open_at_the_end() {
    return {gate_.get(), [](Gate* g) { g->open(); }};
  }

  int frames_ = 20;
  std::chrono::milliseconds pace_{0};
  std::shared_ptr<Seen> blind_ = std::make_shared<Seen>();
  std::shared_ptr<Seen> peek_ = std::make_shared<Seen>();
  std::shared_ptr<Seen> sink_ = std::make_shared<Seen>();
  std::shared_ptr<Gate> gate_ = std::make_shared<Gate>();
};

TEST_F(ImageRefsTest, AnUnchangedImageIsStoredOnceAndAStageThatDoesNotReadItNeverFetchesIt) {
  const auto hops = run_with_worker(chain({"blind"}), {"blind"});
  const double frame = 160 * 120 * 3;
  EXPECT_LT(per_packet(hops, "blind"), 2000);  // a reference, not the frame
  EXPECT_LT(per_packet(hops, "sink"), 2000);
  EXPECT_EQ(images_per_packet(hops, "blind"), frame);  // stored once, by the source's hop
  EXPECT_EQ(images_per_packet(hops, "sink"), 0);
  // The worker's stage saw the reference, not pixels: it never fetched them.
  const std::vector<Packet> blind = blind_->take();
  ASSERT_EQ(blind.size(), 20u);
  for (const Packet& p : blind) {
    EXPECT_TRUE(std::holds_alternative<Buffer>(*p.find("frame"))) << "seq " << p.seq;
  }
  const std::vector<Packet> got = sink_->take();
  ASSERT_EQ(got.size(), 20u);
  for (std::size_t i = 0; i < got.size(); ++i) {
    EXPECT_EQ(got[i].seq, i);
    expect_frame(got[i], false);
  }
}

TEST_F(ImageRefsTest, AStageThatReadsButKeepsAnImageStoresNothingAndOneThatWritesStoresItsResult) {
  const auto hops = run_with_worker(chain({"peek", "invert"}), {"peek", "invert"});
  const double frame = 160 * 120 * 3;
  EXPECT_EQ(images_per_packet(hops, "peek"), frame);
  EXPECT_EQ(images_per_packet(hops, "invert"), 0);  // peek fetched it, passed the same pixels on
  EXPECT_EQ(images_per_packet(hops, "sink"), frame);  // invert's new frame, stored once
  for (const char* to : {"peek", "invert", "sink"}) EXPECT_LT(per_packet(hops, to), 2000) << to;
  const std::vector<Packet> peeked = peek_->take();
  ASSERT_EQ(peeked.size(), 20u);
  for (const Packet& p : peeked) expect_frame(p, false);
  const std::vector<Packet> got = sink_->take();
  ASSERT_EQ(got.size(), 20u);
  for (const Packet& p : got) expect_frame(p, true);
}

TEST_F(ImageRefsTest, WithoutReferencesEveryHopCarriesTheFrame) {
  const auto hops = run_with_worker(chain({"peek"}, "wire: { image_refs: false }\n"), {"peek"});
  EXPECT_GT(per_packet(hops, "peek"), 160 * 120 * 3);
  EXPECT_GT(per_packet(hops, "sink"), 160 * 120 * 3);
  EXPECT_EQ(images_per_packet(hops, "peek"), 0);
  const std::vector<Packet> got = sink_->take();
  ASSERT_EQ(got.size(), 20u);
  for (const Packet& p : got) expect_frame(p, false);
}

TEST_F(ImageRefsTest, AnImageGoneFromRedisFailsItsPacketWithAClearErrorAndTheRunEnds) {
  frames_ = 10;
  const Pipeline p = chain({"peek"});
  Part run(p, {.url = redis_url(), .serve = RedisOptions::Serve::none}, registry_);
  run.runner.start();
  // The source's entries are in peek's stream, nobody reads them yet: delete their images.
  Redis redis(redis_url());
  for (int i = 0; i < 500 && redis.command({"XLEN", stream_key("peek")})->integer < frames_; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  ASSERT_EQ(redis.command({"XLEN", stream_key("peek")})->integer, frames_);
  const auto keys = redis.command({"KEYS", "mm:{" + name_ + ":img:*"});
  ASSERT_EQ(keys->elements, static_cast<std::size_t>(frames_));
  for (std::size_t i = 0; i < keys->elements; ++i) {
    redis.command({"DEL", std::string(keys->element[i]->str, keys->element[i]->len)});
  }
  Part worker(p, {.role = RedisOptions::Role::worker, .url = redis_url(), .stages = {"peek"}}, registry_);
  worker.runner.start();
  ASSERT_TRUE(run.runner.wait_for(30000)) << "skips went on in place of the failed packets";
  worker.runner.stop();
  ASSERT_TRUE(worker.runner.wait_for(10000));
  EXPECT_EQ(run.transport.dead_lettered(), 10u);
  EXPECT_EQ(worker.runner.metrics().stage("peek")->dead_lettered, 10u);
  EXPECT_EQ(worker.runner.metrics().stage("peek")->processed, 0u);
  EXPECT_TRUE(peek_->take().empty());
  EXPECT_TRUE(sink_->take().empty());
  auto dead = redis.command({"XRANGE", key("dead"), "-", "+"});
  ASSERT_EQ(dead->elements, 10u);
  for (std::size_t i = 0; i < dead->elements; ++i) {
    const redisReply* fields = dead->element[i]->element[1];
    EXPECT_EQ(field_text(fields, "stage"), "peek");
    const std::string error = field_text(fields, "error");
    EXPECT_NE(error.find("image 'frame': image key mm:{" + name_ + ":img:"), std::string::npos) << error;
    EXPECT_NE(error.find("is gone from Redis"), std::string::npos) << error;
    EXPECT_NE(error.find("wire.image_ttl_s is 60 s"), std::string::npos) << error;
  }
}

// The GETs a Redis has served: with images by reference, its image fetches, and a worker's
// reads of the run record.
long long gets(Redis& redis) {
  const std::string info = redis.text({"INFO", "commandstats"});
  const auto at = info.find("cmdstat_get:calls=");
  return at == std::string::npos ? 0 : std::stoll(info.substr(at + 18));
}

// The GETs of image keys a Redis serves while this lives (MONITOR, on a connection of its own):
// a run's processes also read the run record (the run once a second), which `gets` counts too.
class ImageGets {
 public:
  explicit ImageGets(const std::string& url) : url_(url), monitor_(url) {
    (void)monitor_.command({"MONITOR"});
    thread_ = std::thread([this] {
      while (const Redis::Reply r = monitor_.next()) {
        const std::string line = r->str != nullptr ? std::string(r->str, r->len) : "";
        if (line.find("\"GET\" \"mm:{") != std::string::npos && line.find(":img:") != std::string::npos) {
          ++count_;
        } else if (line.find("\"ECHO\" \"image-gets-end\"") != std::string::npos) {
          break;
        }
      }
    });
  }
  ~ImageGets() {
    if (thread_.joinable()) (void)count();
  }
  ImageGets(const ImageGets&) = delete;
  ImageGets& operator=(const ImageGets&) = delete;
  /// The GETs served so far; counting stops. MONITOR lists commands in the order Redis runs
  /// them: once the ECHO sent here is read back, every GET before it has been.
  long long count() {
    Redis(url_).command({"ECHO", "image-gets-end"});
    thread_.join();
    return count_;
  }

 private:
  std::string url_;
  Redis monitor_;
  std::thread thread_;
  long long count_ = 0;
};

// The conditions that made a process fetch an image again, on the image store itself, on a Redis
// of its own: more images in flight than the cache's least bytes hold (1 byte here, so every
// image is over them), and two threads (two inlets) asking for the same keys at once, three times
// over (three stages). The cache keeps the images of the packets in flight, and a key another
// thread is fetching is waited for: one GET per key.
TEST_F(ImageRefsTest, TheStoreFetchesEachKeyOnceWithMoreInFlightThanItsLeastBytesAndTwoReaders) {
  OwnRedis own(dir_);
  Redis redis(own.url());
  const Plan plan(chain({"peek"}), registry_);
  detail::Session session({.url = own.url()});
  session.bind(plan);
  session.writer.start();
  constexpr int kImages = 40;
  std::vector<Image> images;
  std::vector<detail::ImageRef> refs;
  for (int i = 0; i < kImages; ++i) {
    Image image = Image::allocate(160, 120, 3);
    std::byte* p = image.pixels.mutable_data();
    for (std::size_t b = 0; b < image.byte_size(); ++b) {
      p[b] = static_cast<std::byte>((b + 7 * static_cast<std::size_t>(i)) % 251);
    }
    std::uint64_t stored = 0;
    refs.push_back(session.image_store->reference(image, stored));  // stored by "another process"
    images.push_back(std::move(image));
  }
  session.writer.drain();
  // This process's store: 20 packets in flight, two images each, so all 40 fit; none kept yet.
  detail::ImageStore store(session.writer, *session.names, {}, 60, kImages / 2, {}, 1);
  const long long before = gets(redis);
  std::atomic<int> wrong{0};
  const auto reader = [&] {
    detail::Connection conn(session.url);
    for (int stage = 0; stage < 3; ++stage) {
      for (int first = 0; first < kImages; first += 8) {
        const std::vector<detail::ImageRef> batch(refs.begin() + first, refs.begin() + first + 8);
        const auto found = store.fetch(conn, batch);
        for (int i = first; i < first + 8; ++i) {
          const auto* image = std::get_if<Image>(&found.at(refs[i].key));
          if (image == nullptr || image->byte_size() != images[i].byte_size() ||
              std::memcmp(image->pixels.data(), images[i].pixels.data(), image->byte_size()) != 0) {
            ++wrong;
          }
        }
      }
    }
  };
  std::thread a(reader);
  std::thread b(reader);
  a.join();
  b.join();
  EXPECT_EQ(wrong.load(), 0);
  EXPECT_EQ(gets(redis) - before, kImages);
  session.writer.stop();
}

// In a pipeline: a worker inverts every frame, and two sinks of the run read the inverted one,
// each through an inlet (a connection) of its own, at about the same time. Each process fetches
// each image once: the worker the frame, the run the inverted frame (not once per sink, and
// never the frame it stored itself). On a Redis of its own, whose GETs of image keys are counted.
TEST_F(ImageRefsTest, EachProcessFetchesAnImageOnceThoughTwoOfItsStagesReadItAtOnce) {
  OwnRedis own(dir_);
  frames_ = 60;
  const Pipeline p = inverted_to_two_sinks();
  ImageGets image_gets(own.url());
  Part run(p, {.url = own.url(), .serve = RedisOptions::Serve::none}, registry_);
  run.runner.start();
  Part worker(p, {.role = RedisOptions::Role::worker, .url = own.url(), .stages = {"invert"}},
              registry_);
  worker.runner.start();
  ASSERT_TRUE(run.runner.wait_for(30000));
  worker.runner.stop();
  ASSERT_TRUE(worker.runner.wait_for(10000));
  EXPECT_EQ(run.transport.dead_lettered(), 0u);
  for (const auto& seen : {sink_, peek_}) {
    const std::vector<Packet> got = seen->take();
    ASSERT_EQ(got.size(), 60u);
    for (const Packet& packet : got) expect_frame(packet, true);
  }
  EXPECT_EQ(image_gets.count(), 2 * frames_);
}

// Once both sinks have written a frame, the inverted frame their packets refer to goes from
// Redis within seconds (4 x the reclaim time: 20 s here, so that a slow machine still finds every
// key after the run), not a TTL (60 s) after its last hop; and so does the source's frame, which
// no sink's packet refers to (invert replaced it): the hops after invert carry its key to the
// sinks as retired.
TEST_F(ImageRefsTest, AFramesImagesGoSecondsAfterEverySinkHasItNotATtlLater) {
  const Pipeline p = inverted_to_two_sinks();
  {
    Part run(p, {.url = redis_url(), .reclaim_idle_ms = 5000}, registry_);
    run.runner.start();
    ASSERT_TRUE(run.runner.wait_for(30000));
    EXPECT_EQ(run.transport.dead_lettered(), 0u);
  }
  EXPECT_EQ(sink_->take().size(), 20u);
  EXPECT_EQ(peek_->take().size(), 20u);
  Redis redis(redis_url());
  const auto keys = redis.command({"KEYS", "mm:{" + name_ + ":img:*"});
  ASSERT_EQ(keys->elements, 40u);  // 20 frames, 20 inverted
  int going = 0;
  int kept = 0;
  for (std::size_t i = 0; i < keys->elements; ++i) {
    const long long ttl = redis.command({"PTTL", keys->element[i]->str})->integer;
    going += ttl > 0 && ttl <= 20000 ? 1 : 0;
    kept += ttl > 50000 ? 1 : 0;
  }
  EXPECT_EQ(going, 40);
  EXPECT_EQ(kept, 0);
}

// The same across processes, with one sink: a worker replaces each frame (invert), and the
// source's frame, which it fetched and no hop after it refers to, goes with the inverted one once
// the sink has it, not a TTL later.
TEST_F(ImageRefsTest, AnImageAStageReplacedGoesWithItsFrameOnceTheSinkHasIt) {
  const Pipeline p = chain({"invert"});
  WorkerAndRun(p, {"invert"}, registry_, 5000).finish();
  expect_inverted_and_every_key_going(20);
}

// A frame that reaches the sink as a skip (a worker's stage filtered it out) still has its images
// go once the sink has the skip: the skip carries the keys its packet held (the source's frame,
// which invert retired, and the inverted one), not a TTL later.
TEST_F(ImageRefsTest, TheImagesOfAFrameAStageFilteredOutGoOnceTheSinkHasItsSkip) {
  class EvenOnly final : public Stage {
   public:
    void process(Packet packet, std::vector<Packet>& out) override {
      if (packet.seq % 2 == 0) out.push_back(std::move(packet));
    }
  };
  StageType even;
  even.name = "test.even_only";
  even.info = [](const Params&) { return StageInfo{}; };
  even.make = [](const Params&) -> std::unique_ptr<Stage> { return std::make_unique<EvenOnly>(); };
  registry_.add(std::move(even));
  const Pipeline p = chain({"invert", "even_only"});
  WorkerAndRun(p, {"invert", "even_only"}, registry_, 5000).finish();
  expect_inverted_and_every_key_going(10);
}

// A key is retired only where no field carried on refers to it any more. Here `keep` keeps the
// frame as `input_frame` too (the same pixels, so the same key), then two stages replace `frame`
// in turn. The first replacement retires nothing (input_frame still refers to the source's key);
// the second retires the first inversion. While the sink holds its packets (not settled), the
// hop into it carries exactly that key as retired, and the source's key is still there with its
// TTL, to be fetched by the sink; once the sink has every frame, every key goes within seconds.
TEST_F(ImageRefsTest, AnImageStillCarriedUnderAnotherNameIsNotRetired) {
  class KeepInput final : public Stage {
   public:
    void process(Packet packet, std::vector<Packet>& out) override {
      packet.set("input_frame", packet.get<Image>("frame"));
      out.push_back(std::move(packet));
    }
  };
  StageType keep;
  keep.name = "test.keep_input";
  keep.info = [](const Params&) {
    return StageInfo{.reads = {"frame"}, .writes = {"input_frame"}};
  };
  keep.make = [](const Params&) -> std::unique_ptr<Stage> { return std::make_unique<KeepInput>(); };
  registry_.add(std::move(keep));
  registry_.add(held_recorder("test.held_sink", {.reads = {"frame", "input_frame"}}, sink_));
  const Pipeline p = pipeline_of(
      "  - { name: source, type: test.frames }\n"
      "  - { name: keep, type: test.keep_input }\n"
      "  - { name: invert, type: test.invert }\n"
      "  - { name: again, type: test.invert }\n"
      "  - { name: sink, type: test.held_sink }\n");
  WorkerAndRun both(p, {"keep", "invert", "again"}, registry_, 5000);
  const auto open = open_at_the_end();
  Redis redis(redis_url());
  ASSERT_TRUE(wait_for_entries(redis, "sink", 20));
  const std::vector<Packet> into_sink = hop_packets(redis, "sink");
  ASSERT_EQ(into_sink.size(), 20u);
  for (const Packet& hop : into_sink) {
    const std::string source_key = ref_key(hop, "input_frame");
    const std::string twice_key = ref_key(hop, "frame");
    const std::set<std::string> retired = detail::held_keys(hop);
    ASSERT_EQ(retired.size(), 1u) << "seq " << hop.seq << ": the first inversion's key";
    EXPECT_FALSE(retired.contains(source_key)) << "seq " << hop.seq;
    EXPECT_FALSE(retired.contains(twice_key)) << "seq " << hop.seq;
    EXPECT_TRUE(retired.begin()->starts_with("mm:{" + name_ + ":img:")) << *retired.begin();
    EXPECT_GT(redis.command({"PTTL", source_key})->integer, 50000) << "seq " << hop.seq;
    EXPECT_GT(redis.command({"PTTL", *retired.begin()})->integer, 50000) << "seq " << hop.seq;
  }
  gate_->open();
  both.finish();
  const std::vector<Packet> got = sink_->take();
  ASSERT_EQ(got.size(), 20u);
  for (const Packet& packet : got) {
    expect_frame(packet, false, "input_frame");  // fetched by the sink: the source's frame
    expect_frame(packet, false);                 // inverted twice
  }
  const auto ttls = image_ttls(redis);
  EXPECT_EQ(ttls.size(), 60u);  // the frames, and each inversion
  EXPECT_EQ(at_most(ttls, 20000), 60);
}

// With two sources the sinks may see different frames under one (stream, seq), so no key is
// shortened when they settle: the hops retire none (their entries carry no list) and every image
// keeps its TTL, as before hops retired keys.
TEST_F(ImageRefsTest, WithTwoSourcesNoHopRetiresAKeyAndEveryImageKeepsItsTtl) {
  registry_.add(held_recorder("test.held_sink", {.reads = {"frame"}}, sink_));
  const Pipeline p = pipeline_of(
      "  - { name: source, type: test.frames }\n"
      "  - { name: other, type: test.frames }\n"
      "  - { name: invert, type: test.invert, inputs: [source] }\n"
      "  - { name: sink, type: test.held_sink, inputs: [invert] }\n"
      "  - { name: also, type: test.peek, inputs: [other] }\n");
  WorkerAndRun both(p, {"invert"}, registry_);
  const auto open = open_at_the_end();
  Redis redis(redis_url());
  ASSERT_TRUE(wait_for_entries(redis, "sink", 20));
  for (const Packet& hop : hop_packets(redis, "sink")) {
    EXPECT_FALSE(hop.has(detail::kRetired)) << "seq " << hop.seq;
  }
  gate_->open();
  both.finish();
  EXPECT_EQ(sink_->take().size(), 20u);
  EXPECT_EQ(peek_->take().size(), 20u);
  const auto ttls = image_ttls(redis);
  EXPECT_EQ(ttls.size(), 60u);  // each source's frames, and the inverted ones
  EXPECT_EQ(at_most(ttls, 50000), 0);
}

// Fan-out: the source's frame goes to two branches. `invert` replaces it, so the hop into `sink`
// retires its key; `held` still has it to fetch (it reads the frame), behind a gate. Once `sink`
// has every frame, the keys must stay: the frame's other sink (`tail`, after `held`) has nothing
// yet. When it has, they all go within seconds, and `held` found every image.
TEST_F(ImageRefsTest, AKeyOneBranchRetiredStaysUntilEveryBranchsSinkHasTheFrame) {
  auto held = std::make_shared<Seen>();
  registry_.add(held_recorder("test.held", {.reads = {"frame"}}, held));
  const Pipeline p = pipeline_of(
      "  - { name: source, type: test.frames }\n"
      "  - { name: invert, type: test.invert, inputs: [source] }\n"
      "  - { name: sink, type: test.frame_sink, inputs: [invert] }\n"
      "  - { name: held, type: test.held, inputs: [source] }\n"
      "  - { name: tail, type: test.blind, inputs: [held] }\n");
  WorkerAndRun both(p, {"invert", "held"}, registry_, 5000);
  const auto open = open_at_the_end();
  const auto sunk = [&] {
    std::lock_guard lock(sink_->mutex);
    return sink_->packets.size();
  };
  for (int i = 0; i < 3000 && sunk() < 20; ++i) std::this_thread::sleep_for(10ms);
  ASSERT_EQ(sunk(), 20u);
  std::this_thread::sleep_for(200ms);  // the sink's settles reach the image store and the writer
  Redis redis(redis_url());
  const auto waiting = image_ttls(redis);
  EXPECT_EQ(waiting.size(), 40u);  // 20 frames, 20 inverted
  EXPECT_EQ(at_most(waiting, 50000), 0) << "a key went before the frame's other sink had it";
  gate_->open();
  both.finish();  // nothing dead-lettered: held found every image
  const std::vector<Packet> seen = held->take();
  ASSERT_EQ(seen.size(), 20u);
  for (const Packet& packet : seen) expect_frame(packet, false);
  EXPECT_EQ(blind_->take().size(), 20u);
  const auto ttls = image_ttls(redis);
  EXPECT_EQ(ttls.size(), 40u);
  EXPECT_EQ(at_most(ttls, 20000), 40);
}

// Why "seconds after", not at once: a duplicate of a frame the sink already has (an entry run
// again after its process died) still finds its image. Here a copy of frame 0's entry goes into
// peek's stream after the sink wrote frame 0 and shortened its key: the worker runs it (its image
// fetched), the sink drops it as a duplicate, and nothing is dead-lettered.
TEST_F(ImageRefsTest, ADuplicateAfterTheSinkHasItsFrameStillFindsItsImage) {
  frames_ = 40;
  pace_ = std::chrono::milliseconds(25);
  const Pipeline p = chain({"peek"});
  Part worker(p, {.role = RedisOptions::Role::worker, .url = redis_url(), .stages = {"peek"}},
              registry_);
  worker.runner.start();
  Part run(p, {.url = redis_url(), .serve = RedisOptions::Serve::none}, registry_);
  run.runner.start();
  Redis redis(redis_url());
  const auto shortened = [&] {
    const auto keys = redis.command({"KEYS", "mm:{" + name_ + ":img:*"});
    for (std::size_t i = 0; i < keys->elements; ++i) {
      if (redis.command({"PTTL", keys->element[i]->str})->integer <= 5000) return true;
    }
    return false;
  };
  const auto sunk = [&] {
    std::lock_guard lock(sink_->mutex);
    return sink_->packets.size();
  };
  // Frame 0's entry, taken before its acknowledgement lets the run trim it.
  auto first = redis.command({"XRANGE", stream_key("peek"), "-", "+", "COUNT", "1"});
  for (int i = 0; i < 1000 && first->elements == 0; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
    first = redis.command({"XRANGE", stream_key("peek"), "-", "+", "COUNT", "1"});
  }
  ASSERT_EQ(first->elements, 1u);
  for (int i = 0; i < 1000 && (sunk() < 3 || !shortened()); ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  ASSERT_TRUE(shortened()) << "the sink shortened no key";  // the ordered sink's first: frame 0
  ASSERT_LT(sunk(), 40u) << "the run ended before the duplicate";
  const redisReply* fields = first->element[0]->element[1];
  ASSERT_EQ(fields->elements, 2u);
  redis.command({"XADD", stream_key("peek"), "*", fields->element[0]->str,
                 std::string(fields->element[1]->str, fields->element[1]->len)});
  ASSERT_TRUE(run.runner.wait_for(30000));
  worker.runner.stop();
  ASSERT_TRUE(worker.runner.wait_for(10000));
  EXPECT_EQ(run.transport.dead_lettered(), 0u);
  const std::vector<Packet> peeked = peek_->take();
  ASSERT_EQ(peeked.size(), 41u);  // frame 0 twice
  EXPECT_EQ(std::count_if(peeked.begin(), peeked.end(), [](const Packet& q) { return q.seq == 0; }), 2);
  for (const Packet& q : peeked) expect_frame(q, false);
  EXPECT_EQ(sink_->take().size(), 40u);
}

// The rule itself: a frame's keys are shortened when the last of the sinks settles it (each
// sink's packet may refer to other keys), each key once.
TEST_F(ImageRefsTest, AFramesKeysWaitForTheLastSinkAndGoTogether) {
  const Plan plan(pipeline_of("  - { name: source, type: test.frames }\n"
                              "  - { name: sink, type: test.frame_sink, inputs: [source] }\n"
                              "  - { name: also, type: test.peek, inputs: [source] }\n"),
                  registry_);
  detail::Session session({.url = redis_url(), .reclaim_idle_ms = 2000});
  session.bind(plan);
  session.writer.start();
  std::vector<std::string> keys;
  for (int i = 0; i < 3; ++i) {
    Image image = Image::allocate(16, 12, 3);
    std::byte* px = image.pixels.mutable_data();
    for (std::size_t b = 0; b < image.byte_size(); ++b) px[b] = static_cast<std::byte>(b + i);
    std::uint64_t stored = 0;
    keys.push_back(session.image_store->reference(image, stored).key);
  }
  Redis redis(redis_url());
  const auto ttl = [&](int k) {
    session.writer.drain();
    return redis.command({"PTTL", keys[k]})->integer;
  };
  session.image_store->settled(7, 3, {keys[0], keys[1]});  // the first sink
  session.image_store->settled(7, 4, {keys[2]});           // another frame
  EXPECT_GT(ttl(0), 50000);
  EXPECT_GT(ttl(1), 50000);
  session.image_store->settled(7, 3, {keys[1]});  // the last sink: 4 x reclaim_idle_ms = 8 s
  EXPECT_GT(ttl(0), 5000);
  EXPECT_LE(ttl(0), 8000);
  EXPECT_LE(ttl(1), 8000);
  EXPECT_GT(ttl(2), 50000);  // its frame waits for the other sink
  session.writer.stop();
}

// The key layout a Redis Cluster needs: on a cluster node (one node holding every slot, so that
// it answers CROSSSLOT, not MOVED), a run and a worker with a partitioned stage, images by
// reference and a stage that writes an image get through without a command or a script that
// touches two slots; and the node's own hashing puts each stage in a slot of its own and spreads
// the images.
TEST_F(ImageRefsTest, TheKeysSpreadOverClusterSlotsAndNoCommandCrossesTwo) {
  OwnRedis redis(dir_, false, {"--cluster-enabled", "yes", "--cluster-config-file",
                               (dir_ / "nodes.conf").string()});
  Redis node(redis.url());
  ASSERT_EQ(node.text({"CLUSTER", "ADDSLOTSRANGE", "0", "16383"}), "OK");
  for (int i = 0; i < 200 && node.text({"CLUSTER", "INFO"}).find("cluster_state:ok") == std::string::npos; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  ASSERT_NE(node.text({"CLUSTER", "INFO"}).find("cluster_state:ok"), std::string::npos);
  const auto slot = [&](const std::string& key) { return node.command({"CLUSTER", "KEYSLOT", key})->integer; };
  // Two stages in different slots, on the names of this test: otherwise the layout cannot show.
  ASSERT_NE(slot(stream_key("peek")), slot(stream_key("invert")));

  frames_ = 30;
  const Pipeline p = pipeline_of(
      "  - { name: source, type: test.frames }\n"
      "  - { name: peek, type: test.peek, state: per_stream, partitions: 2 }\n"
      "  - { name: invert, type: test.invert }\n"
      "  - { name: sink, type: test.frame_sink, ordered: true }\n");
  Part worker(p, {.role = RedisOptions::Role::worker, .url = redis.url(), .stages = {"peek", "invert"}},
              registry_);
  worker.runner.start();
  Part run(p, {.url = redis.url(), .serve = RedisOptions::Serve::none}, registry_);
  run.runner.start();
  ASSERT_TRUE(run.runner.wait_for(30000));
  worker.runner.stop();
  ASSERT_TRUE(worker.runner.wait_for(10000));
  EXPECT_EQ(run.transport.dead_lettered(), 0u);
  const std::vector<Packet> out = sink_->take();
  ASSERT_EQ(out.size(), static_cast<std::size_t>(frames_));
  for (const Packet& packet : out) expect_frame(packet, true);

  // Each stage's keys in one slot of its own, none in the pipeline's.
  std::set<long long> stage_slots;
  for (const char* stage : {"invert", "sink"}) stage_slots.insert(slot(stream_key(stage)));
  for (int k = 0; k < 2; ++k) {
    const std::string partition = stream_key("peek", k, 2);
    EXPECT_EQ(node.command({"EXISTS", partition})->integer, 1) << partition;
    EXPECT_EQ(slot(partition + ":lease"), slot(partition));
    EXPECT_EQ(slot(partition + ":next"), slot(partition));
    EXPECT_EQ(slot(partition), slot(stream_key("peek", 0, 2)));
  }
  stage_slots.insert(slot(stream_key("peek", 0, 2)));
  EXPECT_EQ(stage_slots.size(), 3u);
  for (const char* own : {"run", "live", "hops", "streams", "counters", "dead"}) {
    EXPECT_EQ(slot(key(own)), slot(key("run"))) << own;
  }
  EXPECT_FALSE(stage_slots.contains(slot(key("run"))));
  // The frames and the inverted frames, stored once each, over many slots. (An entry taken over
  // from a consumer that looked idle on a busy machine is inverted again: one more image, for
  // the TTL to remove; so the inversions are counted where they ran.)
  const std::uint64_t inverted = worker.runner.metrics().stage("invert")->processed;
  EXPECT_GE(inverted, static_cast<std::uint64_t>(frames_));
  const auto images = node.command({"KEYS", "mm:{" + name_ + ":img:*"});
  ASSERT_EQ(images->elements, static_cast<std::size_t>(frames_) + inverted);
  std::set<long long> image_slots;
  for (std::size_t i = 0; i < images->elements; ++i) {
    image_slots.insert(slot(std::string(images->element[i]->str, images->element[i]->len)));
  }
  EXPECT_GE(image_slots.size(), images->elements - 2);
}

// Redis out of memory (maxmemory with noeviction): the run holds back, says so, resumes by
// itself, and every frame reaches the sink once, in order, with its pixels.
class RedisMemoryTest : public ImageRefsTest {
 protected:
  // The inverted frames at the sink: all of them, each once, in order, none dead-lettered.
  void expect_every_frame(Part& run) {
    EXPECT_EQ(run.transport.dead_lettered(), 0u);
    const std::vector<Packet> out = sink_->take();
    ASSERT_EQ(out.size(), static_cast<std::size_t>(frames_));
    for (std::size_t i = 0; i < out.size(); ++i) {
      ASSERT_EQ(out[i].seq, i);
      expect_frame(out[i], true);
    }
  }
  // Another client fills Redis to its maxmemory with keys of 64 KB (at most 1,000): how many.
  static int fill(Redis& filler) {
    const std::string block(64 * 1024, 'x');
    int blocks = 0;
    for (; blocks < 1000; ++blocks) {
      const auto reply = filler.command({"SET", "filler:" + std::to_string(blocks), block});
      if (reply->type == REDIS_REPLY_ERROR) break;
    }
    return blocks;
  }
  static void empty(Redis& filler, int blocks) {
    for (int i = 0; i < blocks; ++i) filler.command({"DEL", "filler:" + std::to_string(i)});
  }
  static std::uint64_t pauses(const std::string& url, const std::string& counters) {
    Redis redis(url);
    return std::stoull("0" + redis.text({"HGET", counters, "memory_pauses"}));
  }
};

TEST_F(RedisMemoryTest, AnotherClientFillingRedisPausesTheRunUntilItHasRoomAndNothingIsLost) {
  // Midway, another client fills Redis to its maxmemory: every write that makes Redis grow is
  // refused (OOM), the run's included. The run holds back and says so; once the other client's
  // keys are gone it resumes by itself.
  OwnRedis redis(dir_, false, {"--maxmemory", "24mb", "--maxmemory-policy", "noeviction"});
  frames_ = 150;
  pace_ = std::chrono::milliseconds(8);
  ::testing::internal::CaptureStderr();
  Part run(chain({"invert"}), {.url = redis.url()}, registry_);
  run.runner.start();
  while (run.runner.progress().done < 30 && !run.runner.wait_for(10)) {
  }
  Redis filler(redis.url());
  const int blocks = fill(filler);
  ASSERT_LT(blocks, 1000) << "Redis took more than its maxmemory";
  std::this_thread::sleep_for(std::chrono::milliseconds(1500));
  const std::uint64_t during = run.runner.progress().done;
  empty(filler, blocks);
  const bool finished = run.runner.wait_for(60000);
  const std::string log = ::testing::internal::GetCapturedStderr();
  ASSERT_TRUE(finished) << log;
  EXPECT_LT(during, static_cast<std::uint64_t>(frames_)) << "the run did not wait for room";
  EXPECT_NE(log.find("Redis at " + redis.url().substr(8) + " is at "), std::string::npos) << log;
  EXPECT_NE(log.find("of maxmemory (used "), std::string::npos) << log;
  EXPECT_NE(log.find("until it has room"), std::string::npos) << log;
  EXPECT_NE(log.find("has room again"), std::string::npos) << log;
  EXPECT_EQ(log.find("reclaimed"), std::string::npos) << "a packet waiting for room ran twice: " << log;
  EXPECT_GE(pauses(redis.url(), key("counters")), 1u);
  EXPECT_NE(run.transport.report().find("held back for Redis's memory"), std::string::npos);
  // The process's own pauses, in its metrics: the 1.5 s above at least.
  const MetricsSnapshot metrics = run.runner.metrics();
  EXPECT_GE(metrics.transport.at("memory_pauses"), 1u);
  EXPECT_GE(metrics.transport.at("memory_paused_ms"), 1000u);
  EXPECT_NE(metrics.to_prometheus().find("micromodels_transport_events_total{pipeline=\""),
            std::string::npos);
  EXPECT_NE(metrics.to_json().find("\"memory_pauses\""), std::string::npos);
  expect_every_frame(run);
}

// A Redis whose maxmemory is smaller than what the pipeline's queues hold when full (two stages
// of 64 frames of 57.6 KB, stored once each: 7.4 MB against 8 MB less Redis's own) may never
// resume: the packets in it move on only into more memory. The pause says so, with what to
// change; this run, short, resumes once the other client's keys are gone.
TEST_F(RedisMemoryTest, APauseSaysWhenThePipelinesQueuesHoldMoreThanRedisMay) {
  OwnRedis redis(dir_, false, {"--maxmemory", "8mb", "--maxmemory-policy", "noeviction"});
  frames_ = 200;
  pace_ = std::chrono::milliseconds(8);
  ::testing::internal::CaptureStderr();
  Part run(chain({"invert"}), {.url = redis.url()}, registry_);
  run.runner.start();
  while (run.runner.progress().done < 20 && !run.runner.wait_for(10)) {
  }
  // The sizes sent so far reach the run's hop counts with the keeper's next round (250 ms).
  std::this_thread::sleep_for(std::chrono::milliseconds(600));
  Redis filler(redis.url());
  const int blocks = fill(filler);
  ASSERT_LT(blocks, 1000) << "Redis took more than its maxmemory";
  std::this_thread::sleep_for(std::chrono::milliseconds(1500));
  empty(filler, blocks);
  const bool finished = run.runner.wait_for(60000);
  const std::string log = ::testing::internal::GetCapturedStderr();
  ASSERT_TRUE(finished) << log;
  EXPECT_NE(log.find("This pipeline's queues hold up to "), std::string::npos) << log;
  EXPECT_NE(log.find("lower the stages' queue: { capacity: N } or raise maxmemory"),
            std::string::npos)
      << log;
  expect_every_frame(run);
}

TEST_F(RedisMemoryTest, ARunThatKeepsMoreInRedisThanItsMaxmemoryPausesUntilImagesExpireAndCompletes) {
  // 120 frames and their inverted copies, kept for the images' TTL: 13.8 MB, more than Redis
  // may hold. The run pauses until the images of the frames done expire, and completes.
  OwnRedis redis(dir_, false, {"--maxmemory", "8mb", "--maxmemory-policy", "noeviction"});
  frames_ = 120;
  const Pipeline p = pipeline_of(
      "  - { name: source, type: test.frames }\n"
      "  - { name: invert, type: test.invert, queue: { capacity: 4 } }\n"
      "  - { name: sink, type: test.frame_sink, ordered: true, queue: { capacity: 4 } }\n",
      "wire: { image_ttl_s: 2 }\n");
  ::testing::internal::CaptureStderr();
  Part run(p, {.url = redis.url()}, registry_);
  run.runner.start();
  const bool finished = run.runner.wait_for(90000);
  const std::string log = ::testing::internal::GetCapturedStderr();
  ASSERT_TRUE(finished) << log;
  EXPECT_NE(log.find("of maxmemory (used "), std::string::npos) << log;
  EXPECT_NE(log.find("holding the sources' packets"), std::string::npos) << log;
  EXPECT_EQ(log.find("This pipeline's queues hold"), std::string::npos)
      << "its queues of 4 hold far less than Redis may: " << log;
  EXPECT_EQ(log.find("reclaimed"), std::string::npos) << "a packet waiting for room ran twice: " << log;
  EXPECT_NE(log.find("has room again"), std::string::npos) << log;
  EXPECT_GE(pauses(redis.url(), key("counters")), 1u);
  expect_every_frame(run);
}

TEST_F(RedisTransportTest, AWriteLargerThanRedisCanEverHoldStopsTheRunWithAClearError) {
  // Each packet carries 3 MB; Redis may hold 2 MB in all. Waiting cannot help: the run stops,
  // naming the write and what to raise, and never reports success with packets missing.
  OwnRedis redis(dir_, false, {"--maxmemory", "2mb", "--maxmemory-policy", "noeviction"});
  const Pipeline p = to_sink("count: 5, payload_bytes: 3000000", "");
  Part run(p, {.url = redis.url()});
  run.runner.start();
  try {
    for (int i = 0; i < 300 && !run.runner.wait_for(100); ++i) {
    }
    ADD_FAILURE() << "the run ended without an error";
  } catch (const BrokerError& e) {
    const std::string error = e.what();
    EXPECT_EQ(e.kind(), BrokerError::Kind::lost);
    EXPECT_NE(error.find("Redis at " + redis.url().substr(8) + " refused a write: OOM"), std::string::npos) << error;
    EXPECT_NE(error.find("XADD of " + stream_key("sink")), std::string::npos) << error;
    EXPECT_NE(error.find("more than Redis can ever hold"), std::string::npos) << error;
    EXPECT_NE(error.find("raise maxmemory"), std::string::npos) << error;
  }
  EXPECT_LT(lines_of(dir_ / "out.jsonl").size(), 5u);
}

}  // namespace
}  // namespace micromodels
