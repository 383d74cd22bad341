// The path of a packet between stages: route() hands what a stage's turn made to the next
// stages or outlets; deliver() joins, reorders and queues it at the stage it reaches, under that
// stage's lock; failures, skips and drops are passed on from here too.
#include "engine.hpp"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "tick_clock.hpp"

namespace micromodels::detail {

void Engine::route(Node& node, std::vector<Packet>& outputs, std::span<const Key> inputs,
                   bool exclusive) {
  const auto consumed = static_cast<std::int64_t>(inputs.size());
  if (node.outputs.empty()) {
    // A last stage: whatever it emits leaves the pipeline here.
    if (!node.plan.dead_letter) record_ages(node, inputs, t_clock, exclusive);
    leave(consumed);
    return;
  }
  if (outputs.size() > 1 && !node.outlets.empty()) refuse_extra_outputs(node, outputs);
  if (outputs.empty()) {
    // Filtered out: ordered stages and joins downstream must not wait for these seqs.
    for (const Key& key : inputs) propagate_skip(node, key.stream, key.seq);
    leave(consumed);
    return;
  }
  const auto edges = static_cast<std::int64_t>(node.outputs.size());
  const auto delta = static_cast<std::int64_t>(outputs.size()) * edges - consumed;
  if (delta != 0) add_in_flight(delta);  // a 1-to-1 hop leaves the shared counter alone
  node.emitted.fetch_add(outputs.size(), std::memory_order_relaxed);
  if (outputs.size() > 1) {
    for (const Packet& packet : outputs) node.tap.pass(packet);
    for (std::size_t e = 0; e + 1 < node.outputs.size(); ++e) {
      std::vector<Packet> copies(outputs);
      deliver_all(node.outputs[e], copies);
    }
    deliver_all(node.outputs.back(), outputs);
    return;
  }
  node.tap.pass(outputs.front());
  for (std::size_t e = 0; e + 1 < node.outputs.size(); ++e) {
    deliver(node.outputs[e], Packet(outputs.front()));
  }
  deliver(node.outputs.back(), std::move(outputs.front()));
}

void Engine::record_ages(Node& node, std::span<const Key> done, std::int64_t now,
                         bool exclusive) {
  for (const Key& key : done) {
    // Clamped at 0: a capture time from another machine's clock may lie ahead of ours.
    if (key.capture_ns != 0) {
      node.age.record(std::max<std::int64_t>(0, now - key.capture_ns), exclusive);
    }
  }
}

void Engine::fail(Node& node, Packet packet, const std::string& error, Ticket ticket) {
  const std::uint32_t stream = packet.stream;
  const std::uint64_t seq = packet.seq;
  // The dead letter before the skip, so that a process that waits for the skip finds the dead
  // letter already sent.
  const bool lettered = report_failure(node, std::move(packet), error);
  propagate_skip(node, stream, seq);
  settle(node, ticket);
  if (!lettered) leave(1);  // after its skip has reached the stages after
}

bool Engine::report_failure(Node& node, Packet packet, const std::string& error) {
  const auto count = node.failed.fetch_add(1, std::memory_order_relaxed) + 1;
  // Log the first failures of a stage, then every hundredth, so a broken stage cannot flood.
  if (count <= 10 || count % 100 == 0) {
    spdlog::warn("stage '{}': packet stream {} seq {} failed ({} so far): {}", node.config.name,
                 packet.stream, packet.seq, count, error);
  }
  if (!node.dead_letter) return false;
  packet.set("error", error);
  packet.set("failed_stage", node.config.name);
  node.dead_lettered.fetch_add(1, std::memory_order_relaxed);
  deliver(node.dead_letter, std::move(packet));
  return true;
}

// A transport tells a packet from the same packet again (a stage run twice after a crash) by its
// (stream, seq), and its sinks take each (stream, seq) once; so a second packet of one (stream,
// seq) from one call would be dropped on the other side as a duplicate. It fails here instead:
// counted, logged and dead-lettered, never lost silently. The first of each goes on.
void Engine::refuse_extra_outputs(Node& node, std::vector<Packet>& outputs) {
  std::set<std::pair<std::uint32_t, std::uint64_t>> seen;
  std::vector<Packet> kept;
  kept.reserve(outputs.size());
  for (Packet& packet : outputs) {
    if (seen.emplace(packet.stream, packet.seq).second) {
      kept.push_back(std::move(packet));
      continue;
    }
    const std::string error =
        "emitted another packet of stream " + std::to_string(packet.stream) + " seq " +
        std::to_string(packet.seq) + " for one input; across processes (" + transport_->name() +
        ") a (stream, seq) is one packet, and a second would be dropped as a duplicate: emit "
        "one packet that carries them all (a list or tensor field), or run in one process";
    if (node.dead_letter) add_in_flight(1);  // on its way to the dead letter
    report_failure(node, std::move(packet), error);
  }
  outputs = std::move(kept);
}

void Engine::propagate_skip(const Node& node, std::uint32_t stream, std::uint64_t seq) {
  for (const Edge& target : node.skip_targets) deliver_skip(target, stream, seq);
}

void Engine::add_in_flight(std::int64_t count) { in_flight_.fetch_add(count); }

void Engine::leave(std::int64_t count) {
  if (count == 0) return;
  const auto left = in_flight_.fetch_sub(count) - count;
  if (left == 0) {
    check_done();
  } else if (left == held_.load() && live_sources_.load() + live_inlets_.load() == 0) {
    housekeeper_cv_.notify_all();  // only held packets are left: release them
  }
}

void Engine::check_done() {
  if (live_sources_.load() != 0 || live_inlets_.load() != 0 || in_flight_.load() != 0 ||
      turns_.load() != 0) {
    return;
  }
  std::lock_guard lock(done_mutex_);
  if (done_ || !started_) return;
  done_ = true;
  end_time_ = Clock::now();
  done_cv_.notify_all();
  close_taps();
}

// Runs `work` (given the node's Aftermath) under the node's lock, then submits a turn if one was
// claimed and passes on what the work left: skips, settled tickets, packets that left.
template <class Work>
void Engine::under_lock(Node& to, Work&& work) {
  Aftermath after;
  bool claimed = false;
  {
    std::lock_guard lock(to.mutex);
    work(after);
    claimed = claim_locked(to);
  }
  after_delivery(to, after, claimed);
}

void Engine::deliver(const Edge& edge, Packet&& packet, Ticket ticket) {
  if (edge.outlet != nullptr) {
    edge.outlet->put(packet);
    leave(1);  // it left this process
    return;
  }
  Node& to = *edge.node;
  under_lock(to, [&](Aftermath& after) {
    if (!to.joins_inputs()) {
      release_locked(to, std::move(packet), ticket, after);
      return;
    }
    JoinTable::Refused refused = JoinTable::Refused::no;
    const std::uint32_t stream = packet.stream;
    const std::uint64_t seq = packet.seq;
    std::optional<JoinTable::Done> done = to.joins.part(edge.input, std::move(packet), ticket,
                                                        refused);
    if (refused != JoinTable::Refused::no) {
      // Nothing to join with. A late part's packet was counted when its join timed out (dropped,
      // or passed on partial); an extra part is a packet of its own, dropped here.
      if (refused == JoinTable::Refused::extra) {
        to.dropped.fetch_add(1, std::memory_order_relaxed);
      } else if (!std::exchange(to.warned_late_part, true)) {
        spdlog::warn(
            "stage '{}': a part of stream {} seq {} came after its join had timed out ({} ms; "
            "on_timeout: {}), so it goes no further (said once per stage); raise join "
            "timeout_ms to wait for such parts",
            to.config.name, stream, seq, to.config.join_timeout_ms,
            to.config.join_on_timeout == JoinTimeout::drop ? "drop" : "partial");
      }
      ++after.leaves;
      after.settled.push_back(ticket);
    } else {
      held_.fetch_add(1);
      if (done) settle_join(to, std::move(*done), after);
    }
  });
}

void Engine::deliver_all(const Edge& edge, std::vector<Packet>& packets) {
  if (edge.outlet != nullptr || edge.node->joins_inputs()) {
    for (Packet& packet : packets) deliver(edge, std::move(packet));
    return;
  }
  // Under one lock, and each (stream, seq)'s packets to the reorder buffer together: another
  // consumer's later seq cannot come between a packet and the extra ones of its call.
  Node& to = *edge.node;
  under_lock(to, [&](Aftermath& after) {
    const auto count = static_cast<std::uint64_t>(packets.size());
    to.arrived.store(to.arrived.load(std::memory_order_relaxed) + count, std::memory_order_relaxed);
    for (auto first = packets.begin(); first != packets.end();) {
      const auto same = [&](const Packet& p) {
        return p.stream == first->stream && p.seq == first->seq;
      };
      const auto last = std::find_if_not(first, packets.end(), same);
      if (to.ordered()) {
        ReorderOut out{*this, to, after, true};
        to.reorder.packets({first, last}, 0, out);
      } else {
        for (auto it = first; it != last; ++it) enqueue_locked(to, std::move(*it), 0, after);
      }
      first = last;
    }
  });
}

void Engine::deliver_skip(const Edge& edge, std::uint32_t stream, std::uint64_t seq, Ticket ticket,
                          bool unserved) {
  if (edge.outlet != nullptr) {
    edge.outlet->skip(stream, seq);
    return;
  }
  Node& to = *edge.node;
  under_lock(to, [&](Aftermath& after) {
    if (unserved) {
      to.dropped.fetch_add(1, std::memory_order_relaxed);
      to.dropped_unserved.fetch_add(1, std::memory_order_relaxed);
    }
    if (!to.joins_inputs()) {
      if (unserved) {  // written under the node's lock only (release_locked)
        to.arrived.store(to.arrived.load(std::memory_order_relaxed) + 1, std::memory_order_relaxed);
      }
      skip_locked(to, stream, seq, ticket, !unserved, after);
      return;
    }
    bool refused = false;
    std::optional<JoinTable::Done> done = to.joins.skip(edge.input, stream, seq, ticket, refused);
    if (refused) after.settled.push_back(ticket);
    if (done) settle_join(to, std::move(*done), after);
  });
}

void Engine::after_delivery(Node& to, Aftermath& after, bool claimed) {
  if (claimed) to.executor->submit(to);
  for (const Skip& skip : after.skips) {
    propagate_skip(*skip.from, skip.stream, skip.seq);
    settle(*skip.from, skip.ticket);
  }
  for (Ticket ticket : after.settled) settle(to, ticket);
  leave(after.leaves);
}

void Engine::settle_join(Node& to, JoinTable::Done done, Aftermath& after) {
  const std::size_t present = done.present();
  held_.fetch_sub(static_cast<std::int64_t>(present));
  // One ticket stands for every part and skip of the key.
  Ticket ticket = 0;
  for (Ticket part : done.tickets) {
    if (part == 0) continue;
    ticket = ticket == 0 ? part : to.tickets->merge(ticket, part);
  }
  const bool complete = done.complete();
  // A key an input skipped (its packet failed, was filtered or dropped before the join, and was
  // counted there) goes on as a skip; only a timeout is the join's own drop (on_timeout).
  if (present == 0 ||
      (!complete && (!done.timed_out || to.config.join_on_timeout == JoinTimeout::drop))) {
    const bool dropped_here = present > 0 && done.timed_out;
    if (dropped_here) to.dropped.fetch_add(1, std::memory_order_relaxed);
    after.leaves += static_cast<std::int64_t>(present);
    skip_locked(to, done.stream, done.seq, ticket, !dropped_here, after);
    return;
  }
  // Merge in input order: a later input's field replaces an earlier one of the same name.
  std::optional<Packet> merged;
  for (auto& part : done.parts) {
    if (!part) continue;
    if (!merged) {
      merged = std::move(*part);
      continue;
    }
    for (Packet::Field& field : part->fields) merged->set(field.name, std::move(field.value));
  }
  // Parts merged into one packet leave the count of packets in flight without leaving the stage.
  if (present > 1) in_flight_.fetch_sub(static_cast<std::int64_t>(present - 1));
  release_locked(to, std::move(*merged), ticket, after);
}

void Engine::skip_locked(Node& to, std::uint32_t stream, std::uint64_t seq, Ticket ticket,
                         bool arrived, Aftermath& after) {
  if (!to.ordered()) {
    if (arrived) to.skipped.fetch_add(1, std::memory_order_relaxed);
    after.skips.push_back({&to, stream, seq, ticket});
    return;
  }
  ReorderOut out{*this, to, after, arrived};
  to.reorder.skip(stream, seq, ticket, out);
}

void Engine::release_locked(Node& to, Packet&& packet, Ticket ticket, Aftermath& after) {
  // Written under the node's lock only: a plain store, not a read-modify-write per hop.
  to.arrived.store(to.arrived.load(std::memory_order_relaxed) + 1, std::memory_order_relaxed);
  if (!to.ordered()) {
    enqueue_locked(to, std::move(packet), ticket, after);
    return;
  }
  ReorderOut out{*this, to, after, true};
  to.reorder.packet(std::move(packet), ticket, out);
}

void Engine::ReorderOut::late(std::uint32_t stream, std::uint64_t seq, std::uint64_t next) {
  if (std::exchange(to.warned_late, true)) return;
  spdlog::warn(
      "stage '{}': a packet of stream {} seq {} came after seq {} had gone on, so it goes on out "
      "of order (said once per stage): a stage before it emitted several packets for one input, "
      "and a stage with several consumers between them let a later seq pass. To keep the "
      "order, give the stages between 'consumers: 1', or emit one packet that carries them all "
      "(a list or tensor field)",
      to.config.name, stream, seq, next - 1);
}

void Engine::enqueue_locked(Node& to, Packet&& packet, Ticket ticket, Aftermath& after) {
  std::optional<StageQueue::Dropped> dropped = to.queue.push({std::move(packet), t_clock, ticket});
  if (!dropped) return;
  trace(to, dropped->stream, dropped->seq, t_clock, t_clock, t_clock, false, /*dropped=*/true);
  to.dropped.fetch_add(1, std::memory_order_relaxed);
  if (to.newest) to.dropped_newest.fetch_add(1, std::memory_order_relaxed);
  after.skips.push_back({&to, dropped->stream, dropped->seq, dropped->ticket});
  ++after.leaves;
}

void Engine::drop_aged_locked(Node& node, std::vector<Queued>& batch, Aftermath& after) {
  // Live mode: a packet older than the budget is not worth processing any more. Its seq goes on
  // as a skip, so that ordered stages and joins after do not wait for it.
  const std::int64_t now = capture_clock_ns();
  const auto aged = std::remove_if(batch.begin(), batch.end(), [&](const Queued& queued) {
    const std::int64_t capture = queued.packet.capture_ns;
    if (capture == 0 || now - capture <= node.max_age_ns) return false;
    trace(node, queued.packet.stream, queued.packet.seq, queued.enqueued, t_clock, t_clock, false,
          /*dropped=*/true);
    after.skips.push_back({&node, queued.packet.stream, queued.packet.seq, queued.ticket});
    return true;
  });
  const auto count = static_cast<std::uint64_t>(batch.end() - aged);
  if (count == 0) return;
  batch.erase(aged, batch.end());
  node.dropped.fetch_add(count, std::memory_order_relaxed);
  node.dropped_age.fetch_add(count, std::memory_order_relaxed);
  after.leaves += static_cast<std::int64_t>(count);
}

void Engine::reset_stream(Node& to, std::uint32_t stream, std::uint64_t next, bool taken) {
  // What this process held of the stream goes back unprocessed: the transport delivers it again
  // (here or elsewhere), so its tickets are not settled.
  std::vector<Ticket> abandoned;
  std::int64_t dropped = 0;
  std::int64_t held = 0;
  {
    std::lock_guard lock(to.mutex);
    const auto [reordered, held_there] = to.reorder.reset(stream, next, abandoned);
    const std::size_t parts = to.joins.reset(stream, next, abandoned);
    std::size_t queued = 0;
    if (taken && to.config.per_stream) {
      // Waiting packets of the stream would run on the state of before: they go back too.
      queued = to.queue.clear_lane(stream, abandoned);
      to.to_forget.insert(stream);
    }
    dropped = static_cast<std::int64_t>(reordered + parts + queued);
    held = static_cast<std::int64_t>(held_there + parts);
  }
  held_.fetch_sub(held);
  in_flight_.fetch_sub(dropped);
  check_done();
}

}  // namespace micromodels::detail
