// The distributed runner: stage queues are Redis streams with one consumer group per stage.
//
// Delivery, in one paragraph (docs/distributed.md has the long form): a consumer reads entries
// with XREADGROUP, runs the stage, adds the outputs to each downstream stream and only then
// acknowledges (XACK) its inputs, all in one pipelined round trip, so a crash at any point leaves
// the input pending. Pending entries of a dead consumer are taken over with XAUTOCLAIM once idle
// for longer than max(floor, 3 x the stage's p99 service time); a keeper thread keeps the idle
// time of entries still being worked on near zero, so slow work is not reclaimed. Stages with
// `state: per_stream` and the sinks read per-partition streams that one consumer owns at a time
// (a lease key) and restore seq order there; they drop what they have already seen, which is
// how the sinks get every packet exactly once.
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <functional>
#include <map>
#include <mutex>
#include <optional>
#include <random>
#include <set>
#include <thread>

#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>

#include "micromodels/packet_codec.hpp"
#include "micromodels/redis.hpp"
#include "redis_connection.hpp"
#include "redis_url.hpp"
#include "stream_names.hpp"
#include "wire_format.hpp"

namespace micromodels {

using detail::Args;
using detail::Connection;
using detail::Reply;
using detail::WireEntry;

namespace {

using Clock = std::chrono::steady_clock;
constexpr std::size_t kNone = static_cast<std::size_t>(-1);
constexpr int kBlockMs = 100;        // longest XREADGROUP wait: how fast a consumer notices stop
constexpr int kLeaseMs = 3000;       // per_stream partition lease; renewed every second
constexpr int kLiveTtlMs = 5000;     // a consumer counts as live this long after its heartbeat
constexpr std::size_t kFlushEvery = 64;
// A read that brings back fewer entries than this from a fast stream waits kLingerUs before the
// next one, so that the next read brings a batch: on a busy machine a reader that wakes for
// every entry or two takes the CPU from Redis and from the producer (measured: 3x slower).
constexpr std::size_t kLingerBelow = 16;
constexpr int kLingerUs = 1000;
// Ordered consumers (sinks, per_stream stages) read 16 entries at a time; those of a fast stage
// (median service time under 1 ms) read up to kReadFast, as many as fit in kReadBytes at the
// size of the largest entry of their previous read: every read is a round trip, and a wake-up
// of Redis (a sink of 1 KiB packets read 16 at a time made Redis the hop's bottleneck).
constexpr std::size_t kReadSlow = 16;
constexpr std::size_t kReadFast = 256;
constexpr std::size_t kReadBytes = std::size_t{1} << 20;
// An XACK in the middle of a drain goes out with the next flush once it names this many ids.
constexpr std::size_t kAckEvery = 1024;

double ms_between(Clock::time_point a, Clock::time_point b) {
  return std::chrono::duration<double, std::milli>(b - a).count();
}

std::int64_t wall_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

std::string host_name() {
  char name[256] = {};
  if (gethostname(name, sizeof name - 1) != 0) return "host";
  return name;
}

// host:pid names this process's consumers; a second RedisRunner in the same process (a test,
// or a program that runs and serves at once) adds .N, so that no two of them share a consumer
// name: a lease and the pending entries are told apart by it.
std::string consumer_prefix() {
  static std::atomic<int> instances{0};
  const int n = ++instances;
  return host_name() + ":" + std::to_string(getpid()) + (n > 1 ? "." + std::to_string(n) : "");
}

std::string random_id() {
  std::random_device device;
  std::mt19937_64 engine((std::uint64_t{device()} << 32) ^ device() ^
                         static_cast<std::uint64_t>(Clock::now().time_since_epoch().count()));
  char text[17];
  std::snprintf(text, sizeof text, "%016llx", static_cast<unsigned long long>(engine()));
  return text;
}

// Messages go to stderr, so that stdout holds only the tables and numbers a script may read.
spdlog::logger& log() {
  static const std::shared_ptr<spdlog::logger> logger = [] {
    auto l = spdlog::get("micromodels.redis");
    return l ? l : spdlog::stderr_color_mt("micromodels.redis");
  }();
  return *logger;
}

bool starts_with(std::string_view text, std::string_view prefix) { return text.starts_with(prefix); }

// The last service times of a stage, for percentiles (reclaim idle time and metrics).
class ServiceTimes {
 public:
  void add(double us) {
    std::lock_guard lock(mutex_);
    if (ring_.size() < kSize) {
      ring_.push_back(us);
    } else {
      ring_[next_] = us;
    }
    next_ = (next_ + 1) % kSize;
    ++count_;
    sum_ += us;
  }
  /// The median of the last service times (0 before the first): cheaper than latency().
  [[nodiscard]] double median_us() const {
    std::lock_guard lock(mutex_);
    if (ring_.empty()) return 0;
    std::vector<double> copy = ring_;
    const auto middle = copy.begin() + static_cast<std::ptrdiff_t>(copy.size() / 2);
    std::nth_element(copy.begin(), middle, copy.end());
    return *middle;
  }
  [[nodiscard]] Latency latency() const {
    std::lock_guard lock(mutex_);
    Latency l;
    l.count = count_;
    l.sum_us = sum_;
    l.mean_us = count_ > 0 ? sum_ / static_cast<double>(count_) : 0;
    if (ring_.empty()) return l;
    std::vector<double> sorted = ring_;
    std::sort(sorted.begin(), sorted.end());
    const auto pick = [&](double q) {
      return sorted[std::min(sorted.size() - 1, static_cast<std::size_t>(q * static_cast<double>(sorted.size())))];
    };
    l.p50_us = pick(0.50);
    l.p95_us = pick(0.95);
    l.p99_us = pick(0.99);
    return l;
  }

 private:
  static constexpr std::size_t kSize = 512;
  mutable std::mutex mutex_;
  std::vector<double> ring_;
  std::size_t next_ = 0;
  std::uint64_t count_ = 0;
  double sum_ = 0;
};

struct Node {
  std::size_t index = 0;
  StageConfig config{};
  const StageType* type = nullptr;
  StageInfo info{};
  bool is_source = false;
  bool is_sink = false;
  std::size_t parent = kNone;
  std::size_t root = kNone;  // the source this stage descends from
  std::vector<std::size_t> children{};
  int partitions = 1;  // > 1 only for per_stream stages (by stream id) and never for sinks
  std::optional<std::set<std::string>> keep{};  // fields the hop into this stage carries
  std::vector<std::string> keys{};              // its stream, one per partition

  std::unique_ptr<Stage> stage{};
  std::unique_ptr<Source> source{};
  std::mutex build_mutex{};

  std::atomic<std::uint64_t> processed{0}, failed{0}, emitted{0}, dead{0}, duplicates{0};
  std::atomic<std::uint64_t> in_bytes{0}, in_packets{0};
  std::uint64_t flushed_bytes = 0, flushed_packets = 0;  // keeper thread only
  std::atomic<int> local_consumers{0};  // running now
  std::atomic<int> started_consumers{0};  // ever started here, for the metrics
  ServiceTimes service{};

  // Sink bookkeeping (run process): the next seq per stream, i.e. what has been delivered.
  std::mutex delivered_mutex{};
  std::map<std::uint32_t, std::uint64_t> delivered{};

  [[nodiscard]] const std::string& key_for(std::uint32_t stream) const {
    return keys[static_cast<std::size_t>(stream % static_cast<std::uint32_t>(partitions))];
  }
};

// Entries a consumer is working on, so that the keeper keeps them from looking idle.
struct InFlight {
  std::mutex mutex{};
  std::string consumer{};
  std::string group{};
  std::map<std::string, std::vector<std::string>> ids{};  // stream key -> entry ids
};

struct Partition {
  int index = 0;
  std::string key{};
  std::string run{};
  bool lost = false;  // the lease expired or went to another consumer: stop working on it
  std::map<std::uint32_t, std::uint64_t> next{};
  std::map<std::uint32_t, std::map<std::uint64_t, WireEntry>> buffer{};
};

}  // namespace

class RedisRunner::Impl {
 public:
  Impl(const Pipeline& pipeline, RedisOptions options, const Registry& registry);
  ~Impl() { shutdown(); }

  void start();
  bool wait_for(double timeout_ms);
  void stop();
  void shutdown();
  [[nodiscard]] MetricsSnapshot metrics() const;
  [[nodiscard]] std::vector<HopBytes> hop_bytes() const;
  [[nodiscard]] std::uint64_t expected_packets() const { return expected_.load(); }
  [[nodiscard]] std::uint64_t retired_packets() const;
  [[nodiscard]] std::uint64_t dead_lettered() const;
  [[nodiscard]] std::vector<std::string> served_stages() const;

 private:
  // --- set-up
  void build_graph(const Registry& registry);
  void build(Node& node);
  void reset_keys(Connection& conn);
  void ensure_groups(Connection& conn, const Node& node);
  void serve(Node& node, int consumers);
  [[nodiscard]] std::unique_ptr<Connection> connect();

  // --- failure policy
  void fail(const BrokerError& error);
  bool reconnect(const BrokerError& error, const char* who);
  void check_run(Connection& conn);
  std::string current_run(Connection& conn, bool refresh);

  // --- threads
  void source_thread(Node& node);
  void shared_consumer(Node& node, std::shared_ptr<InFlight> slot);
  void ordered_consumer(Node& node, std::string name, bool exclusive, int max_own);
  void keeper_thread();

  // --- moving packets
  struct Outbox {
    std::vector<Args> commands;
    void add(Args args) { commands.push_back(std::move(args)); }
  };
  /// `probe`: where to ask for a stage's backlog when `conn` has replies outstanding.
  void emit(Connection& conn, Node& from, const Packet& packet, Outbox& out,
            Connection* probe = nullptr);
  void emit_tombstone(Connection& conn, Node& from, std::uint32_t stream, std::uint64_t seq,
                      const std::string& run, Outbox& out);
  void wait_for_room(Connection& conn, const Node& child, const std::string& key);
  void dead_letter(Node& node, const WireEntry& entry, const std::string& error, long long deliveries,
                   Outbox& out);
  static void flush(Connection& conn, Outbox& out);
  /// The outbox and then `next` in one round trip; returns `next`'s reply.
  static Reply flush_then(Connection& conn, Outbox& out, const Args& next);
  std::vector<Packet> run_stage(Node& node, std::vector<Packet> packets, std::string& error);
  double min_idle_ms(const Node& node) const;

  // Ordered consumers (per_stream stages and sinks).
  void place(Connection& conn, Node& node, Partition& part, WireEntry entry, Outbox& out);
  void drain(Connection& conn, Node& node, Partition& part, bool exclusive, Outbox& out,
             const std::function<void()>& between, const std::string& name);
  void claim_strays(Connection& conn, Node& node, Partition& part, const std::string& name,
                    Outbox& out);
  void take_over(Connection& conn, Node& node, Partition& part, const std::string& name);

  Pipeline pipeline_;
  RedisOptions options_;
  detail::RedisUrl url_;
  detail::StreamNames names_;
  detail::WireImages images_;
  std::string consumer_prefix_;
  std::vector<std::unique_ptr<Node>> nodes_;
  std::string run_id_;  // run: ours; worker: the latest seen
  std::mutex run_mutex_;

  std::atomic<bool> stop_sources_{false};
  std::atomic<bool> stop_all_{false};
  std::atomic<int> sources_running_{0};
  std::atomic<std::uint64_t> expected_{0};
  std::atomic<std::uint64_t> produced_{0};
  std::mutex counts_mutex_;
  std::map<std::size_t, std::map<std::uint32_t, std::uint64_t>> counts_;  // source -> stream -> n

  mutable std::mutex error_mutex_;
  std::optional<BrokerError> error_;

  mutable std::mutex threads_mutex_;
  std::vector<std::thread> threads_;
  std::vector<std::shared_ptr<InFlight>> in_flight_;
  std::set<std::size_t> served_;  // middle stages this process serves
  std::atomic<int> next_consumer_{0};
  Clock::time_point started_{};
  bool started_flag_ = false;
  std::mutex wait_mutex_;
  std::condition_variable wait_cv_;
  std::mutex keeper_mutex_;
  std::condition_variable keeper_cv_;  // wakes the keeper only to stop
};

// =============================================================================================
// Set-up

RedisRunner::Impl::Impl(const Pipeline& pipeline, RedisOptions options, const Registry& registry)
    : pipeline_(pipeline),
      options_(std::move(options)),
      url_(detail::parse_redis_url(options_.url.empty() ? pipeline.broker() : options_.url)),
      names_(pipeline.name()),
      images_(detail::wire_images_for(options_.wire_images, options_.jpeg_quality, pipeline)),
      consumer_prefix_(consumer_prefix()) {
  pipeline_.validate(registry);
  if (options_.max_deliveries < 1) {
    throw ConfigError({}, "max_deliveries",
                      "--max-deliveries must be at least 1, got " +
                          std::to_string(options_.max_deliveries));
  }
  build_graph(registry);
  if (options_.role == RedisOptions::Role::worker) {
    if (options_.stages.empty()) {
      throw ConfigError({}, "stages", "a worker needs --stages, e.g. --stages " +
                                          [&] {
                                            for (const auto& n : nodes_) {
                                              if (!n->is_source && !n->is_sink) return n->config.name;
                                            }
                                            return std::string("work");
                                          }());
    }
    for (const std::string& name : options_.stages) {
      const auto it = std::find_if(nodes_.begin(), nodes_.end(),
                                   [&](const auto& n) { return n->config.name == name; });
      if (it == nodes_.end()) {
        std::string known;
        for (const auto& n : nodes_) {
          if (!n->is_source && !n->is_sink) known += (known.empty() ? "" : ", ") + n->config.name;
        }
        throw ConfigError({}, "stages",
                          "--stages: pipeline '" + pipeline_.name() + "' has no stage '" + name +
                              "'; a worker can serve: " + known);
      }
      if ((*it)->is_source || (*it)->is_sink) {
        throw ConfigError({}, "stages",
                          "--stages: '" + name + "' is a " +
                              ((*it)->is_source ? "source" : "sink") +
                              "; `micromodels run --broker` runs sources and sinks, workers serve "
                              "the stages between them");
      }
    }
  }
  // Fail now, with the address, rather than in a thread.
  auto conn = connect();
  if (options_.role == RedisOptions::Role::worker) current_run(*conn, true);
}

void RedisRunner::Impl::build_graph(const Registry& registry) {
  const auto& stages = pipeline_.stages();
  for (std::size_t i = 0; i < stages.size(); ++i) {
    auto node = std::make_unique<Node>();
    node->index = i;
    node->config = stages[i];
    node->type = registry.find(stages[i].type);
    node->info = node->type->info(Params::resolve(stages[i].name, node->type->params, stages[i].params));
    node->is_source = node->type->is_source();
    nodes_.push_back(std::move(node));
  }
  if (!pipeline_.dead_letter().empty()) {
    throw ConfigError({}, "dead_letter",
                      "pipeline '" + pipeline_.name() +
                          "': a dead_letter stage is not supported on Redis; failed packets go to "
                          "the dead-letter stream " + names_.dead_letter() +
                          " (see docs/distributed.md)");
  }
  for (std::size_t i = 0; i < stages.size(); ++i) {
    const std::vector<std::string> inputs = pipeline_.inputs_of(i, registry);
    if (inputs.size() > 1) {
      throw ConfigError(stages[i].locations.count("inputs") ? stages[i].locations.at("inputs")
                                                            : SourceLocation{},
                        "inputs",
                        "stage '" + stages[i].name +
                            "': joining several inputs is not supported on Redis yet; run this "
                            "pipeline with broker: memory");
    }
    if (inputs.empty()) continue;
    for (auto& n : nodes_) {
      if (n->config.name == inputs[0]) {
        nodes_[i]->parent = n->index;
        n->children.push_back(i);
      }
    }
  }
  for (auto& n : nodes_) {
    n->is_sink = !n->is_source && n->children.empty();
    std::size_t root = n->index;
    while (nodes_[root]->parent != kNone) root = nodes_[root]->parent;
    n->root = root;
    n->partitions = (n->config.per_stream && !n->is_sink) ? std::max(1, n->config.consumers) : 1;
    for (int k = 0; k < n->partitions; ++k) {
      n->keys.push_back(names_.stream(n->config.name, k, n->partitions));
    }
  }
  // Every hop carries only what the stages from there on read (docs/distributed.md, "Bytes on
  // the wire").
  std::vector<StageInfo> infos;
  std::vector<std::vector<std::size_t>> children;
  for (const auto& n : nodes_) {
    infos.push_back(n->info);
    children.push_back(n->children);
  }
  std::vector<std::optional<std::set<std::string>>> keep = detail::hop_fields(infos, children);
  for (auto& n : nodes_) n->keep = std::move(keep[n->index]);
}

std::unique_ptr<Connection> RedisRunner::Impl::connect() { return std::make_unique<Connection>(url_); }

void RedisRunner::Impl::build(Node& node) {
  std::lock_guard lock(node.build_mutex);
  const Params params = Params::resolve(node.config.name, node.type->params, node.config.params);
  if (node.is_source) {
    if (!node.source) node.source = node.type->make_source(params);
  } else if (!node.stage) {
    node.stage = node.type->make(params);
  }
}

void RedisRunner::Impl::ensure_groups(Connection& conn, const Node& node) {
  for (const std::string& key : node.keys) {
    const Reply reply = conn.command({"XGROUP", "CREATE", key, node.config.name, "0", "MKSTREAM"});
    if (detail::is_error(reply.get()) && !starts_with(detail::text(reply.get()), "BUSYGROUP")) {
      throw std::runtime_error("cannot create consumer group '" + node.config.name + "' on " +
                               key + ": " + std::string(detail::text(reply.get())));
    }
  }
}

void RedisRunner::Impl::reset_keys(Connection& conn) {
  Args del{"DEL", names_.dead_letter(), names_.hops(), names_.errors(), names_.streams(),
           names_.counters()};
  for (const auto& n : nodes_) {
    for (const std::string& key : n->keys) del.add(key).add(names_.lease(key)).add(names_.next_seq(key));
  }
  conn.ok(del);
  Args streams{"HSET", names_.streams()};
  for (const auto& n : nodes_) {
    if (n->is_source) continue;
    for (const std::string& key : n->keys) streams.add(key).add(n->config.name);
    ensure_groups(conn, *n);
  }
  conn.ok(streams);
  conn.ok({"SADD", detail::StreamNames::pipelines(), pipeline_.name()});
  conn.ok({"SET", names_.run(), run_id_});
}

// =============================================================================================
// Failure policy: a lost connection is retried for reconnect_s; the run then checks that Redis
// still holds its run (it may have restarted without persistence) and stops with a clear error
// otherwise, so nothing is lost silently.

void RedisRunner::Impl::fail(const BrokerError& error) {
  {
    std::lock_guard lock(error_mutex_);
    if (!error_) error_ = error;
  }
  stop_sources_ = true;
  stop_all_ = true;
  wait_cv_.notify_all();
  keeper_cv_.notify_all();
}

std::string RedisRunner::Impl::current_run(Connection& conn, bool refresh) {
  std::lock_guard lock(run_mutex_);
  if (options_.role == RedisOptions::Role::run) return run_id_;
  if (refresh) {
    // Asked only when an entry names another run than the one we know: rare (after a reset).
    const Reply reply = conn.command({"GET", names_.run()});
    if (detail::is_error(reply.get())) {  // LOADING: never judge entries against an error
      throw BrokerError(BrokerError::Kind::unreachable,
                        "Redis at " + url_.where() + " is not ready: " +
                            std::string(detail::text(reply.get())));
    }
    run_id_ = std::string(detail::text(reply.get()));
  }
  return run_id_;
}

void RedisRunner::Impl::check_run(Connection& conn) {
  if (options_.role != RedisOptions::Role::run) {
    current_run(conn, true);
    return;
  }
  const Reply reply = conn.command({"GET", names_.run()});
  if (detail::is_error(reply.get())) {  // e.g. LOADING: a restarted Redis reads its files
    throw BrokerError(BrokerError::Kind::unreachable,
                      "Redis at " + url_.where() + " is not ready: " +
                          std::string(detail::text(reply.get())));
  }
  if (detail::text(reply.get()) != run_id_) {
    throw BrokerError(
        BrokerError::Kind::lost,
        "Redis at " + url_.where() + " came back without this run's queues (it restarted without "
        "persistence, or another run of pipeline '" + pipeline_.name() + "' reset them): " +
            std::to_string(retired_packets()) + " of " + std::to_string(produced_.load()) +
            " packets reached the sinks; rerun, or give Redis persistence (appendonly yes) so "
            "that a run survives a restart");
  }
}

bool RedisRunner::Impl::reconnect(const BrokerError& error, const char* who) {
  if (error.kind() == BrokerError::Kind::lost) {
    fail(error);
    return false;
  }
  log().warn("{}: {}; reconnecting", who, error.what());
  const auto start = Clock::now();
  while (!stop_all_) {
    try {
      auto conn = connect();
      check_run(*conn);
      log().info("{}: reconnected to Redis at {}", who, url_.where());
      return true;
    } catch (const BrokerError& again) {
      if (again.kind() == BrokerError::Kind::lost) {
        fail(again);
        return false;
      }
      if (options_.reconnect_s > 0 && ms_between(start, Clock::now()) > options_.reconnect_s * 1000) {
        fail(BrokerError(BrokerError::Kind::unreachable,
                         "lost Redis at " + url_.where() + " for more than " +
                             std::to_string(static_cast<int>(options_.reconnect_s)) + " s (" +
                             again.what() + "); " + std::to_string(retired_packets()) + " of " +
                             std::to_string(produced_.load()) +
                             " packets reached the sinks. Start redis-server again and rerun"));
        return false;
      }
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
  }
  return false;
}

// =============================================================================================
// Moving packets

void RedisRunner::Impl::flush(Connection& conn, Outbox& out) {
  if (out.commands.empty()) return;
  for (const Args& args : out.commands) conn.append(args);
  std::string first_error;
  for (std::size_t i = 0; i < out.commands.size(); ++i) {
    const Reply reply = conn.read();
    if (detail::is_error(reply.get()) && first_error.empty()) {
      first_error = out.commands[i].items()[0] + ": " + std::string(detail::text(reply.get()));
    }
  }
  out.commands.clear();
  if (!first_error.empty()) throw std::runtime_error("Redis refused " + first_error);
}

Reply RedisRunner::Impl::flush_then(Connection& conn, Outbox& out, const Args& next) {
  for (const Args& args : out.commands) conn.append(args);
  conn.append(next);
  std::string first_error;
  for (std::size_t i = 0; i < out.commands.size(); ++i) {
    const Reply reply = conn.read();
    if (detail::is_error(reply.get()) && first_error.empty()) {
      first_error = out.commands[i].items()[0] + ": " + std::string(detail::text(reply.get()));
    }
  }
  out.commands.clear();
  Reply reply = conn.read();
  if (!first_error.empty()) throw std::runtime_error("Redis refused " + first_error);
  return reply;
}

void RedisRunner::Impl::wait_for_room(Connection& conn, const Node& child, const std::string& key) {
  // Back-pressure: a stage's backlog (entries not yet delivered to any consumer) stays under its
  // queue capacity. Checked once per `capacity - backlog` adds, so it costs little when there is
  // room. While we wait here our own inputs stay pending; the keeper keeps them from looking idle.
  thread_local std::map<std::string, long long> budget;
  long long& room = budget[key];
  if (room > 0) {
    --room;
    return;
  }
  const auto capacity = static_cast<long long>(child.config.queue_capacity);
  while (!stop_all_) {
    const Reply groups = conn.command({"XINFO", "GROUPS", key});
    long long backlog = -1;
    for (std::size_t i = 0; i < detail::size(groups.get()); ++i) {
      const redisReply* g = detail::at(groups.get(), i);
      if (detail::text(detail::field(g, "name")) != child.config.name) continue;
      const redisReply* lag = detail::field(g, "lag");
      if (lag != nullptr && lag->type == REDIS_REPLY_INTEGER) backlog = lag->integer;
    }
    if (backlog < 0) backlog = detail::integer(conn.command({"XLEN", key}).get());  // lag unknown
    if (backlog < capacity) {
      room = capacity - backlog - 1;
      return;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
}

void RedisRunner::Impl::emit(Connection& conn, Node& from, const Packet& packet, Outbox& out,
                             Connection* probe) {
  const std::string run = current_run(conn, false);
  for (std::size_t c : from.children) {
    Node& child = *nodes_[c];
    const std::string& key = child.key_for(packet.stream);
    wait_for_room(probe != nullptr ? *probe : conn, child, key);
    const std::string payload = detail::encode_for_hop(packet, child.keep, images_);
    child.in_bytes += payload.size();
    ++child.in_packets;
    out.add(detail::xadd_args(key, run, packet.stream, packet.seq, &payload));
  }
  ++from.emitted;
}

void RedisRunner::Impl::emit_tombstone(Connection& conn, Node& from, std::uint32_t stream,
                                       std::uint64_t seq, const std::string& run, Outbox& out) {
  for (std::size_t c : from.children) {
    Node& child = *nodes_[c];
    const std::string& key = child.key_for(stream);
    wait_for_room(conn, child, key);
    out.add(detail::xadd_args(key, run, stream, seq, nullptr));
  }
}

void RedisRunner::Impl::dead_letter(Node& node, const WireEntry& entry, const std::string& error,
                                    long long deliveries, Outbox& out) {
  log().error("stage '{}': {} (stream {} seq {}): dead-lettered to {}", node.config.name, error,
                entry.stream, entry.seq, names_.dead_letter());
  Args args{"XADD", names_.dead_letter(), "MAXLEN", "~", "10000", "*", "stage", node.config.name,
            "entry", entry.id, "key", entry.key, "error", error, "deliveries"};
  args.add(static_cast<std::uint64_t>(std::max(1LL, deliveries))).add("run").add(entry.run);
  if (entry.has_position) args.add("s").add(std::uint64_t{entry.stream}).add("q").add(entry.seq);
  if (!entry.payload.empty()) args.add("p").add(entry.payload);
  out.add(std::move(args));
  out.add({"HINCRBY", names_.counters(), "dead", "1"});
  out.add({"HDEL", names_.errors(), entry.id});
  ++node.dead;
}

std::vector<Packet> RedisRunner::Impl::run_stage(Node& node, std::vector<Packet> packets,
                                                 std::string& error) {
  std::vector<Packet> outputs;
  const auto start = Clock::now();
  try {
    if (packets.size() > 1 && node.info.batching) {
      node.stage->process_batch(packets, outputs);
    } else {
      for (Packet& p : packets) node.stage->process(std::move(p), outputs);
    }
  } catch (const std::exception& e) {
    error = e.what();
    node.failed += packets.size();
    return {};
  } catch (...) {
    error = "unknown exception";
    node.failed += packets.size();
    return {};
  }
  const double us = ms_between(start, Clock::now()) * 1000.0;
  for (std::size_t i = 0; i < packets.size(); ++i) node.service.add(us / static_cast<double>(packets.size()));
  node.processed += packets.size();
  return outputs;
}

double RedisRunner::Impl::min_idle_ms(const Node& node) const {
  const Latency l = node.service.latency();
  return std::max(options_.reclaim_idle_ms, 3.0 * l.p99_us / 1000.0);
}

// =============================================================================================
// Sources (run process)

void RedisRunner::Impl::source_thread(Node& node) {
  // Two batches in flight: while Redis adds one (and has the next queued), the source produces
  // the one after. The backlog checks go through a second connection, which has no replies
  // outstanding.
  std::unique_ptr<Connection> conn;
  std::unique_ptr<Connection> probe;
  Outbox out;   // being produced
  Outbox sent;  // written, replies not read yet
  std::vector<Packet> produced;
  bool more = true;
  const auto collect = [&] {
    std::string first_error;
    for (std::size_t i = 0; i < sent.commands.size(); ++i) {
      const Reply reply = conn->read();
      if (detail::is_error(reply.get()) && first_error.empty()) {
        first_error = std::string(detail::text(reply.get()));
      }
    }
    sent.commands.clear();
    if (!first_error.empty()) throw std::runtime_error("Redis refused XADD: " + first_error);
  };
  while (!stop_all_) {
    try {
      if (!conn) {
        conn = connect();
        probe = connect();
        // Unconfirmed adds from before a reconnect are sent again: the sinks drop duplicates.
        flush(*conn, sent);
        flush(*conn, out);
      }
      if (!more || stop_sources_) break;
      produced.clear();
      try {
        more = node.source->next(produced);
      } catch (const std::exception& e) {
        log().error("source '{}' failed: {}; its stream ends here", node.config.name, e.what());
        ++node.failed;
        more = false;
      }
      for (const Packet& p : produced) {
        emit(*conn, node, p, out, probe.get());
        ++node.processed;
        ++produced_;
        std::lock_guard lock(counts_mutex_);
        auto& n = counts_[node.index][p.stream];
        n = std::max(n, p.seq + 1);
      }
      if (out.commands.size() >= kFlushEvery || node.info.blocking || !more) {
        // This batch goes out before the previous one's replies are read, so that Redis has
        // it queued meanwhile instead of waiting for us. Both stay unconfirmed (sent again
        // after a reconnect) until their replies are in.
        for (const Args& args : out.commands) conn->append(args);
        conn->send();
        collect();
        sent.commands.swap(out.commands);
        if (node.info.blocking || !more) collect();  // a paced source: no packet waits
      }
    } catch (const BrokerError& e) {
      conn.reset();
      probe.reset();
      if (!reconnect(e, node.config.name.c_str())) break;
    } catch (const std::exception& e) {
      log().error("source '{}': {}", node.config.name, e.what());
      fail(BrokerError(BrokerError::Kind::lost, "source '" + node.config.name + "': " + e.what()));
      break;
    }
  }
  if (conn) {
    try {
      collect();
      flush(*conn, out);  // what was produced before a stop
    } catch (const std::exception& e) {
      log().error("source '{}': {}", node.config.name, e.what());
    }
  }
  --sources_running_;
  wait_cv_.notify_all();
}

// =============================================================================================
// Shared stages: any number of consumers in any number of processes.

void RedisRunner::Impl::shared_consumer(Node& node, std::shared_ptr<InFlight> slot) {
  const std::string& key = node.keys[0];
  const std::string& group = node.config.name;
  const std::string& name = slot->consumer;
  std::unique_ptr<Connection> conn;
  std::string cursor = "0-0";
  auto next_reclaim = Clock::now() + std::chrono::milliseconds(static_cast<int>(options_.reclaim_idle_ms / 2));
  Outbox out;
  while (!stop_all_) {
    try {
      if (!conn) {
        conn = connect();
        ensure_groups(*conn, node);
      }
      // Slow stages take one entry at a time so that every consumer gets work; fast ones take
      // a few to save round trips. Batching stages take up to their batch size.
      const Latency l = node.service.latency();
      std::size_t count = l.count > 0 && l.p50_us < 1000 ? 32 : 1;
      if (node.info.batching) count = std::max(count, node.config.max_batch);

      std::vector<WireEntry> entries;
      std::map<std::string, long long> deliveries;
      const auto now = Clock::now();
      if (now >= next_reclaim) {
        flush(*conn, out);
        const double idle = min_idle_ms(node);
        next_reclaim = now + std::chrono::milliseconds(static_cast<int>(idle / 2));
        const Reply claimed = conn->command({"XAUTOCLAIM", key, group, name,
                                             std::to_string(static_cast<long long>(idle)), cursor,
                                             "COUNT", std::to_string(count)});
        if (detail::is_error(claimed.get())) {
          if (starts_with(detail::text(claimed.get()), "NOGROUP")) ensure_groups(*conn, node);
          cursor = "0-0";
          continue;
        }
        cursor = std::string(detail::text(detail::at(claimed.get(), 0)));
        const redisReply* list = detail::at(claimed.get(), 1);
        for (std::size_t i = 0; i < detail::size(list); ++i) {
          entries.push_back(detail::parse_entry(detail::at(list, i), key));
        }
        if (!entries.empty()) {
          log().info("stage '{}': reclaimed {} entries idle for over {:.0f} ms", node.config.name,
                       entries.size(), idle);
          const Reply pending = conn->command({"XPENDING", key, group, entries.front().id,
                                               entries.back().id,
                                               std::to_string(entries.size() + 16), name});
          for (std::size_t i = 0; i < detail::size(pending.get()); ++i) {
            const redisReply* p = detail::at(pending.get(), i);
            deliveries[std::string(detail::text(detail::at(p, 0)))] = detail::integer(detail::at(p, 3));
          }
        }
      } else {
        // The previous packets' outputs and acknowledgements travel with this read.
        const Reply read = flush_then(*conn, out,
                                      {"XREADGROUP", "GROUP", group, name, "COUNT",
                                       std::to_string(count), "BLOCK", std::to_string(kBlockMs),
                                       "STREAMS", key, ">"});
        {
          std::lock_guard lock(slot->mutex);
          slot->ids.clear();
        }
        if (detail::is_error(read.get())) {
          const std::string_view why = detail::text(read.get());
          if (!starts_with(why, "NOGROUP") && !starts_with(why, "UNBLOCKED")) {  // a run reset it
            throw std::runtime_error("XREADGROUP " + key + ": " + std::string(detail::text(read.get())));
          }
          ensure_groups(*conn, node);
          continue;
        }
        const redisReply* list = detail::at(detail::at(read.get(), 0), 1);
        for (std::size_t i = 0; i < detail::size(list); ++i) {
          entries.push_back(detail::parse_entry(detail::at(list, i), key));
        }
      }
      if (entries.empty()) continue;
      const bool linger = count > 1 && entries.size() < kLingerBelow;
      {
        std::lock_guard lock(slot->mutex);
        auto& ids = slot->ids[key];
        for (const WireEntry& e : entries) ids.push_back(e.id);
      }

      std::vector<WireEntry> work;
      std::vector<Packet> packets;
      const std::string run = current_run(*conn, false);
      for (WireEntry& e : entries) {
        const long long delivered = deliveries.count(e.id) ? deliveries[e.id] : 1;
        if (delivered > options_.max_deliveries) {
          const Reply last = conn->command({"HGET", names_.errors(), e.id});
          const std::string why = std::string(detail::text(last.get()));
          dead_letter(node, e,
                      "delivered " + std::to_string(delivered) + " times without success" +
                          (why.empty() ? " (its consumers died or timed out)" : "; last error: " + why),
                      delivered, out);
          if (e.has_position) emit_tombstone(*conn, node, e.stream, e.seq, e.run, out);
          out.add({"XACK", key, group, e.id});
          continue;
        }
        if (!e.malformed.empty()) {
          dead_letter(node, e, e.malformed, delivered, out);
          out.add({"XACK", key, group, e.id});
          continue;
        }
        if (e.run != run && e.run != current_run(*conn, true)) {  // a packet of an older run
          out.add({"XACK", key, group, e.id});
          continue;
        }
        if (e.tombstone) {
          emit_tombstone(*conn, node, e.stream, e.seq, e.run, out);
          out.add({"XACK", key, group, e.id});
          continue;
        }
        try {
          packets.push_back(detail::decode_hop(e.payload));
          work.push_back(std::move(e));
        } catch (const CodecError& error) {
          dead_letter(node, e, std::string("corrupt packet: ") + error.what(), delivered, out);
          emit_tombstone(*conn, node, e.stream, e.seq, e.run, out);
          out.add({"XACK", key, group, e.id});
        }
      }

      // Batching stages get the whole batch; others one packet at a time, so that one failure
      // fails one packet.
      std::vector<std::vector<std::size_t>> groups;
      if (node.info.batching) {
        groups.emplace_back();
        for (std::size_t i = 0; i < packets.size(); ++i) groups.back().push_back(i);
      } else {
        for (std::size_t i = 0; i < packets.size(); ++i) groups.push_back({i});
      }
      for (const auto& members : groups) {
        if (members.empty()) continue;
        std::vector<Packet> batch;
        for (std::size_t i : members) batch.push_back(std::move(packets[i]));
        std::string error;
        const std::vector<Packet> outputs = run_stage(node, std::move(batch), error);
        if (!error.empty()) {
          for (std::size_t i : members) {
            const WireEntry& e = work[i];
            const long long delivered = deliveries.count(e.id) ? deliveries[e.id] : 1;
            log().warn("stage '{}' failed on stream {} seq {} (delivery {} of {}): {}",
                         node.config.name, e.stream, e.seq, delivered, options_.max_deliveries, error);
            if (delivered >= options_.max_deliveries) {
              dead_letter(node, e, error, delivered, out);
              emit_tombstone(*conn, node, e.stream, e.seq, e.run, out);
              out.add({"XACK", key, group, e.id});
            } else {
              // Left pending: reclaimed (and retried) once idle; the error goes with it.
              out.add({"HSET", names_.errors(), e.id, error});
              std::lock_guard lock(slot->mutex);
              auto& ids = slot->ids[key];
              ids.erase(std::remove(ids.begin(), ids.end(), e.id), ids.end());
            }
          }
          continue;
        }
        std::set<std::pair<std::uint32_t, std::uint64_t>> covered;
        for (const Packet& p : outputs) {
          emit(*conn, node, p, out);
          covered.insert({p.stream, p.seq});
        }
        for (std::size_t i : members) {
          const WireEntry& e = work[i];
          if (!covered.contains({e.stream, e.seq})) {  // filtered out: ordered stages skip it
            emit_tombstone(*conn, node, e.stream, e.seq, e.run, out);
          }
          out.add({"XACK", key, group, e.id});
        }
      }
      // Flushed with the next read; at once when this was the last one.
      if (stop_all_) flush(*conn, out);
      if (linger) {
        flush(*conn, out);
        std::this_thread::sleep_for(std::chrono::microseconds(kLingerUs));
      }
    } catch (const BrokerError& e) {
      conn.reset();
      out.commands.clear();  // unacknowledged inputs stay pending and are reclaimed
      {
        std::lock_guard lock(slot->mutex);
        slot->ids.clear();
      }
      if (!reconnect(e, name.c_str())) break;
    } catch (const std::exception& e) {
      log().error("stage '{}': {}", node.config.name, e.what());
      out.commands.clear();
      std::this_thread::sleep_for(std::chrono::milliseconds(200));
    }
  }
  if (conn) {
    try {
      flush(*conn, out);
    } catch (const std::exception&) {
      // Unacknowledged entries stay pending and are reclaimed: at least once.
    }
  }
  --node.local_consumers;
}

// =============================================================================================
// Ordered consumers: per_stream stages (partitions owned through a lease) and sinks (the run
// process owns them). Both restore seq order per stream and drop what they have seen.

void RedisRunner::Impl::take_over(Connection& conn, Node& node, Partition& part,
                                  const std::string& name) {
  part.buffer.clear();
  part.next.clear();
  part.run = current_run(conn, true);
  const Reply next = conn.command({"HGETALL", names_.next_seq(part.key)});
  for (std::size_t i = 0; i + 1 < detail::size(next.get()); i += 2) {
    part.next[static_cast<std::uint32_t>(detail::integer(detail::at(next.get(), i)))] =
        static_cast<std::uint64_t>(detail::integer(detail::at(next.get(), i + 1)));
  }
  // Everything still pending in this partition (a previous owner's, or ours) becomes ours.
  std::string cursor = "0-0";
  Outbox out;
  std::size_t claimed = 0;
  do {
    const Reply reply = conn.command({"XAUTOCLAIM", part.key, node.config.name, name, "0", cursor,
                                      "COUNT", "256"});
    if (detail::is_error(reply.get())) break;
    cursor = std::string(detail::text(detail::at(reply.get(), 0)));
    const redisReply* list = detail::at(reply.get(), 1);
    for (std::size_t i = 0; i < detail::size(list); ++i) {
      place(conn, node, part, detail::parse_entry(detail::at(list, i), part.key), out);
      ++claimed;
    }
  } while (cursor != "0-0");
  flush(conn, out);
  if (claimed > 0 || !part.next.empty()) {
    log().info("stage '{}': took over {} with {} pending entries", node.config.name, part.key,
                 claimed);
  }
}

void RedisRunner::Impl::place(Connection& conn, Node& node, Partition& part, WireEntry entry,
                              Outbox& out) {
  const std::string& group = node.config.name;
  if (!entry.malformed.empty()) {
    dead_letter(node, entry, entry.malformed, 1, out);
    out.add({"XACK", entry.key, group, entry.id});
    return;
  }
  if (entry.run != part.run) {
    const std::string now = current_run(conn, true);
    if (entry.run != now) {  // an older run's packet
      out.add({"XACK", entry.key, group, entry.id});
      return;
    }
    // A new run started: what we knew of the old one does not apply.
    part.buffer.clear();
    part.next.clear();
    part.run = now;
  }
  auto& next = part.next[entry.stream];
  auto& buffer = part.buffer[entry.stream];
  if (const auto held = buffer.find(entry.seq); held != buffer.end() && held->second.id == entry.id) {
    return;  // the same entry again (claimed back): acknowledged once it is processed
  }
  if (entry.seq < next || buffer.contains(entry.seq)) {
    ++node.duplicates;
    out.add({"XACK", entry.key, group, entry.id});
    return;
  }
  const std::uint64_t seq = entry.seq;
  buffer.emplace(seq, std::move(entry));
}

// Entries of our partition pending on another consumer: a former owner read them after its
// lease had expired and before it noticed. They are ours to run.
void RedisRunner::Impl::claim_strays(Connection& conn, Node& node, Partition& part,
                                     const std::string& name, Outbox& out) {
  const Reply pending = conn.command({"XPENDING", part.key, node.config.name, "-", "+", "256"});
  Args claim{"XCLAIM", part.key, node.config.name, name, "0"};
  bool any = false;
  for (std::size_t i = 0; i < detail::size(pending.get()); ++i) {
    const redisReply* p = detail::at(pending.get(), i);
    if (detail::text(detail::at(p, 1)) == name) continue;
    claim.add(detail::text(detail::at(p, 0)));
    any = true;
  }
  if (!any) return;
  const Reply claimed = conn.command(claim);
  log().info("stage '{}': claimed {} entries a former owner of {} had read", node.config.name,
             detail::size(claimed.get()), part.key);
  for (std::size_t i = 0; i < detail::size(claimed.get()); ++i) {
    place(conn, node, part, detail::parse_entry(detail::at(claimed.get(), i), part.key), out);
  }
}

// A leased partition's progress (its acknowledgements and next seq per stream) is recorded only
// while this consumer still holds the lease. A former owner that has not noticed yet that its
// lease expired then changes nothing: what it processed stays pending, the new owner claims and
// runs it again (downstream drops the duplicates), and the next seqs the new owner read when it
// took over stay true. Without this, a late acknowledgement from the former owner could remove
// an entry the new owner was still waiting for, and its stream would stop there.
// KEYS: lease, next-seq hash, stream. ARGV: consumer, group, n, n x (stream, next), ids...
constexpr const char* kCommitIfLeased =
    "if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end "
    "local n = tonumber(ARGV[3]) "
    "for i = 0, n - 1 do redis.call('HSET', KEYS[2], ARGV[4 + 2 * i], ARGV[5 + 2 * i]) end "
    "if #ARGV > 3 + 2 * n then redis.call('XACK', KEYS[3], ARGV[2], unpack(ARGV, 4 + 2 * n)) end "
    "return 1";

void RedisRunner::Impl::drain(Connection& conn, Node& node, Partition& part, bool exclusive,
                              Outbox& out, const std::function<void()>& between,
                              const std::string& name) {
  const std::string& group = node.config.name;
  // One XACK for the entries drained, after their outputs (it goes last into the outbox); for a
  // leased partition, with the next seqs reached, only while the lease is still ours.
  std::vector<std::string> ids;
  std::map<std::uint32_t, std::uint64_t> reached;
  const auto close_acks = [&] {
    if (exclusive) {
      if (ids.empty()) return;
      Args acks{"XACK", part.key, group};
      for (const std::string& id : ids) acks.add(id);
      out.add(std::move(acks));
    } else {
      if (ids.empty() && reached.empty()) return;
      Args commit{"EVAL", kCommitIfLeased, "3", names_.lease(part.key), names_.next_seq(part.key),
                  part.key, name, group};
      commit.add(static_cast<std::uint64_t>(reached.size()));
      for (const auto& [stream, next] : reached) commit.add(std::uint64_t{stream}).add(next);
      for (const std::string& id : ids) commit.add(id);
      out.add(std::move(commit));
    }
    ids.clear();
    reached.clear();
  };
  for (auto& [stream, buffer] : part.buffer) {
    auto& next = part.next[stream];
    while (!buffer.empty() && buffer.begin()->first == next) {
      WireEntry e = std::move(buffer.begin()->second);
      buffer.erase(buffer.begin());
      bool delivered_packet = false;
      if (!e.tombstone) {
        std::optional<Packet> packet;
        try {
          packet = detail::decode_hop(e.payload);
        } catch (const CodecError& error) {
          dead_letter(node, e, std::string("corrupt packet: ") + error.what(), 1, out);
        }
        if (packet) {
          // In order means no skipping ahead: a failing packet is retried here, then
          // dead-lettered, and the stream goes on.
          std::string error;
          std::vector<Packet> outputs;
          int attempt = 0;
          for (attempt = 1; attempt <= options_.max_deliveries; ++attempt) {
            error.clear();
            outputs = run_stage(node, {*packet}, error);
            if (error.empty()) break;
            log().warn("stage '{}' failed on stream {} seq {} (attempt {} of {}): {}",
                         node.config.name, e.stream, e.seq, attempt, options_.max_deliveries, error);
          }
          if (!error.empty()) {
            dead_letter(node, e, error, options_.max_deliveries, out);
          } else {
            delivered_packet = true;
            bool covered = false;
            for (const Packet& p : outputs) {
              emit(conn, node, p, out);
              covered = covered || (p.stream == e.stream && p.seq == e.seq);
            }
            if (!covered) emit_tombstone(conn, node, e.stream, e.seq, e.run, out);
          }
        }
      }
      if (!delivered_packet && !node.is_sink) emit_tombstone(conn, node, e.stream, e.seq, e.run, out);
      ids.push_back(e.id);
      ++next;
      if (!exclusive) reached[stream] = next;
      // Outputs go out every kFlushEvery commands; acknowledgements alone wait for the next read
      // (a sink has no outputs: its whole batch is acknowledged with one XACK).
      if (out.commands.size() >= kFlushEvery || ids.size() >= kAckEvery) {
        close_acks();
        flush(conn, out);
      }
      between();  // keeps the lease while a long batch runs
      if (part.lost) {
        close_acks();
        return;
      }
    }
    if (node.is_sink) {  // written by the sink; the acknowledgements follow with the next read
      std::lock_guard lock(node.delivered_mutex);
      node.delivered[stream] = next;
    }
  }
  close_acks();
}

void RedisRunner::Impl::ordered_consumer(Node& node, std::string name, bool exclusive, int max_own) {
  const std::string& group = node.config.name;
  std::unique_ptr<Connection> conn;
  std::map<int, Partition> owned;
  auto next_lease = Clock::now();
  Outbox out;
  static const char* const kRenew =
      "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], "
      "ARGV[2]) else return 0 end";
  const auto release = [&](Connection& c) {
    for (auto& [k, part] : owned) {
      c.command({"EVAL",
                 "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) "
                 "else return 0 end",
                 "1", names_.lease(part.key), name});
    }
  };
  auto next_renew = Clock::now();
  std::size_t largest = 0;  // the largest payload of the last read that had one: sizes reads
  // Renews every owned lease at most once a second; marks the ones we no longer hold.
  const auto renew = [&] {
    if (exclusive || !conn || Clock::now() < next_renew) return;
    next_renew = Clock::now() + std::chrono::milliseconds(kLeaseMs / 3);
    for (auto& [k, part] : owned) {
      const Reply renewed =
          conn->command({"EVAL", kRenew, "1", names_.lease(part.key), name, std::to_string(kLeaseMs)});
      if (detail::integer(renewed.get()) != 1 && !part.lost) {
        log().warn("stage '{}': lost the lease on {}", node.config.name, part.key);
        part.lost = true;
      }
    }
  };
  while (!stop_all_) {
    try {
      if (!conn) {
        conn = connect();
        ensure_groups(*conn, node);
        // A sink keeps what it knows across a reconnect (its next seq lives only here); the
        // entries it had read are still pending on it, and it drains them from its buffer.
        if (exclusive && owned.empty()) {
          Partition part{.index = 0, .key = node.keys[0]};
          take_over(*conn, node, part, name);
          owned.emplace(0, std::move(part));
        } else if (exclusive) {
          // Entries Redis delivered to us in a reply the connection lost are pending on us
          // but were never seen: read our own pending entries again (id 0, not '>').
          Partition& part = owned.begin()->second;
          std::string after = "0";
          for (;;) {
            const Reply again = conn->command({"XREADGROUP", "GROUP", group, name, "COUNT", "256",
                                               "STREAMS", part.key, after});
            const redisReply* list = detail::at(detail::at(again.get(), 0), 1);
            if (detail::size(list) == 0) break;
            for (std::size_t i = 0; i < detail::size(list); ++i) {
              WireEntry entry = detail::parse_entry(detail::at(list, i), part.key);
              after = entry.id;
              place(*conn, node, part, std::move(entry), out);
            }
          }
        }
      }
      const auto now = Clock::now();
      if (!exclusive && now >= next_lease) {
        next_lease = now + std::chrono::milliseconds(kLeaseMs / 3);
        // What we processed must be acknowledged and its next seq recorded before a lease
        // changes hands (even back to us): a take-over claims everything still pending.
        flush(*conn, out);
        renew();
        for (auto it = owned.begin(); it != owned.end();) {
          if (it->second.lost) {
            it = owned.erase(it);
          } else {
            claim_strays(*conn, node, it->second, name, out);
            ++it;
          }
        }
        for (int k = 0; k < node.partitions && static_cast<int>(owned.size()) < max_own; ++k) {
          if (owned.contains(k)) continue;
          const std::string& key = node.keys[static_cast<std::size_t>(k)];
          const Reply got = conn->command(
              {"SET", names_.lease(key), name, "NX", "PX", std::to_string(kLeaseMs)});
          if (detail::text(got.get()) != "OK") continue;
          Partition part{.index = k, .key = key};
          take_over(*conn, node, part, name);
          owned.emplace(k, std::move(part));
        }
      }
      if (owned.empty()) {
        std::this_thread::sleep_for(std::chrono::milliseconds(kBlockMs));
        continue;
      }
      std::size_t count = kReadSlow;
      if (const double median = node.service.median_us(); median > 0 && median < 1000 && largest > 0) {
        count = std::clamp(kReadBytes / largest, kReadSlow, kReadFast);
      }
      Args read{"XREADGROUP", "GROUP", group, name, "COUNT", std::to_string(count), "BLOCK",
                std::to_string(kBlockMs), "STREAMS"};
      for (const auto& [k, part] : owned) read.add(part.key);
      for (std::size_t i = 0; i < owned.size(); ++i) read.add(">");
      const Reply reply = flush_then(*conn, out, read);
      if (detail::is_error(reply.get())) {
        const std::string_view why = detail::text(reply.get());
        if (!starts_with(why, "NOGROUP") && !starts_with(why, "UNBLOCKED")) {  // a run reset it
          throw std::runtime_error("XREADGROUP: " + std::string(detail::text(reply.get())));
        }
        ensure_groups(*conn, node);
        for (auto& [k, part] : owned) take_over(*conn, node, part, name);
        continue;
      }
      std::size_t biggest = 0;
      for (std::size_t s = 0; s < detail::size(reply.get()); ++s) {
        const redisReply* stream = detail::at(reply.get(), s);
        const std::string key(detail::text(detail::at(stream, 0)));
        auto part = std::find_if(owned.begin(), owned.end(),
                                 [&](const auto& kv) { return kv.second.key == key; });
        if (part == owned.end()) continue;
        const redisReply* list = detail::at(stream, 1);
        for (std::size_t i = 0; i < detail::size(list); ++i) {
          WireEntry entry = detail::parse_entry(detail::at(list, i), key);
          biggest = std::max(biggest, entry.payload.size());
          place(*conn, node, part->second, std::move(entry), out);
        }
      }
      if (biggest > 0) largest = biggest;
      std::size_t got = 0;
      for (std::size_t st = 0; st < detail::size(reply.get()); ++st) {
        got += detail::size(detail::at(detail::at(reply.get(), st), 1));
      }
      for (auto& [k, part] : owned) {
        if (!part.lost) drain(*conn, node, part, exclusive, out, renew, name);
      }
      if (got > 0 && got < kLingerBelow) std::this_thread::sleep_for(std::chrono::microseconds(kLingerUs));
      if (stop_all_) flush(*conn, out);
    } catch (const BrokerError& e) {
      conn.reset();
      if (!exclusive) {
        out.commands.clear();  // unacknowledged entries stay pending and are taken again
        owned.clear();         // with the lease, and the next seq from Redis
      }  // a sink sends its acknowledgements again on the new connection (XACK is idempotent)
      if (!reconnect(e, name.c_str())) break;
    } catch (const std::exception& e) {
      log().error("stage '{}': {}", node.config.name, e.what());
      out.commands.clear();
      std::this_thread::sleep_for(std::chrono::milliseconds(200));
    }
  }
  if (conn) {
    try {
      flush(*conn, out);
      if (!exclusive) release(*conn);  // hand over at once instead of after the lease expires
    } catch (const std::exception&) {
    }
  }
  --node.local_consumers;
}

// =============================================================================================
// The keeper: keeps in-flight entries fresh, announces live consumers, counts bytes per hop,
// and (in the run process) trims acknowledged entries and serves stages nobody serves.

void RedisRunner::Impl::keeper_thread() {
  std::unique_ptr<Connection> conn;
  auto next_second = Clock::now();
  while (!stop_all_) {
    try {
      if (!conn) conn = connect();
      std::vector<std::shared_ptr<InFlight>> slots;
      std::set<std::size_t> served;
      {
        std::lock_guard lock(threads_mutex_);
        slots = in_flight_;
        served = served_;
      }
      for (const auto& slot : slots) {
        std::lock_guard lock(slot->mutex);
        for (const auto& [key, ids] : slot->ids) {
          if (ids.empty()) continue;
          Args claim{"XCLAIM", key, slot->group, slot->consumer, "0"};
          for (const std::string& id : ids) claim.add(id);
          claim.add("JUSTID");  // resets the idle time, not the delivery count
          conn->command(claim);
        }
      }
      const auto now = Clock::now();
      if (now >= next_second) {
        next_second = now + std::chrono::seconds(1);
        const std::int64_t wall = wall_ms();
        Args live{"ZADD", names_.live()};
        bool any = false;
        for (std::size_t i : served) {
          Node& n = *nodes_[i];
          live.add(std::to_string(wall + kLiveTtlMs)).add(n.config.name + "|" + consumer_prefix_ + "|" +
                                                          std::to_string(n.local_consumers.load()));
          any = true;
        }
        // One member per stage and process; the old one (another consumer count) goes.
        if (any) {
          Args old{"ZRANGE", names_.live(), "0", "-1"};
          const Reply members = conn->command(old);
          for (std::size_t m = 0; m < detail::size(members.get()); ++m) {
            const std::string member(detail::text(detail::at(members.get(), m)));
            if (member.find("|" + consumer_prefix_ + "|") != std::string::npos) {
              conn->command({"ZREM", names_.live(), member});
            }
          }
          conn->command(live);
        }
        conn->command({"ZREMRANGEBYSCORE", names_.live(), "-inf", std::to_string(wall)});
        for (auto& n : nodes_) {
          const std::uint64_t bytes = n->in_bytes.load();
          const std::uint64_t packets = n->in_packets.load();
          if (bytes == n->flushed_bytes && packets == n->flushed_packets) continue;
          const std::string hop = nodes_[n->parent]->config.name + ">" + n->config.name;
          conn->command({"HINCRBY", names_.hops(), hop + ":bytes",
                         std::to_string(bytes - n->flushed_bytes)});
          conn->command({"HINCRBY", names_.hops(), hop + ":packets",
                         std::to_string(packets - n->flushed_packets)});
          n->flushed_bytes = bytes;
          n->flushed_packets = packets;
        }
        if (options_.role == RedisOptions::Role::run) {
          // Trim what every consumer has acknowledged: entries older than the oldest pending
          // one, or than the last delivered one when nothing is pending. Unread entries are
          // newer than the last delivered one, so they are never trimmed.
          for (auto& n : nodes_) {
            if (n->is_source) continue;
            for (const std::string& key : n->keys) {
              const Reply groups = conn->command({"XINFO", "GROUPS", key});
              for (std::size_t g = 0; g < detail::size(groups.get()); ++g) {
                const redisReply* info = detail::at(groups.get(), g);
                if (detail::text(detail::field(info, "name")) != n->config.name) continue;
                std::string min_id(detail::text(detail::field(info, "last-delivered-id")));
                if (detail::integer(detail::field(info, "pending")) > 0) {
                  const Reply summary = conn->command({"XPENDING", key, n->config.name});
                  min_id = std::string(detail::text(detail::at(summary.get(), 1)));
                }
                if (!min_id.empty() && min_id != "0-0") conn->command({"XTRIM", key, "MINID", min_id});
              }
            }
          }
          if (options_.serve == RedisOptions::Serve::missing) {
            const Reply members =
                conn->command({"ZRANGEBYSCORE", names_.live(), std::to_string(wall), "+inf"});
            std::set<std::string> covered;
            for (std::size_t m = 0; m < detail::size(members.get()); ++m) {
              const std::string member(detail::text(detail::at(members.get(), m)));
              covered.insert(member.substr(0, member.find('|')));
            }
            for (auto& n : nodes_) {
              if (n->is_source || n->is_sink || served.contains(n->index) ||
                  covered.contains(n->config.name)) {
                continue;
              }
              log().info("no worker serves stage '{}': serving it here", n->config.name);
              build(*n);
              serve(*n, n->config.consumers);
            }
          }
        }
      }
    } catch (const BrokerError& e) {
      conn.reset();
      if (!reconnect(e, "keeper")) break;
    } catch (const std::exception& e) {
      log().error("keeper: {}", e.what());
    }
    std::unique_lock lock(keeper_mutex_);
    keeper_cv_.wait_for(lock, std::chrono::milliseconds(250), [&] { return stop_all_.load(); });
  }
  // Leave the live set at once, so that `run` notices a stopped worker without waiting.
  try {
    if (!conn) conn = connect();
    const Reply members = conn->command({"ZRANGE", names_.live(), "0", "-1"});
    for (std::size_t m = 0; m < detail::size(members.get()); ++m) {
      const std::string member(detail::text(detail::at(members.get(), m)));
      if (member.find("|" + consumer_prefix_ + "|") != std::string::npos) {
        conn->command({"ZREM", names_.live(), member});
      }
    }
    for (auto& n : nodes_) {
      const std::uint64_t bytes = n->in_bytes.load();
      const std::uint64_t packets = n->in_packets.load();
      if (bytes == n->flushed_bytes && packets == n->flushed_packets) continue;
      const std::string hop = nodes_[n->parent]->config.name + ">" + n->config.name;
      conn->command({"HINCRBY", names_.hops(), hop + ":bytes", std::to_string(bytes - n->flushed_bytes)});
      conn->command({"HINCRBY", names_.hops(), hop + ":packets",
                     std::to_string(packets - n->flushed_packets)});
      n->flushed_bytes = bytes;
      n->flushed_packets = packets;
    }
  } catch (const std::exception&) {
    // Redis is gone: the heartbeats expire by themselves.
  }
}

// =============================================================================================
// Lifecycle

void RedisRunner::Impl::serve(Node& node, int consumers) {
  std::lock_guard lock(threads_mutex_);
  served_.insert(node.index);
  const int own_max = (node.partitions + consumers - 1) / consumers;
  for (int i = 0; i < consumers; ++i) {
    const std::string name =
        consumer_prefix_ + ":" + node.config.name + ":" + std::to_string(next_consumer_++);
    ++node.local_consumers;
    ++node.started_consumers;
    if (node.config.per_stream) {
      threads_.emplace_back([this, &node, name, own_max] { ordered_consumer(node, name, false, own_max); });
    } else {
      auto slot = std::make_shared<InFlight>();
      slot->consumer = name;
      slot->group = node.config.name;
      in_flight_.push_back(slot);
      threads_.emplace_back([this, &node, slot] { shared_consumer(node, slot); });
    }
  }
}

void RedisRunner::Impl::start() {
  if (started_flag_) return;
  started_flag_ = true;
  started_ = Clock::now();
  const bool is_run = options_.role == RedisOptions::Role::run;
  std::vector<Node*> to_serve;
  {
    auto conn = connect();
    if (is_run) {
      run_id_ = random_id();
      reset_keys(*conn);
      std::set<std::string> covered;
      if (options_.serve == RedisOptions::Serve::missing) {
        const Reply members =
            conn->command({"ZRANGEBYSCORE", names_.live(), std::to_string(wall_ms()), "+inf"});
        for (std::size_t m = 0; m < detail::size(members.get()); ++m) {
          const std::string member(detail::text(detail::at(members.get(), m)));
          covered.insert(member.substr(0, member.find('|')));
        }
      }
      for (auto& n : nodes_) {
        if (n->is_source || n->is_sink) {
          build(*n);
          continue;
        }
        if (options_.serve == RedisOptions::Serve::all ||
            (options_.serve == RedisOptions::Serve::missing && !covered.contains(n->config.name))) {
          to_serve.push_back(n.get());
        }
      }
    } else {
      for (const std::string& name : options_.stages) {
        for (auto& n : nodes_) {
          if (n->config.name == name) to_serve.push_back(n.get());
        }
      }
    }
    for (Node* n : to_serve) {
      build(*n);
      ensure_groups(*conn, *n);
    }
  }
  for (Node* n : to_serve) serve(*n, options_.consumers > 0 ? options_.consumers : n->config.consumers);
  std::lock_guard lock(threads_mutex_);
  if (is_run) {
    for (auto& n : nodes_) {
      if (n->is_source) {
        if (auto expected = n->source->expected_count()) expected_ += *expected;
        ++sources_running_;
        threads_.emplace_back([this, node = n.get()] { source_thread(*node); });
      } else if (n->is_sink) {
        ++n->local_consumers;
        ++n->started_consumers;
        threads_.emplace_back([this, node = n.get()] {
          ordered_consumer(*node, consumer_prefix_ + ":" + node->config.name + ":sink", true, 1);
        });
      }
    }
  }
  threads_.emplace_back([this] { keeper_thread(); });
}

bool RedisRunner::Impl::wait_for(double timeout_ms) {
  const auto deadline = Clock::now() + std::chrono::microseconds(static_cast<long long>(timeout_ms * 1000));
  const auto done = [&] {
    if (stop_all_) return true;
    if (options_.role != RedisOptions::Role::run || sources_running_ > 0) return false;
    std::lock_guard counts_lock(counts_mutex_);
    for (const auto& n : nodes_) {
      if (!n->is_sink) continue;
      std::lock_guard lock(n->delivered_mutex);
      for (const auto& [stream, count] : counts_[n->root]) {
        const auto it = n->delivered.find(stream);
        if (count > 0 && (it == n->delivered.end() || it->second < count)) return false;
      }
    }
    return true;
  };
  {
    std::unique_lock lock(wait_mutex_);
    while (!done()) {
      if (wait_cv_.wait_until(lock, std::min(deadline, Clock::now() + std::chrono::milliseconds(20))) ==
              std::cv_status::timeout &&
          Clock::now() >= deadline) {
        if (!done()) return false;
        break;
      }
    }
  }
  shutdown();
  std::lock_guard lock(error_mutex_);
  if (error_) throw *error_;
  return true;
}

void RedisRunner::Impl::stop() {
  if (options_.role == RedisOptions::Role::run) {
    stop_sources_ = true;
  } else {
    stop_all_ = true;
    keeper_cv_.notify_all();
  }
  wait_cv_.notify_all();
}

void RedisRunner::Impl::shutdown() {
  stop_sources_ = true;
  stop_all_ = true;
  wait_cv_.notify_all();
  keeper_cv_.notify_all();
  std::vector<std::thread> threads;
  {
    std::lock_guard lock(threads_mutex_);
    threads.swap(threads_);
  }
  for (std::thread& t : threads) {
    if (t.joinable()) t.join();
  }
  // Stages close (a video sink finishes its file) before the runner reports.
  for (auto& n : nodes_) {
    std::lock_guard lock(n->build_mutex);
    n->stage.reset();
    n->source.reset();
  }
}

MetricsSnapshot RedisRunner::Impl::metrics() const {
  MetricsSnapshot m;
  m.pipeline = pipeline_.name();
  m.elapsed_s = started_flag_ ? ms_between(started_, Clock::now()) / 1000.0 : 0;
  m.packets_in = produced_.load();
  m.packets_out = retired_packets();
  for (const auto& n : nodes_) {
    StageMetrics s;
    s.name = n->config.name;
    s.type = n->config.type;
    s.processed = n->processed.load();
    s.failed = n->failed.load();
    s.dropped = n->dead.load();
    s.emitted = n->emitted.load();
    s.queue_capacity = n->config.queue_capacity;
    s.service = n->service.latency();
    s.consumers = n->is_source ? 1 : n->started_consumers.load();
    if (m.elapsed_s > 0 && s.consumers > 0) {
      s.busy_share = s.service.sum_us / 1e6 / (m.elapsed_s * s.consumers);
    }
    m.stages.push_back(std::move(s));
  }
  return m;
}

std::uint64_t RedisRunner::Impl::retired_packets() const {
  std::optional<std::uint64_t> least;
  for (const auto& n : nodes_) {
    if (!n->is_sink) continue;
    std::lock_guard lock(n->delivered_mutex);
    std::uint64_t sum = 0;
    for (const auto& [stream, next] : n->delivered) sum += next;
    least = std::min(least.value_or(sum), sum);
  }
  return least.value_or(0);
}

std::vector<HopBytes> RedisRunner::Impl::hop_bytes() const {
  std::vector<HopBytes> hops;
  Connection conn(url_);
  const Reply all = conn.command({"HGETALL", names_.hops()});
  for (const auto& n : nodes_) {
    if (n->parent == kNone) continue;
    const std::string hop = nodes_[n->parent]->config.name + ">" + n->config.name;
    HopBytes h{.from = nodes_[n->parent]->config.name, .to = n->config.name};
    h.bytes = static_cast<std::uint64_t>(detail::integer(detail::field(all.get(), hop + ":bytes")));
    h.packets = static_cast<std::uint64_t>(detail::integer(detail::field(all.get(), hop + ":packets")));
    hops.push_back(h);
  }
  return hops;
}

std::uint64_t RedisRunner::Impl::dead_lettered() const {
  try {
    Connection conn(url_);
    return static_cast<std::uint64_t>(
        detail::integer(conn.command({"HGET", names_.counters(), "dead"}).get()));
  } catch (const BrokerError&) {
    std::uint64_t local = 0;
    for (const auto& n : nodes_) local += n->dead.load();
    return local;
  }
}

std::vector<std::string> RedisRunner::Impl::served_stages() const {
  std::lock_guard lock(threads_mutex_);
  std::vector<std::string> names;
  for (std::size_t i : served_) names.push_back(nodes_[i]->config.name);
  return names;
}

// =============================================================================================

RedisRunner::RedisRunner(const Pipeline& pipeline, RedisOptions options, const Registry& registry)
    : impl_(std::make_unique<Impl>(pipeline, std::move(options), registry)) {}
RedisRunner::~RedisRunner() = default;
void RedisRunner::start() { impl_->start(); }
bool RedisRunner::wait_for(double timeout_ms) { return impl_->wait_for(timeout_ms); }
void RedisRunner::stop() { impl_->stop(); }
MetricsSnapshot RedisRunner::metrics() const { return impl_->metrics(); }
std::vector<HopBytes> RedisRunner::hop_bytes() const { return impl_->hop_bytes(); }
std::uint64_t RedisRunner::expected_packets() const { return impl_->expected_packets(); }
std::uint64_t RedisRunner::retired_packets() const { return impl_->retired_packets(); }
std::uint64_t RedisRunner::dead_lettered() const { return impl_->dead_lettered(); }
std::vector<std::string> RedisRunner::served_stages() const { return impl_->served_stages(); }

}  // namespace micromodels
