// scale_while_running: give a slow stage more consumers while the pipeline runs.
//
//   +------------------+      +--------------------------+
//   | source           | ---> | work  x1  -->  x4        |
//   | synthetic.source |      | model.sleep, 5 ms each   |
//   +------------------+      +--------------------------+
//
// `work` sleeps 5 ms per packet, so one consumer manages about 200 packets per second. After
// runner.scale("work", 4) the new consumers take packets at once, with no restart and no packet
// lost, and throughput rises about fourfold: a sleeping (blocking) stage does not need cores.

#include <chrono>
#include <cstdint>
#include <iostream>
#include <thread>

#include "micromodels/micromodels.hpp"

namespace {

using Clock = std::chrono::steady_clock;

std::uint64_t processed(const micromodels::Runner& runner, const char* stage) {
  const micromodels::MetricsSnapshot snapshot = runner.metrics();
  const micromodels::StageMetrics* metrics = snapshot.stage(stage);
  return metrics == nullptr ? 0 : metrics->processed;
}

/// Packets per second that `stage` processes over the next `window`.
double throughput(const micromodels::Runner& runner, const char* stage,
                  std::chrono::milliseconds window) {
  const std::uint64_t before = processed(runner, stage);
  const auto start = Clock::now();
  std::this_thread::sleep_for(window);
  const std::uint64_t after = processed(runner, stage);
  return static_cast<double>(after - before) /
         std::chrono::duration<double>(Clock::now() - start).count();
}

}  // namespace

int main() {
  micromodels::Pipeline pipeline("scale_while_running");
  // More packets than the demo will take: stop() ends the source, and what is queued drains.
  pipeline.add({.name = "source",
                .type = "synthetic.source",
                .params = {{"count", micromodels::ParamValue{std::int64_t{1'000'000}}}}});
  pipeline.add({.name = "work",
                .type = "model.sleep",
                .params = {{"service_ms", micromodels::ParamValue{5.0}}},
                .consumers = 1,
                .queue_capacity = 16});  // a short queue keeps the drain after stop() short

  const micromodels::Registry registry = micromodels::Registry::with_builtins();
  micromodels::Runner runner(pipeline, registry);
  runner.start();
  std::this_thread::sleep_for(std::chrono::milliseconds(100));  // let it settle

  const auto window = std::chrono::milliseconds(500);
  const double before = throughput(runner, "work", window);
  runner.scale("work", 4);
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  const double after = throughput(runner, "work", window);

  runner.stop();
  runner.wait();
  std::cout << "work x1: " << before << " packets/s\n"
            << "work x4: " << after << " packets/s (" << after / before << "x)\n\n"
            << runner.metrics().to_table() << '\n';
  // Four sleeping consumers should give close to 4x; allow for a loaded CI machine.
  if (!(after > 2.0 * before)) {
    std::cerr << "scaling up did not raise throughput enough\n";
    return 1;
  }
  return 0;
}
