// Where one stage's packets arrive from Redis.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <vector>

#include "session.hpp"
#include "wire/delivery_ledger.hpp"
#include "wire/entry.hpp"

namespace micromodels::detail {

/// A partition's lease (ms): renewed every second by the keeper; a dead process's partitions
/// are taken over once it expires.
inline constexpr int kLeaseMs = 3000;

/// Reads a stage's stream(s) as consumer `host:pid:stage` of the group named after the stage,
/// and acknowledges an entry once the engine settles its delivery (after the outputs went to
/// the same writer: at least once). Three ways to read:
///  - shared: one stream, any number of processes; a dead consumer's entries are reclaimed once
///    idle (XAUTOCLAIM) and dead-lettered after `max_deliveries`;
///  - partitioned (stages that gather a stream: ordered, per_stream, joins): one stream per
///    partition; a process reads the partitions it holds a lease on, so each stream is in one
///    process at a time; the next seq per stream is recorded with the acknowledgements, only
///    while the lease is ours, and a new owner starts from it (so an entry is acknowledged only
///    once the next seq has passed it);
///  - sink: one stream only the run process reads; duplicates are dropped (exactly once), and
///    `complete` says when every seq has come. The dead-letter stage drops none: two dead
///    letters may share a (stream, seq).
class RedisInlet final : public Inlet {
 public:
  RedisInlet(Session& session, const PlanStage& stage);
  ~RedisInlet() override;

  bool take(std::vector<Delivery>& out, std::size_t max) override;
  void settle(Ticket ticket) override;
  Ticket merge(Ticket kept, Ticket absorbed) override;

  // The keeper's side, on its own connection.
  [[nodiscard]] const PlanStage& stage() const noexcept { return stage_; }
  /// Keeps entries being worked on from looking idle to other processes' reclaim.
  void refresh_idle(Connection& conn);
  /// Renews the leases held; one that is gone is marked lost.
  void renew_leases(Connection& conn);
  /// Sends what was settled: acknowledgements (and a leased partition's progress).
  void flush_acks();
  /// Processes of this version that serve the stage: each takes its share of the partitions.
  std::atomic<int> processes{1};
  /// A sink: has every seq below `counts[stream]` been settled?
  [[nodiscard]] bool complete(const std::map<std::uint32_t, std::uint64_t>& counts) const {
    return ledger_.complete(counts);
  }
  [[nodiscard]] std::size_t unsettled() const { return ledger_.unsettled(); }
  /// The image keys the delivery of (stream, seq) brought, until it is settled: a skip that
  /// takes its place after the stage (dropped, filtered, failed) carries them on to the sinks.
  [[nodiscard]] std::set<std::string> keys_held(std::uint32_t stream, std::uint64_t seq) const;
  /// At the end: the last acknowledgements, and the leases handed over at once.
  void leave();

 private:
  using Mode = DeliveryLedger::Mode;

  void create_groups(Connection& conn);
  bool read(std::vector<Delivery>& out, std::size_t max);
  [[nodiscard]] bool reads(const std::string& field) const;
  void fetch_images(std::vector<Delivery>& out, std::size_t first);
  void fail_delivery(Delivery& d, const std::string& error);
  [[nodiscard]] bool taken_by_another(const Delivery& d);
  bool accept(const redisReply* entry, std::size_t part, std::int64_t deliveries,
              std::vector<Delivery>& out);
  /// `accept` for each entry of a list, delivered once unless `deliveries` (by id) says more;
  /// false when one said stop.
  bool accept_all(const redisReply* entries, std::size_t part, std::vector<Delivery>& out,
                  const std::map<std::string, std::int64_t>& deliveries = {});
  void dead_letter(Delivery& d, const std::string& id, const std::string& error,
                   std::int64_t deliveries, std::string_view payload);
  void refuse(const std::string& id, std::size_t part, std::uint64_t version);
  std::string claim(std::size_t part, const std::string& idle, const std::string& cursor,
                    std::size_t count, bool counted, std::vector<Delivery>& out);
  void lease_round(std::vector<Delivery>& out);
  void take_over(const std::vector<std::size_t>& parts, std::vector<Delivery>& out);
  void claim_pending(std::size_t part, std::vector<Delivery>& out);
  void give_up(std::size_t part, std::vector<Delivery>& out, bool release);
  void give_up_all(std::vector<Delivery>& out, bool release);
  void claim_strays(const std::vector<std::size_t>& parts, std::vector<Delivery>& out);
  void new_run(std::vector<Delivery>& out);
  void hold(const Delivery& d, std::set<std::string> keys);
  void skip_keys(Delivery& d, std::string_view payload);

  Session& session_;
  const PlanStage& stage_;
  const Mode mode_;
  const bool settles_frames_;  // a sink of the pipeline (not the dead-letter stage): its settles
                               // tell the image store which keys a frame's sinks are done with
  const bool holds_keys_;      // not a sink, and hops retire keys: the packet holds the keys it
                               // arrived with for the outlets after the stage (retired_keys.hpp)
  const std::size_t inputs_;   // the stage's inputs; a source-fed stage has one
  const std::string group_;
  const std::string consumer_;
  const std::vector<std::string> keys_;  // the streams read: one per partition
  DeliveryLedger ledger_;                // what was delivered, settled, acknowledged (any thread)
  // holds_keys_: the keys of each (stream, seq) delivered and not settled (keys_held).
  mutable std::mutex held_mutex_;
  std::map<std::pair<std::uint32_t, std::uint64_t>, std::set<std::string>> held_;
  // The engine's inlet thread only:
  std::unique_ptr<Connection> conn_;
  std::unique_ptr<Connection> images_conn_;  // GETs of images (fetch_images)
  bool connected_ = false;  // a connection was made before: this one is a reconnect
  std::uint64_t run_ = 0;   // the run this inlet reads for
  bool paused_ = false;     // refused another version's entries: reads nothing until a new run
  std::chrono::steady_clock::time_point next_upkeep_{}, next_reclaim_{};
  std::string cursor_ = "0-0";
  int empty_reads_ = 0;  // reads in a row that found nothing
  bool refused_logged_ = false;
};

}  // namespace micromodels::detail
