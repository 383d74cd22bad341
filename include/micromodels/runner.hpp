// Runs a Pipeline: consumers, queues, order, back-pressure, failures, live scaling.
#pragma once

#include <functional>
#include <map>
#include <memory>
#include <string>
#include <string_view>

#include "micromodels/metrics.hpp"
#include "micromodels/pipeline.hpp"
#include "micromodels/registry.hpp"

namespace micromodels {

namespace detail {
class Engine;
class Autoscaler;
}

/// Runs a pipeline in this process on bounded in-memory queues.
///
/// Threads: CPU-bound stages share a pool of worker threads (one per core by default); each
/// consumer is a slot on that pool, and a packet runs straight on into the next stage on the same
/// thread when it can. Blocking stages get one thread per consumer.
/// Guarantees: every packet a source produces is processed by every stage downstream, or counted
/// as failed or dropped (dropped only by an overflow or join policy the pipeline chose). Stages
/// marked `ordered` or `state: per_stream` see each stream in seq order.
/// Shutdown: `stop()` stops the sources and lets in-flight packets drain; the destructor stops
/// and waits.
///
///   Runner runner(Pipeline::from_yaml_file("pipelines/example.yaml"));
///   runner.start();
///   runner.scale("work", 4);   // while it runs
///   runner.wait();
///   std::cout << runner.metrics().to_table();
class Runner {
 public:
  /// Validates the pipeline and builds every stage (loading models). Throws ConfigError.
  /// `registry` must outlive the runner: `swap` builds new instances from it.
  explicit Runner(const Pipeline& pipeline, const Registry& registry = Registry::global());
  ~Runner();
  Runner(const Runner&) = delete;
  Runner& operator=(const Runner&) = delete;

  /// Starts the sources (and the autoscaler, when the pipeline has `autoscale:`).
  void start();
  /// Blocks until every source has ended and every packet is retired (or `stop` has drained).
  void wait();
  /// Waits at most `timeout_ms`; true when finished.
  bool wait_for(double timeout_ms);
  /// Stops the sources; in-flight packets still drain. Safe from any thread, idempotent.
  void stop();
  /// Sets a stage's consumer count while running. New consumers take packets at once; removed
  /// ones finish their current packet. Throws std::invalid_argument for an unknown stage or a
  /// count below 1.
  void scale(std::string_view stage, int consumers);
  /// Replaces a stage's instance while running: the new one, with `params` changed (values as
  /// text, like --set) and `type` changed when not empty, is built and its model loaded beside
  /// the old one, then takes over atomically. Packets in progress finish on the old instance;
  /// none is lost, duplicated or reordered. State the old instance kept per stream is not carried
  /// over. Throws std::invalid_argument for an unknown stage or a source, and ConfigError when the
  /// new configuration is invalid or fails to build: the old instance then keeps running.
  void swap(std::string_view stage, const std::map<std::string, std::string>& params,
            std::string_view type = {});

  [[nodiscard]] bool finished() const;
  [[nodiscard]] MetricsSnapshot metrics() const;
  /// Packets the sources announced in total (0 when unknown) and packets retired so far.
  [[nodiscard]] std::uint64_t expected_packets() const;
  [[nodiscard]] std::uint64_t retired_packets() const;

 private:
  std::unique_ptr<detail::Engine> engine_;
  Pipeline pipeline_;
  const Registry& registry_;
  std::unique_ptr<detail::Autoscaler> autoscaler_;  // after engine_: stops before it
};

}  // namespace micromodels
