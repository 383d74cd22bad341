// The engine's guarantees, checked the same way on every transport (memory, Redis): each test
// checks what reached the sinks record by record (every packet, in order, once) and that drops
// and failures are counted exactly.
#include "conformance.hpp"

namespace micromodels::conformance {
namespace {

using namespace std::chrono_literals;

/// Sees whether two packets of one stream are ever processed at once, and in what order.
struct Probe {
  std::mutex mutex;
  std::set<std::uint32_t> busy;
  int overlaps = 0;
  std::map<std::uint32_t, std::vector<std::uint64_t>> order;
};

class StreamProbe final : public Stage {
 public:
  explicit StreamProbe(std::shared_ptr<Probe> probe) : probe_(std::move(probe)) {}
  void process(Packet packet, std::vector<Packet>& out) override {
    {
      std::lock_guard lock(probe_->mutex);
      if (!probe_->busy.insert(packet.stream).second) ++probe_->overlaps;
      probe_->order[packet.stream].push_back(packet.seq);
    }
    std::this_thread::sleep_for(200us);  // so that an overlap would show
    {
      std::lock_guard lock(probe_->mutex);
      probe_->busy.erase(packet.stream);
    }
    out.push_back(std::move(packet));
  }

 private:
  std::shared_ptr<Probe> probe_;
};

/// Writes its seq into field `field`; holds the packet of seq 9 `hold` long.
class Tag final : public Stage {
 public:
  Tag(std::string field, std::chrono::milliseconds hold) : field_(std::move(field)), hold_(hold) {}
  void process(Packet packet, std::vector<Packet>& out) override {
    if (hold_.count() > 0 && packet.seq == 9) std::this_thread::sleep_for(hold_);
    packet.set(field_, static_cast<std::int64_t>(packet.seq));
    out.push_back(std::move(packet));
  }

 private:
  std::string field_;
  std::chrono::milliseconds hold_;
};

/// Filters out the packets with an odd seq.
class DropOdd final : public Stage {
 public:
  void process(Packet packet, std::vector<Packet>& out) override {
    if (packet.seq % 2 == 0) out.push_back(std::move(packet));
  }
};

/// Writes its `version` param into each packet.
class Versioned final : public Stage {
 public:
  explicit Versioned(std::int64_t version) : version_(version) {}
  void process(Packet packet, std::vector<Packet>& out) override {
    std::this_thread::sleep_for(100us);
    packet.set("version", version_);
    out.push_back(std::move(packet));
  }

 private:
  std::int64_t version_;
};

void add_tag(Registry& registry, const std::string& type, const std::string& field,
             std::chrono::milliseconds hold = {}) {
  registry.add(stage_type(type, {.writes = {field}, .blocking = hold.count() > 0},
                          [field, hold] { return std::make_unique<Tag>(field, hold); }));
}

TEST_P(ConformanceTest, OrderIsRestoredAfterManyConsumersWithJitter) {
  auto sink = std::make_shared<Records>();
  add_recorder("test.sink", sink);
  Pipeline p;
  p.add(source(300, 3));
  p.add({.name = "work", .type = "model.sleep",
         .params = {{"service_ms", 0.2}, {"jitter", 0.9}}, .consumers = 4});
  p.add({.name = "sink", .type = "test.sink", .ordered = true});
  const MetricsSnapshot m = run(p);
  expect_every_packet_once_in_order(sink->take(), 3, 300);
  EXPECT_EQ(m.stage("work")->processed, 900u);
  EXPECT_EQ(m.packets_in, 900u);
  EXPECT_EQ(m.packets_out, 900u);
}

TEST_P(ConformanceTest, TheSinkMeasuresEveryPacketsAgeFromItsCapture) {
  // Every packet spends at least 2 ms in `work`: its age at the sink, from its capture at the
  // source (carried across each hop on Redis), is at least that, and never below 0.
  auto sink = std::make_shared<Records>();
  add_recorder("test.sink", sink);
  Pipeline p;
  p.add(source(100, 2));
  p.add({.name = "work", .type = "model.sleep", .params = {{"service_ms", 2.0}}, .consumers = 2});
  p.add({.name = "sink", .type = "test.sink"});
  const MetricsSnapshot m = run(p);
  const Latency& age = m.stage("sink")->age;
  EXPECT_EQ(age.count, 200u);
  EXPECT_GE(age.p50_us, 0.9 * 2000) << "the histogram's buckets are about 9% wide";
  EXPECT_LT(age.p99_us, 60e6);
  EXPECT_EQ(m.stage("work")->age.count, 0u) << "measured at the last stages only";
}

TEST_P(ConformanceTest, PerStreamStateSeesEachStreamAloneAndInOrderAcrossConsumers) {
  auto sink = std::make_shared<Records>();
  add_recorder("test.sink", sink);
  auto probe = std::make_shared<Probe>();
  registry_.add(stage_type("test.probe", {.blocking = true},
                           [probe] { return std::make_unique<StreamProbe>(probe); }));
  Pipeline p;
  p.add(source(100, 6));
  p.add({.name = "shuffle", .type = "model.sleep",
         .params = {{"service_ms", 0.1}, {"jitter", 0.9}}, .consumers = 3});
  p.add({.name = "track", .type = "test.probe", .consumers = 4, .per_stream = true});
  p.add({.name = "sink", .type = "test.sink"});
  const MetricsSnapshot m = run(p);
  std::lock_guard lock(probe->mutex);
  EXPECT_EQ(probe->overlaps, 0) << "two packets of one stream were processed at once";
  ASSERT_EQ(probe->order.size(), 6u);
  for (const auto& [stream, seqs] : probe->order) {
    std::vector<std::uint64_t> want(100);
    for (std::uint64_t i = 0; i < 100; ++i) want[i] = i;
    EXPECT_EQ(seqs, want) << "stream " << stream << " at the per_stream stage";
  }
  EXPECT_EQ(sink->take().size(), 600u);
  EXPECT_EQ(m.stage("track")->processed, 600u);
}

TEST_P(ConformanceTest, FanOutAndFanInJoinEveryPacket) {
  auto sink = std::make_shared<Records>();
  add_recorder("test.sink", sink);
  add_tag(registry_, "test.a", "a");
  add_tag(registry_, "test.b", "b");
  Pipeline p;
  p.add(source(200, 2));
  p.add({.name = "a", .type = "test.a", .consumers = 2, .inputs = {"source"}});
  p.add({.name = "b", .type = "test.b", .consumers = 2, .inputs = {"source"}});
  p.add({.name = "sink", .type = "test.sink", .ordered = true, .inputs = {"a", "b"}});
  const MetricsSnapshot m = run(p);
  const std::vector<Record> got = sink->take();
  expect_every_packet_once_in_order(got, 2, 200);
  for (const Record& r : got) {
    EXPECT_EQ(r.packet.get<std::int64_t>("a"), static_cast<std::int64_t>(r.seq));
    EXPECT_EQ(r.packet.get<std::int64_t>("b"), static_cast<std::int64_t>(r.seq));
  }
  EXPECT_EQ(m.stage("sink")->processed, 400u);
  EXPECT_EQ(m.stage("sink")->dropped, 0u);
  EXPECT_EQ(m.packets_out, 400u);
}

// A packet one branch of a join leaves out (filtered) or loses (failed, counted there) goes on
// as a skip: the join does not wait for its part, and does not count it again. A packet is
// counted where it was lost, once: `dropped` is a policy's (a join's timeout, overflow, live).
TEST_P(ConformanceTest, AJoinPassesOnWhatABranchLeftOutOrLostAndCountsItOnce) {
  auto sink = std::make_shared<Records>();
  add_recorder("test.sink", sink);
  add_tag(registry_, "test.a", "a");
  registry_.add(stage_type("test.drop_odd", {}, [] { return std::make_unique<DropOdd>(); }));
  Pipeline p;
  p.add(source(200));
  p.add({.name = "a", .type = "test.a", .inputs = {"source"}});
  p.add({.name = "odd", .type = "test.drop_odd", .inputs = {"source"}});
  p.add({.name = "flaky",
         .type = "model.sleep",
         .params = {{"service_ms", 0.0}, {"fail_every", std::int64_t{10}}},
         .inputs = {"source"}});
  p.add({.name = "sink",
         .type = "test.sink",
         .ordered = true,
         .inputs = {"a", "odd", "flaky"},
         .join_on_timeout = JoinTimeout::drop});
  const MetricsSnapshot m = run(p);
  std::set<std::uint64_t> missing;
  for (std::uint64_t seq = 1; seq < 200; seq += 2) missing.insert(seq);   // filtered by odd
  for (std::uint64_t seq = 9; seq < 200; seq += 10) missing.insert(seq);  // failed in flaky
  expect_every_packet_once_in_order(sink->take(), 1, 200, missing);
  EXPECT_EQ(m.stage("flaky")->failed, 20u);
  EXPECT_EQ(m.stage("sink")->dropped, 0u) << "no join timed out";
  EXPECT_EQ(m.stage("sink")->processed, 200u - missing.size());
  EXPECT_EQ(m.packets_out, 200u) << "a packet left out or lost is done with";
}

TEST_P(ConformanceTest, AJoinThatTimesOutPassesWhatCameAndCountsEachPacketOnce) {
  // Branch b holds seq 9 for 1 s (its other consumers go on); the join waits 0.3 s, then passes
  // what came (a's part), or drops the packet. The late part has nothing to join with any more:
  // it goes no further, and its packet is not counted a second time. The source runs 3 s, so
  // that the late part comes while the run is on.
  for (const JoinTimeout on_timeout : {JoinTimeout::partial, JoinTimeout::drop}) {
    const bool partial = on_timeout == JoinTimeout::partial;
    SCOPED_TRACE(partial ? "partial" : "drop");
    auto sink = std::make_shared<Records>();
    const std::string suffix = partial ? "_p" : "_d";
    add_recorder("test.sink" + suffix, sink);
    add_tag(registry_, "test.a" + suffix, "a");
    add_tag(registry_, "test.b" + suffix, "b", 1000ms);
    Pipeline p;
    p.add(source(60, 1, 20));
    p.add({.name = "a", .type = "test.a" + suffix, .inputs = {"source"}});
    p.add({.name = "b", .type = "test.b" + suffix, .consumers = 4, .inputs = {"source"}});
    p.add({.name = "sink",
           .type = "test.sink" + suffix,
           .ordered = true,
           .inputs = {"a", "b"},
           .join_timeout_ms = 300,
           .join_on_timeout = on_timeout});
    const MetricsSnapshot m = run(p);
    const std::vector<Record> got = sink->take();
    expect_every_packet_once_in_order(
        got, 1, 60, partial ? std::set<std::uint64_t>{} : std::set<std::uint64_t>{9});
    for (const Record& r : got) {
      EXPECT_TRUE(r.packet.has("a")) << r.seq;
      EXPECT_EQ(r.packet.has("b"), r.seq != 9) << "seq " << r.seq;
    }
    // 60 packets in: processed + dropped, each once.
    EXPECT_EQ(m.stage("sink")->dropped, partial ? 0u : 1u);
    EXPECT_EQ(m.stage("sink")->processed, partial ? 60u : 59u);
  }
}

/// Emits each packet three times: as it came, then copies marked `copy` = 1 and 2.
/// Emits three packets for each one: the input, then two copies (`copy` 1 and 2); takes 0 to
/// 150 us, varying with the seq, so that its consumers finish out of order.
class Thrice final : public Stage {
 public:
  void process(Packet packet, std::vector<Packet>& out) override {
    std::this_thread::sleep_for(std::chrono::microseconds(packet.seq * 37 % 4 * 50));
    for (std::int64_t copy = 1; copy <= 2; ++copy) {
      out.push_back(packet);
      out.back().set("copy", copy);
    }
    out.insert(out.begin(), std::move(packet));
  }
};

TEST_P(ConformanceTest, SeveralPacketsForOneInputGoOnInOneProcessAndFailClearlyAcross) {
  // In one process every packet a stage emits for one input goes on, through an ordered and a
  // per_stream stage, in seq order. Across processes a (stream, seq) is one packet (a second is a
  // duplicate to the next process): the first goes on, each other one fails, counted and
  // dead-lettered with the reason, and the dead-letter stage gets every one of them, though two
  // share a (stream, seq); nothing is lost silently.
  auto ordered = std::make_shared<Records>();
  auto tracked = std::make_shared<Records>();
  auto sink = std::make_shared<Records>();
  auto letters = std::make_shared<Records>();
  add_recorder("test.ordered", ordered);
  add_recorder("test.tracked", tracked);
  add_recorder("test.sink", sink);
  add_recorder("test.letters", letters);
  registry_.add(stage_type("test.thrice", {.writes = {"copy"}},
                           [] { return std::make_unique<Thrice>(); }));
  Pipeline p;
  p.add(source(200, 2));
  // Several consumers: each call's packets reach the ordered stage together, so another
  // consumer's later seq cannot come between a packet and its extra ones.
  p.add({.name = "thrice", .type = "test.thrice", .consumers = 4});
  p.add({.name = "ordered", .type = "test.ordered", .ordered = true});
  p.add({.name = "tracked", .type = "test.tracked", .per_stream = true});
  p.add({.name = "sink", .type = "test.sink"});
  p.add({.name = "letters", .type = "test.letters", .inputs = {}});
  p.set_dead_letter("letters");
  const MetricsSnapshot m = run(p);
  const bool across = GetParam() != Transport::memory;
  const std::uint64_t each = across ? 1 : 3;  // packets per (stream, seq) after `thrice`
  for (const auto& [name, records] :
       {std::pair{"ordered", ordered}, std::pair{"tracked", tracked}, std::pair{"sink", sink}}) {
    std::map<std::uint32_t, std::vector<std::uint64_t>> seqs;
    for (const Record& r : records->take()) {
      seqs[r.stream].push_back(r.seq);
      if (across) {
        EXPECT_FALSE(r.packet.has("copy")) << name << ": only the first goes on";
      }
    }
    ASSERT_EQ(seqs.size(), 2u) << name;
    std::vector<std::uint64_t> want;
    for (std::uint64_t seq = 0; seq < 200; ++seq) want.insert(want.end(), each, seq);
    for (const auto& [stream, got] : seqs) EXPECT_EQ(got, want) << name << ", stream " << stream;
  }
  const StageMetrics& thrice = *m.stage("thrice");
  EXPECT_EQ(thrice.processed, 400u);
  EXPECT_EQ(thrice.failed, across ? 800u : 0u);
  EXPECT_EQ(thrice.dead_lettered, across ? 800u : 0u);
  std::vector<Record> dead = letters->take();
  ASSERT_EQ(dead.size(), across ? 800u : 0u) << "every refused packet, two of each (stream, seq)";
  std::map<std::pair<std::uint32_t, std::uint64_t>, std::set<std::int64_t>> copies;
  for (const Record& letter : dead) {
    copies[{letter.stream, letter.seq}].insert(letter.packet.get<std::int64_t>("copy"));
    EXPECT_EQ(letter.packet.get<std::string>("failed_stage"), "thrice");
    EXPECT_NE(letter.packet.get<std::string>("error").find(
                  "emitted another packet of stream " + std::to_string(letter.stream) + " seq " +
                  std::to_string(letter.seq) + " for one input; across processes (redis://"),
              std::string::npos)
        << letter.packet.get<std::string>("error");
  }
  for (const auto& [key, got] : copies) {
    EXPECT_EQ(got, (std::set<std::int64_t>{1, 2})) << "stream " << key.first << " seq " << key.second;
  }
  EXPECT_EQ(m.stage("sink")->processed, 400u * each);
}

TEST_P(ConformanceTest, FailuresEveryNGoToTheDeadLetterStageCountedExactly) {
  auto sink = std::make_shared<Records>();
  auto letters = std::make_shared<Records>();
  add_recorder("test.sink", sink);
  add_recorder("test.letters", letters);
  Pipeline p;
  p.add(source(500));
  p.add({.name = "flaky", .type = "model.sleep",
         .params = {{"service_ms", 0.05}, {"fail_every", std::int64_t{10}}}, .consumers = 2});
  p.add({.name = "sink", .type = "test.sink", .ordered = true});
  p.add({.name = "letters", .type = "test.letters", .inputs = {}});
  p.set_dead_letter("letters");
  const MetricsSnapshot m = run(p);
  std::set<std::uint64_t> failing;
  for (std::uint64_t seq = 9; seq < 500; seq += 10) failing.insert(seq);
  expect_every_packet_once_in_order(sink->take(), 1, 500, failing);
  std::vector<Record> dead = letters->take();
  std::sort(dead.begin(), dead.end(), [](const Record& x, const Record& y) { return x.seq < y.seq; });
  ASSERT_EQ(dead.size(), 50u);
  auto it = failing.begin();
  for (const Record& letter : dead) {
    EXPECT_EQ(letter.seq, *it++);
    EXPECT_EQ(letter.packet.get<std::string>("failed_stage"), "flaky");
    EXPECT_NE(letter.packet.get<std::string>("error").find("fail_every"), std::string::npos);
  }
  const StageMetrics& flaky = *m.stage("flaky");
  EXPECT_EQ(flaky.failed, 50u);
  EXPECT_EQ(flaky.dead_lettered, 50u);
  EXPECT_EQ(flaky.processed, 450u);
  EXPECT_EQ(flaky.dropped, 0u);
  EXPECT_EQ(m.packets_in, 500u) << "what the source made; the dead letters are not more";
  EXPECT_EQ(m.packets_out, 500u) << "a failed packet is done with";
}

/// Records the size of each batch it gets; 10 ms a call.
class BatchSizes final : public Stage {
 public:
  explicit BatchSizes(std::shared_ptr<std::vector<std::size_t>> sizes) : sizes_(std::move(sizes)) {}
  void process(Packet packet, std::vector<Packet>& out) override {
    out.push_back(std::move(packet));
  }
  void process_batch(std::vector<Packet>& batch, std::vector<Packet>& out) override {
    {
      std::lock_guard lock(mutex_);
      sizes_->push_back(batch.size());
    }
    std::this_thread::sleep_for(10ms);
    for (Packet& packet : batch) out.push_back(std::move(packet));
  }

 private:
  std::mutex mutex_;
  std::shared_ptr<std::vector<std::size_t>> sizes_;
};

TEST_P(ConformanceTest, BatchesFillUpToMaxBatch) {
  // A slow batching stage (10 ms a call) behind a source that outruns it: its calls take
  // max_batch packets, wherever the packets come from (another process's inlet once kept about
  // two per consumer waiting for a slow stage, so batches of 2).
  auto sink = std::make_shared<Records>();
  add_recorder("test.sink", sink);
  auto sizes = std::make_shared<std::vector<std::size_t>>();
  registry_.add(stage_type("test.batch_sizes", {.batching = true},
                           [sizes] { return std::make_unique<BatchSizes>(sizes); }));
  Pipeline p;
  p.add(source(400, 2));
  p.add({.name = "batch", .type = "test.batch_sizes", .max_batch = 8, .max_delay_ms = 50});
  p.add({.name = "sink", .type = "test.sink", .ordered = true});
  const MetricsSnapshot m = run(p);
  expect_every_packet_once_in_order(sink->take(), 2, 400);
  EXPECT_EQ(m.stage("batch")->processed, 800u);
  std::size_t full = 0;
  for (std::size_t size : *sizes) full += size == 8 ? 1 : 0;
  EXPECT_GE(full * 10, sizes->size() * 9)
      << "nine calls in ten take a full batch; calls: " << sizes->size();
}

TEST_P(ConformanceTest, DropPoliciesDropOnlyWhatTheyMustAndCountIt) {
  for (const Overflow overflow : {Overflow::drop_newest, Overflow::drop_oldest}) {
    SCOPED_TRACE(overflow == Overflow::drop_newest ? "drop_newest" : "drop_oldest");
    auto sink = std::make_shared<Records>();
    const std::string type = overflow == Overflow::drop_newest ? "test.sink_n" : "test.sink_o";
    add_recorder(type, sink);
    Pipeline p;
    p.add(source(2000));
    p.add({.name = "slow", .type = "model.spin", .params = {{"service_ms", 0.2}},
           .queue_capacity = 4, .overflow = overflow});
    p.add({.name = "sink", .type = type, .ordered = true});
    const MetricsSnapshot m = run(p);
    const StageMetrics& slow = *m.stage("slow");
    const std::vector<Record> got = sink->take();
    EXPECT_GT(slow.dropped, 0u);
    EXPECT_EQ(slow.processed + slow.dropped, 2000u);
    EXPECT_EQ(got.size(), slow.processed);
    for (std::size_t i = 1; i < got.size(); ++i) {
      EXPECT_LT(got[i - 1].seq, got[i].seq) << "in order, each once";
    }
    EXPECT_LE(slow.queue_max, 4u);
    EXPECT_EQ(m.packets_out, 2000u);
  }
}

TEST_P(ConformanceTest, LiveModeKeepsEachStreamsNewestAndCountsEveryDropOnce) {
  // Two streams of 400 unpaced packets into a 1 ms stage: the source never waits, the stage's
  // queue keeps each stream's newest, and every packet is processed at the sink or dropped
  // once; the sink (no budget of its own) gets what `work` processed, each stream in order.
  auto sink = std::make_shared<Records>();
  add_recorder("test.sink", sink);
  Pipeline p;
  p.set_live(LiveConfig{.max_age_ms = 500});
  p.add(source(400, 2));
  p.add({.name = "work", .type = "model.sleep", .params = {{"service_ms", 1.0}}});
  p.add(
      {.name = "sink", .type = "test.sink", .ordered = true, .live = LiveConfig{.max_age_ms = 0}});
  const MetricsSnapshot m = run(p);
  const StageMetrics& work = *m.stage("work");
  EXPECT_GT(work.dropped_newest, 0u) << "the source did not wait for `work`";
  EXPECT_EQ(work.dropped, work.dropped_newest + work.dropped_age);
  EXPECT_EQ(work.processed + work.dropped, 800u);
  EXPECT_EQ(m.stage("sink")->dropped, 0u);
  const std::vector<Record> got = sink->take();
  EXPECT_EQ(got.size(), work.processed);
  std::map<std::uint32_t, std::uint64_t> last;
  for (const Record& r : got) {
    const auto before = last.find(r.stream);
    if (before != last.end()) {
      EXPECT_LT(before->second, r.seq) << "each stream in order, once";
    }
    last[r.stream] = r.seq;
  }
  EXPECT_EQ(m.packets_in, 800u);
  EXPECT_EQ(m.packets_out, 800u);
}

TEST_P(ConformanceTest, ScaleAndSwapStormsWhileRunningLoseNothing) {
  auto sink = std::make_shared<Records>();
  add_recorder("test.sink", sink);
  registry_.add({.name = "test.versioned",
                 .params = {{"version", micromodels::ParamType::integer, std::int64_t{0}, ""}},
                 .info = [](const Params&) { return StageInfo{.writes = {"version"}}; },
                 .make = [](const Params& params) -> std::unique_ptr<Stage> {
                   return std::make_unique<Versioned>(params.integer("version"));
                 }});
  Pipeline p;
  p.add(source(1500, 2, 1000));  // paced: about 1.5 s
  p.add({.name = "work", .type = "test.versioned", .consumers = 2});
  p.add({.name = "sink", .type = "test.sink", .ordered = true});
  std::unique_ptr<Runner> r = runner(p);
  r->start();
  int swaps = 0;
  for (int round = 1; !r->finished() && round < 400; ++round) {
    r->scale("work", 1 + round % 4);
    if (round % 5 == 0) {
      r->swap("work", {{"version", std::to_string(++swaps)}});
    }
    std::this_thread::sleep_for(5ms);
  }
  ASSERT_TRUE(r->wait_for(60'000));
  const std::vector<Record> got = sink->take();
  expect_every_packet_once_in_order(got, 2, 1500);
  std::map<std::uint32_t, std::int64_t> last;
  std::set<std::int64_t> versions;
  for (const Record& record : got) {
    const std::int64_t version = record.packet.get<std::int64_t>("version");
    EXPECT_GE(version, last[record.stream]) << "stream " << record.stream << " seq " << record.seq
                                            << " went back to an older instance";
    last[record.stream] = version;
    versions.insert(version);
  }
  EXPECT_GT(swaps, 2);
  EXPECT_GT(versions.size(), 2u) << "swapped-in instances never ran";
  EXPECT_EQ(r->metrics().stage("work")->failed, 0u);
}

// The autoscaler acts on the consumers of this process, on any transport: it gives the 20 ms
// stage more of the budget than the 1 ms one, and no packet is lost or reordered meanwhile. The
// two are far apart so that a loaded machine's sleep overshoot (several ms) keeps the answer.
TEST_P(ConformanceTest, TheAutoscalerMovesConsumersToTheSlowStageAndLosesNothing) {
  auto sink = std::make_shared<Records>();
  add_recorder("test.sink", sink);
  Pipeline p;
  p.set_autoscale({.enabled = true, .budget = 3, .interval_ms = 250});
  p.add(source(500));
  p.add({.name = "fast", .type = "model.sleep", .params = {{"service_ms", 1.0}}});
  p.add({.name = "slow", .type = "model.sleep", .params = {{"service_ms", 20.0}}});
  p.add({.name = "sink", .type = "test.sink", .ordered = true});
  std::unique_ptr<Runner> r = runner(p);
  r->start();
  int most_slow = 0;
  int most_fast = 0;
  while (!r->wait_for(10)) {
    const MetricsSnapshot m = r->metrics();
    most_slow = std::max(most_slow, m.stage("slow")->consumers);
    most_fast = std::max(most_fast, m.stage("fast")->consumers);
  }
  EXPECT_GE(most_slow, 3) << "the 20 ms stage never got most of the budget";
  EXPECT_GT(most_slow, most_fast);
  expect_every_packet_once_in_order(sink->take(), 1, 500);
  EXPECT_EQ(r->metrics().packets_out, 500u);
}

TEST_P(ConformanceTest, StopDrainsWhatWasProducedAndNothingMore) {
  auto sink = std::make_shared<Records>();
  add_recorder("test.sink", sink);
  Pipeline p;
  p.add(source(100000, 1, 2000));
  p.add({.name = "work", .type = "model.sleep", .params = {{"service_ms", 2.0}}, .consumers = 2});
  p.add({.name = "sink", .type = "test.sink", .ordered = true});
  std::unique_ptr<Runner> r = runner(p);
  r->start();
  std::this_thread::sleep_for(300ms);
  r->stop();
  ASSERT_TRUE(r->wait_for(30'000));
  const MetricsSnapshot m = r->metrics();
  EXPECT_GT(m.packets_in, 0u);
  EXPECT_LT(m.packets_in, 100000u);
  EXPECT_EQ(m.packets_out, m.packets_in);
  expect_every_packet_once_in_order(sink->take(), 1, m.packets_in);
}

INSTANTIATE_TEST_SUITE_P(Transports, ConformanceTest, ::testing::ValuesIn(transports()),
                         transport_name);

}  // namespace
}  // namespace micromodels::conformance
