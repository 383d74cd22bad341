// Joins the parts of one (stream, seq) that arrive on a stage's several inputs.
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <optional>
#include <utility>
#include <vector>

#include "micromodels/packet.hpp"
#include "micromodels/transport.hpp"
#include "seq_set.hpp"

namespace micromodels::detail {

/// Collects the parts of each (stream, seq) until every input has given one or said it never
/// will (a skip), or until the join times out. A part that comes after its (stream, seq) was
/// settled has nothing left to join with: a late one (its key timed out without it) or an
/// extra one. Not thread-safe: the node's mutex guards it.
class JoinTable {
 public:
  using Clock = std::chrono::steady_clock;

  /// A (stream, seq) whose parts are settled: present parts in input order (nullopt where an
  /// input skipped or had not come), and the tickets of every part and skip.
  struct Done {
    std::uint32_t stream = 0;
    std::uint64_t seq = 0;
    std::vector<std::optional<Packet>> parts;
    std::vector<Ticket> tickets;
    bool timed_out = false;  // settled by `expire`, not because every input gave or skipped
    [[nodiscard]] std::size_t present() const {
      std::size_t n = 0;
      for (const auto& part : parts) n += part ? 1 : 0;
      return n;
    }
    [[nodiscard]] bool complete() const { return present() == parts.size(); }
  };

  /// Why `part` took nothing.
  enum class Refused {
    no,
    late,   // its (stream, seq) timed out without it: the packet went as `on_timeout` said
    extra,  // a second part for its input, or one for a key that had every part
  };

  explicit JoinTable(std::size_t inputs = 0) : inputs_(inputs) {}

  /// A part arrives on `input`. Returns the entry once every input has settled. A part with
  /// nothing to join with (`refused` says why) goes no further.
  std::optional<Done> part(std::size_t input, Packet packet, Ticket ticket, Refused& refused) {
    const std::uint32_t stream = packet.stream;
    const std::uint64_t seq = packet.seq;
    refused = Refused::no;
    if (settled_[stream].contains(seq)) {
      const auto late = late_.find({stream, seq});
      refused = late == late_.end() ? Refused::extra : Refused::late;
      if (late != late_.end() && --late->second == 0) late_.erase(late);
      return std::nullopt;
    }
    Entry& entry = entry_for(stream, seq);
    if (entry.parts[input] || entry.skipped[input]) {
      refused = Refused::extra;
      return std::nullopt;
    }
    entry.parts[input] = std::move(packet);
    entry.tickets.push_back(ticket);
    return settle_if_complete(stream, seq, entry);
  }

  /// Input `input` says (stream, seq) will never come; `refused` when the key settled already.
  std::optional<Done> skip(std::size_t input, std::uint32_t stream, std::uint64_t seq,
                           Ticket ticket, bool& refused) {
    refused = settled_[stream].contains(seq);
    if (refused) return std::nullopt;
    Entry& entry = entry_for(stream, seq);
    entry.tickets.push_back(ticket);
    if (!entry.skipped[input] && !entry.parts[input]) entry.skipped[input] = true;
    return settle_if_complete(stream, seq, entry);
  }

  /// Entries whose first part came before `deadline`, or all with `everything`.
  std::vector<Done> expire(Clock::time_point deadline, bool everything) {
    std::vector<Done> done;
    for (auto it = entries_.begin(); it != entries_.end();) {
      if (everything || it->second.first <= deadline) {
        const std::size_t missing = inputs_ - settled_inputs(it->second);
        if (missing > 0 && !everything) note_late(it->first, missing);
        done.push_back(take(it->first.first, it->first.second, it->second));
        done.back().timed_out = true;
        settled_[it->first.first].insert(it->first.second);
        it = entries_.erase(it);
      } else {
        ++it;
      }
    }
    return done;
  }

  /// Forgets the entries of `stream`, which goes on at seq `next`; their tickets go to
  /// `abandoned`. Returns the parts dropped.
  std::size_t reset(std::uint32_t stream, std::uint64_t next, std::vector<Ticket>& abandoned) {
    settled_[stream] = SeqSet(next);
    std::erase_if(late_, [stream](const auto& late) { return late.first.first == stream; });
    std::size_t dropped = 0;
    auto it = entries_.lower_bound({stream, 0});
    while (it != entries_.end() && it->first.first == stream) {
      for (const auto& part : it->second.parts) dropped += part ? 1 : 0;
      abandoned.insert(abandoned.end(), it->second.tickets.begin(), it->second.tickets.end());
      it = entries_.erase(it);
    }
    return dropped;
  }

  [[nodiscard]] bool empty() const noexcept { return entries_.empty(); }
  [[nodiscard]] std::vector<std::uint32_t> streams() const {
    std::vector<std::uint32_t> ids;
    for (const auto& [key, entry] : entries_) {
      if (ids.empty() || ids.back() != key.first) ids.push_back(key.first);
    }
    return ids;
  }

 private:
  struct Entry {
    std::vector<std::optional<Packet>> parts;
    std::vector<bool> skipped;
    std::vector<Ticket> tickets;
    Clock::time_point first;
  };

  Entry& entry_for(std::uint32_t stream, std::uint64_t seq) {
    auto [it, inserted] = entries_.try_emplace({stream, seq});
    if (inserted) {
      it->second.parts.resize(inputs_);
      it->second.skipped.resize(inputs_, false);
      it->second.first = Clock::now();
    }
    return it->second;
  }

  // The parts a timed-out key still expects; the oldest keys are forgotten past a bound (their
  // late parts then count as extras).
  void note_late(std::pair<std::uint32_t, std::uint64_t> key, std::size_t missing) {
    constexpr std::size_t kMostLate = 65536;
    if (late_.size() >= kMostLate) late_.erase(late_.begin());
    late_[key] = missing;
  }

  // The inputs that gave a part or said they never will.
  [[nodiscard]] std::size_t settled_inputs(const Entry& entry) const {
    std::size_t settled = 0;
    for (std::size_t i = 0; i < inputs_; ++i) settled += entry.parts[i] || entry.skipped[i];
    return settled;
  }

  std::optional<Done> settle_if_complete(std::uint32_t stream, std::uint64_t seq, Entry& entry) {
    if (settled_inputs(entry) < inputs_) return std::nullopt;
    Done done = take(stream, seq, entry);
    entries_.erase({stream, seq});
    settled_[stream].insert(seq);
    return done;
  }

  static Done take(std::uint32_t stream, std::uint64_t seq, Entry& entry) {
    return {.stream = stream,
            .seq = seq,
            .parts = std::move(entry.parts),
            .tickets = std::move(entry.tickets)};
  }

  std::size_t inputs_;
  std::map<std::pair<std::uint32_t, std::uint64_t>, Entry> entries_;
  std::map<std::uint32_t, SeqSet> settled_;  // keys joined, dropped or timed out
  std::map<std::pair<std::uint32_t, std::uint64_t>, std::size_t>
      late_;  // timed out: parts still due
};

}  // namespace micromodels::detail
