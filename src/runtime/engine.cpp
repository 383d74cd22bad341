// The engine's turns: a producer's turn makes packets, a stage's turn processes queued ones and
// hands what came out to route() (engine_delivery.cpp).
#include "engine.hpp"

#include <spdlog/spdlog.h>

#include <algorithm>
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
// Below this service time an inlet fills the stage's queue; above, it keeps about one call's
// packets waiting per consumer, so that the stage's consumers in other processes get their share.
constexpr std::int64_t kPrefetchBelowNs = 1'000'000;
// Most deliveries an inlet hands over in one turn.
constexpr std::size_t kMostTaken = 256;
// The longest take an inlet's prefetch allows for (a broker's round trips).
constexpr std::int64_t kLongestTakeNs = 100'000'000;

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

std::size_t Engine::inlet_room(const Node& inlet) const {
  const Node& stage = *inlet.outputs.front().node;
  if (stage.queue.overflow() != Overflow::block) return kMostTaken;  // the queue drops, never waits
  const std::size_t depth = stage.queue.depth();
  const std::size_t capacity = stage.queue.capacity();
  if (depth >= capacity) return 0;
  std::size_t room = std::min(capacity - depth, kMostTaken);
  const std::int64_t service_ns = stage.service_ewma_ns.load(std::memory_order_relaxed);
  if (service_ns >= kPrefetchBelowNs) {
    // One call's worth (a packet, or a batch of max_batch) waiting per consumer, besides the one
    // it works on. With a broker some milliseconds away, a take lasts longer than a call: the
    // consumers would wait for each round trip. There the queue keeps, on top, what they get
    // through during one take ("in transit"), and the next take waits until it can bring that
    // much: one round trip brings what the consumers use up during one, not a packet at a time.
    const auto consumers =
        static_cast<std::size_t>(stage.consumers.load(std::memory_order_relaxed));
    const std::size_t in_transit =
        consumers *
        static_cast<std::size_t>(inlet.take_ewma_ns.load(std::memory_order_relaxed) / service_ns);
    const std::size_t want =
        consumers * (1 + std::max<std::size_t>(1, stage.config.max_batch)) + 2 * in_transit;
    const std::size_t have = static_cast<std::size_t>(stage.active.load(std::memory_order_relaxed)) + depth;
    room = std::min(room, want > have ? want - have : 0);
    if (room < std::min(in_transit, capacity / 2)) return 0;
  }
  return room;
}

bool Engine::ready_locked(Node& node) const {
  switch (node.kind) {
    case Node::Kind::source:
      return !node.ended && (stopping_ || sources_stopping_ || !downstream_full(node));
    case Node::Kind::inlet:
      return !node.ended && (stopping_ || inlet_room(node) > 0);
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
        trace(node, packet.stream, packet.seq, t0, t0, t1, /*failed=*/false);
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
  const auto t0 = stamp();
  if (!contained([&] { more = node.inlet->take(got, inlet_room(node)); }, error)) {
    fail(std::make_exception_ptr(std::runtime_error("stage '" + to.config.name +
                                                    "': its inlet failed: " + error)));
    more = false;
  }
  const auto t1 = stamp();
  if (!got.empty()) {
    // A take that waited for entries to arrive measures the source's pace, not the broker's
    // round trip: counted up to kLongestTakeNs.
    const auto spent = std::min(ns_between(t0, t1), kLongestTakeNs);
    const auto ewma = node.take_ewma_ns.load(std::memory_order_relaxed);
    node.take_ewma_ns.store(ewma + (spent - ewma) / 8, std::memory_order_relaxed);
  }
  for (Delivery& d : got) {
    const Edge edge{&to, d.input};
    switch (d.kind) {
      case Delivery::Kind::packet:
        add_in_flight(1);
        deliver(edge, std::move(d.packet), d.ticket);
        break;
      case Delivery::Kind::skip:
        if (d.loss == Delivery::Loss::dead_lettered) {
          to.dead_lettered.fetch_add(1, std::memory_order_relaxed);
        }
        deliver_skip(edge, d.packet.stream, d.packet.seq, d.ticket,
                     d.loss == Delivery::Loss::unserved);
        break;
      case Delivery::Kind::reset:
        reset_stream(to, d.packet.stream, d.packet.seq, true);
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
  bool forget = false;  // the lane's stream was run elsewhere since this stage last saw it
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
    forget = lane && !batch.empty() && node.to_forget.erase(*lane) > 0;
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
    if (forget) forget_stream(node, *stage, *lane);
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

void Engine::forget_stream(const Node& node, Stage& stage, std::uint32_t stream) {
  std::string error;
  if (!contained([&] { stage.forget_stream(stream); }, error)) {
    spdlog::error("stage '{}': forgetting stream {} (run by another process since) failed: {}",
                  node.config.name, stream, error);
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
      trace(node, keys[i].stream, keys[i].seq, batch[i].enqueued, t0, t1, /*failed=*/!ok);
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
    trace(node, key.stream, key.seq, queued.enqueued, t0, t1, /*failed=*/!ok);
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

}  // namespace micromodels::detail
