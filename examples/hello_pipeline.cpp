// hello_pipeline: a pipeline built in C++, with one stage type of our own.
//
//   +------------------+      +------------------+      +------------------+
//   | source           | ---> | square  x2       | ---> | total            |
//   | synthetic.source |      | example.square   |      | example.total    |
//   | 1000 packets     |      | writes "square"  |      | reads "square"   |
//   +------------------+      +------------------+      +------------------+
//
// `square` has two consumers, so two packets may be squared at once; `total` adds up what
// reaches it. The Runner owns threads and queues; the stages only see packets.

#include <atomic>
#include <cstdint>
#include <iostream>
#include <memory>
#include <vector>

#include "micromodels/micromodels.hpp"

using micromodels::Packet;
using micromodels::Params;
using micromodels::StageInfo;

namespace {

/// Writes seq * seq into the field "square".
class Square final : public micromodels::Stage {
 public:
  void process(Packet packet, std::vector<Packet>& out) override {
    const auto seq = static_cast<std::int64_t>(packet.seq);
    packet.set("square", seq * seq);
    out.push_back(std::move(packet));
  }
};

/// The last stage: adds up "square". Appending nothing to `out` retires the packet here.
class Total final : public micromodels::Stage {
 public:
  struct Result {
    std::atomic<std::uint64_t> packets{0};
    std::atomic<std::int64_t> sum{0};
  };
  explicit Total(std::shared_ptr<Result> result) : result_(std::move(result)) {}
  void process(Packet packet, std::vector<Packet>& /*out*/) override {
    result_->sum += packet.get<std::int64_t>("square");
    ++result_->packets;
  }

 private:
  std::shared_ptr<Result> result_;
};

}  // namespace

int main() {
  constexpr std::int64_t kCount = 1000;

  // Our two types join the built-in ones in a registry of our own. What a stage reads and writes
  // is declared, so the pipeline is checked before it runs.
  micromodels::Registry registry = micromodels::Registry::with_builtins();
  registry.add({.name = "example.square",
                .help = "writes seq * seq as \"square\"",
                .info = [](const Params&) { return StageInfo{.writes = {"square"}}; },
                .make = [](const Params&) { return std::make_unique<Square>(); }});
  auto result = std::make_shared<Total::Result>();
  registry.add({.name = "example.total",
                .help = "adds up \"square\"",
                .info = [](const Params&) { return StageInfo{.reads = {"square"}}; },
                .make = [result](const Params&) { return std::make_unique<Total>(result); }});

  micromodels::Pipeline pipeline("hello");
  pipeline.add({.name = "source",
                .type = "synthetic.source",
                .params = {{"count", micromodels::ParamValue{kCount}}}});
  pipeline.add({.name = "square", .type = "example.square", .consumers = 2});
  pipeline.add({.name = "total", .type = "example.total"});
  std::cout << pipeline.to_text(registry) << '\n';

  micromodels::Runner runner(pipeline, registry);
  runner.start();
  runner.wait();

  std::cout << result->packets << " packets, sum of squares " << result->sum << '\n';
  std::cout << runner.metrics().to_table() << '\n';
  // Sequence numbers run 0..kCount-1, so the squares add up to (n-1)n(2n-1)/6.
  constexpr std::int64_t kExpectedSum = (kCount - 1) * kCount * (2 * kCount - 1) / 6;
  if (result->packets != static_cast<std::uint64_t>(kCount) || result->sum != kExpectedSum) {
    std::cerr << "expected " << kCount << " packets and a sum of " << kExpectedSum << '\n';
    return 1;
  }
  return 0;
}
