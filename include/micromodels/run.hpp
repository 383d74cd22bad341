// A running pipeline, as `micromodels run`, `worker`, the control endpoint and the autoscaler
// drive it, whatever runs it.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <string_view>

#include "micromodels/metrics.hpp"
#include "micromodels/packet_tap.hpp"

namespace micromodels {

/// How far a run is: packets out of the packets its sources will produce.
struct Progress {
  std::uint64_t done = 0;      // packets out (MetricsSnapshot::packets_out)
  std::uint64_t expected = 0;  // what the sources announced; 0 when unknown (or none here)
};

/// A pipeline running in this process: the whole of it, or the stages this process serves of
/// a distributed run. `Runner` is the implementation; the control endpoint (ControlServer)
/// serves any Run.
///
///   Runner runner(pipeline);             // a Run
///   ControlServer control(runner, {.listen = "127.0.0.1:0"});
///   runner.start();
///   while (!runner.wait_for(100)) show(runner.progress());
class Run {
 public:
  virtual ~Run() = default;
  /// Starts the sources and consumers.
  virtual void start() = 0;
  /// Waits at most `timeout_ms`; true once finished. A run that failed (its broker lost the
  /// queues, say) rethrows that error here.
  virtual bool wait_for(double timeout_ms) = 0;
  /// Stops the sources (a worker: takes nothing more); in-flight packets still drain.
  /// Safe from any thread, idempotent.
  virtual void stop() = 0;
  /// Sets a stage's consumer count in this process. Throws std::invalid_argument for an unknown
  /// stage, a stage not served here, a source, or a count outside 1..1024.
  virtual void scale(std::string_view stage, int consumers) = 0;
  /// Replaces a stage's instance in this process: `params` changed (values as text, like
  /// --set) and `type` changed when not empty. Throws std::invalid_argument (unknown stage,
  /// a source) or ConfigError (the new configuration is invalid or fails to build); the old
  /// instance then keeps running.
  virtual void swap(std::string_view stage, const std::map<std::string, std::string>& params,
                    std::string_view type = {}) = 0;
  [[nodiscard]] virtual MetricsSnapshot metrics() const = 0;
  [[nodiscard]] virtual Progress progress() const = 0;
  /// The packets leaving `stage` in this process, for a live preview: what it emits, or, for a
  /// last stage (a sink), the packets that leave the pipeline there. The tap lives as long as
  /// the run and closes when the run ends. Throws std::invalid_argument for an unknown stage or
  /// one not served here.
  [[nodiscard]] virtual PacketTap& tap(std::string_view stage) = 0;

  /// Waits until finished.
  void wait() {
    while (!wait_for(1000)) {
    }
  }
};

}  // namespace micromodels
