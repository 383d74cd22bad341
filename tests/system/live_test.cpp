// Live mode on the in-memory runner: the latency budget (age drops), each stream's newest packet
// where a source's packets wait, skips for what was dropped, exact counts, ages, fair streams.
#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <map>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include "micromodels/micromodels.hpp"

using namespace micromodels;

namespace {

constexpr std::int64_t kHourNs = std::int64_t{3600} * 1'000'000'000;

/// What the sink saw, per stream in arrival order.
struct Seen {
  std::mutex mutex;
  std::map<std::uint32_t, std::vector<std::uint64_t>> seqs;
};

class Collect final : public Stage {
 public:
  explicit Collect(std::shared_ptr<Seen> seen) : seen_(std::move(seen)) {}
  void process(Packet packet, std::vector<Packet>& out) override {
    {
      std::lock_guard lock(seen_->mutex);
      seen_->seqs[packet.stream].push_back(packet.seq);
    }
    out.push_back(std::move(packet));
  }

 private:
  std::shared_ptr<Seen> seen_;
};

/// `count` packets on each of `streams` streams, unpaced, with capture times the test chooses:
/// every `old_every`-th seq captured an hour ago, or all of them an hour ahead (`future`: a
/// capture clock that jumped).
class Stamped final : public Source {
 public:
  explicit Stamped(const Params& p)
      : count_(static_cast<std::uint64_t>(p.integer("count"))),
        streams_(static_cast<std::uint32_t>(p.integer("streams"))),
        old_every_(static_cast<std::uint64_t>(p.integer("old_every"))),
        future_(p.boolean("future")) {}
  bool next(std::vector<Packet>& out) override {
    const std::uint64_t i = emitted_++;
    Packet packet{.stream = static_cast<std::uint32_t>(i % streams_), .seq = i / streams_};
    if (future_) {
      packet.capture_ns = capture_clock_ns() + kHourNs;
    } else if (old_every_ > 0 && packet.seq % old_every_ == 0) {
      packet.capture_ns = capture_clock_ns() - kHourNs;
    }  // else the engine stamps it
    out.push_back(std::move(packet));
    return emitted_ < count_ * streams_;
  }

 private:
  std::uint64_t count_;
  std::uint32_t streams_;
  std::uint64_t old_every_;
  bool future_;
  std::uint64_t emitted_ = 0;
};

/// Cameras: `streams` streams of `rate` frames per second each for `seconds`, frame k of every
/// stream due k / rate s after the start. Stream `stalled` (-1: none) sends 5 frames, then
/// nothing: its camera is gone, the source is not.
class Cameras final : public Source {
 public:
  explicit Cameras(const Params& p)
      : streams_(static_cast<std::uint32_t>(p.integer("streams"))),
        frames_(static_cast<std::uint64_t>(p.number("rate") * p.number("seconds"))),
        period_(std::chrono::duration_cast<std::chrono::steady_clock::duration>(
            std::chrono::duration<double>(1.0 / p.number("rate")))),
        stalled_(p.integer("stalled")) {}
  bool next(std::vector<Packet>& out) override {
    std::this_thread::sleep_until(start_ + period_ * static_cast<std::int64_t>(frame_));
    for (std::uint32_t s = 0; s < streams_; ++s) {
      if (static_cast<std::int64_t>(s) == stalled_ && frame_ >= 5) continue;
      out.push_back(Packet{.stream = s, .seq = frame_});
    }
    return ++frame_ < frames_;
  }

 private:
  std::uint32_t streams_;
  std::uint64_t frames_;
  std::chrono::steady_clock::duration period_;
  std::int64_t stalled_;
  std::uint64_t frame_ = 0;
  std::chrono::steady_clock::time_point start_ = std::chrono::steady_clock::now();
};

struct Fixture {
  Registry registry = Registry::with_builtins();
  std::shared_ptr<Seen> seen = std::make_shared<Seen>();

  Fixture() {
    auto seen_ptr = seen;
    registry.add({.name = "test.collect",
                  .info = [](const Params&) { return StageInfo{}; },
                  .make = [seen_ptr](const Params&) -> std::unique_ptr<Stage> {
                    return std::make_unique<Collect>(seen_ptr);
                  }});
    registry.add({.name = "test.stamped",
                  .params = {{"count", ParamType::integer, std::int64_t{100}, ""},
                             {"streams", ParamType::integer, std::int64_t{1}, ""},
                             {"old_every", ParamType::integer, std::int64_t{0}, ""},
                             {"future", ParamType::boolean, false, ""}},
                  .info = [](const Params&) { return StageInfo{}; },
                  .make_source = [](const Params& p) -> std::unique_ptr<Source> {
                    return std::make_unique<Stamped>(p);
                  }});
    registry.add({.name = "test.cameras",
                  .params = {{"streams", ParamType::integer, std::int64_t{4}, ""},
                             {"rate", ParamType::number, 100.0, ""},
                             {"seconds", ParamType::number, 2.0, ""},
                             {"stalled", ParamType::integer, std::int64_t{-1}, ""}},
                  .info = [](const Params&) { return StageInfo{.blocking = true}; },
                  .make_source = [](const Params& p) -> std::unique_ptr<Source> {
                    return std::make_unique<Cameras>(p);
                  }});
  }

  MetricsSnapshot run(const Pipeline& pipeline) {
    Runner runner(pipeline, registry);
    runner.start();
    EXPECT_TRUE(runner.wait_for(60'000)) << "pipeline did not finish";
    return runner.metrics();
  }

  std::uint64_t seen_total() {
    std::lock_guard lock(seen->mutex);
    std::uint64_t total = 0;
    for (const auto& [stream, seqs] : seen->seqs) total += seqs.size();
    return total;
  }
};

std::uint64_t dropped_total(const MetricsSnapshot& m) {
  std::uint64_t total = 0;
  for (const StageMetrics& s : m.stages) total += s.dropped;
  return total;
}

void expect_increasing(const std::map<std::uint32_t, std::vector<std::uint64_t>>& seqs) {
  for (const auto& [stream, list] : seqs) {
    EXPECT_TRUE(std::is_sorted(list.begin(), list.end()) &&
                std::adjacent_find(list.begin(), list.end()) == list.end())
        << "stream " << stream << " out of order or repeated";
  }
}

LiveConfig budget(double max_age_ms) { return {.max_age_ms = max_age_ms}; }

}  // namespace

TEST(Live, PacketsOlderThanTheBudgetAreDroppedExactlyAndSkipped) {
  Fixture f;
  Pipeline p("aged");
  p.set_live(budget(10'000));  // far above any real wait, so only the hour-old packets go
  p.add({.name = "source",
         .type = "test.stamped",
         .params = {{"count", std::int64_t{300}}, {"streams", std::int64_t{2}},
                    {"old_every", std::int64_t{3}}}});
  // A queue with an overflow policy of its own (and room for all) keeps every packet: only age
  // drops here.
  p.add({.name = "work",
         .type = "model.spin",
         .params = {{"service_ms", 0.01}},
         .consumers = 2,
         .queue_capacity = 1 << 20,
         .overflow = Overflow::drop_newest});
  p.add({.name = "sink", .type = "test.collect", .ordered = true});
  const MetricsSnapshot m = f.run(p);

  const StageMetrics* work = m.stage("work");
  ASSERT_NE(work, nullptr);
  EXPECT_EQ(work->dropped_age, 200u) << "seq 0, 3, ..., 297 of each of 2 streams";
  EXPECT_EQ(work->dropped, 200u);
  EXPECT_EQ(work->dropped_newest, 0u);
  EXPECT_EQ(work->processed, 400u);
  // The ordered sink never waited for a dropped seq: it heard of each as a skip.
  EXPECT_EQ(f.seen_total(), 400u);
  std::lock_guard lock(f.seen->mutex);
  for (const auto& [stream, seqs] : f.seen->seqs) {
    ASSERT_EQ(seqs.size(), 200u) << "stream " << stream;
    for (std::size_t i = 0; i < seqs.size(); ++i) {
      EXPECT_EQ(seqs[i], i / 2 * 3 + 1 + i % 2) << "stream " << stream << " item " << i;
    }
  }
  EXPECT_EQ(m.packets_in, 600u);
  EXPECT_EQ(m.packets_out, 600u);
  EXPECT_EQ(m.packets_in, m.stage("sink")->processed + dropped_total(m));
  EXPECT_EQ(m.stage("sink")->age.count, 400u) << "one age per packet out";
}

TEST(Live, ACaptureTimeAheadOfTheClockIsAgeZeroNeverNegative) {
  Fixture f;
  Pipeline p("clock_jump");
  p.set_live(budget(50));
  p.add({.name = "source",
         .type = "test.stamped",
         .params = {{"count", std::int64_t{200}}, {"future", true}}});
  p.add({.name = "work",
         .type = "pass",
         .queue_capacity = 1 << 20,
         .overflow = Overflow::drop_newest});
  p.add({.name = "sink", .type = "test.collect"});
  const MetricsSnapshot m = f.run(p);
  EXPECT_EQ(dropped_total(m), 0u) << "an age below 0 is 0, within any budget";
  const Latency& age = m.stage("sink")->age;
  EXPECT_EQ(age.count, 200u);
  EXPECT_GE(age.p50_us, 0.0);
  EXPECT_LT(age.p99_us, 0.01) << "every age recorded as 0";
  EXPECT_GE(age.sum_us, 0.0);
}

TEST(Live, ASourceNeverWaitsAndEachStreamKeepsOnlyItsNewest) {
  Fixture f;
  Pipeline p("newest");
  p.set_live(budget(0));  // no age limit: only the newest policy drops
  p.add({.name = "source",
         .type = "synthetic.source",
         .params = {{"count", std::int64_t{3000}}, {"streams", std::int64_t{4}}}});
  p.add({.name = "slow", .type = "model.sleep", .params = {{"service_ms", 1.0}}});
  p.add({.name = "sink", .type = "test.collect", .ordered = true});
  const auto t0 = std::chrono::steady_clock::now();
  const MetricsSnapshot m = f.run(p);
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();

  const StageMetrics* slow = m.stage("slow");
  ASSERT_NE(slow, nullptr);
  EXPECT_EQ(m.stage("source")->processed, 12000u) << "the source made every packet";
  EXPECT_LT(seconds, 10.0) << "12000 packets through a 1 ms stage would take 12 s in batch mode";
  EXPECT_GT(slow->dropped_newest, 0u);
  EXPECT_EQ(slow->dropped, slow->dropped_newest);
  EXPECT_LE(slow->queue_max, 4u) << "at most one packet waits per stream";
  // in = out + dropped, exactly: each packet was processed by the sink or dropped once.
  EXPECT_EQ(m.packets_in, 12000u);
  EXPECT_EQ(m.packets_out, 12000u);
  EXPECT_EQ(f.seen_total() + dropped_total(m), 12000u);
  EXPECT_EQ(m.stage("sink")->processed, f.seen_total());
  std::lock_guard lock(f.seen->mutex);
  expect_increasing(f.seen->seqs);
  for (std::uint32_t s = 0; s < 4; ++s) {
    ASSERT_TRUE(f.seen->seqs.count(s)) << "stream " << s << " got nothing";
    EXPECT_EQ(f.seen->seqs[s].back(), 2999u) << "the last packet of a stream is never replaced";
  }
}

TEST(Live, StreamsOverCapacityGetFairSharesAndAStalledOneHoldsNobodyUp) {
  Fixture f;
  Pipeline p("fair");
  p.set_live(budget(500));
  // 4 cameras of 100 frames/s (one stalls after 5 frames) into a stage that serves about 200/s:
  // each of the 3 live streams should get a third of what the stage does.
  p.add({.name = "source",
         .type = "test.cameras",
         .params = {{"streams", std::int64_t{4}}, {"rate", 100.0}, {"seconds", 3.0},
                    {"stalled", std::int64_t{3}}}});
  p.add({.name = "slow", .type = "model.sleep", .params = {{"service_ms", 5.0}}});
  p.add({.name = "sink", .type = "test.collect", .ordered = true});
  const MetricsSnapshot m = f.run(p);

  EXPECT_EQ(m.packets_in, 3u * 300u + 5u);
  EXPECT_EQ(m.packets_out, m.packets_in);
  EXPECT_EQ(f.seen_total() + dropped_total(m), m.packets_in);
  std::lock_guard lock(f.seen->mutex);
  expect_increasing(f.seen->seqs);
  std::vector<double> shares;
  for (std::uint32_t s = 0; s < 3; ++s) shares.push_back(static_cast<double>(f.seen->seqs[s].size()));
  const double mean = (shares[0] + shares[1] + shares[2]) / 3;
  EXPECT_GT(mean, 100) << "the stage was meant to be busy, not starved";
  EXPECT_LT(mean, 290) << "the streams were meant to be over capacity";
  for (std::uint32_t s = 0; s < 3; ++s) {
    EXPECT_NEAR(shares[s], mean, 0.1 * mean) << "stream " << s << " is not within 10% of its share";
  }
}

TEST(Live, TheDeadLetterKeepsEveryFailedPacketHoweverOld) {
  Fixture f;
  Pipeline p("letters");
  p.set_live(budget(10'000));
  p.set_dead_letter("letters");
  // Every packet an hour old: `work` has no budget of its own and fails every second one.
  p.add({.name = "source",
         .type = "test.stamped",
         .params = {{"count", std::int64_t{100}}, {"old_every", std::int64_t{1}}}});
  p.add({.name = "work",
         .type = "model.spin",
         .params = {{"service_ms", 0.0}, {"fail_every", std::int64_t{2}}},
         .queue_capacity = 1 << 20,
         .overflow = Overflow::drop_newest,
         .live = LiveConfig{.max_age_ms = 0}});
  p.add({.name = "sink", .type = "pass", .live = LiveConfig{.max_age_ms = 0}});
  p.add({.name = "letters", .type = "test.collect"});
  const MetricsSnapshot m = f.run(p);
  EXPECT_EQ(m.stage("work")->failed, 50u);
  EXPECT_EQ(m.stage("letters")->processed, 50u) << "no budget at the dead letter";
  EXPECT_EQ(m.stage("letters")->dropped, 0u);
  EXPECT_EQ(m.stage("sink")->processed, 50u);
  EXPECT_EQ(f.seen_total(), 50u);
}
