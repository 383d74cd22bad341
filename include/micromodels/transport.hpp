// How packets cross between processes: the interface a transport (Redis Streams, ...) implements.
// A run in one process needs none: its stages hand packets to each other in memory.
#pragma once

#include <cstdint>
#include <exception>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "micromodels/metrics.hpp"
#include "micromodels/packet.hpp"
#include "micromodels/plan.hpp"

namespace micromodels {

/// Names one delivery from an inlet until the engine settles it; 0 for none.
using Ticket = std::uint64_t;

/// What an inlet hands the engine for the stage it feeds.
struct Delivery {
  enum class Kind {
    packet,  // a packet for the stage
    skip,    // (stream, seq) will never come: ordered stages and joins must not wait for it
    reset,   // forget what is held for `packet.stream` and go on from seq `packet.seq`
  };
  Kind kind = Kind::packet;
  Packet packet{};        // for a skip or a reset, only stream and seq are set
  std::size_t input = 0;  // which of the stage's inputs it arrived on
  Ticket ticket = 0;      // the engine settles it once the stage is done with this delivery
  /// A skip the transport made in place of a packet, counted at the stage as the engine counts
  /// its own losses: the transport dead-lettered the entry, or dropped the packet because no
  /// process served the stage (live mode: nobody read the stage's backlog while it was at the
  /// stage's queue capacity), which the stage counts as `dropped`, reason `unserved`.
  enum class Loss { none, dead_lettered, unserved };
  Loss loss = Loss::none;
};

/// Where one stage's packets arrive from other processes. Called by the engine from one
/// thread at a time (its own); `settle` and `merge` from any thread.
class Inlet {
 public:
  virtual ~Inlet() = default;
  /// Appends at most `max` deliveries (`max` may be 0: then only housekeeping), waiting up to
  /// about 100 ms when none is there. Returns false once the inlet can deliver nothing more.
  virtual bool take(std::vector<Delivery>& out, std::size_t max) = 0;
  /// The engine is done with a delivery: every packet the stage made of it, or the skip, was
  /// handed to the outlets first. A transport acknowledges it here (at least once).
  virtual void settle(Ticket ticket) = 0;
  /// Two deliveries became one packet (a join): the returned ticket stands for both.
  virtual Ticket merge(Ticket kept, Ticket absorbed) = 0;
};

/// An edge that leaves this process, from a stage here to a stage served elsewhere (or to the
/// transport's own dead letter). Called by the engine from any thread; must not block.
class Outlet {
 public:
  virtual ~Outlet() = default;
  /// Sends a packet on. Fields are not copied: buffers are shared.
  virtual void put(const Packet& packet) = 0;
  /// Sends on that (stream, seq) will never come.
  virtual void skip(std::uint32_t stream, std::uint64_t seq) = 0;
  /// True while the receiving stage cannot take more (back-pressure): the engine then runs the
  /// stage feeding this outlet no further, until `wake` is called.
  [[nodiscard]] virtual bool full() const { return false; }
  /// Set by the engine: the transport calls it when a full outlet has room again.
  std::function<void()> wake{};
};

/// What a transport can do. A pipeline that needs more is refused before it runs, with the
/// key's file position and the broker's name.
struct Capabilities {
  bool joins = true;        // stages with several inputs
  bool ordered = true;      // `ordered` and `state: per_stream` stages
  bool dead_letter = true;  // a `dead_letter:` stage
  bool live = false;        // `live:` (a latency budget): sources that never wait, ages that
                            // cross processes
};

/// A way to run a pipeline across processes. The Runner calls, in order: `bind` (in its
/// constructor), `serves`, `inlet` and `outlet` for what runs here, `start`; then `finished`
/// as it waits, `stop_taking` when it stops, and `stop` once its engine has stopped.
/// Guarantees a transport must give (docs/architecture.md): every packet put into an outlet
/// reaches an inlet of the receiving stage at least once, a delivery not settled is delivered
/// again (to this or another process) when its consumer dies, and a skip travels like a packet.
class Transport {
 public:
  /// What the Runner offers a transport while it runs.
  class Host {
   public:
    virtual ~Host() = default;
    /// Starts serving a stage in this process (builds it, opens its inlet and outlets).
    virtual void serve(std::string_view stage) = 0;
    /// A new run began: the stage starts afresh, as a new run in one process does (a new
    /// instance, built beside the old one as `Run::swap` builds it). Throws what swap throws.
    virtual void restart(std::string_view stage) = 0;
    /// The run cannot go on: `Run::wait_for` stops and rethrows `error`.
    virtual void fail(std::exception_ptr error) = 0;
    /// The stages this process serves, as `Run::metrics` has them: their consumers and counts
    /// to announce, the packets out for messages.
    [[nodiscard]] virtual MetricsSnapshot metrics() const = 0;
  };

  virtual ~Transport() = default;
  /// "redis://host:port": names the broker in messages.
  [[nodiscard]] virtual std::string name() const = 0;
  [[nodiscard]] virtual Capabilities capabilities() const { return {}; }
  /// Checks the plan against the transport's options and connects; throws ConfigError or the
  /// transport's own error naming what to do.
  virtual void bind(const Plan& plan) = 0;
  /// Whether this process runs `stage` from the start (sources and sinks included).
  [[nodiscard]] virtual bool serves(const PlanStage& stage) const = 0;
  /// The packets for a stage served here.
  virtual std::unique_ptr<Inlet> inlet(const PlanStage& stage) = 0;
  /// The edge from `from` (served here) into input `input` of `to`; `to` null: the transport's
  /// own dead letter for packets that failed (return null when it has none).
  virtual std::unique_ptr<Outlet> outlet(const PlanStage& from, const PlanStage* to,
                                         std::size_t input) = 0;
  virtual void start(Host& host) = 0;
  /// True once every packet this process waits for has arrived: for the process that runs the
  /// sources, when every sink has every packet they produced. Asked after the sources ended.
  [[nodiscard]] virtual bool finished() const = 0;
  /// The run stops: inlets deliver nothing more (a take under way returns soon, even one that
  /// waits for the broker to come back). What the engine settles from now on still counts.
  virtual void stop_taking() = 0;
  /// Called once the engine has stopped: hand over what this process held, leave.
  virtual void stop() = 0;
  /// Lines for the end-of-run report (bytes per hop, dead letters); empty when none.
  [[nodiscard]] virtual std::string report() const { return {}; }
  /// Named counts of what the transport met in this process (Redis: `memory_pauses`,
  /// `memory_paused_ms`), shown as `transport` in the metrics (JSON, /status, /metrics).
  [[nodiscard]] virtual std::map<std::string, std::uint64_t> events() const { return {}; }
};

}  // namespace micromodels
