// How much the engine asks an inlet for: enough for its stage's consumers to go on while the next
// take is on its way, when a take lasts longer than a packet's service time (a broker some
// milliseconds away). A transport of the test's own: its inlet's take lasts a known time.
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <mutex>
#include <thread>
#include <vector>

#include "micromodels/micromodels.hpp"

using namespace micromodels;

namespace {

constexpr int kPackets = 400;

// What the run asked for and settled.
struct Record {
  std::mutex mutex;
  std::vector<std::size_t> asked;  // each take's `max`
  std::atomic<int> settled{0};
  std::atomic<int> put{0};
};

// Each take lasts `take_ms` (a round trip to a broker far away) and brings what was asked for.
class FarInlet final : public Inlet {
 public:
  FarInlet(Record& record, int take_ms) : record_(record), take_ms_(take_ms) {}
  bool take(std::vector<Delivery>& out, std::size_t max) override {
    if (next_ >= kPackets) return false;
    {
      std::lock_guard lock(record_.mutex);
      record_.asked.push_back(max);
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(take_ms_));
    for (std::size_t i = 0; i < max && next_ < kPackets; ++i, ++next_) {
      Delivery d{.ticket = static_cast<Ticket>(next_ + 1)};
      d.packet.seq = static_cast<std::uint64_t>(next_);
      out.push_back(std::move(d));
    }
    return true;
  }
  void settle(Ticket) override { record_.settled.fetch_add(1); }
  Ticket merge(Ticket kept, Ticket) override { return kept; }

 private:
  Record& record_;
  const int take_ms_;
  int next_ = 0;
};

class CountingOutlet final : public Outlet {
 public:
  explicit CountingOutlet(Record& record) : record_(record) {}
  void put(const Packet&) override { record_.put.fetch_add(1); }
  void skip(std::uint32_t, std::uint64_t) override {}

 private:
  Record& record_;
};

// Serves only the middle stage, as a worker does: its input and its output are elsewhere.
class FarTransport final : public Transport {
 public:
  FarTransport(Record& record, int take_ms) : record_(record), take_ms_(take_ms) {}
  [[nodiscard]] std::string name() const override { return "far://test"; }
  void bind(const Plan&) override {}
  [[nodiscard]] bool serves(const PlanStage& stage) const override {
    return stage.name() == "work";
  }
  std::unique_ptr<Inlet> inlet(const PlanStage&) override {
    return std::make_unique<FarInlet>(record_, take_ms_);
  }
  std::unique_ptr<Outlet> outlet(const PlanStage&, const PlanStage* to, std::size_t) override {
    if (to == nullptr) return nullptr;
    return std::make_unique<CountingOutlet>(record_);
  }
  void start(Host&) override {}
  [[nodiscard]] bool finished() const override { return false; }
  void stop_taking() override {}
  void stop() override {}

 private:
  Record& record_;
  const int take_ms_;
};

const char* const kPipeline = R"(
pipeline: far
stages:
  - name: source
    type: synthetic.source
  - name: work
    type: model.sleep
    consumers: 4
    params: { service_ms: 4 }
  - name: sink
    type: sink.jsonl
    params: { path: out/test-logs/inlet_prefetch.jsonl }
)";

}  // namespace

// A take of 20 ms against a service time of 4 ms: each of the 4 consumers gets through about 5
// packets while a take is on its way. The engine asks for them; keeping only one call's worth
// waiting per consumer besides the one it works on (at most 8 here), the consumers would wait
// for every round trip.
TEST(InletPrefetch, ATakeSlowerThanTheStageBringsWhatTheConsumersUseUpMeanwhile) {
  Record record;
  Runner runner(Pipeline::from_yaml_string(kPipeline, "far.yaml"),
                std::make_unique<FarTransport>(record, 20));
  runner.start();
  ASSERT_TRUE(runner.wait_for(60'000)) << "the run did not end";
  runner.stop();
  EXPECT_EQ(record.put.load(), kPackets) << "every packet went on";
  EXPECT_EQ(record.settled.load(), kPackets) << "every delivery was settled";
  std::lock_guard lock(record.mutex);
  ASSERT_FALSE(record.asked.empty());
  const std::size_t most = *std::max_element(record.asked.begin(), record.asked.end());
  // 4 consumers x (1 waiting + 1 at work + about 5 per take) when the machine keeps time; a
  // loaded one measures a longer service time, so the test asks for more than the 8 that one
  // call's worth per consumer allows, not for the exact figure.
  EXPECT_GT(most, 12u) << "each take brought at most one call's worth per consumer";
  // Takes are not made for a packet or two at a time: one brings what a round trip uses up.
  const auto small = std::count_if(record.asked.begin() + static_cast<std::ptrdiff_t>(std::min<std::size_t>(10, record.asked.size())),
                                   record.asked.end(), [](std::size_t n) { return n < 4; });
  EXPECT_LT(small * 4, static_cast<std::ptrdiff_t>(record.asked.size()))
      << "most takes after the first few asked for fewer than 4 packets";
}
