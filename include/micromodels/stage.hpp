// One step of a pipeline: a specialist model or the code between models.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "micromodels/packet.hpp"

namespace micromodels {

/// A local file a stage opens, and the param that names it.
struct FileParam {
  std::string param{};
  std::string path{};
};

/// What a configured stage reads and writes, and how it wants to be run. The pipeline checks
/// that every field in `reads` is written upstream; the runner gives blocking stages their own
/// threads.
///
/// Declare every field `process` may look at: on Redis each hop carries only the fields that
/// the stages after it declare (`reads`, `optional_reads`), so an undeclared field is simply
/// not there. A field used only when present (written on key frames, by an optional stage
/// upstream, or only for an optional output) goes in `optional_reads`: it travels when some
/// stage upstream writes it, and no stage is required to. A stage that looks at whole packets
/// (a generic sink, a debug dump) sets `reads_all`. A stage that reads nothing itself (`pass`)
/// declares nothing: its hop still carries what the stages after it read.
///
/// Files: the pipeline refuses a file that one stage writes and another reads or writes too
/// (an output over the input would destroy it while it is read).
struct StageInfo {
  std::vector<std::string> reads{};           // needed: the pipeline checks they are written
  std::vector<std::string> writes{};
  bool blocking = false;   // waits on I/O, a remote model or a clock rather than the CPU
  bool batching = false;   // overrides process_batch with a real batched implementation
  std::vector<std::string> optional_reads{};  // used when present; not checked upstream
  bool reads_all = false;  // needs every field of the packet (sink.jsonl)
  bool per_stream = false;  // carries each stream's state from packet to packet: the pipeline
                            // requires `state: per_stream` (one at a time, in order)
  std::vector<FileParam> files_read{};     // local files it reads (a video, an image)
  std::vector<FileParam> files_written{};  // local files it creates or overwrites
};

/// Named counts of what a stage met besides packets: a reconnect, a retry, a model reloaded.
/// One per stage of a run, shared by its instances (a swap keeps the counts); shown per stage
/// as `events` in the metrics (table, JSON, /status, /metrics, `top`). Thread-safe; a count
/// takes a short lock, so count events, not every packet (the packet counts are the engine's).
class EventCounts {
 public:
  void add(std::string_view event, std::uint64_t n = 1);
  /// The counts so far, by event name.
  [[nodiscard]] std::map<std::string, std::uint64_t> counts() const;

 private:
  mutable std::mutex mutex_;
  std::map<std::string, std::uint64_t, std::less<>> counts_;
};

/// A transform or sink. Lifecycle: the constructor opens (loads the model), `process` is called
/// once per packet, the destructor closes. A stage knows nothing of queues, threads or brokers.
/// Threading: with `consumers: N` the runner calls `process` on up to N threads at once, on
/// one instance; a stage with per-call mutable state must guard it, or be configured with
/// `state: per_stream` (then one stream's packets arrive one at a time, in order).
/// Errors: throw; the runner fails that packet only.
/// Events: `count("retries")` adds to the stage's events in the metrics; from any thread (the
/// caller's, or threads the stage starts once its constructor has returned).
///
///   class Negate : public Stage {
///     void process(Packet p, std::vector<Packet>& out) override {
///       p.set("x", -p.get<double>("x"));
///       out.push_back(std::move(p));
///     }
///   };
class Stage {
 public:
  virtual ~Stage() = default;
  /// Consumes `packet`, appends zero, one or more packets to `out` (usually the same packet with
  /// fields added). A stage that appends nothing filters the packet out.
  virtual void process(Packet packet, std::vector<Packet>& out) = 0;
  /// Processes several packets at once (`batch:` in the pipeline). Default: one by one.
  virtual void process_batch(std::vector<Packet>& batch, std::vector<Packet>& out);
  /// `state: per_stream` across processes: another process ran `stream` since this instance
  /// last saw it (it took the stream's partition over, and gave it back), so what this instance
  /// keeps of the stream is stale: drop it, and start the stream afresh, as its new owner did.
  /// Called before the stream's next packet, never during one of its packets. Default: nothing.
  virtual void forget_stream(std::uint32_t stream);
  /// What the stage counted (`count`), with the other instances of its stage in a run.
  [[nodiscard]] std::map<std::string, std::uint64_t> events() const { return events_->counts(); }

 protected:
  /// Counts `n` more of `event` ("retries"); shown per stage in the metrics.
  void count(std::string_view event, std::uint64_t n = 1) const { events_->add(event, n); }

 private:
  friend class Plan;  // shares one EventCounts among the instances of a stage
  std::shared_ptr<EventCounts> events_ = std::make_shared<EventCounts>();
};

/// A stage with no input: produces packets until its stream ends. `next` is called repeatedly
/// from one thread at a time.
class Source {
 public:
  virtual ~Source() = default;
  /// Appends the next packet(s) to `out`; returns false once the stream has ended (packets
  /// appended by that last call still count).
  virtual bool next(std::vector<Packet>& out) = 0;
  /// Number of packets the source will produce, when known (a file), for progress and ETA.
  [[nodiscard]] virtual std::optional<std::uint64_t> expected_count() const { return std::nullopt; }
  /// What the source counted (`count`), as for a Stage.
  [[nodiscard]] std::map<std::string, std::uint64_t> events() const { return events_->counts(); }

 protected:
  /// Counts `n` more of `event` ("reconnects"); shown per stage in the metrics. From any
  /// thread: the caller's, or threads the source starts once its constructor has returned.
  void count(std::string_view event, std::uint64_t n = 1) const { events_->add(event, n); }

 private:
  friend class Plan;
  std::shared_ptr<EventCounts> events_ = std::make_shared<EventCounts>();
};

}  // namespace micromodels
