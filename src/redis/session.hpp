// One process's part in a distributed run on Redis: the address, the run and pipeline version,
// the names of its keys, the connection that writes in order, and what to do when Redis goes
// away. Outlets, inlets and the keeper share it.
#pragma once

#include <atomic>
#include <cstdint>
#include <exception>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include <spdlog/spdlog.h>

#include "wire/hop_codec.hpp"
#include "micromodels/plan.hpp"
#include "micromodels/redis.hpp"
#include "micromodels/transport.hpp"
#include "redis_connection.hpp"
#include "redis_url.hpp"
#include "runtime/seq_set.hpp"
#include "stream_names.hpp"
#include "writer.hpp"

namespace micromodels::detail {

class RedisInlet;
class RedisOutlet;

class Session {
 public:
  explicit Session(RedisOptions options);
  Session(const Session&) = delete;
  Session& operator=(const Session&) = delete;

  /// Checks the options against the plan and connects; throws ConfigError or BrokerError.
  void bind(const Plan& plan);

  const RedisOptions options;
  RedisUrl url;  // options.url, or the pipeline's broker (set by bind)
  std::unique_ptr<StreamNames> names;
  WireImages images;
  const Plan* plan = nullptr;
  std::uint64_t version = 0;
  std::string consumer;  // host:pid, and .N for a second transport in one process
  Writer writer;

  /// Partitions of a stage's queue: several for a stage that gathers each stream in one process
  /// (ordered, per_stream, joins), one otherwise and for sinks.
  [[nodiscard]] int partitions(const PlanStage& stage) const;
  /// The stream that holds `stream`'s packets for `stage`.
  [[nodiscard]] std::string key(const PlanStage& stage, std::uint32_t stream) const;
  [[nodiscard]] std::vector<std::string> keys(const PlanStage& stage) const;
  /// "run" is the process that feeds the sources and collects the sinks.
  [[nodiscard]] bool is_run() const noexcept { return options.role == RedisOptions::Role::run; }

  // --- the run
  /// The run this process works for (its own, for the run; the latest seen, for a worker).
  [[nodiscard]] std::uint64_t run() const noexcept { return run_.load(); }
  /// A worker asks Redis which run is on (and its pipeline version) when it meets another run
  /// id; true when `run` is the current one.
  bool is_current_run(Connection& conn, std::uint64_t run);
  /// The version of the current run, as recorded by the run process (0 when none).
  [[nodiscard]] std::uint64_t run_version() const noexcept { return run_version_.load(); }
  /// Starts a new run: resets the pipeline's keys in Redis, records the run and version.
  void begin_run(Connection& conn);

  // --- failure policy: a lost connection is retried for reconnect_s; the run then checks that
  // Redis still holds its run (it may have restarted without persistence) and stops the run
  // with a clear error otherwise, so that nothing is lost silently.
  [[nodiscard]] std::unique_ptr<Connection> connect() const;
  /// Waits for Redis to come back; false when the run must stop (the error was reported).
  bool reconnect(const BrokerError& error, std::string_view who);
  /// Stops the run with `error` (Run::wait_for rethrows it).
  void fail(const std::exception_ptr& error);
  [[nodiscard]] bool stopping() const noexcept { return stopping_.load(); }
  void set_host(Transport::Host* host) { host_ = host; }
  Transport::Host* host() const noexcept { return host_; }
  void stop() { stopping_ = true; }

  // --- what the keeper and finished() need
  /// A source put or skipped (stream, seq): it produced that many packets of the stream.
  void produced(std::size_t source, std::uint32_t stream, std::uint64_t seq);
  [[nodiscard]] std::map<std::uint32_t, std::uint64_t> produced_by(
      const std::vector<std::size_t>& sources) const;
  std::atomic<std::uint64_t> packets_sent{0};  // for messages: packets the sources sent

  std::mutex parts_mutex;
  std::vector<RedisInlet*> inlets;    // under parts_mutex
  std::vector<RedisOutlet*> outlets;  // under parts_mutex
  std::set<std::size_t> served;       // stages served here, under parts_mutex
  std::atomic<int> outlets_waiting{0};  // outlets waiting for room (probed by the writer)

 private:
  std::atomic<std::uint64_t> run_{0};
  std::atomic<std::uint64_t> run_version_{0};
  std::mutex run_mutex_;
  std::atomic<bool> stopping_{false};
  Transport::Host* host_ = nullptr;
  mutable std::mutex produced_mutex_;
  std::map<std::size_t, std::map<std::uint32_t, std::uint64_t>> produced_;
};

/// Messages go to stderr (through spdlog's "micromodels.redis" logger), so that stdout holds
/// only the tables and numbers a script may read.
spdlog::logger& log();

}  // namespace micromodels::detail
