// The scheduler behind Runner: one node per stage, consumers as turns on executors, packets
// handed from node to node in memory or, on an edge that leaves the process, to an outlet.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <exception>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <span>
#include <string>
#include <thread>
#include <vector>

#include "micromodels/metrics.hpp"
#include "micromodels/packet_tap.hpp"
#include "micromodels/plan.hpp"
#include "micromodels/transport.hpp"

#include "executor.hpp"
#include "histogram.hpp"
#include "join_table.hpp"
#include "reorder_buffer.hpp"
#include "stage_queue.hpp"
#include "tick_clock.hpp"
#include "trace_recorder.hpp"

namespace micromodels::detail {

using Clock = std::chrono::steady_clock;

class Engine;
class Node;

/// Where a packet goes: input `input` of a stage in this process, or out of the process.
struct Edge {
  Node* node = nullptr;
  std::size_t input = 0;
  Outlet* outlet = nullptr;  // instead of `node`, for an edge to a stage served elsewhere
  [[nodiscard]] explicit operator bool() const noexcept { return node != nullptr || outlet != nullptr; }
};

/// A (stream, seq) that will not reach the stages after `from`. Its ticket, from `from`'s inlet,
/// is settled once the skip has been passed on.
struct Skip {
  const Node* from = nullptr;
  std::uint32_t stream = 0;
  std::uint64_t seq = 0;
  Ticket ticket = 0;
};

/// What a change made under a node's lock leaves to do once the lock is released.
struct Aftermath {
  std::vector<Skip> skips;      // to pass on
  std::vector<Ticket> settled;  // of deliveries the node is done with (duplicates, drops)
  // Packets dropped here: they leave the run only after their skips have reached the stages
  // after, so that the run cannot end before those have counted them.
  std::int64_t leaves = 0;
};

/// A key of a packet that entered a stage.
struct Key {
  std::uint32_t stream = 0;
  std::uint64_t seq = 0;
  Ticket ticket = 0;
  std::int64_t capture_ns = 0;  // Packet::capture_ns, for its age at a last stage
};

/// A stage at run time, or the producer in front of one: its source, or its inlet from other
/// processes. A packet arriving at a stage passes, in order, through the join (several inputs:
/// the parts of one (stream, seq) are merged), the reorder buffer (ordered and per_stream
/// stages: released in seq order per stream), and the queue (for per_stream stages one lane per
/// stream). Consumers take packets from the queue in turns.
class Node {
 public:
  enum class Kind { source, inlet, stage };
  /// `live`: the stage's budget in live mode (Pipeline::live_at), nullopt in batch mode.
  Node(Engine& engine, const PlanStage& plan, Kind kind, std::optional<LiveConfig> live,
       bool fed_by_source);

  // Set when the node is served (before `served`), then fixed.
  Engine& engine;
  const PlanStage& plan;
  const Kind kind;
  const bool joining;  // several inputs: parts of one (stream, seq) are merged
  StageConfig config;  // as running: `swap` changes the type and params, under `mutex`
  bool blocking = false;
  std::shared_ptr<Stage> stage;  // guarded by mutex: `swap` replaces it; a turn holds a copy
  std::unique_ptr<Source> source;
  std::unique_ptr<Inlet> inlet;
  Inlet* tickets = nullptr;  // a stage fed from other processes: where its deliveries settle
  std::vector<std::unique_ptr<Outlet>> outlets;  // edges out of the process point at these
  std::vector<Edge> outputs;
  std::vector<Node*> upstream;
  std::vector<Edge> skip_targets;  // the first join, ordered stage, last stage or outlet on every path
  Edge dead_letter;                // where its failed packets go (none: an empty edge)
  Executor* executor = nullptr;
  std::atomic<bool> served{false};
  // Live mode (`live:`): the most age (since capture) a packet may have when a consumer takes
  // it (0: none), and whether the stage's queue keeps only each stream's newest packet (it is
  // fed by a source, which does not wait).
  std::int64_t max_age_ns = 0;
  bool newest = false;

  [[nodiscard]] bool producer() const noexcept { return kind != Kind::stage; }
  [[nodiscard]] bool ordered() const noexcept { return config.ordered || config.per_stream; }
  [[nodiscard]] bool joins_inputs() const noexcept { return joining; }
  [[nodiscard]] bool barrier() const noexcept { return joins_inputs() || ordered(); }

  // Guarded by mutex (atomics: written under it, read anywhere).
  std::mutex mutex;
  StageQueue queue;
  ReorderBuffer reorder;
  bool warned_late = false;  // said once that a packet came after a later seq (under mutex)
  bool warned_late_part = false;  // said once that a part came after its join timed out
  JoinTable joins;
  // per_stream: streams the transport took away (another process ran them since): the stage
  // forgets what it keeps of each before its next packet (Stage::forget_stream).
  std::set<std::uint32_t> to_forget;
  std::atomic<int> active{0};    // consumer turns claimed and not finished
  int untaken = 0;               // of those, turns that have not taken their packets yet
  std::atomic<int> consumers{1};
  bool ended = false;  // a producer that produces no more
  Clock::time_point last_change;

  // Counters, read by metrics().
  std::atomic<std::uint64_t> arrived{0};    // packets that reached the stage (after its join)
  std::atomic<std::uint64_t> processed{0};
  std::atomic<std::uint64_t> failed{0};
  std::atomic<std::uint64_t> dropped{0};         // all reasons, among them:
  std::atomic<std::uint64_t> dropped_age{0};     //   older than the budget when taken
  std::atomic<std::uint64_t> dropped_newest{0};  //   replaced by its stream's newer packet
  std::atomic<std::uint64_t> dropped_unserved{0};  // not sent: nobody served the stage (Loss)
  std::atomic<std::uint64_t> dead_lettered{0};
  std::atomic<std::uint64_t> emitted{0};
  std::atomic<std::uint64_t> skipped{0};    // "will never come" notices that reached it
  std::atomic<std::int64_t> busy_ns{0};
  std::atomic<std::int64_t> service_ewma_ns{1'000'000};  // until measured: assume slow
  std::atomic<std::int64_t> take_ewma_ns{0};  // an inlet: how long a take that brought deliveries
                                              // lasted (its broker's round trips)
  std::atomic<std::int64_t> capacity_ns{0};  // consumer-nanoseconds available until last_change
  Histogram wait;
  Histogram service;
  Histogram age;  // capture to done, at a last stage
  PacketTap tap;  // the packets leaving it, for a preview (engine_tap.cpp)
  // What its instances count (Stage::count), shared by them: a swap keeps the counts.
  const std::shared_ptr<EventCounts> events = std::make_shared<EventCounts>();
};

class Engine {
 public:
  /// Builds the stages `transport` says run here (all of them without a transport). `plan`
  /// must outlive the engine.
  Engine(const Plan& plan, Transport* transport);
  ~Engine();
  Engine(const Engine&) = delete;
  Engine& operator=(const Engine&) = delete;

  void start();
  bool wait_for(std::optional<Clock::duration> timeout);
  /// Stops everything: sources and inlets take nothing more; in-flight packets drain.
  void stop();
  /// Stops the sources only (a distributed run drains into its sinks until they have it all).
  void stop_sources();
  void scale(std::string_view stage, int consumers);
  /// The packets leaving a stage (or source) served here; throws std::invalid_argument.
  PacketTap& tap(std::string_view stage);
  void swap(std::string_view stage, const std::map<std::string, std::string>& params,
            std::string_view type);
  /// Once finished: destroys the stage instances, so that sinks finish their files before the
  /// run reports. Idempotent.
  void close_stages();
  /// Starts serving `stage` in this process (a transport asks: no other process serves it).
  void serve_here(std::string_view stage);
  /// Stops the run because of `error`; `fatal()` returns it afterwards.
  void fail(std::exception_ptr error);
  [[nodiscard]] std::exception_ptr fatal() const;

  [[nodiscard]] bool finished() const;
  [[nodiscard]] bool started() const noexcept { return started_.load(); }
  [[nodiscard]] bool sources_done() const noexcept { return live_sources_.load() == 0; }
  /// Whether this process runs any of the pipeline's sources.
  [[nodiscard]] bool runs_sources() const noexcept { return runs_sources_; }
  [[nodiscard]] MetricsSnapshot metrics() const;
  [[nodiscard]] std::uint64_t expected() const noexcept { return expected_; }
  [[nodiscard]] const Plan& plan() const noexcept { return plan_; }
  [[nodiscard]] int workers() const noexcept { return workers_; }

  // Called by executors: one turn of a node.
  void serve(Node& node);

 private:
  // Set-up (engine_setup.cpp).
  void serve_node(Node& node);
  void link_in_memory();
  void collect_skip_targets(const Node& from, std::vector<Edge>& targets) const;
  Node& stage_node(std::string_view stage, std::string_view operation) const;

  // Turns (engine.cpp).
  bool ready_locked(Node& node) const;
  bool downstream_full(const Node& node) const;
  // The fewest packets a queue that `node` feeds (and that waits when full) has room for.
  std::size_t downstream_room(const Node& node) const;
  std::size_t inlet_room(const Node& inlet) const;
  bool claim_locked(Node& node) const;
  void try_activate(Node& node);
  void finish_turn(Node& node);
  void serve_source(Node& node);
  void serve_inlet(Node& node);
  void serve_stage(Node& node);
  /// Stage::forget_stream, before the stream's next packets; a throw is logged, not fatal.
  static void forget_stream(const Node& node, Stage& stage, std::uint32_t stream);
  void run_batch(Node& node, Stage& stage, std::vector<Queued>& batch, bool exclusive);
  void run_packets(Node& node, Stage& stage, std::vector<Queued>& batch, bool exclusive);
  void end_producer(Node& node);

  // Moving packets (engine.cpp).
  /// `exclusive`: the stage's only consumer calls (its histograms need no atomic adds).
  void route(Node& node, std::vector<Packet>& outputs, std::span<const Key> inputs,
             bool exclusive);
  void fail(Node& node, Packet packet, const std::string& error, Ticket ticket);
  /// Counts and logs a failed packet and hands it to the dead letter; true when it went there
  /// (still in flight).
  bool report_failure(Node& node, Packet packet, const std::string& error);
  /// Fails, from one call's outputs that leave the process, each packet of a (stream, seq) an
  /// earlier one of them already has: across processes a (stream, seq) is one packet.
  void refuse_extra_outputs(Node& node, std::vector<Packet>& outputs);
  void propagate_skip(const Node& node, std::uint32_t stream, std::uint64_t seq);
  void deliver(const Edge& edge, Packet&& packet, Ticket ticket = 0);
  void deliver_all(const Edge& edge, std::vector<Packet>& packets);  // one call's outputs
  template <class Work>
  void under_lock(Node& to, Work&& work);  // work(Aftermath&) under to's lock, then after_delivery
  /// `unserved`: a packet the transport dropped for want of a reader (Delivery::Loss), counted
  /// as this stage's drop, once: it arrived and was dropped, as a queue's drop is.
  void deliver_skip(const Edge& edge, std::uint32_t stream, std::uint64_t seq, Ticket ticket = 0,
                    bool unserved = false);
  void after_delivery(Node& to, Aftermath& after, bool claimed);
  void settle(const Node& node, Ticket ticket) const {
    if (ticket != 0 && node.tickets != nullptr) node.tickets->settle(ticket);
  }
  void settle_join(Node& to, JoinTable::Done done, Aftermath& after);
  void release_locked(Node& to, Packet&& packet, Ticket ticket, Aftermath& after);
  void skip_locked(Node& to, std::uint32_t stream, std::uint64_t seq, Ticket ticket, bool arrived,
                   Aftermath& after);
  void enqueue_locked(Node& to, Packet&& packet, Ticket ticket, Aftermath& after);
  void drop_aged_locked(Node& node, std::vector<Queued>& batch, Aftermath& after);
  /// When the run is traced: one turn of `node` with a packet, or (`dropped`: start = end) the
  /// packet its queue dropped.
  void trace(const Node& node, std::uint32_t stream, std::uint64_t seq, std::int64_t enqueued,
             std::int64_t start, std::int64_t end, bool failed, bool dropped = false) {
    if (trace_ == nullptr) return;
    trace_->record({.stage = static_cast<std::uint32_t>(node.plan.index),
                    .stream = stream,
                    .seq = seq,
                    .enqueued = enqueued,
                    .start = start,
                    .end = end,
                    .thread = 0,
                    .failed = failed,
                    .dropped = dropped});
  }
  /// `now`: the capture clock when the stage was done with them (the thread's last stamp).
  void record_ages(Node& node, std::span<const Key> done, std::int64_t now, bool exclusive);
  /// What `to` holds of `stream` goes back unsettled. `taken` (a transport's reset: the stream
  /// is another process's now, or again ours): also the packets waiting in its lane, and a
  /// per_stream stage forgets the stream before its next packet.
  void reset_stream(Node& to, std::uint32_t stream, std::uint64_t next, bool taken);
  void add_in_flight(std::int64_t count);
  void leave(std::int64_t count);
  void check_done();
  void close_taps();  // the run has ended: watchers get nothing more
  struct ReorderOut;  // takes what a node's reorder buffer releases

  // Housekeeping (engine_setup.cpp).
  void housekeeping();
  void expire_joins(Node& node, bool everything);
  void flush_held();

  const Plan& plan_;
  std::unique_ptr<TraceRecorder> trace_;  // null unless the pipeline is traced
  // As running: `swap` changes it, and it is read only under swap_mutex_ (what never changes,
  // such as the name and the dead letter, is read from plan_).
  Pipeline pipeline_;
  Transport* transport_;
  std::mutex swap_mutex_;
  std::vector<std::unique_ptr<Node>> nodes_;  // stage i at i, its inlet at stages + i
  std::size_t stage_count_ = 0;
  std::unique_ptr<WorkerPool> pool_;
  int workers_ = 1;
  std::mutex dedicated_mutex_;
  std::vector<std::unique_ptr<DedicatedThreads>> dedicated_;
  std::uint64_t expected_ = 0;
  bool runs_sources_ = false;
  bool live_ = false;  // `live:`: sources never wait (docs/architecture.md, live mode)

  std::atomic<std::int64_t> in_flight_{0};
  std::atomic<std::int64_t> held_{0};  // in reorder buffers and joins, waiting for order
  std::atomic<std::uint32_t> streams_{0};  // highest stream id produced + 1
  std::atomic<int> live_sources_{0};
  std::atomic<int> live_inlets_{0};
  std::atomic<int> turns_{0};  // turns being served right now
  std::atomic<bool> stopping_{false};
  std::atomic<bool> sources_stopping_{false};
  std::atomic<bool> started_{false};
  Clock::time_point start_time_;
  Clock::time_point end_time_;

  mutable std::mutex done_mutex_;
  std::condition_variable done_cv_;
  bool done_ = false;
  std::exception_ptr fatal_;  // under done_mutex_

  std::mutex housekeeper_mutex_;
  std::condition_variable housekeeper_cv_;
  bool housekeeper_stop_ = false;
  std::thread housekeeper_;
};

/// The time the calling thread last stamped: a packet's enqueue time is the moment its producer
/// finished, which saves a clock read per hop.
inline thread_local std::int64_t t_clock = 0;

/// Stamps the calling thread's clock (tick_ns) and returns it. Inline: it runs on every hop.
inline std::int64_t stamp() { return t_clock = tick_ns(); }

/// Takes what a node's reorder buffer releases, under the node's lock.
struct Engine::ReorderOut {
  Engine& engine;
  Node& to;
  Aftermath& after;
  bool arrived;  // skips released here arrived from upstream (counted); else made here

  [[nodiscard]] bool room() const {
    return to.queue.overflow() != Overflow::block || !to.queue.full();
  }
  void enqueue(Packet&& packet, Ticket ticket) {
    engine.enqueue_locked(to, std::move(packet), ticket, after);
  }
  void skip(std::uint32_t stream, std::uint64_t seq, Ticket ticket) {
    if (arrived) to.skipped.fetch_add(1, std::memory_order_relaxed);
    after.skips.push_back({&to, stream, seq, ticket});
  }
  void settle(Ticket ticket) { after.settled.push_back(ticket); }
  void held(std::int64_t delta) { engine.held_.fetch_add(delta); }
  void late(std::uint32_t stream, std::uint64_t seq, std::uint64_t next);
};

}  // namespace micromodels::detail
