// The engine's life around the turns: building and linking nodes, start and stop, live
// changes (scale, swap, serving a stage), housekeeping, and the metrics snapshot.
#include <algorithm>
#include <set>
#include <stdexcept>
#include <utility>

#include <spdlog/spdlog.h>

#include "core/detail/config_checks.hpp"
#include "core/detail/suggest.hpp"
#include "engine.hpp"
#include "tick_clock.hpp"

namespace micromodels::detail {

namespace {

std::int64_t ns_between(Clock::time_point a, Clock::time_point b) {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(b - a).count();
}

}  // namespace

Node::Node(Engine& owner, const PlanStage& stage_plan, Kind node_kind,
           std::optional<LiveConfig> live, bool fed_by_source)
    : engine(owner),
      plan(stage_plan),
      kind(node_kind),
      joining(node_kind == Kind::stage && stage_plan.inputs.size() > 1),
      config(stage_plan.config),
      // The dead letter keeps every failed packet, however old.
      max_age_ns(live && !stage_plan.dead_letter
                     ? static_cast<std::int64_t>(live->max_age_ms * 1e6)
                     : 0),
      newest(live && live->policy == LiveConfig::Policy::newest && fed_by_source &&
             stage_plan.config.overflow == Overflow::block),
      queue(stage_plan.config.queue_capacity, stage_plan.config.overflow,
            stage_plan.config.per_stream, newest),
      joins(stage_plan.inputs.size()) {}

// ---------------------------------------------------------------------------------------------
// Building

Engine::Engine(const Plan& plan, Transport* transport)
    : plan_(plan), pipeline_(plan.pipeline()), transport_(transport) {
  if (!pipeline_.trace().path.empty()) {
    // First: a trace file that cannot be written fails before any model loads.
    std::vector<std::string> names;
    for (const PlanStage& s : plan_.stages()) names.push_back(s.name());
    trace_ = std::make_unique<TraceRecorder>(pipeline_.trace(), std::move(names),
                                             "pipeline " + pipeline_.name());
  }
  // Create spdlog's default logger here, before any worker thread logs through it.
  spdlog::default_logger();
  stage_count_ = plan_.stages().size();
  live_ = pipeline_.live().has_value();
  for (const PlanStage& s : plan_.stages()) {
    const bool fed_by_source = std::any_of(s.inputs.begin(), s.inputs.end(), [&](std::size_t i) {
      return plan_.stages()[i].source();
    });
    nodes_.push_back(std::make_unique<Node>(*this, s,
                                            s.source() ? Node::Kind::source : Node::Kind::stage,
                                            pipeline_.live_at(s.name()), fed_by_source));
  }
  for (const PlanStage& s : plan_.stages()) {
    nodes_.push_back(
        std::make_unique<Node>(*this, s, Node::Kind::inlet, std::nullopt, false));
  }
  workers_ = pipeline_.workers() > 0
                 ? pipeline_.workers()
                 : std::max(1, static_cast<int>(std::thread::hardware_concurrency()));
  pool_ = std::make_unique<WorkerPool>(
      workers_, [this](Node& node) { serve(node); }, pipeline_.name());
  bool all_known = true;
  for (std::size_t i = 0; i < stage_count_; ++i) {
    Node& node = *nodes_[i];
    if (transport_ != nullptr && !transport_->serves(node.plan)) continue;
    serve_node(node);
    if (node.source) {
      runs_sources_ = true;
      const auto count = node.source->expected_count();
      all_known = all_known && count.has_value();
      expected_ += count.value_or(0);
    }
  }
  if (!all_known) expected_ = 0;
  if (transport_ == nullptr) link_in_memory();
  for (std::size_t i = 0; i < nodes_.size(); ++i) {
    if (nodes_[i]->executor != nullptr) nodes_[i]->served.store(true, std::memory_order_release);
  }
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
  {
    std::lock_guard lock(dedicated_mutex_);
    for (auto& threads : dedicated_) threads->shutdown();
  }
  if (trace_) trace_->finish();
}

void Engine::serve_node(Node& node) {
  const PlanStage& s = node.plan;
  // Live: a source runs on a thread of its own, as a camera does, whatever the pool is doing.
  node.blocking = s.blocking || (live_ && s.source());
  if (s.source()) {
    node.source = Plan::make_source(s, node.events);
  } else {
    node.stage = Plan::make_stage(s, node.events);
  }
  node.consumers = s.source() ? 1 : node.config.consumers;
  const auto dedicated = [this](const std::string& name) {
    std::lock_guard lock(dedicated_mutex_);
    dedicated_.push_back(
        std::make_unique<DedicatedThreads>([this](Node& n) { serve(n); }, name));
    return dedicated_.back().get();
  };
  if (transport_ != nullptr) {
    if (!s.source()) {
      Node& in = *nodes_[stage_count_ + s.index];
      in.inlet = transport_->inlet(s);
      in.blocking = true;  // it waits on the network
      in.outputs = {Edge{&node, 0, nullptr}};
      in.executor = dedicated(s.name() + ".in");
      in.executor->reserve(1);
      node.upstream = {&in};
      node.tickets = in.inlet.get();
    }
    const auto add_outlet = [&](const PlanStage* to, std::size_t input) -> Outlet* {
      std::unique_ptr<Outlet> outlet = transport_->outlet(s, to, input);
      if (!outlet) return nullptr;
      outlet->wake = [this, &node] { try_activate(node); };
      node.outlets.push_back(std::move(outlet));
      return node.outlets.back().get();
    };
    for (const auto& [child, input] : s.outputs) {
      node.outputs.push_back({nullptr, input, add_outlet(&plan_.stages()[child], input)});
    }
    node.skip_targets = node.outputs;
    if (!s.source() && !s.dead_letter) {
      const PlanStage* letters = plan_.find(plan_.pipeline().dead_letter());
      if (Outlet* outlet = add_outlet(letters, 0)) node.dead_letter = {nullptr, 0, outlet};
    }
  }
  node.executor = node.blocking ? dedicated(s.name()) : static_cast<Executor*>(pool_.get());
  node.executor->reserve(node.consumers);
}

void Engine::link_in_memory() {
  Node* letters = nullptr;
  if (const PlanStage* d = plan_.find(plan_.pipeline().dead_letter())) {
    letters = nodes_[d->index].get();
  }
  for (std::size_t i = 0; i < stage_count_; ++i) {
    Node& node = *nodes_[i];
    for (const auto& [child, input] : node.plan.outputs) {
      node.outputs.push_back({nodes_[child].get(), input, nullptr});
      nodes_[child]->upstream.push_back(&node);
    }
    if (letters != nullptr && letters != &node && !node.source) node.dead_letter = {letters, 0, nullptr};
  }
  for (std::size_t i = 0; i < stage_count_; ++i) collect_skip_targets(*nodes_[i], nodes_[i]->skip_targets);
}

void Engine::collect_skip_targets(const Node& from, std::vector<Edge>& targets) const {
  // The first stage on every path that must hear of a gap: a join or an ordered stage (so as not
  // to wait for it), a last stage (which counts it as done), or an edge out of the process.
  for (const Edge& edge : from.outputs) {
    if (edge.outlet == nullptr && !edge.node->barrier() && !edge.node->plan.outputs.empty()) {
      collect_skip_targets(*edge.node, targets);
      continue;
    }
    const bool known = std::any_of(targets.begin(), targets.end(), [&](const Edge& e) {
      return e.node == edge.node && e.input == edge.input && e.outlet == edge.outlet;
    });
    if (!known) targets.push_back(edge);
  }
}

// ---------------------------------------------------------------------------------------------
// Life

void Engine::start() {
  if (started_.load()) throw std::logic_error("Runner::start called twice");
  start_time_ = Clock::now();
  for (auto& node : nodes_) {
    if (!node->served) continue;
    node->last_change = start_time_;
    if (node->kind == Node::Kind::source) ++live_sources_;
    if (node->kind == Node::Kind::inlet) ++live_inlets_;
  }
  housekeeper_ = std::thread([this] { housekeeping(); });
  started_.store(true, std::memory_order_release);
  for (auto& node : nodes_) {
    if (node->producer() && node->served) try_activate(*node);
  }
  check_done();  // nothing to produce: done at once
}

void Engine::serve_here(std::string_view name) {
  std::lock_guard swap_lock(swap_mutex_);
  Node& node = *nodes_[plan_.stage(name).index];
  if (node.served) return;
  serve_node(node);
  Node* in = node.upstream.empty() ? nullptr : node.upstream.front();
  {
    std::lock_guard lock(node.mutex);
    node.last_change = Clock::now();
  }
  if (in != nullptr) {
    in->last_change = node.last_change;
    ++live_inlets_;
    in->served.store(true, std::memory_order_release);
  }
  node.served.store(true, std::memory_order_release);
  if (in != nullptr) try_activate(*in);
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
  // Producers notice the flag on their next turn; give idle ones a turn to end.
  for (auto& node : nodes_) {
    if (node->producer() && node->served) try_activate(*node);
  }
}

void Engine::close_stages() {
  for (std::size_t i = 0; i < stage_count_; ++i) {
    Node& node = *nodes_[i];
    std::shared_ptr<Stage> stage;
    std::unique_ptr<Source> source;
    {
      std::lock_guard lock(node.mutex);
      stage = std::move(node.stage);
      source = std::move(node.source);
    }
    // Destroyed here, outside the lock: a video sink may take a while to finish its file.
  }
  if (trace_) trace_->finish();  // no turn records any more
}

void Engine::stop_sources() {
  if (sources_stopping_.exchange(true)) return;
  for (std::size_t i = 0; i < stage_count_; ++i) {
    if (nodes_[i]->source && nodes_[i]->served) try_activate(*nodes_[i]);
  }
}

void Engine::fail(std::exception_ptr error) {
  {
    std::lock_guard lock(done_mutex_);
    if (!fatal_) fatal_ = std::move(error);
  }
  stop();
}

std::exception_ptr Engine::fatal() const {
  std::lock_guard lock(done_mutex_);
  return fatal_;
}

bool Engine::finished() const {
  std::lock_guard lock(done_mutex_);
  return done_;
}

// ---------------------------------------------------------------------------------------------
// Live changes

Node& Engine::stage_node(std::string_view stage, std::string_view operation) const {
  const PlanStage* found = plan_.find(stage);
  if (found == nullptr) {
    std::string names;
    for (const PlanStage& s : plan_.stages()) names += (names.empty() ? "" : ", ") + s.name();
    throw std::invalid_argument(std::string(operation) + ": no stage named '" +
                                std::string(stage) + "'; the stages are " + names);
  }
  Node& node = *nodes_[found->index];
  if (node.kind == Node::Kind::source) {
    throw std::invalid_argument(std::string(operation) + ": stage '" + std::string(stage) +
                                "' is a source; only the stages after it can be " +
                                (operation == "scale" ? "scaled" : "swapped"));
  }
  if (!node.served) {
    throw std::invalid_argument(std::string(operation) + ": stage '" + std::string(stage) +
                                "' is not served in this process; " + std::string(operation) +
                                " it where it runs (its workers' control endpoints)");
  }
  return node;
}

void Engine::scale(std::string_view stage, int consumers) {
  Node& node = stage_node(stage, "scale");
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
  if (node.tickets != nullptr) try_activate(*node.upstream.front());
}

void Engine::swap(std::string_view stage, const std::map<std::string, std::string>& params,
                  std::string_view type) {
  std::lock_guard swap_lock(swap_mutex_);
  Node& node = stage_node(stage, "swap");
  // The new configuration is checked as a whole pipeline, so a new type that no longer writes a
  // field read downstream is refused with the usual message.
  Pipeline next = pipeline_;
  std::vector<std::string> dropped;  // the old type's params the new one does not have
  if (!type.empty()) dropped = next.set_type(stage, type, plan_.registry());
  for (const auto& [param, text] : params) next.set_param(stage, param, text, "swap");
  const Plan next_plan(next, plan_.registry());
  const PlanStage& fresh_plan = next_plan.stage(stage);
  const std::string label =
      "swap: stage '" + fresh_plan.name() + "' (" + fresh_plan.config.type + ")";
  if (fresh_plan.blocking != node.blocking) {
    throw ConfigError({}, "type",
                      label + (node.blocking ? " would no longer block" : " would block") +
                          ", which needs other threads; stop the run and change the pipeline");
  }
  if (fresh_plan.info.batching != node.plan.info.batching && node.config.max_batch > 1) {
    throw ConfigError({}, "type",
                      label + " batches differently from the running instance; stop the run "
                              "and change the pipeline");
  }
  // Built (its model loaded) beside the old instance, which keeps serving meanwhile.
  std::shared_ptr<Stage> fresh;
  try {
    fresh = Plan::make_stage(fresh_plan, node.events);
  } catch (const ConfigError& error) {
    throw ConfigError(error.where(), error.key(),
                      "swap: " + error.message() + "; the running instance is unchanged");
  }
  std::shared_ptr<Stage> old;
  {
    std::lock_guard lock(node.mutex);
    old = std::exchange(node.stage, std::move(fresh));
    node.config.type = fresh_plan.config.type;
    node.config.params = fresh_plan.config.params;
  }
  pipeline_ = std::move(next);
  spdlog::info("{}: swapped in{}; packets in progress finish on the old instance", label,
               dropped.empty()
                   ? ""
                   : " without the params its type does not have (" + join_names(dropped) + ")");
  // `old` is destroyed here, or by the last turn still using it.
}

// ---------------------------------------------------------------------------------------------
// Housekeeping

void Engine::housekeeping() {
  // Wakes batching stages whose delay ran out, times out joins, and once the producers have
  // ended and only held packets remain, releases what ordering and joins still hold.
  auto tick = std::chrono::duration<double, std::milli>(20);
  for (const PlanStage& s : plan_.stages()) {
    if (s.config.max_batch > 1) {
      tick = std::min(tick, std::chrono::duration<double, std::milli>(
                                std::max(0.2, s.config.max_delay_ms / 2)));
    }
    if (s.inputs.size() > 1) {
      tick = std::min(tick, std::chrono::duration<double, std::milli>(
                                std::max(0.5, s.config.join_timeout_ms / 4)));
    }
  }
  std::unique_lock lock(housekeeper_mutex_);
  while (!housekeeper_stop_) {
    housekeeper_cv_.wait_for(lock, tick);
    if (housekeeper_stop_) break;
    lock.unlock();
    const bool drained = live_sources_.load() + live_inlets_.load() == 0;
    for (std::size_t i = 0; i < stage_count_; ++i) {
      Node& node = *nodes_[i];
      if (!node.served.load(std::memory_order_acquire)) continue;
      if (node.joins_inputs()) expire_joins(node, drained && in_flight_.load() == held_.load());
      if (node.config.max_batch > 1) try_activate(node);
    }
    if (drained && in_flight_.load() > 0 && in_flight_.load() == held_.load()) flush_held();
    lock.lock();
  }
}

void Engine::expire_joins(Node& node, bool everything) {
  if (everything && node.tickets != nullptr) return;  // flush_held hands them back
  const auto deadline = Clock::now() - std::chrono::duration_cast<Clock::duration>(
                                           std::chrono::duration<double, std::milli>(
                                               node.config.join_timeout_ms));
  Aftermath after;
  {
    std::lock_guard lock(node.mutex);
    std::vector<JoinTable::Done> expired = node.joins.expire(deadline, everything);
    stamp();
    for (JoinTable::Done& done : expired) settle_join(node, std::move(done), after);
  }
  after_delivery(node, after, false);
  try_activate(node);
}

void Engine::flush_held() {
  // Nothing can arrive any more. Gaps in seq (from a source that skipped numbers, or a 1-to-n
  // stage) will never fill: release what is held, in order. A stage fed from other processes
  // hands what it holds back instead: its transport delivers it again, in order, elsewhere.
  for (std::size_t i = 0; i < stage_count_; ++i) {
    Node& node = *nodes_[i];
    if (!node.served.load(std::memory_order_acquire) || !node.barrier()) continue;
    if (node.tickets != nullptr) {
      std::vector<std::uint32_t> streams;
      {
        std::lock_guard lock(node.mutex);
        streams = node.reorder.streams_held();
        const std::vector<std::uint32_t> joined = node.joins.streams();
        streams.insert(streams.end(), joined.begin(), joined.end());
      }
      for (std::uint32_t stream : streams) reset_stream(node, stream, 0, false);
      continue;
    }
    if (node.joins_inputs()) expire_joins(node, true);
    if (!node.ordered()) continue;
    Aftermath after;
    {
      std::lock_guard lock(node.mutex);
      stamp();
      ReorderOut out{*this, node, after, true};
      node.reorder.flush(out);
    }
    after_delivery(node, after, false);
    try_activate(node);
  }
}

// ---------------------------------------------------------------------------------------------
// Metrics

MetricsSnapshot Engine::metrics() const {
  MetricsSnapshot snapshot;
  snapshot.pipeline = plan_.pipeline().name();  // never changes; pipeline_ may, in swap
  Clock::time_point now = Clock::now();
  {
    std::lock_guard lock(done_mutex_);
    if (done_) now = end_time_;
  }
  snapshot.elapsed_s = started_ ? std::chrono::duration<double>(now - start_time_).count() : 0;
  snapshot.workers = workers_;
  snapshot.streams = streams_.load(std::memory_order_relaxed);
  if (transport_ != nullptr) snapshot.transport = transport_->events();

  // Packets in: what entered this process's part of the pipeline at its first stages (sources,
  // or stages whose inputs run elsewhere); out: what its last stages are done with, counted
  // once per packet however many last stages there are (the least of them).
  const std::vector<PlanStage>& stages = plan_.stages();
  std::vector<bool> served(stage_count_);
  for (std::size_t i = 0; i < stage_count_; ++i) served[i] = nodes_[i]->served.load();
  const auto reaches = [&](std::size_t from, bool up) {
    std::vector<std::size_t> todo = {from};
    std::vector<bool> seen(stage_count_, false);
    while (!todo.empty()) {
      const std::size_t i = todo.back();
      todo.pop_back();
      if (i != from && served[i]) return true;
      if (seen[i]) continue;
      seen[i] = true;
      if (up) {
        todo.insert(todo.end(), stages[i].inputs.begin(), stages[i].inputs.end());
      } else {
        for (const auto& [child, input] : stages[i].outputs) todo.push_back(child);
      }
    }
    return false;
  };
  std::optional<std::uint64_t> out;
  for (std::size_t i = 0; i < stage_count_; ++i) {
    if (!served[i]) continue;
    const Node& node = *nodes_[i];
    // The dead-letter stage has no inputs, but what it takes entered the run at a source.
    if (!reaches(i, true) && !stages[i].dead_letter) {
      snapshot.packets_in +=
          node.kind == Node::Kind::source ? node.processed.load() : node.arrived.load();
    }
    if (!reaches(i, false) && !stages[i].dead_letter) {
      const std::uint64_t done = node.processed.load() + node.failed.load() +
                                 node.dropped.load() + node.skipped.load();
      out = std::min(out.value_or(done), done);
    }
  }
  snapshot.packets_out = out.value_or(0);
  snapshot.in_flight = static_cast<std::uint64_t>(std::max<std::int64_t>(0, in_flight_.load()));

  for (std::size_t i = 0; i < stage_count_; ++i) {
    if (!served[i]) continue;
    Node& node = *nodes_[i];
    StageMetrics m;
    m.name = node.config.name;
    m.processed = node.processed.load();
    m.failed = node.failed.load();
    m.dropped = node.dropped.load();
    m.dropped_age = node.dropped_age.load();
    m.dropped_newest = node.dropped_newest.load();
    m.dropped_unserved = node.dropped_unserved.load();
    m.dead_lettered = node.dead_lettered.load();
    m.emitted = node.emitted.load();
    m.queue_depth = node.queue.depth();
    m.queue_max = node.queue.depth_max();
    m.queue_capacity = node.config.queue_capacity;
    m.source = node.kind == Node::Kind::source;
    m.blocking = node.blocking;
    m.per_stream = node.config.per_stream;
    m.sheds = node.config.overflow != Overflow::block;
    m.queue_wait = node.wait.summary();
    m.service = node.service.summary();
    m.age = node.age.summary();
    m.events = node.events->counts();
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
