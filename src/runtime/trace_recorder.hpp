// Per-packet tracing: what each stage did with a sampled packet (its queue wait, its service
// time, the thread that ran it), recorded on the hot path into per-thread buffers and written
// as Chrome trace-event JSON when the run ends.
#pragma once

#include <atomic>
#include <cstdint>
#include <cstdio>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "micromodels/pipeline.hpp"

namespace micromodels::detail {

struct TraceBuffer;  // one thread's events (trace_recorder.cpp)

/// One stage's turn with one packet; times are tick_ns(). Trivial (no member initializers), so
/// that a chunk of them is allocated without being written twice; the engine sets every field.
struct TraceEvent {
  std::uint32_t stage;  // index in the plan
  std::uint32_t stream;
  std::uint64_t seq;
  std::int64_t enqueued;  // entered the stage's queue (a source: = start)
  std::int64_t start;
  std::int64_t end;
  std::uint32_t thread;  // filled in when written: the recording thread's id
  bool failed;
  bool dropped;  // the stage's queue dropped it (overflow, or live mode's age or newest): no
                 // service, start = end
};

/// Records the sampled packets of one engine and writes them to `config.path`.
///
/// Sampling keeps the packets whose seq is a multiple of `every`, so every stage (and every
/// process of a distributed run) traces the same packets. The hot path appends to the calling
/// thread's buffer without a lock; a full buffer of kChunk events is handed to the recorder
/// under its lock. The file is bounded by `max_mb`: each time the events recorded would fill half
/// the room left, `every` doubles (one log line each time); once full, recording stops.
class TraceRecorder {
 public:
  /// Opens (truncates) the file now, so that a path that cannot be written fails before the run:
  /// throws ConfigError naming the path. `stages`: the plan's stage names, by index.
  TraceRecorder(TraceConfig config, std::vector<std::string> stages, std::string process);
  ~TraceRecorder();
  TraceRecorder(const TraceRecorder&) = delete;
  TraceRecorder& operator=(const TraceRecorder&) = delete;

  [[nodiscard]] bool sampled(std::uint64_t seq) const noexcept {
    const std::uint64_t every = every_.load(std::memory_order_relaxed);
    return every == 1 || (every != 0 && seq % every == 0);
  }

  /// Records `event` when its packet is sampled. Called by any thread.
  void record(const TraceEvent& event) {
    if (sampled(event.seq)) append(event);
  }

  /// Writes the file and closes it. Call once no thread records any more; idempotent.
  void finish();

 private:
  static constexpr std::size_t kChunk = 512;

  void append(const TraceEvent& event);
  TraceBuffer& buffer();
  void hand_off(TraceBuffer& buffer);
  void thin_locked();

  const TraceConfig config_;
  const std::vector<std::string> stages_;
  const std::string process_;
  const std::uint64_t id_;              // tells this recorder's thread buffers from another's
  const std::uint64_t max_events_;      // what max_mb holds
  struct ClockPair {
    std::int64_t tick = 0;  // tick_ns()
    std::int64_t wall = 0;  // ns since the epoch, at the same moment
    static ClockPair now();
  };
  const ClockPair start_;
  std::atomic<std::uint64_t> every_;    // 0: recording stopped

  std::mutex mutex_;
  std::vector<std::unique_ptr<TraceBuffer>> buffers_;
  std::uint64_t handed_ = 0;         // events in full chunks handed over
  std::uint64_t next_thinning_ = 0;  // `every` doubles when handed_ reaches it
  std::FILE* file_ = nullptr;
};

}  // namespace micromodels::detail
