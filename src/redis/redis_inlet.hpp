// Where one stage's packets arrive from Redis: its consumer group, reclaim of a dead
// consumer's entries, leased partitions, and the sinks' exactly-once.
#pragma once

#include <atomic>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <mutex>
#include <set>
#include <string>
#include <unordered_map>
#include <vector>

#include "micromodels/plan.hpp"
#include "micromodels/transport.hpp"
#include "redis_connection.hpp"
#include "session.hpp"

namespace micromodels::detail {

/// Reads a stage's stream(s) as consumer `host:pid:stage` of the group named after the stage,
/// and acknowledges an entry once the engine settles its delivery (after the outputs were
/// added downstream, through the same writer: at least once). Three ways to read:
///  - shared: one stream, any number of processes; entries of a dead consumer are reclaimed
///    once idle (XAUTOCLAIM) and dead-lettered after `max_deliveries`;
///  - partitioned (ordered, per_stream and join stages): one stream per partition (stream id
///    mod partitions); a process reads the partitions it holds a lease on, so that each
///    stream is in one process at a time; progress (the next seq per stream) is recorded with
///    the acknowledgements, only while the lease is ours, and a new owner starts from it;
///  - sink: one stream that only the run process reads; duplicates are dropped, so the sink
///    sees every (stream, seq) once, and `complete` says when it has them all.
class RedisInlet final : public Inlet {
 public:
  RedisInlet(Session& session, const PlanStage& stage);
  ~RedisInlet() override;
  RedisInlet(const RedisInlet&) = delete;
  RedisInlet& operator=(const RedisInlet&) = delete;

  bool take(std::vector<Delivery>& out, std::size_t max) override;
  void settle(Ticket ticket) override;
  Ticket merge(Ticket kept, Ticket absorbed) override;

  // For the keeper, on its own connection.
  [[nodiscard]] const PlanStage& stage() const noexcept { return stage_; }
  /// Keeps entries being worked on from looking idle to other processes' reclaim.
  void refresh_idle(Connection& conn);
  /// Renews the leases held; a lease that is gone is marked lost.
  void renew_leases(Connection& conn);
  /// Sends the acknowledgements (and, for leased partitions, the progress) settled so far.
  void flush_acks();
  /// Processes of the run that serve this stage (for each one's share of the partitions).
  std::atomic<int> processes{1};
  /// A sink: has every seq below `counts[stream]` of every stream been settled?
  [[nodiscard]] bool complete(const std::map<std::uint32_t, std::uint64_t>& counts) const;
  /// Deliveries handed to the engine and not settled yet.
  [[nodiscard]] std::size_t unsettled() const;
  /// At the end: the last acknowledgements, and the leases handed over at once.
  void leave(Connection& conn);

 private:
  enum class Mode { shared, partitioned, sink };
  struct Partition {
    std::string key{};
    bool owned = false;   // always, unless leased
    bool lost = false;    // the keeper found the lease gone
    std::uint64_t generation = 0;  // one per take-over: settles of an older one are void
    // Delivered to the engine, per (stream, input): a second one is a duplicate and is dropped.
    std::map<std::pair<std::uint32_t, std::uint16_t>, SeqSet> seen{};
    std::map<std::uint32_t, SeqSet> settled{};  // done with
    std::map<std::uint32_t, std::uint64_t> committed{};  // next seq recorded in Redis
    std::vector<std::string> acks{};  // settled, not yet acknowledged
  };
  struct Held {
    std::size_t part = 0;
    std::uint32_t stream = 0;
    std::uint64_t seq = 0;
    std::string id{};
    std::uint64_t generation = 0;
  };

  void connect();
  bool accept(const redisReply* entry, std::size_t part, std::int64_t deliveries,
              std::vector<Delivery>& out);
  Ticket ticket_for(Held held);
  void dead_letter(const std::string& id, std::size_t part, const std::string& error,
                   std::int64_t deliveries, std::string_view payload,
                   std::optional<std::pair<std::uint32_t, std::uint64_t>> position);
  void ack_now(std::size_t part, const std::string& id);
  void refuse(const std::string& id, std::size_t part, std::uint64_t version);
  void reclaim(std::vector<Delivery>& out, std::size_t max);
  void lease_round(std::vector<Delivery>& out);
  void take_over(std::size_t part, std::vector<Delivery>& out);
  void give_up(std::size_t part, std::vector<Delivery>& out, bool release);
  void claim_strays(std::size_t part, std::vector<Delivery>& out);
  void read_own_pending(std::vector<Delivery>& out);
  void new_run(std::vector<Delivery>& out);

  Session& session_;
  const PlanStage& stage_;
  const Mode mode_;
  const std::string group_;
  const std::string consumer_;
  std::unique_ptr<Connection> conn_;  // the engine's inlet thread only
  std::uint64_t run_ = 0;             // the run this inlet reads for
  bool paused_ = false;               // refused another version's entries: reads nothing
  bool connected_ = false;            // a connection was made before (this one is a reconnect)
  std::chrono::steady_clock::time_point next_upkeep_{};
  std::chrono::steady_clock::time_point next_reclaim_{};
  std::string cursor_ = "0-0";

  mutable std::mutex mutex_;  // everything below
  std::vector<Partition> parts_;
  std::unordered_map<Ticket, std::vector<Held>> tickets_;
  std::set<std::pair<std::size_t, std::string>> in_flight_;  // (partition, id) of unsettled ones
  Ticket next_ticket_ = 1;
  bool refused_logged_ = false;
};

}  // namespace micromodels::detail
