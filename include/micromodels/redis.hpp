// Runs a pipeline across processes and machines: Redis Streams as the transport.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include "micromodels/metrics.hpp"
#include "micromodels/pipeline.hpp"
#include "micromodels/transport.hpp"

namespace micromodels {

/// Redis could not be reached, refused this process, or lost the run's queues. `what()` names
/// host:port and what to do, never the password.
class BrokerError : public std::runtime_error {
 public:
  enum class Kind {
    unreachable,  // no connection (at start, or for longer than the reconnect window)
    refused,      // a wrong password, or the ACL forbids a command or key: retrying cannot help
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
  std::string url{};                // redis://[user@]host:port[/db]; the password comes from
                                    // MICROMODELS_REDIS_PASSWORD(_FILE)
  std::vector<std::string> stages{};  // worker: the stages to serve
  Serve serve = Serve::missing;
  int max_deliveries = 3;           // delivered this often without being settled: dead letter
  double reclaim_idle_ms = 1000;    // pending this long (its process died): taken over
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
  std::uint64_t bytes = 0;        // the entries (with images that travel in them)
  std::uint64_t image_bytes = 0;  // images stored once by reference (wire.image_refs) for this hop
};

namespace detail {
class Session;
class Keeper;
}

/// Redis Streams as the transport between the processes of one run: each stage's queue is a
/// stream with one consumer group, named after the stage. Delivery is at least once between
/// stages; sinks see every packet exactly once, in (stream, seq) order when ordered. See
/// docs/distributed.md for the guarantees and docs/architecture.md for how it fits the engine.
///
///   Runner run(pipeline, std::make_unique<RedisTransport>(RedisOptions{.url = "redis://10.0.0.5:6379"}));
///   run.start();
///   while (!run.wait_for(100)) {}                               // throws BrokerError
///   Runner worker(pipeline, std::make_unique<RedisTransport>(RedisOptions{
///       .role = RedisOptions::Role::worker, .url = "redis://10.0.0.5:6379", .stages = {"generate"}}));
class RedisTransport final : public Transport {
 public:
  /// Throws ConfigError for a URL that is not redis://host[:port][/db].
  explicit RedisTransport(RedisOptions options);
  ~RedisTransport() override;
  RedisTransport(const RedisTransport&) = delete;
  RedisTransport& operator=(const RedisTransport&) = delete;

  [[nodiscard]] std::string name() const override;
  /// Everything the engine does, live mode included.
  [[nodiscard]] Capabilities capabilities() const override { return {.live = true}; }
  /// Throws ConfigError for a wrong stage list, BrokerError when Redis is unreachable.
  void bind(const Plan& plan) override;
  [[nodiscard]] bool serves(const PlanStage& stage) const override;
  std::unique_ptr<Inlet> inlet(const PlanStage& stage) override;
  std::unique_ptr<Outlet> outlet(const PlanStage& from, const PlanStage* to,
                                 std::size_t input) override;
  void start(Host& host) override;
  [[nodiscard]] bool finished() const override;
  void stop_taking() override;
  void stop() override;
  /// Bytes per hop (all processes), the run's dead letters, and `round_trip()`.
  [[nodiscard]] std::string report() const override;
  /// "round trip to Redis from this process: ..." when Redis is 2 ms or more away (a worker's
  /// report); empty otherwise.
  [[nodiscard]] std::string round_trip() const;
  /// Pauses for Redis's memory in this process: `memory_pauses` (begun) and `memory_paused_ms`
  /// (the one under way included).
  [[nodiscard]] std::map<std::string, std::uint64_t> events() const override;

  /// Bytes per hop over all processes (read from Redis).
  [[nodiscard]] std::vector<HopBytes> hop_bytes() const;
  /// Entries that went to the dead-letter stream `mm:{P}:dead` during this run (all processes).
  [[nodiscard]] std::uint64_t dead_lettered() const;
  /// The stages between sources and sinks that other processes served, wholly or in part,
  /// with what processed, failed, dropped (and by reason) and dead_lettered count over every
  /// process that served them, this one included (read from Redis; each process adds its counts
  /// every 250 ms). The other fields are empty.
  [[nodiscard]] std::vector<StageMetrics> served_elsewhere() const;
  /// The stages between sources and sinks that this process serves now (a run may add some
  /// while it runs).
  [[nodiscard]] std::vector<std::string> served() const;

 private:
  std::unique_ptr<detail::Session> session_;
  std::unique_ptr<detail::Keeper> keeper_;
  bool started_ = false;
};

/// One stage's queue as Redis sees it.
struct StageStatus {
  std::string pipeline{};
  std::string stage{};
  std::uint64_t length = 0;    // entries in the stream(s)
  std::uint64_t lag = 0;       // entries not yet delivered to any consumer (the backlog)
  std::uint64_t pending = 0;   // delivered, not yet acknowledged
  std::uint64_t consumers = 0; // live consumers (heartbeat within the last 5 s)
  std::optional<double> rate{};  // entries delivered per second over the sampling interval
                                 // (none without one)
  // This run, over every process that serves the stage (each adds its counts every 250 ms):
  std::uint64_t processed = 0;
  std::uint64_t failed = 0;
  std::uint64_t dropped = 0;
};

/// Every pipeline's stages on the Redis at `url` (or just `pipeline` when not empty), sampled
/// twice `sample_s` apart for the rate. Throws BrokerError when unreachable.
[[nodiscard]] std::vector<StageStatus> redis_status(const std::string& url,
                                                    const std::string& pipeline = {},
                                                    double sample_s = 1.0);
/// One live process of a pipeline on Redis (a worker, or the run process), from its heartbeat.
struct ProcessStatus {
  std::string id{};                                 // host:pid
  std::map<std::string, std::uint64_t> stages{};    // the stages it serves: their consumers there
  double heartbeat_age_s = 0;                       // since its last heartbeat (one a second)
};

/// The live processes of `pipeline` on the Redis at `url`, by id. Throws BrokerError when
/// unreachable.
[[nodiscard]] std::vector<ProcessStatus> redis_processes(const std::string& url,
                                                      const std::string& pipeline);
[[nodiscard]] std::string status_table(const std::vector<StageStatus>& status);
[[nodiscard]] std::string status_json(const std::vector<StageStatus>& status);

}  // namespace micromodels
