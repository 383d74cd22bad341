#include "engine.hpp"

#include "tick_clock.hpp"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <set>
#include <stdexcept>
#include <utility>

namespace micromodels::detail {

namespace {

// A turn serves at most this many packets before the consumer slot is offered again, so one
// busy stage cannot hold a worker forever.
constexpr std::size_t kTurn = 32;
// Below this service time a single-consumer stage takes packets from its queue in chunks.
constexpr std::int64_t kChunkBelowNs = 20'000;

std::int64_t ns_between(std::int64_t a, std::int64_t b) { return b - a; }

std::int64_t ns_between(Clock::time_point a, Clock::time_point b) {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(b - a).count();
}

void update_max(std::atomic<std::size_t>& max, std::size_t value) {
  std::size_t seen = max.load(std::memory_order_relaxed);
  while (value > seen && !max.compare_exchange_weak(seen, value, std::memory_order_relaxed)) {
  }
}

// Packets produced by one call of a stage; reused so that a hop allocates nothing.
thread_local std::vector<Packet> t_outputs;

// The time this thread last read the clock: a packet's enqueue time is the moment its producer
// finished, which saves a clock read per hop.
thread_local std::int64_t t_clock = 0;

std::int64_t stamp() { return t_clock = tick_ns(); }

}  // namespace

Node::Node(Engine& owner, const StageConfig& stage_config, const StageType& type,
           const Params& params)
    : engine(owner), config(stage_config) {
  info = type.info ? type.info(params) : StageInfo{};
  blocking = config.blocking.value_or(info.blocking);
  try {
    if (type.is_source()) {
      source = type.make_source(params);
    } else {
      stage = type.make(params);
    }
  } catch (const std::exception& error) {
    auto where = config.locations.count("type") ? config.locations.at("type") : SourceLocation{};
    throw ConfigError(where, "type",
                      "stage '" + config.name + "' (" + config.type +
                          ") could not be built: " + error.what());
  }
  consumers = source ? 1 : config.consumers;
}

Engine::Engine(const Pipeline& pipeline, const Registry& registry)
    : pipeline_(pipeline), registry_(registry), name_(pipeline.name()) {
  build();
}

Engine::~Engine() {
  if (started_) {
    stop();
    wait_for(std::nullopt);
  }
  {
    std::lock_guard lock(housekeeper_mutex_);
    housekeeper_stop_ = true;
  }
  housekeeper_cv_.notify_all();
  if (housekeeper_.joinable()) housekeeper_.join();
  pool_->shutdown();
  for (auto& threads : dedicated_) threads->shutdown();
}

void Engine::build() {
  const Pipeline& pipeline = pipeline_;
  const Registry& registry = registry_;
  pipeline.validate(registry);
  // Create spdlog's default logger here, before any worker thread logs through it.
  spdlog::default_logger();
  std::map<std::string, Node*, std::less<>> by_name;
  for (const StageConfig& config : pipeline.stages()) {
    const StageType& type = *registry.find(config.type);
    const Params params = Params::resolve(config.name, type.params, config.params);
    nodes_.push_back(std::make_unique<Node>(*this, config, type, params));
    by_name[config.name] = nodes_.back().get();
  }
  for (std::size_t i = 0; i < nodes_.size(); ++i) {
    Node& node = *nodes_[i];
    const std::vector<std::string> inputs = pipeline.inputs_of(i, registry);
    node.input_count = inputs.size();
    for (std::size_t k = 0; k < inputs.size(); ++k) {
      Node* from = by_name.at(inputs[k]);
      from->outputs.push_back({&node, k});
      node.upstream.push_back(from);
    }
  }
  if (!pipeline.dead_letter().empty()) dead_letter_ = by_name.at(pipeline.dead_letter());
  for (auto& node : nodes_) collect_skip_targets(*node, node->skip_targets);

  const int workers = pipeline.workers() > 0
                          ? pipeline.workers()
                          : std::max(1, static_cast<int>(std::thread::hardware_concurrency()));
  auto serve = [this](Node& node) { this->serve(node); };
  workers_ = workers;
  pool_ = std::make_unique<WorkerPool>(workers, serve, name_);
  bool all_known = true;
  std::uint64_t expected = 0;
  for (auto& node : nodes_) {
    if (node->blocking) {
      dedicated_.push_back(std::make_unique<DedicatedThreads>(serve, node->config.name));
      node->executor = dedicated_.back().get();
    } else {
      node->executor = pool_.get();
    }
    node->executor->reserve(node->consumers);
    if (node->source) {
      auto count = node->source->expected_count();
      all_known = all_known && count.has_value();
      expected += count.value_or(0);
    } else if (node->outputs.empty() && node.get() != dead_letter_) {
      ++terminal_count_;
    }
  }
  expected_ = all_known ? expected * std::max<std::size_t>(terminal_count_, 1) : 0;
}

void Engine::collect_skip_targets(const Node& from, std::vector<Edge>& targets) const {
  for (const Edge& edge : from.outputs) {
    if (edge.node->is_barrier()) {
      const bool known = std::any_of(targets.begin(), targets.end(), [&](const Edge& e) {
        return e.node == edge.node && e.input == edge.input;
      });
      if (!known) targets.push_back(edge);
    } else {
      collect_skip_targets(*edge.node, targets);
    }
  }
}

void Engine::start() {
  if (started_.exchange(true)) throw std::logic_error("Runner::start called twice");
  start_time_ = Clock::now();
  int sources = 0;
  for (auto& node : nodes_) {
    node->last_change = start_time_;
    if (node->source) ++sources;
  }
  live_sources_ = sources;
  housekeeper_ = std::thread([this] { housekeeping(); });
  for (auto& node : nodes_) {
    if (node->source) try_activate(*node);
  }
}

bool Engine::downstream_full(const Node& node) const {
  return std::any_of(node.outputs.begin(), node.outputs.end(), [](const Edge& edge) {
    const Node& to = *edge.node;
    return to.config.overflow == Overflow::block &&
           to.depth.load(std::memory_order_acquire) >= to.config.queue_capacity;
  });
}

bool Engine::ready_locked(Node& node) const {
  if (node.source) {
    return !node.source_done && (stopping_ || !downstream_full(node));
  }
  const std::size_t available = node.config.per_stream ? node.ready_lanes.size() : node.queue.size();
  if (available <= static_cast<std::size_t>(node.active)) return false;
  if (downstream_full(node)) return false;
  if (node.config.max_batch > 1 && node.queue.size() < node.config.max_batch &&
      live_sources_.load() > 0 && !stopping_) {
    const auto age_ns = tick_ns() - node.queue.front().enqueued;
    return static_cast<double>(age_ns) >= node.config.max_delay_ms * 1e6;
  }
  return true;
}

void Engine::try_activate(Node& node) {
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
    --node.active;
  }
  try_activate(node);
}

void Engine::serve(Node& node) {
  turns_.fetch_add(1);
  if (node.source) {
    serve_source(node);
  } else {
    serve_stage(node);
  }
  // The run is done only once no turn is still adding up its counters.
  if (turns_.fetch_sub(1) == 1) check_done();
  finish_turn(node);
}

void Engine::check_done() {
  if (live_sources_.load() != 0 || in_flight_.load() != 0 || turns_.load() != 0) return;
  std::lock_guard lock(done_mutex_);
  if (done_) return;
  done_ = true;
  end_time_ = Clock::now();
  done_cv_.notify_all();
}

void Engine::serve_source(Node& node) {
  std::vector<Packet>& out = t_outputs;
  bool ended = stopping_.load();
  for (std::size_t i = 0; i < kTurn && !ended && !downstream_full(node); ++i) {
    if (i > 0) WorkerPool::share_pending();
    out.clear();
    const auto t0 = stamp();
    try {
      ended = !node.source->next(out);
    } catch (const std::exception& error) {
      // A source that throws cannot be trusted to continue: its stream ends here.
      node.failed.fetch_add(1, std::memory_order_relaxed);
      spdlog::error("stage '{}': source failed, ending its stream: {}", node.config.name,
                    error.what());
      ended = true;
    }
    const auto t1 = stamp();
    node.service.record(ns_between(t0, t1));
    node.busy_ns.fetch_add(ns_between(t0, t1), std::memory_order_relaxed);
    if (out.empty()) continue;
    const auto count = static_cast<std::int64_t>(out.size());
    produced_.fetch_add(out.size());
    for (const Packet& packet : out) {
      std::uint32_t seen = streams_.load(std::memory_order_relaxed);
      while (packet.stream >= seen &&
             !streams_.compare_exchange_weak(seen, packet.stream + 1, std::memory_order_relaxed)) {
      }
    }
    node.processed.fetch_add(out.size(), std::memory_order_relaxed);
    node.emitted.fetch_add(out.size(), std::memory_order_relaxed);
    if (node.outputs.empty()) {
      add_in_flight(count);
      retire(count);
      continue;
    }
    add_in_flight(count * static_cast<std::int64_t>(node.outputs.size()));
    for (Packet& packet : out) {
      for (std::size_t e = 0; e + 1 < node.outputs.size(); ++e) deliver(node.outputs[e], packet);
      deliver(node.outputs.back(), std::move(packet));
    }
    ended = ended || stopping_.load();
  }
  out.clear();
  if (!ended) return;
  {
    std::lock_guard lock(node.mutex);
    if (node.source_done) return;
    node.source_done = true;
  }
  node.finished_source = true;
  if (live_sources_.fetch_sub(1) == 1) {
    housekeeper_cv_.notify_all();  // flush what ordering or joins still hold
    check_done();
  }
}

void Engine::serve_stage(Node& node) {
  std::vector<Queued> batch;
  std::optional<std::uint32_t> lane;
  std::shared_ptr<Stage> stage;  // the instance this turn uses, even if `swap` replaces it
  std::size_t before = 0;
  bool exclusive = false;
  {
    std::lock_guard lock(node.mutex);
    // A single consumer records its latencies without atomic read-modify-writes (a scale-up in
    // the middle of this turn can at worst lose a few histogram counts, never corrupt them).
    exclusive = node.consumers == 1;
    before = node.depth.load(std::memory_order_relaxed);
    if (node.config.per_stream) {
      if (!node.ready_lanes.empty()) {
        lane = node.ready_lanes.front();
        node.ready_lanes.pop_front();
        Node::Lane& l = node.lanes[*lane];
        l.listed = false;
        l.busy = true;
        const std::size_t take = std::min(l.queue.size(), kTurn);
        for (std::size_t i = 0; i < take; ++i) {
          batch.push_back(std::move(l.queue.front()));
          l.queue.pop_front();
        }
      }
    } else {
      std::size_t take = 1;
      if (node.config.max_batch > 1) {
        take = node.config.max_batch;
      } else if (node.consumers == 1 && node.service_ewma_ns.load(std::memory_order_relaxed) <
                                            kChunkBelowNs) {
        take = kTurn;
      }
      take = std::min(take, node.queue.size());
      for (std::size_t i = 0; i < take; ++i) {
        batch.push_back(std::move(node.queue.front()));
        node.queue.pop_front();
      }
    }
    node.depth.store(before - batch.size(), std::memory_order_release);
    if (!batch.empty()) stage = node.stage;
  }
  const std::size_t after = before - batch.size();
  if (before >= node.config.queue_capacity && after < node.config.queue_capacity) {
    for (Node* up : node.upstream) try_activate(*up);
  }
  if (!batch.empty()) run_packets(node, *stage, batch, exclusive);
  if (lane) {
    std::lock_guard lock(node.mutex);
    Node::Lane& l = node.lanes[*lane];
    l.busy = false;
    if (!l.queue.empty()) {
      l.listed = true;
      node.ready_lanes.push_back(*lane);
    } else if (!l.listed) {
      node.lanes.erase(*lane);
    }
  }
}

void Engine::run_packets(Node& node, Stage& stage, std::vector<Queued>& batch, bool exclusive) {
  std::vector<Packet>& out = t_outputs;
  if (node.config.max_batch > 1) {
    const auto t0 = stamp();
    std::vector<Packet> packets;
    std::vector<Packet> originals;
    packets.reserve(batch.size());
    for (Queued& queued : batch) {
      node.wait.record(ns_between(queued.enqueued, t0), exclusive);
      packets.push_back(std::move(queued.packet));
    }
    if (dead_letter_ != nullptr) originals = packets;
    out.clear();
    try {
      stage.process_batch(packets, out);
    } catch (const std::exception& error) {
      if (originals.empty()) {
        for (Queued& queued : batch) originals.push_back(std::move(queued.packet));
      }
      out.clear();
      // Keys of the failed packets: the originals when kept, else the batch's (moved-from) keys.
      for (std::size_t i = 0; i < packets.size(); ++i) {
        Packet failed = dead_letter_ != nullptr ? std::move(originals[i]) : Packet{};
        failed.stream = packets[i].stream;
        failed.seq = packets[i].seq;
        fail(node, std::move(failed), error.what());
      }
      return;
    }
    const auto t1 = stamp();
    const auto each = ns_between(t0, t1) / static_cast<std::int64_t>(packets.size());
    for (std::size_t i = 0; i < packets.size(); ++i) node.service.record(each);
    node.busy_ns.fetch_add(ns_between(t0, t1), std::memory_order_relaxed);
    node.processed.fetch_add(packets.size(), std::memory_order_relaxed);
    std::vector<Key> keys;
    keys.reserve(packets.size());
    for (const Packet& packet : packets) keys.push_back({packet.stream, packet.seq});
    route(node, out, keys);
    out.clear();
    return;
  }
  // One clock read per packet: the end of one packet is the start of the next. Counters are
  // added once per turn, not per packet, to keep shared cache lines quiet.
  std::int64_t t0 = stamp();
  const std::int64_t turn_start = t0;
  std::uint64_t done = 0;
  for (std::size_t i = 0; i < batch.size(); ++i) {
    if (i > 0) WorkerPool::share_pending();
    Queued& queued = batch[i];
    node.wait.record(ns_between(queued.enqueued, t0), exclusive);
    const std::uint32_t stream = queued.packet.stream;
    const std::uint64_t seq = queued.packet.seq;
    std::optional<Packet> original;
    if (dead_letter_ != nullptr && &node != dead_letter_) original = queued.packet;
    out.clear();
    bool ok = true;
    std::string error_text;
    try {
      stage.process(std::move(queued.packet), out);
    } catch (const std::exception& error) {
      ok = false;
      error_text = error.what();
    } catch (...) {
      ok = false;
      error_text = "unknown exception";
    }
    const auto t1 = stamp();
    const auto spent = ns_between(t0, t1);
    t0 = t1;
    node.service.record(spent, exclusive);
    const auto ewma = node.service_ewma_ns.load(std::memory_order_relaxed);
    node.service_ewma_ns.store(ewma + (spent - ewma) / 8, std::memory_order_relaxed);
    if (!ok) {
      out.clear();
      Packet failed = original ? std::move(*original) : Packet{};
      failed.stream = stream;
      failed.seq = seq;
      fail(node, std::move(failed), error_text);
      continue;
    }
    ++done;
    const Key key{stream, seq};
    route(node, out, {&key, 1});
  }
  out.clear();
  node.processed.fetch_add(done, std::memory_order_relaxed);
  node.busy_ns.fetch_add(ns_between(turn_start, t0), std::memory_order_relaxed);
}

void Engine::route(Node& node, std::vector<Packet>& outputs, std::span<const Key> inputs) {
  const auto consumed = static_cast<std::int64_t>(inputs.size());
  if (node.outputs.empty()) {
    // A terminal stage: whatever it emits leaves the pipeline here.
    retire(consumed);
    return;
  }
  if (outputs.empty()) {
    // Filtered out: ordered stages and joins downstream must not wait for these seqs.
    for (const Key& key : inputs) propagate_skip(node, key.stream, key.seq);
    retire(consumed);
    return;
  }
  const auto edges = static_cast<std::int64_t>(node.outputs.size());
  const auto delta = static_cast<std::int64_t>(outputs.size()) * edges - consumed;
  if (delta != 0) add_in_flight(delta);  // a 1-to-1 hop leaves the shared counter alone
  node.emitted.fetch_add(outputs.size(), std::memory_order_relaxed);
  for (Packet& packet : outputs) {
    for (std::size_t e = 0; e + 1 < node.outputs.size(); ++e) deliver(node.outputs[e], packet);
    deliver(node.outputs.back(), std::move(packet));
  }
}

void Engine::fail(Node& node, Packet packet, const std::string& error) {
  const auto count = node.failed.fetch_add(1, std::memory_order_relaxed) + 1;
  // Log the first failures of a stage, then every hundredth, so a broken stage cannot flood.
  if (count <= 10 || count % 100 == 0) {
    spdlog::warn("stage '{}': packet stream {} seq {} failed ({} so far): {}", node.config.name,
                 packet.stream, packet.seq, count, error);
  }
  propagate_skip(node, packet.stream, packet.seq);
  if (dead_letter_ != nullptr && &node != dead_letter_) {
    packet.set("error", error);
    packet.set("failed_stage", node.config.name);
    deliver({dead_letter_, 0}, std::move(packet));  // still in flight, now towards the dead letters
    return;
  }
  retire(1);
}

void Engine::propagate_skip(const Node& node, std::uint32_t stream, std::uint64_t seq) {
  for (const Edge& target : node.skip_targets) deliver_skip(target, stream, seq);
}

void Engine::add_in_flight(std::int64_t count) { in_flight_.fetch_add(count); }

void Engine::retire(std::int64_t count) {
  if (count == 0) return;
  retired_.fetch_add(static_cast<std::uint64_t>(count), std::memory_order_relaxed);
  const auto left = in_flight_.fetch_sub(count) - count;
  if (left == 0) {
    check_done();
  } else if (left == held_.load() && live_sources_.load() == 0) {
    housekeeper_cv_.notify_all();  // only parked packets are left: flush them
  }
}

void Engine::deliver(const Edge& edge, Packet packet) {
  Node& to = *edge.node;
  std::vector<Skip> skips;
  bool claimed = false;
  {
    std::lock_guard lock(to.mutex);
    if (to.input_count > 1) {
      std::optional<Packet> merged = join_locked(to, edge.input, std::move(packet), skips);
      if (merged) release_locked(to, std::move(*merged), skips);
    } else {
      release_locked(to, std::move(packet), skips);
    }
    claimed = claim_locked(to);
  }
  after_delivery(to, skips, claimed);
}

void Engine::deliver_skip(const Edge& edge, std::uint32_t stream, std::uint64_t seq) {
  Node& to = *edge.node;
  std::vector<Skip> skips;
  bool claimed = false;
  {
    std::lock_guard lock(to.mutex);
    if (to.input_count > 1) {
      Node::JoinEntry& entry = join_entry_locked(to, stream, seq);
      if (!entry.skipped[edge.input] && !entry.parts[edge.input]) {
        entry.skipped[edge.input] = true;
        ++entry.settled;
      }
      if (entry.settled == to.input_count) {
        stamp();
        std::optional<Packet> merged = settle_join_locked(to, stream, seq, skips);
        if (merged) release_locked(to, std::move(*merged), skips);
      }
    } else {
      skip_locked(to, stream, seq, skips);
    }
    claimed = claim_locked(to);
  }
  after_delivery(to, skips, claimed);
}

bool Engine::claim_locked(Node& node) const {
  if (node.active >= node.consumers || !ready_locked(node)) return false;
  ++node.active;
  return true;
}

void Engine::after_delivery(Node& to, const std::vector<Skip>& skips, bool claimed) {
  if (claimed) to.executor->submit(to);
  for (const Skip& skip : skips) propagate_skip(*skip.from, skip.stream, skip.seq);
}

Node::JoinEntry& Engine::join_entry_locked(Node& to, std::uint32_t stream, std::uint64_t seq) {
  auto [it, inserted] = to.joins.try_emplace({stream, seq});
  if (inserted) {
    it->second.parts.resize(to.input_count);
    it->second.skipped.resize(to.input_count, false);
    it->second.first = Clock::now();
  }
  return it->second;
}

std::optional<Packet> Engine::join_locked(Node& to, std::size_t input, Packet packet,
                                          std::vector<Skip>& skips) {
  const std::uint32_t stream = packet.stream;
  const std::uint64_t seq = packet.seq;
  Node::JoinEntry& entry = join_entry_locked(to, stream, seq);
  if (entry.parts[input] || entry.skipped[input]) {
    // One packet per (stream, seq) per input: a second one has nothing to join with.
    to.dropped.fetch_add(1, std::memory_order_relaxed);
    retire(1);
    return std::nullopt;
  }
  entry.parts[input] = std::move(packet);
  ++entry.settled;
  held_.fetch_add(1);
  if (entry.settled < to.input_count) return std::nullopt;
  return settle_join_locked(to, stream, seq, skips);
}

std::optional<Packet> Engine::settle_join_locked(Node& to, std::uint32_t stream,
                                                 std::uint64_t seq, std::vector<Skip>& skips) {
  auto it = to.joins.find({stream, seq});
  Node::JoinEntry entry = std::move(it->second);
  to.joins.erase(it);
  std::int64_t present = 0;
  bool complete = true;
  for (std::size_t i = 0; i < entry.parts.size(); ++i) {
    if (entry.parts[i]) {
      ++present;
    } else {
      complete = false;
    }
  }
  held_.fetch_sub(present);
  if (present == 0 || (!complete && to.config.join_on_timeout == JoinTimeout::drop)) {
    if (present > 0) {
      to.dropped.fetch_add(1, std::memory_order_relaxed);
      retire(present);
    }
    skip_locked(to, stream, seq, skips);
    return std::nullopt;
  }
  // Merge in input order: a later input's field replaces an earlier one of the same name.
  std::optional<Packet> merged;
  for (auto& part : entry.parts) {
    if (!part) continue;
    if (!merged) {
      merged = std::move(*part);
      continue;
    }
    for (Packet::Field& field : part->fields) merged->set(field.name, std::move(field.value));
  }
  if (present > 1) retire_quietly(present - 1);
  return merged;
}

void Engine::retire_quietly(std::int64_t count) {
  // Parts merged into one packet leave the count of packets in flight without being "out".
  in_flight_.fetch_sub(count);
}

void Engine::skip_locked(Node& to, std::uint32_t stream, std::uint64_t seq,
                         std::vector<Skip>& skips) {
  if (!to.ordered()) {
    skips.push_back({&to, stream, seq});
    return;
  }
  Node::Reorder& reorder = to.reorder[stream];
  if (seq < reorder.next) return;
  if (seq > reorder.next) {
    reorder.held[seq].skip = true;
    return;
  }
  skips.push_back({&to, stream, seq});
  ++reorder.next;
  drain_reorder_locked(to, stream, reorder, skips);
}

void Engine::release_locked(Node& to, Packet packet, std::vector<Skip>& skips) {
  if (!to.ordered()) {
    enqueue_locked(to, std::move(packet), skips);
    return;
  }
  const std::uint32_t stream = packet.stream;
  Node::Reorder& reorder = to.reorder[stream];
  if (packet.seq < reorder.next) {
    enqueue_locked(to, std::move(packet), skips);  // a late extra output of an earlier seq
    return;
  }
  if (packet.seq > reorder.next) {
    reorder.held[packet.seq].packets.push_back(std::move(packet));
    held_.fetch_add(1);
    return;
  }
  ++reorder.next;
  enqueue_locked(to, std::move(packet), skips);
  drain_reorder_locked(to, stream, reorder, skips);
}

void Engine::drain_reorder_locked(Node& to, std::uint32_t stream, Node::Reorder& reorder,
                                  std::vector<Skip>& skips) {
  while (!reorder.held.empty() && reorder.held.begin()->first <= reorder.next) {
    auto slot = reorder.held.extract(reorder.held.begin());
    if (slot.key() == reorder.next) ++reorder.next;
    held_.fetch_sub(static_cast<std::int64_t>(slot.mapped().packets.size()));
    for (Packet& packet : slot.mapped().packets) enqueue_locked(to, std::move(packet), skips);
    if (slot.mapped().skip && slot.mapped().packets.empty()) {
      skips.push_back({&to, stream, slot.key()});
    }
  }
  if (reorder.held.empty() && to.reorder.size() > 1024) to.reorder.erase(stream);
}

void Engine::enqueue_locked(Node& to, Packet packet, std::vector<Skip>& skips) {
  const auto now = t_clock;
  if (to.depth.load(std::memory_order_relaxed) >= to.config.queue_capacity &&
      to.config.overflow != Overflow::block) {
    to.dropped.fetch_add(1, std::memory_order_relaxed);
    if (to.config.overflow == Overflow::drop_newest) {
      skips.push_back({&to, packet.stream, packet.seq});
      retire(1);
      return;
    }
    // drop_oldest: the oldest waiting packet (of this stream's lane for per_stream stages).
    std::deque<Queued>* queue = &to.queue;
    if (to.config.per_stream) {
      auto lane = to.lanes.find(packet.stream);
      if (lane == to.lanes.end() || lane->second.queue.empty()) {
        lane = std::find_if(to.lanes.begin(), to.lanes.end(),
                            [](const auto& l) { return !l.second.queue.empty(); });
      }
      queue = lane == to.lanes.end() ? nullptr : &lane->second.queue;
    }
    if (queue == nullptr || queue->empty()) {
      skips.push_back({&to, packet.stream, packet.seq});
      retire(1);
      return;
    }
    skips.push_back({&to, queue->front().packet.stream, queue->front().packet.seq});
    queue->pop_front();
    to.depth.fetch_sub(1, std::memory_order_relaxed);
    retire(1);
  }
  if (to.config.per_stream) {
    const std::uint32_t stream = packet.stream;
    Node::Lane& lane = to.lanes[stream];
    lane.queue.push_back({std::move(packet), now});
    if (!lane.busy && !lane.listed) {
      lane.listed = true;
      to.ready_lanes.push_back(stream);
    }
  } else {
    to.queue.push_back({std::move(packet), now});
  }
  const std::size_t depth = to.depth.fetch_add(1, std::memory_order_release) + 1;
  update_max(to.depth_max, depth);
}

}  // namespace micromodels::detail

namespace micromodels::detail {

void Engine::housekeeping() {
  // Wakes batching stages whose delay ran out, times out joins, and once the sources have ended
  // and only parked packets remain, releases what ordering and joins still hold.
  auto tick = std::chrono::duration<double, std::milli>(20);
  for (const auto& node : nodes_) {
    if (node->config.max_batch > 1) {
      tick = std::min(tick, std::chrono::duration<double, std::milli>(
                                std::max(0.2, node->config.max_delay_ms / 2)));
    }
    if (node->input_count > 1) {
      tick = std::min(tick, std::chrono::duration<double, std::milli>(
                                std::max(0.5, node->config.join_timeout_ms / 4)));
    }
  }
  std::unique_lock lock(housekeeper_mutex_);
  while (!housekeeper_stop_) {
    housekeeper_cv_.wait_for(lock, tick);
    if (housekeeper_stop_) break;
    lock.unlock();
    const bool drained = live_sources_.load() == 0;
    for (auto& node : nodes_) {
      if (node->input_count > 1) expire_joins(*node, drained && in_flight_.load() == held_.load());
      if (node->config.max_batch > 1) try_activate(*node);
    }
    if (drained && in_flight_.load() > 0 && in_flight_.load() == held_.load()) flush_reorder();
    lock.lock();
  }
}

void Engine::expire_joins(Node& node, bool everything) {
  const auto deadline = Clock::now() - std::chrono::duration_cast<Clock::duration>(
                                           std::chrono::duration<double, std::milli>(
                                               node.config.join_timeout_ms));
  std::vector<Skip> skips;
  {
    std::lock_guard lock(node.mutex);
    std::vector<std::pair<std::uint32_t, std::uint64_t>> expired;
    for (const auto& [key, entry] : node.joins) {
      if (everything || entry.first <= deadline) expired.push_back(key);
    }
    stamp();
    for (const auto& [stream, seq] : expired) {
      std::optional<Packet> merged = settle_join_locked(node, stream, seq, skips);
      if (merged) release_locked(node, std::move(*merged), skips);
    }
  }
  after_delivery(node, skips, false);
  try_activate(node);
}

void Engine::flush_reorder() {
  // Nothing upstream can arrive any more: gaps in seq (from a source that skipped numbers, or a
  // 1-to-n stage) will never fill, so release what is held in order.
  for (auto& node : nodes_) {
    if (!node->ordered()) continue;
    std::vector<Skip> skips;
    {
      std::lock_guard lock(node->mutex);
      stamp();
      for (auto& [stream, reorder] : node->reorder) {
        for (auto& [seq, slot] : reorder.held) {
          held_.fetch_sub(static_cast<std::int64_t>(slot.packets.size()));
          for (Packet& packet : slot.packets) enqueue_locked(*node, std::move(packet), skips);
          reorder.next = std::max(reorder.next, seq + 1);
        }
        reorder.held.clear();
      }
    }
    after_delivery(*node, skips, false);
    try_activate(*node);
  }
}

bool Engine::wait_for(std::optional<Clock::duration> timeout) {
  std::unique_lock lock(done_mutex_);
  if (!timeout) {
    done_cv_.wait(lock, [this] { return done_; });
    return true;
  }
  return done_cv_.wait_for(lock, *timeout, [this] { return done_; });
}

void Engine::stop() {
  if (stopping_.exchange(true)) return;
  // Sources notice the flag on their next turn; give idle ones a turn to end their stream.
  for (auto& node : nodes_) {
    if (node->source) try_activate(*node);
  }
}

bool Engine::finished() const {
  std::lock_guard lock(done_mutex_);
  return done_;
}

Node& Engine::node_named(std::string_view stage, std::string_view operation) const {
  auto it = std::find_if(nodes_.begin(), nodes_.end(),
                         [&](const auto& node) { return node->config.name == stage; });
  if (it == nodes_.end()) {
    std::string names;
    for (const auto& node : nodes_) names += (names.empty() ? "" : ", ") + node->config.name;
    throw std::invalid_argument(std::string(operation) + ": no stage named '" +
                                std::string(stage) + "'; the stages are " + names);
  }
  Node& node = **it;
  if (node.source) {
    throw std::invalid_argument(std::string(operation) + ": stage '" + std::string(stage) +
                                "' is a source; only the stages after it can be " +
                                (operation == "scale" ? "scaled" : "swapped"));
  }
  return node;
}

void Engine::scale(std::string_view stage, int consumers) {
  Node& node = node_named(stage, "scale");
  if (consumers < 1 || consumers > kMaxConsumers) {
    throw std::invalid_argument("scale: stage '" + std::string(stage) + "': consumers must be 1.." +
                                std::to_string(kMaxConsumers) + ", got " +
                                std::to_string(consumers));
  }
  {
    std::lock_guard lock(node.mutex);
    const auto now = Clock::now();
    if (started_) node.capacity_ns += ns_between(node.last_change, now) * node.consumers;
    node.last_change = now;
    node.consumers = consumers;
  }
  node.executor->reserve(consumers);
  try_activate(node);
}

void Engine::swap(std::string_view stage, const std::map<std::string, std::string>& params,
                  std::string_view type) {
  std::lock_guard swap_lock(swap_mutex_);
  Node& node = node_named(stage, "swap");
  // The new configuration is checked as a whole pipeline, so a new type that no longer writes a
  // field read downstream is refused with the usual message.
  Pipeline next = pipeline_;
  if (!type.empty()) next.set_type(stage, type);
  for (const auto& [param, text] : params) next.set_param(stage, param, text);
  next.validate(registry_);
  const StageConfig& config = next.stage(stage);
  const StageType& stage_type = *registry_.find(config.type);
  const Params resolved = Params::resolve(config.name, stage_type.params, config.params);
  const StageInfo info = stage_type.info ? stage_type.info(resolved) : StageInfo{};
  const std::string label = "swap: stage '" + config.name + "' (" + config.type + ")";
  if (config.blocking.value_or(info.blocking) != node.blocking) {
    throw ConfigError({}, "type",
                      label + (node.blocking ? " would no longer block" : " would block") +
                          ", which needs other threads; stop the run and change the pipeline");
  }
  if (info.batching != node.info.batching && node.config.max_batch > 1) {
    throw ConfigError({}, "type",
                      label + " batches differently from the running instance; stop the run "
                              "and change the pipeline");
  }
  // Built (its model loaded) beside the old instance, which keeps serving meanwhile.
  std::shared_ptr<Stage> fresh;
  try {
    fresh = stage_type.make(resolved);
  } catch (const std::exception& error) {
    throw ConfigError({}, "type",
                      label + " could not be built: " + error.what() +
                          "; the running instance is unchanged");
  }
  std::shared_ptr<Stage> old;
  {
    std::lock_guard lock(node.mutex);
    old = std::exchange(node.stage, std::move(fresh));
    node.config.type = config.type;
    node.config.params = config.params;
  }
  pipeline_ = std::move(next);
  spdlog::info("{}: swapped in; packets in progress finish on the old instance", label);
  // `old` is destroyed here, or by the last turn still using it.
}

MetricsSnapshot Engine::metrics() const {
  MetricsSnapshot snapshot;
  snapshot.pipeline = name_;
  Clock::time_point now = Clock::now();
  {
    std::lock_guard lock(done_mutex_);
    if (done_) now = end_time_;
  }
  snapshot.elapsed_s = started_ ? std::chrono::duration<double>(now - start_time_).count() : 0;
  snapshot.packets_in = produced_.load();
  snapshot.packets_out = retired_.load();
  snapshot.workers = workers_;
  snapshot.streams = streams_.load(std::memory_order_relaxed);
  for (const auto& node_ptr : nodes_) {
    Node& node = *node_ptr;
    StageMetrics m;
    m.name = node.config.name;
    m.processed = node.processed.load();
    m.failed = node.failed.load();
    m.dropped = node.dropped.load();
    m.emitted = node.emitted.load();
    m.queue_depth = node.depth.load();
    m.queue_max = node.depth_max.load();
    m.queue_capacity = node.config.queue_capacity;
    m.source = node.source != nullptr;
    m.blocking = node.blocking;
    m.per_stream = node.config.per_stream;
    m.queue_wait = node.wait.summary();
    m.service = node.service.summary();
    std::int64_t capacity = 0;
    {
      std::lock_guard lock(node.mutex);
      m.consumers = node.consumers;
      m.type = node.config.type;
      capacity = node.capacity_ns.load();
      if (started_ && now > node.last_change) {
        capacity += ns_between(node.last_change, now) * node.consumers;
      }
    }
    m.busy_share = capacity > 0 ? std::min(1.0, static_cast<double>(node.busy_ns.load()) /
                                                    static_cast<double>(capacity))
                                : 0.0;
    snapshot.stages.push_back(std::move(m));
  }
  return snapshot;
}

}  // namespace micromodels::detail
