// What a broker transport's inlet delivered to the engine, what the engine settled, and what it
// may acknowledge to the broker: the bookkeeping of at-least-once delivery, for any broker that
// has streams, consumer groups and acknowledgements (Redis's inlet is its user). The broker's
// calls stay in the transport; the rules are here:
//  - shared (a stage any number of processes read): an entry is on its way from delivery until
//    its acknowledgement is confirmed (the transport keeps those fresh against reclaim, and a
//    reclaimed copy of one is not delivered twice);
//  - partitioned (a stage that gathers a stream: one process reads a partition at a time, by
//    lease) and sink: each (stream, input, seq) is delivered once per ownership, a repeat is a
//    duplicate (a stage ran twice after a crash), acknowledged and not delivered;
//  - partitioned: the progress of a stream is the next seq below which every seq settled. An
//    entry (settled, or a duplicate) is acknowledged only once the progress recorded passes it,
//    so a new owner that starts from the recorded progress finds every later entry pending;
//  - a settle from an earlier ownership of a partition (a lease lost since) is void: the new
//    owner runs that entry again.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include "micromodels/transport.hpp"

#include "runtime/seq_set.hpp"

namespace micromodels::detail {

class DeliveryLedger {
 public:
  enum class Mode { shared, partitioned, sink };
  /// `dedupes`: a partitioned or sink inlet that drops duplicates (not the dead-letter stage,
  /// where two letters may share a (stream, seq)). Partitions start owned unless partitioned.
  DeliveryLedger(Mode mode, std::size_t partitions, std::size_t inputs, bool dedupes);

  // Ownership of a partition (partitioned; the others always own theirs).
  [[nodiscard]] bool owned(std::size_t part) const;
  /// Owned, and the lease not found gone: the partitions to read and to renew.
  [[nodiscard]] std::vector<std::size_t> readable() const;
  /// The lease was found gone; `lost` says so until the partition is given up.
  void lose(std::size_t part);
  [[nodiscard]] bool lost(std::size_t part) const;
  /// Becomes ours, going on from `next` (stream -> next seq), the former owner's recorded
  /// progress: every seq below it counts as delivered and settled.
  void take_over(std::size_t part, const std::map<std::uint32_t, std::uint64_t>& next);
  /// No longer ours: what was known of it goes; returns the streams delivered from it (the
  /// engine forgets them), nullopt when it was not ours.
  std::optional<std::set<std::uint32_t>> give_up(std::size_t part);
  /// A new run: what was delivered and settled of the old one does not apply.
  void forget_run();

  // Reading.
  enum class Admit {
    deliver,     // new: hold it and hand it to the engine
    on_its_way,  // the same entry is delivered already (a reclaimed copy): nothing to do
    duplicate,   // its (stream, input, seq) came before: acknowledged in its turn, not delivered
  };
  Admit admit(std::size_t part, const std::string& id, std::uint32_t stream, std::uint16_t input,
              std::uint64_t seq);
  /// A delivery of entry `id`; the engine settles (or merges) its ticket.
  Ticket hold(std::size_t part, std::uint32_t stream, std::uint64_t seq, std::string id);
  /// The entry of a ticket ("" when unknown).
  [[nodiscard]] std::string id_of(Ticket ticket) const;
  /// A sink's: an image key its frame's packet refers to, handed back when it settles.
  void keep_key(Ticket ticket, std::string key);
  /// An entry to acknowledge with the next flush, delivered or not (trimmed, unreadable, of an
  /// older run).
  void ack(std::size_t part, std::string id);

  // The engine's side.
  using FrameSettled =
      std::function<void(std::uint32_t stream, std::uint64_t seq, std::vector<std::string> keys)>;
  /// `settled` (when set) is called for each frame the ticket stands for, with its kept keys.
  void settle(Ticket ticket, const FrameSettled& settled = {});
  Ticket merge(Ticket kept, Ticket absorbed);

  // What to tell the broker.
  struct Progress {
    std::vector<std::string> acks{};
    std::vector<std::pair<std::uint32_t, std::uint64_t>> reached{};  // partitioned: stream, next
  };
  /// `send(part, progress)` for each partition with something to acknowledge or record; under
  /// the ledger's lock, so that what is sent keeps the order it was taken in.
  void flush(const std::function<void(std::size_t part, Progress progress)>& send);
  /// Shared and sink: acknowledgements the broker confirmed; those entries are no longer on
  /// their way.
  void acknowledged(const std::vector<std::string>& ids);
  /// Entries delivered and not acknowledged yet (shared and sink).
  [[nodiscard]] std::vector<std::string> in_flight() const;
  /// A sink: has every seq below `counts[stream]` been settled?
  [[nodiscard]] bool complete(const std::map<std::uint32_t, std::uint64_t>& counts) const;
  [[nodiscard]] std::size_t unsettled() const;

 private:
  struct Partition {
    bool owned = false;
    bool lost = false;
    std::uint64_t generation = 0;  // one per ownership: settles of an older one are void
    std::map<std::pair<std::uint32_t, std::uint16_t>, SeqSet> seen{};  // (stream, input)
    std::map<std::uint32_t, SeqSet> settled{};
    std::map<std::uint32_t, std::uint64_t> committed{};  // next seq recorded in the broker
    /// Partitioned: entries settled, or duplicates, waiting for the progress to pass them.
    std::map<std::uint32_t, std::multimap<std::uint64_t, std::string>> unrecorded{};
    std::vector<std::string> acks{};
    void change_owner(bool ours) { *this = Partition{.owned = ours, .generation = generation + 1}; }
  };
  struct Held {
    std::size_t part = 0;
    std::uint32_t stream = 0;
    std::uint64_t seq = 0;
    std::string id{};
    std::uint64_t generation = 0;
    std::vector<std::string> keys{};
  };

  const Mode mode_;
  const std::size_t inputs_;
  const bool dedupes_;
  mutable std::mutex mutex_;
  std::vector<Partition> parts_;
  std::unordered_map<Ticket, std::vector<Held>> tickets_;
  std::set<std::string> in_flight_;
  Ticket next_ticket_ = 1;
};

}  // namespace micromodels::detail
