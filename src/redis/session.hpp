// One process's part in a distributed run on Redis, shared by its outlets, inlets and keeper:
// the address, the run and pipeline version, the key names, the connection that writes in
// order, and what to do when Redis goes away.
#pragma once

#include <atomic>
#include <cstdint>
#include <exception>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <vector>

#include <spdlog/spdlog.h>

#include "micromodels/redis.hpp"

#include "image_store.hpp"
#include "memory_gate.hpp"
#include "redis_connection.hpp"
#include "stream_names.hpp"
#include "wire/hop_codec.hpp"
#include "writer.hpp"

namespace micromodels::detail {

class RedisInlet;
class RedisOutlet;

class Session {
 public:
  explicit Session(RedisOptions options);
  /// Checks the options against the plan and connects; throws ConfigError or BrokerError.
  void bind(const Plan& plan);

  const RedisOptions options;
  RedisUrl url;  // options.url, or the pipeline's broker
  std::unique_ptr<StreamNames> names;
  WireImages images;
  bool image_refs = true;  // wire.image_refs: images this process sends go by reference
  std::unique_ptr<ImageStore> image_store;  // stores them, fetches what arrives by reference
  const Plan* plan = nullptr;
  std::uint64_t version = 0;
  std::string consumer;  // host:pid (.N for a second transport in one process)
  Writer writer;
  MemoryGate memory{*this};  // Redis near its maxmemory: what holds back

  /// The streams of a stage: a stage that gathers each stream in one process (ordered,
  /// per_stream, joins) has `partitions:` streams, one per stream id modulo their number; other
  /// stages, and the sinks (read by the run process alone), one.
  [[nodiscard]] std::vector<std::string> keys(const PlanStage& stage) const;
  [[nodiscard]] bool is_run() const noexcept { return options.role == RedisOptions::Role::run; }

  // The run: the run process's own; for a worker, the latest it saw (with its version).
  [[nodiscard]] std::uint64_t run() const noexcept { return run_.load(); }
  [[nodiscard]] std::uint64_t run_version() const noexcept { return run_version_.load(); }
  /// A worker reads the run record when it meets another run id; true when `run` is current.
  bool is_current_run(Connection& conn, std::uint64_t run);
  /// Resets the pipeline's keys and records a new run with this process's version.
  void begin_run(Connection& conn);
  /// The run process: true while Redis's run record is still this run's. Otherwise (another run
  /// of the pipeline reset its queues, or its keys were deleted) this run fails (kind lost;
  /// nothing of a new run is taken) and this returns false.
  bool holds_run(Connection& conn);

  // Failure policy: a lost connection is retried for reconnect_s (0: for ever). The run process
  // then checks that Redis still holds its run (it may have restarted without persistence) and
  // stops with a clear error otherwise: never a silent loss.
  [[nodiscard]] std::unique_ptr<Connection> connect() const {
    return std::make_unique<Connection>(url);
  }
  /// False when the run must stop (the error went to the host).
  bool reconnect(const BrokerError& error, std::string_view who);
  /// The skeleton of every loop that talks to Redis (the writer's, the keeper's, an inlet's):
  /// `work(conn, fresh)` on `conn`, connected first when there is none (`fresh`). When Redis is
  /// lost, the connection goes and this waits for Redis to come back (`reconnect`): true to go
  /// on (the next call connects again), false when the run must stop.
  template <class Work>
  bool attempt(std::unique_ptr<Connection>& conn, std::string_view who, Work&& work) {
    try {
      const bool fresh = !conn;
      if (fresh) conn = connect();
      work(*conn, fresh);
      return true;
    } catch (const BrokerError& error) {
      conn.reset();
      return reconnect(error, who);
    }
  }
  void fail(const std::exception_ptr& error);
  [[nodiscard]] bool stopping() const noexcept { return stopping_.load(); }
  void stop() { stopping_ = true; }
  void set_host(Transport::Host* host) { host_ = host; }
  [[nodiscard]] Transport::Host* host() const noexcept { return host_; }

  /// A source sent (stream, seq): for finished(), the count of each stream per source.
  void produced(std::size_t source, std::uint32_t stream, std::uint64_t seq);
  [[nodiscard]] std::map<std::uint32_t, std::uint64_t> produced_by(
      const std::vector<std::size_t>& sources) const;

  std::mutex parts_mutex;  // guards the three below
  std::vector<RedisInlet*> inlets;
  std::vector<RedisOutlet*> outlets;
  std::set<std::size_t> served;  // stages served here (announced by the keeper)
  /// A copy of `inlets`, for a thread that calls into them.
  [[nodiscard]] std::vector<RedisInlet*> inlets_now() {
    std::lock_guard lock(parts_mutex);
    return inlets;
  }
  std::atomic<int> outlets_waiting{0};  // outlets waiting for room, probed by the writer
  // Counted for the metrics (RedisTransport::events): connections back after Redis was lost,
  // and per_stream partitions whose lease this process found gone.
  std::atomic<std::uint64_t> reconnects{0};
  std::atomic<std::uint64_t> leases_lost{0};

 private:
  /// "N of M packets reached the sinks", for a run that cannot finish.
  [[nodiscard]] std::string reached() const;
  /// Says which joins would drop the parts a dead worker held (their timeout is shorter).
  void warn_short_joins() const;

  std::atomic<std::uint64_t> run_{0};
  std::atomic<std::uint64_t> run_version_{0};
  std::mutex run_mutex_;
  std::atomic<bool> stopping_{false};
  Transport::Host* host_ = nullptr;
  mutable std::mutex produced_mutex_;
  std::map<std::size_t, std::map<std::uint32_t, std::uint64_t>> produced_;
};

/// Makes each consumer group (stream, group) of `groups` (and its stream) unless it exists, in
/// one round trip; waits up to 5 s while Redis refuses one for memory.
void create_groups(Connection& conn, std::vector<std::pair<std::string, std::string>> groups);

/// Messages go to stderr (spdlog's "micromodels.redis" logger): stdout holds only what a
/// script may read.
spdlog::logger& log();

}  // namespace micromodels::detail
