// Builds and runs a two-stage pipeline against an installed micromodels:
//
//   synthetic.source (100 packets) ---> consumer.count
//
// Exits 0 when every packet arrived and the metrics agree.

#include <atomic>
#include <cstdint>
#include <iostream>
#include <memory>
#include <vector>

#include "micromodels/micromodels.hpp"

namespace {

class Count final : public micromodels::Stage {
 public:
  explicit Count(std::shared_ptr<std::atomic<std::uint64_t>> seen) : seen_(std::move(seen)) {}
  void process(micromodels::Packet /*packet*/, std::vector<micromodels::Packet>& /*out*/) override {
    ++*seen_;
  }

 private:
  std::shared_ptr<std::atomic<std::uint64_t>> seen_;
};

}  // namespace

int main() {
  constexpr std::int64_t kCount = 100;
  auto seen = std::make_shared<std::atomic<std::uint64_t>>(0);

  micromodels::Registry registry = micromodels::Registry::with_builtins();
  registry.add({.name = "consumer.count", .make = [seen](const micromodels::Params&) {
                  return std::make_unique<Count>(seen);
                }});

  micromodels::Pipeline pipeline("consumer");
  pipeline.add({.name = "source",
                .type = "synthetic.source",
                .params = {{"count", micromodels::ParamValue{kCount}}}});
  pipeline.add({.name = "count", .type = "consumer.count"});

  micromodels::Runner runner(pipeline, registry);
  runner.start();
  runner.wait();

  const micromodels::MetricsSnapshot metrics = runner.metrics();
  const micromodels::StageMetrics* counted = metrics.stage("count");
  std::cout << "consumer: " << *seen << " packets seen, " << metrics.packets_in << " in, "
            << metrics.packets_out << " out\n";
  const auto expected = static_cast<std::uint64_t>(kCount);
  if (*seen != expected || counted == nullptr || counted->processed != expected ||
      metrics.packets_in != expected || metrics.packets_out != expected) {
    std::cerr << "consumer: counts disagree\n";
    return 1;
  }
  std::cout << "consumer: ok\n";
  return 0;
}
