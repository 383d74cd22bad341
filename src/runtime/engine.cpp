// The engine's turns and the path of a packet: a producer's turn makes packets, a stage's turn
// processes queued ones, and route() hands what came out to the next stages or outlets.
#include "engine.hpp"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "stage_call.hpp"
#include "tick_clock.hpp"

namespace micromodels::detail {

namespace {

// A turn serves at most this many packets before the consumer slot is offered again, so one
// busy stage cannot hold a worker forever.
constexpr std::size_t kTurn = 32;
// Below this service time a single-consumer stage takes packets from its queue in chunks.
constexpr std::int64_t kChunkBelowNs = 20'000;
// Below this service time an inlet fills the stage's queue; above, it keeps about one packet
// waiting per consumer, so that the stage's consumers in other processes get their share.
constexpr std::int64_t kPrefetchBelowNs = 1'000'000;
// Most deliveries an inlet hands over in one turn.
constexpr std::size_t kMostTaken = 256;

std::int64_t ns_between(std::int64_t a, std::int64_t b) { return b - a; }

// Packets produced by one call of a stage; reused so that a hop allocates nothing.
thread_local std::vector<Packet> t_outputs;
// A turn's packets, taken from the queue: kept per thread so that a turn allocates nothing.
thread_local std::vector<Queued> t_batch;
thread_local std::vector<Delivery> t_deliveries;

}  // namespace

// ---------------------------------------------------------------------------------------------
// Turns

bool Engine::downstream_full(const Node& node) const {
  return std::any_of(node.outputs.begin(), node.outputs.end(), [](const Edge& edge) {
    if (edge.outlet != nullptr) return edge.outlet->full();
    const Node& to = *edge.node;
    return to.queue.overflow() == Overflow::block && to.queue.full();
  });
}

std::size_t Engine::downstream_room(const Node& node) const {
  std::size_t room = kMostTaken;
  for (const Edge& edge : node.outputs) {
    if (edge.outlet != nullptr || edge.node->queue.overflow() != Overflow::block) continue;
    const StageQueue& queue = edge.node->queue;
    const std::size_t depth = queue.depth();
    room = std::min(room, depth >= queue.capacity() ? 0 : queue.capacity() - depth);
  }
  return room;
}

std::size_t Engine::inlet_room(const Node& stage) const {
  if (stage.queue.overflow() != Overflow::block) return kMostTaken;  // the queue drops, never waits
  const std::size_t depth = stage.queue.depth();
  const std::size_t capacity = stage.queue.capacity();
  if (depth >= capacity) return 0;
  std::size_t room = std::min(capacity - depth, kMostTaken);
  if (stage.service_ewma_ns.load(std::memory_order_relaxed) >= kPrefetchBelowNs) {
    const auto want = static_cast<std::size_t>(2 * stage.consumers.load(std::memory_order_relaxed));
    const std::size_t have = static_cast<std::size_t>(stage.active.load(std::memory_order_relaxed)) + depth;
    room = std::min(room, want > have ? want - have : 0);
  }
  return room;
}

bool Engine::ready_locked(Node& node) const {
  switch (node.kind) {
    case Node::Kind::source:
      return !node.ended && (stopping_ || sources_stopping_ || !downstream_full(node));
    case Node::Kind::inlet:
      return !node.ended && (stopping_ || inlet_room(*node.outputs.front().node) > 0);
    case Node::Kind::stage:
      break;
  }
  // Another turn only for packets that the turns already claimed will not take: a consumer busy
  // with a slow packet takes nothing more until it is done.
  if (node.queue.available() <= static_cast<std::size_t>(node.untaken)) return false;
  if (downstream_full(node)) return false;
  if (node.config.max_batch > 1 && node.queue.size() < node.config.max_batch &&
      live_sources_.load() + live_inlets_.load() > 0 && !stopping_) {
    const auto age_ns = tick_ns() - node.queue.front().enqueued;
    return static_cast<double>(age_ns) >= node.config.max_delay_ms * 1e6;
  }
  return true;
}

bool Engine::claim_locked(Node& node) const {
  const int active = node.active.load(std::memory_order_relaxed);
  if (!node.served.load(std::memory_order_relaxed) ||
      active >= node.consumers.load(std::memory_order_relaxed) || !ready_locked(node)) {
    return false;
  }
  node.active.store(active + 1, std::memory_order_relaxed);  // written under the lock only
  if (node.kind == Node::Kind::stage) ++node.untaken;
  return true;
}

void Engine::try_activate(Node& node) {
  if (!started_.load(std::memory_order_acquire)) return;
  for (;;) {
    {
      std::lock_guard lock(node.mutex);
      if (!claim_locked(node)) return;
    }
    node.executor->submit(node);
  }
}

void Engine::finish_turn(Node& node) {
  {
    std::lock_guard lock(node.mutex);
    node.active.store(node.active.load(std::memory_order_relaxed) - 1, std::memory_order_relaxed);
  }
  try_activate(node);
  // A slow stage fed by an inlet takes from it only as its consumers free up.
  if (node.tickets != nullptr) try_activate(*node.upstream.front());
}

void Engine::serve(Node& node) {
  turns_.fetch_add(1);
  switch (node.kind) {
    case Node::Kind::source:
      serve_source(node);
      break;
    case Node::Kind::inlet:
      serve_inlet(node);
      break;
    case Node::Kind::stage:
      serve_stage(node);
      break;
  }
  // The run is done only once no turn is still adding up its counters.
  if (turns_.fetch_sub(1) == 1) check_done();
  finish_turn(node);
}

void Engine::serve_source(Node& node) {
  std::vector<Packet>& out = t_outputs;
  const auto stopping = [this] { return stopping_.load() || sources_stopping_.load(); };
  bool ended = stopping();
  std::string error;
  for (std::size_t i = 0; i < kTurn && !ended && !downstream_full(node); ++i) {
    if (i > 0) WorkerPool::share_pending();
    out.clear();
    const auto t0 = stamp();
    bool more = true;
    if (!contained([&] { more = node.source->next(out); }, error)) {
      // A source that throws cannot be trusted to continue: its stream ends here.
      node.failed.fetch_add(1, std::memory_order_relaxed);
      spdlog::error("stage '{}': source failed, ending its stream: {}", node.config.name, error);
      more = false;
    }
    ended = !more;
    const auto t1 = stamp();
    node.service.record(ns_between(t0, t1));
    node.busy_ns.fetch_add(ns_between(t0, t1), std::memory_order_relaxed);
    if (out.empty()) continue;
    for (Packet& packet : out) {
      // Its capture time (the capture clock is the tick clock: t1), unless the source knew it
      // better (the moment a camera frame came).
      if (packet.capture_ns == 0) packet.capture_ns = t1;
      node.tap.pass(packet);
      std::uint32_t seen = streams_.load(std::memory_order_relaxed);
      while (packet.stream >= seen &&
             !streams_.compare_exchange_weak(seen, packet.stream + 1, std::memory_order_relaxed)) {
      }
    }
    if (trace_ != nullptr) {
      for (const Packet& packet : out) {
        trace_->record({.stage = static_cast<std::uint32_t>(node.plan.index), .stream = packet.stream,
                        .seq = packet.seq, .enqueued = t0, .start = t0, .end = t1, .thread = 0,
                        .failed = false});
      }
    }
    node.processed.fetch_add(out.size(), std::memory_order_relaxed);
    node.emitted.fetch_add(out.size(), std::memory_order_relaxed);
    const auto count = static_cast<std::int64_t>(out.size());
    if (node.outputs.empty()) continue;  // a source feeding nothing: its packets end here
    add_in_flight(count * static_cast<std::int64_t>(node.outputs.size()));
    for (Packet& packet : out) {
      for (std::size_t e = 0; e + 1 < node.outputs.size(); ++e) deliver(node.outputs[e], Packet(packet));
      deliver(node.outputs.back(), std::move(packet));
    }
    ended = ended || stopping();
  }
  out.clear();
  if (ended) end_producer(node);
}

void Engine::serve_inlet(Node& node) {
  Node& to = *node.outputs.front().node;
  if (stopping_.load()) {
    end_producer(node);
    return;
  }
  std::vector<Delivery>& got = t_deliveries;
  got.clear();
  bool more = true;
  std::string error;
  if (!contained([&] { more = node.inlet->take(got, inlet_room(to)); }, error)) {
    fail(std::make_exception_ptr(std::runtime_error("stage '" + to.config.name +
                                                    "': its inlet failed: " + error)));
    more = false;
  }
  stamp();
  for (Delivery& d : got) {
    const Edge edge{&to, d.input};
    switch (d.kind) {
      case Delivery::Kind::packet:
        add_in_flight(1);
        deliver(edge, std::move(d.packet), d.ticket);
        break;
      case Delivery::Kind::skip:
        if (d.dead_lettered) to.dead_lettered.fetch_add(1, std::memory_order_relaxed);
        deliver_skip(edge, d.packet.stream, d.packet.seq, d.ticket);
        break;
      case Delivery::Kind::reset:
        reset_stream(to, d.packet.stream, d.packet.seq);
        break;
    }
  }
  got.clear();
  if (!more) end_producer(node);
}

void Engine::end_producer(Node& node) {
  {
    std::lock_guard lock(node.mutex);
    if (node.ended) return;
    node.ended = true;
  }
  std::atomic<int>& live = node.kind == Node::Kind::source ? live_sources_ : live_inlets_;
  if (live.fetch_sub(1) == 1) {
    housekeeper_cv_.notify_all();  // release what ordering or joins still hold
    check_done();
  }
}

void Engine::serve_stage(Node& node) {
  std::vector<Queued>& batch = t_batch;
  batch.clear();
  std::optional<std::uint32_t> lane;
  std::shared_ptr<Stage> stage;  // the instance this turn uses, even if `swap` replaces it
  bool exclusive = false;
  bool had_room = true;
  Aftermath after;
  {
    std::lock_guard lock(node.mutex);
    // A single consumer records its latencies without atomic read-modify-writes (a scale-up in
    // the middle of this turn can at worst lose a few histogram counts, never corrupt them).
    exclusive = node.consumers.load(std::memory_order_relaxed) == 1;
    --node.untaken;
    had_room = !node.queue.full();
    std::size_t take = 1;
    if (node.config.max_batch > 1) {
      take = node.config.max_batch;
    } else if (live_) {
      take = 1;  // for latency: a packet that arrives meanwhile is not stuck behind a chunk
    } else if (node.config.per_stream ||
               (exclusive &&
                node.service_ewma_ns.load(std::memory_order_relaxed) < kChunkBelowNs)) {
      // A chunk, but no more than the queues it feeds have room for: a turn in progress does
      // not fill them past their capacity.
      take = std::clamp<std::size_t>(downstream_room(node), 1, kTurn);
    }
    lane = node.queue.take(batch, take);
    if (node.max_age_ns > 0) drop_aged_locked(node, batch, after);
    if (node.reorder.waiting()) {
      ReorderOut out{*this, node, after, false};
      node.reorder.release_waiting(out);
    }
    if (!batch.empty()) stage = node.stage;
  }
  if (!had_room && !node.queue.full()) {
    for (Node* up : node.upstream) try_activate(*up);
  } else if (node.tickets != nullptr) {
    try_activate(*node.upstream.front());
  }
  after_delivery(node, after, false);
  if (!batch.empty()) {
    // A last stage's packets leave the pipeline here: its tap shows them as it takes them.
    if (node.outputs.empty()) {
      for (const Queued& queued : batch) node.tap.pass(queued.packet);
    }
    if (node.config.max_batch > 1) {
      run_batch(node, *stage, batch, exclusive);
    } else {
      run_packets(node, *stage, batch, exclusive);
    }
  }
  if (lane) {
    std::lock_guard lock(node.mutex);
    node.queue.release_lane(*lane);
  }
}

void Engine::run_batch(Node& node, Stage& stage, std::vector<Queued>& batch, bool exclusive) {
  std::vector<Packet>& out = t_outputs;
  const auto t0 = stamp();
  std::vector<Packet> packets;
  std::vector<Packet> originals;
  std::vector<Key> keys;
  packets.reserve(batch.size());
  keys.reserve(batch.size());
  for (Queued& queued : batch) {
    node.wait.record(ns_between(queued.enqueued, t0), exclusive);
    keys.push_back(
        {queued.packet.stream, queued.packet.seq, queued.ticket, queued.packet.capture_ns});
    packets.push_back(std::move(queued.packet));
  }
  if (node.dead_letter) originals = packets;
  out.clear();
  std::string error;
  const bool ok = contained([&] { stage.process_batch(packets, out); }, error);
  const auto t1 = stamp();
  if (trace_ != nullptr) {
    for (std::size_t i = 0; i < keys.size(); ++i) {
      trace_->record({.stage = static_cast<std::uint32_t>(node.plan.index), .stream = keys[i].stream,
                      .seq = keys[i].seq, .enqueued = batch[i].enqueued, .start = t0, .end = t1,
                      .thread = 0, .failed = !ok});
    }
  }
  if (!ok) {
    out.clear();
    for (std::size_t i = 0; i < keys.size(); ++i) {
      Packet failed = node.dead_letter ? std::move(originals[i]) : Packet{};
      failed.stream = keys[i].stream;
      failed.seq = keys[i].seq;
      fail(node, std::move(failed), error, keys[i].ticket);
    }
    return;
  }
  const auto each = ns_between(t0, t1) / static_cast<std::int64_t>(keys.size());
  for (std::size_t i = 0; i < keys.size(); ++i) node.service.record(each);
  node.busy_ns.fetch_add(ns_between(t0, t1), std::memory_order_relaxed);
  node.processed.fetch_add(keys.size(), std::memory_order_relaxed);
  route(node, out, keys, exclusive);
  out.clear();
  for (const Key& key : keys) settle(node, key.ticket);
}

void Engine::run_packets(Node& node, Stage& stage, std::vector<Queued>& batch, bool exclusive) {
  std::vector<Packet>& out = t_outputs;
  // One clock read per packet: the end of one packet is the start of the next. Counters are
  // added once per turn, not per packet, to keep shared cache lines quiet.
  std::int64_t t0 = stamp();
  const std::int64_t turn_start = t0;
  std::uint64_t done = 0;
  std::string error;
  for (std::size_t i = 0; i < batch.size(); ++i) {
    if (i > 0) WorkerPool::share_pending();
    Queued& queued = batch[i];
    node.wait.record(ns_between(queued.enqueued, t0), exclusive);
    const Key key{queued.packet.stream, queued.packet.seq, queued.ticket,
                  queued.packet.capture_ns};
    std::optional<Packet> original;
    if (node.dead_letter) original = queued.packet;
    out.clear();
    const bool ok = contained([&] { stage.process(std::move(queued.packet), out); }, error);
    const auto t1 = stamp();
    const auto spent = ns_between(t0, t1);
    if (trace_ != nullptr) {
      trace_->record({.stage = static_cast<std::uint32_t>(node.plan.index), .stream = key.stream,
                      .seq = key.seq, .enqueued = queued.enqueued, .start = t0, .end = t1,
                      .thread = 0, .failed = !ok});
    }
    t0 = t1;
    node.service.record(spent, exclusive);
    const auto ewma = node.service_ewma_ns.load(std::memory_order_relaxed);
    node.service_ewma_ns.store(ewma + (spent - ewma) / 8, std::memory_order_relaxed);
    if (!ok) {
      out.clear();
      Packet failed = original ? std::move(*original) : Packet{};
      failed.stream = key.stream;
      failed.seq = key.seq;
      fail(node, std::move(failed), error, key.ticket);
      continue;
    }
    ++done;
    route(node, out, {&key, 1}, exclusive);
    settle(node, key.ticket);
  }
  out.clear();
  node.processed.fetch_add(done, std::memory_order_relaxed);
  node.busy_ns.fetch_add(ns_between(turn_start, t0), std::memory_order_relaxed);
}

// ---------------------------------------------------------------------------------------------
// Moving packets

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

void Engine::deliver(const Edge& edge, Packet&& packet, Ticket ticket) {
  if (edge.outlet != nullptr) {
    edge.outlet->put(packet);
    leave(1);  // it left this process
    return;
  }
  Node& to = *edge.node;
  Aftermath after;
  bool claimed = false;
  {
    std::lock_guard lock(to.mutex);
    if (to.joins_inputs()) {
      bool refused = false;
      std::optional<JoinTable::Done> done = to.joins.part(edge.input, std::move(packet), ticket,
                                                          refused);
      if (refused) {
        // A second part for an input, or one after its join timed out: nothing to join with.
        to.dropped.fetch_add(1, std::memory_order_relaxed);
        ++after.leaves;
        after.settled.push_back(ticket);
      } else {
        held_.fetch_add(1);
        if (done) settle_join(to, std::move(*done), after);
      }
    } else {
      release_locked(to, std::move(packet), ticket, after);
    }
    claimed = claim_locked(to);
  }
  after_delivery(to, after, claimed);
}

void Engine::deliver_all(const Edge& edge, std::vector<Packet>& packets) {
  if (edge.outlet != nullptr || edge.node->joins_inputs()) {
    for (Packet& packet : packets) deliver(edge, std::move(packet));
    return;
  }
  // Under one lock, and each (stream, seq)'s packets to the reorder buffer together: another
  // consumer's later seq cannot come between a packet and the extra ones of its call.
  Node& to = *edge.node;
  Aftermath after;
  bool claimed = false;
  {
    std::lock_guard lock(to.mutex);
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
    claimed = claim_locked(to);
  }
  after_delivery(to, after, claimed);
}

void Engine::deliver_skip(const Edge& edge, std::uint32_t stream, std::uint64_t seq,
                          Ticket ticket) {
  if (edge.outlet != nullptr) {
    edge.outlet->skip(stream, seq);
    return;
  }
  Node& to = *edge.node;
  Aftermath after;
  bool claimed = false;
  {
    std::lock_guard lock(to.mutex);
    if (to.joins_inputs()) {
      bool refused = false;
      std::optional<JoinTable::Done> done = to.joins.skip(edge.input, stream, seq, ticket, refused);
      if (refused) after.settled.push_back(ticket);
      if (done) settle_join(to, std::move(*done), after);
    } else {
      skip_locked(to, stream, seq, ticket, true, after);
    }
    claimed = claim_locked(to);
  }
  after_delivery(to, after, claimed);
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
  if (present == 0 || (!complete && to.config.join_on_timeout == JoinTimeout::drop)) {
    if (present > 0) {
      to.dropped.fetch_add(1, std::memory_order_relaxed);
      after.leaves += static_cast<std::int64_t>(present);
    }
    skip_locked(to, done.stream, done.seq, ticket, present == 0, after);
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

void Engine::enqueue_locked(Node& to, Packet&& packet, Ticket ticket, Aftermath& after) {
  std::optional<StageQueue::Dropped> dropped = to.queue.push({std::move(packet), t_clock, ticket});
  if (!dropped) return;
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

void Engine::reset_stream(Node& to, std::uint32_t stream, std::uint64_t next) {
  // What this process held of the stream goes back unprocessed: the transport delivers it again
  // (here or elsewhere), so its tickets are not settled.
  std::vector<Ticket> abandoned;
  std::int64_t dropped = 0;
  std::int64_t held = 0;
  {
    std::lock_guard lock(to.mutex);
    const auto [reordered, held_there] = to.reorder.reset(stream, next, abandoned);
    const std::size_t parts = to.joins.reset(stream, next, abandoned);
    dropped = static_cast<std::int64_t>(reordered + parts);
    held = static_cast<std::int64_t>(held_there + parts);
  }
  held_.fetch_sub(held);
  in_flight_.fetch_sub(dropped);
  check_done();
}

}  // namespace micromodels::detail
