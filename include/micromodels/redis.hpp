// Runs a pipeline across processes and machines on Redis Streams.
#pragma once

#include <cstdint>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "micromodels/metrics.hpp"
#include "micromodels/pipeline.hpp"
#include "micromodels/registry.hpp"

namespace micromodels {

/// Redis could not be reached, or lost the run's queues. `what()` names host:port and what to do.
class BrokerError : public std::runtime_error {
 public:
  enum class Kind {
    unreachable,  // no connection (at start, or for longer than the reconnect window)
    lost,         // Redis came back without this run's queues (restarted without persistence)
  };
  BrokerError(Kind kind, const std::string& message) : std::runtime_error(message), kind_(kind) {}
  [[nodiscard]] Kind kind() const noexcept { return kind_; }

 private:
  Kind kind_;
};

/// How a process takes part in a distributed run.
struct RedisOptions {
  enum class Role {
    run,     // feeds the sources, collects the sinks (in order, deduplicated), serves stages
    worker,  // serves the listed stages until stopped
  };
  enum class Serve {
    missing,  // run: serve every stage that no live worker serves (checked every second)
    all,      // run: serve every stage here too
    none,     // run: serve no stage; workers do all the work
  };
  Role role = Role::run;
  std::string url{};                // redis://host:port[/db]; empty: the pipeline's broker
  std::vector<std::string> stages{};  // worker: the stages to serve
  Serve serve = Serve::missing;
  int consumers = 0;                // worker: consumers per served stage; 0: the pipeline's
  int max_deliveries = 3;           // a packet delivered this often without success: dead letter
  double reclaim_idle_ms = 1000;    // floor of the idle time after which pending work is reclaimed
  double reconnect_s = 10;          // how long to retry a lost connection; 0: for ever
  std::string wire_images{};        // how this process sends images: raw, png or jpeg;
                                    // empty: the pipeline's `wire.images` (raw by default)
  int jpeg_quality = 0;             // 1..100, for jpeg; 0: the pipeline's `wire.jpeg_quality`
};

/// Bytes one hop carried, summed over every process of the run.
struct HopBytes {
  std::string from{};
  std::string to{};
  std::uint64_t packets = 0;
  std::uint64_t bytes = 0;
};

/// The distributed counterpart of Runner: each stage's queue is a Redis stream with one
/// consumer group (named after the stage). Delivery is at least once; sinks see every packet
/// exactly once, in (stream, seq) order. See docs/distributed.md for the guarantees.
///
///   RedisRunner run(pipeline, {.url = "redis://127.0.0.1:6379"});        // micromodels run
///   run.start();
///   while (!run.wait_for(100)) {}                                         // throws BrokerError
///   RedisRunner worker(pipeline, {.role = RedisOptions::Role::worker,
///                                 .url = "redis://10.0.0.5:6379", .stages = {"generate"}});
class RedisRunner {
 public:
  /// Connects, checks the pipeline and the options and builds the stages this process runs.
  /// Throws ConfigError for a wrong URL or stage list, BrokerError when Redis is unreachable.
  RedisRunner(const Pipeline& pipeline, RedisOptions options,
              const Registry& registry = Registry::global());
  ~RedisRunner();
  RedisRunner(const RedisRunner&) = delete;
  RedisRunner& operator=(const RedisRunner&) = delete;

  void start();
  /// True once finished: a run when every sink has every packet; a worker once stopped.
  /// Throws BrokerError when the run failed because of Redis.
  bool wait_for(double timeout_ms);
  /// Run: stops the sources, then drains. Worker: finishes the current packets and leaves.
  void stop();

  [[nodiscard]] MetricsSnapshot metrics() const;
  /// Bytes per hop over all processes (read from Redis).
  [[nodiscard]] std::vector<HopBytes> hop_bytes() const;
  [[nodiscard]] std::uint64_t expected_packets() const;
  [[nodiscard]] std::uint64_t retired_packets() const;
  /// Packets that went to the dead-letter stream during this run (all processes).
  [[nodiscard]] std::uint64_t dead_lettered() const;
  /// Stages this process serves now (a run may add stages while it runs).
  [[nodiscard]] std::vector<std::string> served_stages() const;

  class Impl;

 private:
  std::unique_ptr<Impl> impl_;
};

/// One stage's queue as Redis sees it.
struct StageStatus {
  std::string pipeline{};
  std::string stage{};
  std::uint64_t length = 0;    // entries in the stream(s)
  std::uint64_t lag = 0;       // entries not yet delivered to any consumer (the backlog)
  std::uint64_t pending = 0;   // delivered, not yet acknowledged
  std::uint64_t consumers = 0; // live consumers (heartbeat within the last 5 s)
  double rate = 0;             // entries delivered per second over the sampling interval
};

/// Every pipeline's stages on the Redis at `url` (or just `pipeline` when not empty), sampled
/// twice `sample_s` apart for the rate. Throws BrokerError when unreachable.
[[nodiscard]] std::vector<StageStatus> redis_status(const std::string& url,
                                                    const std::string& pipeline = {},
                                                    double sample_s = 1.0);
[[nodiscard]] std::string status_table(const std::vector<StageStatus>& status);
[[nodiscard]] std::string status_json(const std::vector<StageStatus>& status);

}  // namespace micromodels
