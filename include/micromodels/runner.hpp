// Runs a Pipeline: consumers, queues, order, back-pressure, failures, live scaling.
#pragma once

#include <map>
#include <memory>
#include <string>
#include <string_view>

#include "micromodels/metrics.hpp"
#include "micromodels/pipeline.hpp"
#include "micromodels/registry.hpp"
#include "micromodels/run.hpp"
#include "micromodels/transport.hpp"

namespace micromodels {

namespace detail {
class Engine;
class Autoscaler;
}

/// Runs a pipeline in this process: all of it on bounded in-memory queues, or, with a
/// transport, the stages this process serves of a run across processes (Redis: micromodels/redis.hpp).
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
class Runner final : public Run {
 public:
  /// Validates the pipeline and builds every stage (loading models). Throws ConfigError, also
  /// for a pipeline whose `broker` is not "memory" (it needs the constructor below).
  /// `registry` must outlive the runner: `swap` builds new instances from it.
  explicit Runner(const Pipeline& pipeline, const Registry& registry = Registry::global());
  /// The stages `transport` says this process serves. Throws ConfigError, also for a pipeline
  /// that needs what the transport cannot do, and what `Transport::bind` throws.
  Runner(const Pipeline& pipeline, std::unique_ptr<Transport> transport,
         const Registry& registry = Registry::global());
  ~Runner() override;
  Runner(const Runner&) = delete;
  Runner& operator=(const Runner&) = delete;

  /// Starts the sources (and the autoscaler, when the pipeline has `autoscale:`).
  void start() override;
  bool wait_for(double timeout_ms) override;
  void stop() override;
  /// New consumers take packets at once; removed ones finish their current packet.
  void scale(std::string_view stage, int consumers) override;
  /// The new instance is built (its model loaded) beside the old one, then takes over
  /// atomically. Packets in progress finish on the old instance; none is lost, duplicated or
  /// reordered. State the old instance kept per stream is not carried over.
  void swap(std::string_view stage, const std::map<std::string, std::string>& params,
            std::string_view type = {}) override;
  [[nodiscard]] MetricsSnapshot metrics() const override;
  [[nodiscard]] Progress progress() const override;
  [[nodiscard]] PacketTap& tap(std::string_view stage) override;

  [[nodiscard]] bool finished() const;
  /// The transport given to the constructor, or null.
  [[nodiscard]] Transport* transport() const noexcept { return transport_.get(); }

 private:
  class Host;
  void finish();  // with a transport: stop everything here, take nothing more
  std::unique_ptr<const Plan> plan_;      // outlives everything below, which reads it
  std::unique_ptr<Transport> transport_;  // outlives the engine, which holds its inlets and outlets
  std::unique_ptr<Host> host_;
  std::unique_ptr<detail::Engine> engine_;
  std::unique_ptr<detail::Autoscaler> autoscaler_;  // after engine_: stops before it
  bool transport_stopped_ = false;
};

}  // namespace micromodels
