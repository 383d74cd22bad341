// The in-memory runner's machinery behind micromodels::Runner.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <span>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include "executor.hpp"
#include "histogram.hpp"
#include "micromodels/metrics.hpp"
#include "micromodels/pipeline.hpp"
#include "micromodels/registry.hpp"

namespace micromodels::detail {

using Clock = std::chrono::steady_clock;

class Engine;

/// A packet waiting in a stage's queue.
struct Queued {
  Packet packet;
  std::int64_t enqueued = 0;  // tick_ns()
};

/// Where a packet goes: a node and which of its inputs it arrives on.
struct Edge {
  Node* node = nullptr;
  std::size_t input = 0;
};

inline constexpr int kMaxConsumers = 1024;

/// A (stream, seq) that will not reach the barriers after `from`.
struct Skip {
  const Node* from = nullptr;
  std::uint32_t stream = 0;
  std::uint64_t seq = 0;
};

/// Identifies a packet that entered a stage.
struct Key {
  std::uint32_t stream = 0;
  std::uint64_t seq = 0;
};

/// One stage at run time. A packet arriving at a node passes, in order, through:
/// the join (fan-in stages: parts of one (stream, seq) are merged), the reorder buffer (ordered
/// stages: released in seq order per stream), and the queue (or one lane per stream for
/// per_stream stages). Consumers take packets from the queue in turns.
class Node {
 public:
  Node(Engine& engine, const StageConfig& config, const StageType& type, const Params& params);

  // Fixed after construction.
  Engine& engine;
  StageConfig config;
  StageInfo info;
  bool blocking = false;
  std::shared_ptr<Stage> stage;  // guarded by mutex: `swap` replaces it; a turn holds a copy
  std::unique_ptr<Source> source;
  std::vector<Edge> outputs;
  std::vector<Node*> upstream;
  std::vector<Edge> skip_targets;  // the first join or ordered stage on every path downstream
  std::size_t input_count = 0;
  Executor* executor = nullptr;

  [[nodiscard]] bool is_barrier() const noexcept { return input_count > 1 || ordered(); }
  [[nodiscard]] bool ordered() const noexcept { return config.ordered || config.per_stream; }

  // Guarded by mutex.
  struct Lane {
    std::deque<Queued> queue;
    bool busy = false;    // a consumer is serving this stream
    bool listed = false;  // in ready_lanes
  };
  struct Reorder {
    struct Slot {
      std::vector<Packet> packets;
      bool skip = false;  // this seq will never come
    };
    std::uint64_t next = 0;
    std::map<std::uint64_t, Slot> held;
  };
  struct JoinEntry {
    std::vector<std::optional<Packet>> parts;
    std::vector<bool> skipped;
    std::size_t settled = 0;
    Clock::time_point first;
  };
  std::mutex mutex;
  std::deque<Queued> queue;
  std::unordered_map<std::uint32_t, Lane> lanes;
  std::deque<std::uint32_t> ready_lanes;
  std::unordered_map<std::uint32_t, Reorder> reorder;
  std::map<std::pair<std::uint32_t, std::uint64_t>, JoinEntry> joins;
  int active = 0;
  int consumers = 1;
  bool source_done = false;

  // Read without the lock.
  std::atomic<std::size_t> depth{0};
  std::atomic<bool> finished_source{false};

  // Metrics.
  std::atomic<std::uint64_t> processed{0};
  std::atomic<std::uint64_t> failed{0};
  std::atomic<std::uint64_t> dropped{0};
  std::atomic<std::uint64_t> emitted{0};
  std::atomic<std::size_t> depth_max{0};
  std::atomic<std::int64_t> busy_ns{0};
  std::atomic<std::int64_t> service_ewma_ns{1'000'000};  // until measured: assume slow
  std::atomic<std::int64_t> capacity_ns{0};  // consumer-nanoseconds available until last_change
  Clock::time_point last_change;
  Histogram wait;
  Histogram service;
};

class Engine {
 public:
  Engine(const Pipeline& pipeline, const Registry& registry);
  ~Engine();

  void start();
  bool wait_for(std::optional<Clock::duration> timeout);
  void stop();
  void scale(std::string_view stage, int consumers);
  void swap(std::string_view stage, const std::map<std::string, std::string>& params,
            std::string_view type);
  [[nodiscard]] bool finished() const;
  [[nodiscard]] MetricsSnapshot metrics() const;
  [[nodiscard]] std::uint64_t expected_packets() const { return expected_; }
  [[nodiscard]] std::uint64_t retired_packets() const { return retired_.load(); }

  // Used by nodes and executors.
  void serve(Node& node);

 private:
  void build();
  Node& node_named(std::string_view stage, std::string_view operation) const;
  void collect_skip_targets(const Node& from, std::vector<Edge>& targets) const;
  bool ready_locked(Node& node) const;
  bool downstream_full(const Node& node) const;
  void try_activate(Node& node);
  void finish_turn(Node& node);
  void serve_source(Node& node);
  void serve_stage(Node& node);
  void run_packets(Node& node, Stage& stage, std::vector<Queued>& batch, bool exclusive);
  void route(Node& node, std::vector<Packet>& outputs, std::span<const Key> inputs);
  void fail(Node& node, Packet packet, const std::string& error);
  void propagate_skip(const Node& node, std::uint32_t stream, std::uint64_t seq);
  void deliver(const Edge& edge, Packet packet);
  void deliver_skip(const Edge& edge, std::uint32_t stream, std::uint64_t seq);
  bool claim_locked(Node& node) const;
  void after_delivery(Node& to, const std::vector<Skip>& skips, bool claimed);
  Node::JoinEntry& join_entry_locked(Node& to, std::uint32_t stream, std::uint64_t seq);
  std::optional<Packet> join_locked(Node& to, std::size_t input, Packet packet,
                                    std::vector<Skip>& skips);
  std::optional<Packet> settle_join_locked(Node& to, std::uint32_t stream, std::uint64_t seq,
                                           std::vector<Skip>& skips);
  void skip_locked(Node& to, std::uint32_t stream, std::uint64_t seq, std::vector<Skip>& skips);
  void release_locked(Node& to, Packet packet, std::vector<Skip>& skips);
  void drain_reorder_locked(Node& to, std::uint32_t stream, Node::Reorder& reorder,
                            std::vector<Skip>& skips);
  void enqueue_locked(Node& to, Packet packet, std::vector<Skip>& skips);
  void add_in_flight(std::int64_t count);
  void retire(std::int64_t count);
  void retire_quietly(std::int64_t count);
  void check_done();
  void housekeeping();
  void expire_joins(Node& node, bool everything);
  void flush_reorder();

  Pipeline pipeline_;  // as running: `swap` changes it (under swap_mutex_)
  const Registry& registry_;
  std::mutex swap_mutex_;
  std::string name_;
  std::vector<std::unique_ptr<Node>> nodes_;
  Node* dead_letter_ = nullptr;
  std::unique_ptr<WorkerPool> pool_;
  int workers_ = 1;
  std::vector<std::unique_ptr<DedicatedThreads>> dedicated_;
  std::uint64_t expected_ = 0;
  std::size_t terminal_count_ = 0;

  std::atomic<std::int64_t> in_flight_{0};
  std::atomic<std::int64_t> held_{0};  // in reorder buffers and joins
  std::atomic<std::uint64_t> retired_{0};
  std::atomic<std::uint64_t> produced_{0};
  std::atomic<std::uint32_t> streams_{0};  // highest stream id produced + 1
  std::atomic<int> live_sources_{0};
  std::atomic<int> turns_{0};  // turns being served right now
  std::atomic<bool> stopping_{false};
  std::atomic<bool> started_{false};
  Clock::time_point start_time_;
  Clock::time_point end_time_;

  mutable std::mutex done_mutex_;
  std::condition_variable done_cv_;
  bool done_ = false;

  std::mutex housekeeper_mutex_;
  std::condition_variable housekeeper_cv_;
  bool housekeeper_stop_ = false;
  std::thread housekeeper_;
};

}  // namespace micromodels::detail
