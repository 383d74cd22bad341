// Builds and runs pipelines against an installed micromodels, with each of its libraries:
//
//   micromodels::core     synthetic.source (100 packets) ---> consumer.count, in this process
//   micromodels::control  the same run with the control endpoint listening on a free port
//   micromodels::redis    the same pipeline through Redis streams when MICROMODELS_REDIS_URL is
//                         set (the test command starts a redis-server); otherwise an unreachable
//                         Redis must give BrokerError
//   micromodels::vision   its stage types registered, video.source and video.sink among them
//
// Exits 0 when every packet arrived and the metrics agree.

#include <atomic>
#include <cstdint>
#include <cstdlib>
#include <iostream>
#include <memory>
#include <string>
#include <vector>

#include "micromodels/control/control_server.hpp"
#include "micromodels/micromodels.hpp"
#ifdef CONSUMER_HAS_REDIS
#include "micromodels/redis.hpp"
#endif
#ifdef CONSUMER_HAS_VISION
#include "micromodels/vision/vision_stages.hpp"
#endif

namespace {

constexpr std::int64_t kCount = 100;

class Count final : public micromodels::Stage {
 public:
  explicit Count(std::shared_ptr<std::atomic<std::uint64_t>> seen) : seen_(std::move(seen)) {}
  void process(micromodels::Packet /*packet*/, std::vector<micromodels::Packet>& /*out*/) override {
    ++*seen_;
  }

 private:
  std::shared_ptr<std::atomic<std::uint64_t>> seen_;
};

micromodels::Pipeline counting_pipeline() {
  micromodels::Pipeline pipeline("consumer");
  pipeline.add({.name = "source",
                .type = "synthetic.source",
                .params = {{"count", micromodels::ParamValue{kCount}}}});
  pipeline.add({.name = "count", .type = "consumer.count"});
  return pipeline;
}

bool check(const char* what, std::uint64_t seen, const micromodels::MetricsSnapshot& metrics) {
  const micromodels::StageMetrics* counted = metrics.stage("count");
  std::cout << "consumer (" << what << "): " << seen << " packets seen, " << metrics.packets_in
            << " in, " << metrics.packets_out << " out\n";
  const auto expected = static_cast<std::uint64_t>(kCount);
  if (seen != expected || counted == nullptr || counted->processed != expected) {
    std::cerr << "consumer (" << what << "): counts disagree\n";
    return false;
  }
  return true;
}

}  // namespace

int main() {
  auto seen = std::make_shared<std::atomic<std::uint64_t>>(0);
  micromodels::Registry registry = micromodels::Registry::with_builtins();
  registry.add({.name = "consumer.count", .make = [seen](const micromodels::Params&) {
                  return std::make_unique<Count>(seen);
                }});

  {  // core and control
    micromodels::Runner runner(counting_pipeline(), registry);
    micromodels::ControlServer control(runner, {.listen = "127.0.0.1:0"});
    std::cout << "consumer: control endpoint on " << control.url() << '\n';
    runner.start();
    runner.wait();
    const micromodels::MetricsSnapshot metrics = runner.metrics();
    if (control.port() <= 0 || !check("in process", *seen, metrics) ||
        metrics.packets_in != static_cast<std::uint64_t>(kCount) ||
        metrics.packets_out != static_cast<std::uint64_t>(kCount)) {
      return 1;
    }
  }
#ifdef CONSUMER_HAS_REDIS
  seen->store(0);
  const char* url = std::getenv("MICROMODELS_REDIS_URL");
  if (url != nullptr && *url != '\0') {
    micromodels::Runner run(
        counting_pipeline(),
        std::make_unique<micromodels::RedisTransport>(micromodels::RedisOptions{.url = url}),
        registry);
    run.start();
    while (!run.wait_for(100)) {
    }
    if (!check("on Redis", *seen, run.metrics()) ||
        run.progress().done != static_cast<std::uint64_t>(kCount)) {
      return 1;
    }
  } else {
    try {
      micromodels::Runner run(counting_pipeline(),
                              std::make_unique<micromodels::RedisTransport>(
                                  micromodels::RedisOptions{.url = "redis://127.0.0.1:1"}),
                              registry);
      std::cerr << "consumer: no BrokerError for a Redis that is not there\n";
      return 1;
    } catch (const micromodels::BrokerError& error) {
      std::cout << "consumer (no Redis): " << error.what() << '\n';
      if (error.kind() != micromodels::BrokerError::Kind::unreachable) return 1;
    }
  }
#endif
#ifdef CONSUMER_HAS_VISION
  micromodels::vision::register_stages(registry);
  for (const char* name : {"video.source", "video.sink", "face.detect"}) {
    const micromodels::StageType* type = registry.find(name);
    if (type == nullptr) {
      std::cerr << "consumer (vision): no stage type " << name << '\n';
      return 1;
    }
    std::cout << "consumer (vision): " << name << (type->is_source() ? " (source)" : "") << '\n';
  }
  if (!registry.find("video.source")->is_source()) return 1;
#endif
  std::cout << "consumer: ok\n";
  return 0;
}
