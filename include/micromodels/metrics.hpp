// What each stage did: counts, queue depths, latencies, busy share.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

namespace micromodels {

/// Percentiles of a latency distribution, in microseconds.
struct Latency {
  double p50_us = 0;
  double p95_us = 0;
  double p99_us = 0;
  double mean_us = 0;
  std::uint64_t count = 0;
  double sum_us = 0;
  /// Cumulative counts at the histogram's upper bounds (for Prometheus buckets).
  std::vector<std::pair<double, std::uint64_t>> buckets{};
};

/// One stage in this process. The words mean the same in the table, the JSON, /status,
/// /metrics and `top`:
struct StageMetrics {
  std::string name{};
  std::string type{};
  std::uint64_t processed = 0;  // packets whose process() returned
  std::uint64_t failed = 0;     // packets whose process() threw
  std::uint64_t dropped = 0;    // removed by a policy the pipeline chose: overflow, join
                                // timeout, and in live mode, by reason:
  std::uint64_t dropped_age = 0;     //   older than the budget (live.max_age_ms) when taken
  std::uint64_t dropped_newest = 0;  //   replaced by its stream's newer packet (policy: newest)
  std::uint64_t dropped_unserved = 0;  //   not sent: no process served the stage (on Redis, its
                                       //   stream at its capacity and unread for half a second)
  std::uint64_t dead_lettered = 0;  // handed to the dead letter: failed packets (when the
                                    // pipeline or transport keeps them), and on Redis entries
                                    // delivered max_deliveries times or unreadable
  std::uint64_t emitted = 0;    // packets passed downstream
  std::size_t queue_depth = 0;
  std::size_t queue_max = 0;
  std::size_t queue_capacity = 0;
  Latency queue_wait{};
  Latency service{};
  Latency age{};  // a last stage: from capture (Packet::capture_ns) to processed
  std::map<std::string, std::uint64_t> events{};  // what the stage counted (Stage::count):
                                                  // reconnects, retries, ...
  int consumers = 0;
  double busy_share = 0;  // busy time / (elapsed time x consumers)
  bool source = false;      // produces packets; has no queue
  bool blocking = false;    // on its own threads; otherwise on the shared worker pool
  bool per_stream = false;  // one consumer per stream at a time
  bool sheds = false;       // its queue drops what does not fit (overflow drop_oldest or
                            // drop_newest): it never holds back the stages before it
};

/// What limits throughput, from the measured service times: one stage's consumers, or the pool
/// of worker threads that CPU-bound stages share. One meaning everywhere (table, JSON, /status,
/// `top`).
struct Bottleneck {
  std::string name{};      // the stage, or "worker pool"
  bool pool = false;       // the worker pool, not a stage
  double rate_per_s = 0;   // packets per second it allows at most
};

/// A consistent-enough snapshot of the stages this process runs (each counter is read
/// atomically).
///
///   MetricsSnapshot m = runner.metrics();
///   std::cout << m.to_table();
///   std::ofstream("metrics.json") << m.to_json();
struct MetricsSnapshot {
  std::string pipeline{};
  double elapsed_s = 0;
  /// Packets that entered this process's part of the pipeline: produced by its sources, or,
  /// for a process that runs no source, arrived at its first stages.
  std::uint64_t packets_in = 0;
  /// Packets its last stages are done with (processed, failed, dropped, or known never to
  /// come), counted once per packet however many last stages there are (the least of them).
  std::uint64_t packets_out = 0;
  /// Packets inside this process now: queued at its stages, being processed, or held for
  /// order. What a stop still drains.
  std::uint64_t in_flight = 0;
  // Rates: a stage's own is processed / elapsed_s (a source's: frames per second produced; a
  // last stage's: what it wrote); the run's is packets_in / elapsed_s, never a sum over sinks.
  int workers = 0;                // threads of the pool that CPU-bound stages share
  std::uint32_t streams = 0;      // streams the sources produced (highest stream id + 1)
  std::vector<StageMetrics> stages{};
  /// What the transport counted in this process (Redis: memory_pauses, memory_paused_ms,
  /// reconnects, leases_lost); empty
  /// in memory.
  std::map<std::string, std::uint64_t> transport{};

  [[nodiscard]] const StageMetrics* stage(const std::string& name) const;
  /// What limits throughput, from the service times since the start, or since `before` (an
  /// earlier snapshot of the same run); nullopt before any packet was measured.
  [[nodiscard]] std::optional<Bottleneck> bottleneck(const MetricsSnapshot* before = nullptr) const;
  /// What limits throughput, from the measured service times, and what one more consumer there
  /// would give: "iris limits throughput: 1 consumer x 8.1 ms = at most 123 packets/s ...".
  [[nodiscard]] std::string bottleneck_report() const;
  [[nodiscard]] std::string to_table() const;
  [[nodiscard]] std::string to_json() const;
  [[nodiscard]] std::string to_prometheus() const;
};

}  // namespace micromodels
