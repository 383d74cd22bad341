#include "delivery_ledger.hpp"

#include <iterator>

namespace micromodels::detail {

DeliveryLedger::DeliveryLedger(Mode mode, std::size_t partitions, std::size_t inputs, bool dedupes)
    : mode_(mode), inputs_(inputs), dedupes_(dedupes), parts_(partitions) {
  for (Partition& part : parts_) part.owned = mode_ != Mode::partitioned;
}

bool DeliveryLedger::owned(std::size_t part) const {
  std::lock_guard lock(mutex_);
  return parts_[part].owned;
}

std::vector<std::size_t> DeliveryLedger::readable() const {
  std::lock_guard lock(mutex_);
  std::vector<std::size_t> parts;
  for (std::size_t k = 0; k < parts_.size(); ++k) {
    if (parts_[k].owned && !parts_[k].lost) parts.push_back(k);
  }
  return parts;
}

void DeliveryLedger::lose(std::size_t part) {
  std::lock_guard lock(mutex_);
  parts_[part].lost = true;
}

bool DeliveryLedger::lost(std::size_t part) const {
  std::lock_guard lock(mutex_);
  return parts_[part].owned && parts_[part].lost;
}

void DeliveryLedger::take_over(std::size_t k, const std::map<std::uint32_t, std::uint64_t>& next) {
  std::lock_guard lock(mutex_);
  Partition& part = parts_[k];
  part.change_owner(true);
  for (const auto& [stream, seq] : next) {
    for (std::size_t input = 0; input < inputs_; ++input) {
      part.seen.emplace(std::make_pair(stream, static_cast<std::uint16_t>(input)), SeqSet(seq));
    }
    part.settled.emplace(stream, SeqSet(seq));
    part.committed[stream] = seq;
  }
}

std::optional<std::set<std::uint32_t>> DeliveryLedger::give_up(std::size_t k) {
  std::lock_guard lock(mutex_);
  Partition& part = parts_[k];
  if (!part.owned) return std::nullopt;
  std::set<std::uint32_t> streams;
  for (const auto& [key, seen] : part.seen) streams.insert(key.first);
  part.change_owner(false);
  return streams;
}

void DeliveryLedger::forget_run() {
  std::lock_guard lock(mutex_);
  for (Partition& part : parts_) {
    part.seen.clear();
    part.settled.clear();
  }
}

DeliveryLedger::Admit DeliveryLedger::admit(std::size_t k, const std::string& id,
                                            std::uint32_t stream, std::uint16_t input,
                                            std::uint64_t seq) {
  std::lock_guard lock(mutex_);
  if (in_flight_.contains(id)) return Admit::on_its_way;
  if (!dedupes_) return Admit::deliver;
  Partition& part = parts_[k];
  SeqSet& seen = part.seen[{stream, input}];
  if (!seen.contains(seq)) {
    seen.insert(seq);
    return Admit::deliver;
  }
  // A partitioned duplicate may be an entry claimed back that is still on its way here:
  // acknowledged only with a next seq past it, like the entry it repeats.
  if (mode_ == Mode::partitioned) {
    part.unrecorded[stream].emplace(seq, id);
  } else {
    part.acks.push_back(id);
  }
  return Admit::duplicate;
}

Ticket DeliveryLedger::hold(std::size_t part, std::uint32_t stream, std::uint64_t seq,
                            std::string id) {
  std::lock_guard lock(mutex_);
  // A partition's entries are ours by lease: nobody reclaims them, none comes twice.
  if (mode_ != Mode::partitioned) in_flight_.insert(id);
  const Ticket ticket = next_ticket_++;
  tickets_[ticket].push_back({.part = part,
                              .stream = stream,
                              .seq = seq,
                              .id = std::move(id),
                              .generation = parts_[part].generation});
  return ticket;
}

std::string DeliveryLedger::id_of(Ticket ticket) const {
  std::lock_guard lock(mutex_);
  const auto it = tickets_.find(ticket);
  return it != tickets_.end() && !it->second.empty() ? it->second.front().id : std::string();
}

void DeliveryLedger::keep_key(Ticket ticket, std::string key) {
  std::lock_guard lock(mutex_);
  if (const auto it = tickets_.find(ticket); it != tickets_.end() && !it->second.empty()) {
    it->second.front().keys.push_back(std::move(key));
  }
}

void DeliveryLedger::ack(std::size_t part, std::string id) {
  std::lock_guard lock(mutex_);
  parts_[part].acks.push_back(std::move(id));
}

void DeliveryLedger::settle(Ticket ticket, const FrameSettled& settled) {
  std::lock_guard lock(mutex_);
  const auto it = tickets_.find(ticket);
  if (it == tickets_.end()) return;
  for (Held& held : it->second) {
    if (settled) settled(held.stream, held.seq, std::move(held.keys));
    Partition& part = parts_[held.part];
    if (!part.owned || held.generation != part.generation) continue;  // the new owner runs it
    if (mode_ != Mode::shared) part.settled[held.stream].insert(held.seq);
    if (mode_ == Mode::partitioned) {
      part.unrecorded[held.stream].emplace(held.seq, held.id);
    } else {
      part.acks.push_back(held.id);
    }
  }
  tickets_.erase(it);
}

Ticket DeliveryLedger::merge(Ticket kept, Ticket absorbed) {
  std::lock_guard lock(mutex_);
  auto from = tickets_.find(absorbed);
  if (from == tickets_.end()) return kept;
  std::vector<Held>& into = tickets_[kept];
  into.insert(into.end(), std::make_move_iterator(from->second.begin()),
              std::make_move_iterator(from->second.end()));
  tickets_.erase(from);
  return kept;
}

void DeliveryLedger::flush(const std::function<void(std::size_t, Progress)>& send) {
  std::lock_guard lock(mutex_);
  for (std::size_t k = 0; k < parts_.size(); ++k) {
    Partition& part = parts_[k];
    Progress progress;
    if (mode_ == Mode::partitioned) {
      for (const auto& [stream, settled] : part.settled) {
        std::uint64_t& committed = part.committed[stream];
        if (settled.low() > committed) {
          progress.reached.emplace_back(stream, settled.low());
          committed = settled.low();
        }
        // An entry settled ahead of an earlier seq (a skip, which ordering releases at once
        // while the packets before it still wait in the stage's lane) waits for that seq too.
        auto& waiting = part.unrecorded[stream];
        for (auto it = waiting.begin(); it != waiting.end() && it->first < committed;) {
          part.acks.push_back(std::move(it->second));
          it = waiting.erase(it);
        }
      }
    }
    if (part.acks.empty() && progress.reached.empty()) continue;
    progress.acks = std::exchange(part.acks, {});
    send(k, std::move(progress));
  }
}

void DeliveryLedger::acknowledged(const std::vector<std::string>& ids) {
  std::lock_guard lock(mutex_);
  for (const std::string& id : ids) in_flight_.erase(id);
}

std::vector<std::string> DeliveryLedger::in_flight() const {
  std::lock_guard lock(mutex_);
  return {in_flight_.begin(), in_flight_.end()};
}

bool DeliveryLedger::complete(const std::map<std::uint32_t, std::uint64_t>& counts) const {
  std::lock_guard lock(mutex_);
  for (const auto& [stream, count] : counts) {
    const auto found = parts_[0].settled.find(stream);
    if (count > 0 && (found == parts_[0].settled.end() || found->second.low() < count)) {
      return false;
    }
  }
  return true;
}

std::size_t DeliveryLedger::unsettled() const {
  std::lock_guard lock(mutex_);
  return tickets_.size();
}

}  // namespace micromodels::detail
