// An edge out of this process: packets and skips added to the receiving stage's stream.
#pragma once

#include <atomic>
#include <cstdint>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "micromodels/transport.hpp"

#include "stage_counts.hpp"
#include "wire/entry.hpp"

namespace micromodels::detail {

class Session;

/// Adds entries to the streams of stage `to` through the session's writer. Back-pressure: a
/// stage whose overflow policy is `block` takes more only while its backlog in Redis (entries
/// not yet delivered to any consumer) is under its queue capacity; the outlet counts its adds
/// against the room the last probe found, and the writer probes again once half of it is used,
/// until a probe finds half the capacity free. In live
/// mode an outlet of a source never holds it back: while the backlog is at the capacity and
/// nobody has read the stream for half a second (its worker stopped), it sends an `unserved` entry
/// in place of each packet, which the stage counts as its drop, so that the stream does not grow by
/// a frame each time. A stage that reads its stream, however far behind, gets every packet: its
/// process's queue keeps each stream's newest.
class RedisOutlet final : public Outlet {
 public:
  RedisOutlet(Session& session, const PlanStage& from, const PlanStage& to, std::size_t input);
  ~RedisOutlet() override;

  void put(const Packet& packet) override;
  void skip(std::uint32_t stream, std::uint64_t seq) override;
  [[nodiscard]] bool full() const override;

  /// On the writer's thread: asks for the backlog behind the outlets that wait for room.
  static void probe_waiting(Session& session);
  /// "from>to", and what was sent since the last call (the keeper's totals).
  [[nodiscard]] std::string hop() const { return hop_field(from_.name(), to_.name()); }
  struct Sent {
    std::uint64_t bytes = 0;  // entries
    std::uint64_t packets = 0;
    std::uint64_t image_bytes = 0;  // images stored by reference for this hop
  };
  Sent take_sent() { return {bytes_.exchange(0), packets_.exchange(0), image_bytes_.exchange(0)}; }

 private:
  void add(Entry::Kind kind, std::uint32_t stream, std::uint64_t seq, std::string_view payload);
  void probe();
  [[nodiscard]] long long room() const { return limit_.load() - adds_.load(); }
  void wait_for_room() const;
  /// `sheds_`: the backlog is full and nobody reads it: drop the packet.
  bool sheds_now();

  Session& session_;
  const PlanStage& from_;
  const PlanStage& to_;
  const std::uint16_t input_;
  const bool blocks_;      // the source or stage feeding it waits while the backlog is full
  const bool sheds_;       // live mode, from a source: drops instead
  bool shedding_ = false;  // sheds_: dropping now (the source's thread only)
  std::atomic<bool> unread_{false};  // the probes found the same entries delivered for a while
  std::string last_delivered_;       // what the probes found (the writer's thread)
  std::int64_t delivered_changed_ns_ = 0;  // when last_delivered_ last changed
  // Probes run while the room the outlet counts is below this, half the capacity: a stage that
  // reads its stream has its room back before the producer waits (or, `sheds_`, drops).
  const long long probe_below_;
  const std::vector<std::string> keys_;
  // The room in the stage's backlog is limit_ - adds_: the last probe set limit_ to the capacity
  // less the backlog it found, plus the adds made before it.
  std::atomic<long long> limit_;
  mutable std::atomic<bool> waiting_{false};
  std::atomic<bool> probing_{false};
  std::atomic<std::int64_t> last_probe_ns_{0};
  // Doubles (2 ms up to 32 ms) while the probes find no room, back to 2 ms when one does.
  std::atomic<std::int64_t> probe_every_ns_{0};
  std::atomic<std::uint64_t> bytes_{0}, packets_{0}, image_bytes_{0};
  std::atomic<long long> adds_{0};  // entries handed to the writer, ever
};

/// The transport's own dead letter, for a pipeline without a `dead_letter:` stage: failed
/// packets go to the stream `mm:{pipeline}:dead` with their stage and error.
class DeadLetterOutlet final : public Outlet {
 public:
  explicit DeadLetterOutlet(Session& session) : session_(session) {}
  void put(const Packet& packet) override;
  void skip(std::uint32_t /*stream*/, std::uint64_t /*seq*/) override {}

 private:
  Session& session_;
};

/// A dead letter, from a failed packet or an entry an inlet could not deliver.
struct DeadLetter {
  std::string stage{};
  std::string error{};
  std::string entry_id{};  // the Redis entry, when an inlet found it
  std::int64_t deliveries = 1;
  std::optional<std::pair<std::uint32_t, std::uint64_t>> position{};  // (stream, seq) when known
  std::string_view payload{};                                         // the packet's bytes
};
/// Adds `letter` to the dead-letter stream (through the writer) and counts it; logs nothing.
void write_dead_letter(Session& session, const DeadLetter& letter);

}  // namespace micromodels::detail
