// Restores seq order per stream before an ordered or per_stream stage.
#pragma once

#include <cstdint>
#include <deque>
#include <map>
#include <set>
#include <span>
#include <unordered_map>
#include <utility>
#include <vector>

#include "micromodels/packet.hpp"
#include "micromodels/transport.hpp"

namespace micromodels::detail {

/// Holds what arrives ahead of its turn and releases each stream in seq order. A seq's slot
/// holds its packets (a stage before may emit several for one seq) or says that it will never
/// come (a skip). Released packets go on only while the queue after has room; the others wait
/// here in order (`ready`), so that a long run of held packets cannot push the queue past its
/// capacity. Not thread-safe: the node's mutex guards it.
///
/// `Out` takes what is released: `bool room()`, `void enqueue(Packet, Ticket)`,
/// `void skip(std::uint32_t stream, std::uint64_t seq, Ticket)` and `void settle(Ticket)` (the
/// ticket of a duplicate skip), `void held(std::int64_t)` (change in packets held for order), and
/// `void late(std::uint32_t stream, std::uint64_t seq, std::uint64_t next)` (a packet came after
/// a later seq had gone on: it goes on out of order).
class ReorderBuffer {
 public:
  template <class Out>
  void packet(Packet packet, Ticket ticket, Out& out) {
    packets({&packet, 1}, ticket, out);
  }

  /// Packets of one (stream, seq), all that one call of a stage emitted for it: they are
  /// released together, so that no later seq comes between them.
  template <class Out>
  void packets(std::span<Packet> group, Ticket ticket, Out& out) {
    const std::uint32_t id = group.front().stream;
    const std::uint64_t seq = group.front().seq;
    Stream& s = streams_[id];
    if (seq > s.next) {
      std::vector<Parcel>& held = s.held[seq].packets;
      for (Packet& packet : group) held.push_back({std::move(packet), ticket});
      out.held(static_cast<std::int64_t>(group.size()));
      return;
    }
    // seq < next: another packet of a seq already released (a stage before emitted several for
    // one input). It goes on; out of order when a later seq went on before it (passed it through
    // a stage with several consumers).
    const bool next = seq == s.next;
    if (next) {
      ++s.next;
    } else if (seq + 1 < s.next) {
      out.late(id, seq, s.next);
    }
    for (Packet& packet : group) emit(id, s, {std::move(packet), ticket}, out);
    if (next) drain(id, s, out);
  }

  template <class Out>
  void skip(std::uint32_t stream, std::uint64_t seq, Ticket ticket, Out& out) {
    Stream& s = streams_[stream];
    if (seq < s.next) {  // already released or skipped
      out.settle(ticket);
      return;
    }
    if (seq > s.next) {
      Slot& slot = s.held[seq];
      if (slot.skip) {
        out.settle(ticket);
      } else {
        slot.skip = true;
        slot.skip_ticket = ticket;
      }
      return;
    }
    ++s.next;
    out.skip(stream, seq, ticket);
    drain(stream, s, out);
  }

  /// Sends on what waited for room, while there is room.
  template <class Out>
  void release_waiting(Out& out) {
    for (auto it = waiting_.begin(); it != waiting_.end();) {
      Stream& s = streams_[*it];
      while (!s.ready.empty() && out.room()) {
        out.enqueue(std::move(s.ready.front().packet), s.ready.front().ticket);
        s.ready.pop_front();
      }
      it = s.ready.empty() ? waiting_.erase(it) : std::next(it);
    }
  }

  /// Releases everything held, gaps and all: nothing more can arrive.
  template <class Out>
  void flush(Out& out) {
    for (auto& [id, s] : streams_) {
      for (auto& [seq, slot] : s.held) {
        out.held(-static_cast<std::int64_t>(slot.packets.size()));
        for (Parcel& p : slot.packets) emit(id, s, std::move(p), out);
        if (slot.skip) {
          if (slot.packets.empty()) {
            out.skip(id, seq, slot.skip_ticket);
          } else {
            out.settle(slot.skip_ticket);
          }
        }
        s.next = std::max(s.next, seq + 1);
      }
      s.held.clear();
    }
  }

  /// Forgets what is held or waiting for `stream`, which goes on at seq `next`. The tickets of
  /// what was dropped go to `abandoned`; returns the number of packets dropped and how many of
  /// them were held for order.
  std::pair<std::size_t, std::size_t> reset(std::uint32_t stream, std::uint64_t next,
                                            std::vector<Ticket>& abandoned) {
    Stream& s = streams_[stream];
    std::size_t held = 0;
    for (auto& [seq, slot] : s.held) {
      held += slot.packets.size();
      for (const Parcel& p : slot.packets) abandoned.push_back(p.ticket);
      if (slot.skip) abandoned.push_back(slot.skip_ticket);
    }
    const std::size_t dropped = held + s.ready.size();
    for (const Parcel& p : s.ready) abandoned.push_back(p.ticket);
    s = Stream{.next = next, .held = {}, .ready = {}};
    waiting_.erase(stream);
    return {dropped, held};
  }

  /// Every stream that holds something for order.
  [[nodiscard]] std::vector<std::uint32_t> streams_held() const {
    std::vector<std::uint32_t> ids;
    for (const auto& [id, s] : streams_) {
      if (!s.held.empty() || !s.ready.empty()) ids.push_back(id);
    }
    return ids;
  }

  [[nodiscard]] bool waiting() const noexcept { return !waiting_.empty(); }

 private:
  struct Parcel {
    Packet packet;
    Ticket ticket = 0;
  };
  struct Slot {
    std::vector<Parcel> packets;
    bool skip = false;  // this seq will never come
    Ticket skip_ticket = 0;
  };
  struct Stream {
    std::uint64_t next = 0;               // lowest seq not released yet
    std::map<std::uint64_t, Slot> held;   // seqs ahead of `next`
    std::deque<Parcel> ready;             // released, waiting for room in the queue
  };

  template <class Out>
  void emit(std::uint32_t id, Stream& s, Parcel parcel, Out& out) {
    if (s.ready.empty() && out.room()) {
      out.enqueue(std::move(parcel.packet), parcel.ticket);
      return;
    }
    s.ready.push_back(std::move(parcel));
    waiting_.insert(id);
  }

  template <class Out>
  void drain(std::uint32_t id, Stream& s, Out& out) {
    while (!s.held.empty() && s.held.begin()->first <= s.next) {
      auto slot = s.held.extract(s.held.begin());
      if (slot.key() == s.next) ++s.next;
      std::vector<Parcel>& packets = slot.mapped().packets;
      out.held(-static_cast<std::int64_t>(packets.size()));
      for (Parcel& p : packets) emit(id, s, std::move(p), out);
      if (slot.mapped().skip) {
        if (packets.empty()) {
          out.skip(id, slot.key(), slot.mapped().skip_ticket);
        } else {
          out.settle(slot.mapped().skip_ticket);
        }
      }
    }
  }

  std::unordered_map<std::uint32_t, Stream> streams_;
  std::set<std::uint32_t> waiting_;  // streams with released packets waiting for room
};

}  // namespace micromodels::detail
