// Redis Streams as a transport: which stages a process serves, and its session's life.
//
// Delivery, in one paragraph (docs/distributed.md has the long form): an inlet reads entries
// with XREADGROUP and hands them to the engine; the stage's outputs are added to each
// downstream stream (XADD) through the process's writer, and only then is the input
// acknowledged (XACK), through the same writer, so a crash at any point leaves the input
// pending. Pending entries of a dead consumer are taken over with XAUTOCLAIM once idle; the
// keeper keeps entries still being worked on from looking idle. Stages that gather a stream
// (ordered, per_stream, joins) read partitions that one process holds at a time (a lease);
// sinks run in the run process, which drops duplicates: every packet reaches a sink once.
#include <chrono>
#include <thread>

#include <spdlog/fmt/fmt.h>

#include "micromodels/redis.hpp"

#include "keeper.hpp"
#include "live_set.hpp"
#include "redis_inlet.hpp"
#include "redis_outlet.hpp"
#include "session.hpp"
#include "stage_counts.hpp"

namespace micromodels {

using detail::Session;

RedisTransport::RedisTransport(RedisOptions options)
    : session_(std::make_unique<Session>(std::move(options))),
      keeper_(std::make_unique<detail::Keeper>(*session_)) {}

RedisTransport::~RedisTransport() {
  if (started_) stop();
}

std::string RedisTransport::name() const { return "redis://" + session_->url.where(); }

void RedisTransport::bind(const Plan& plan) { session_->bind(plan); }

bool RedisTransport::serves(const PlanStage& stage) const {
  const RedisOptions& options = session_->options;
  if (options.role == RedisOptions::Role::worker) {
    return std::find(options.stages.begin(), options.stages.end(), stage.name()) !=
           options.stages.end();
  }
  if (stage.source() || stage.sink() || options.serve == RedisOptions::Serve::all) return true;
  if (options.serve == RedisOptions::Serve::none) return false;
  // Serve::missing: served here unless a live worker of this pipeline version serves it.
  auto conn = session_->connect();
  return !detail::live_processes(*conn, *session_->names, version_text(session_->version))
              .contains(stage.name());
}

std::unique_ptr<Inlet> RedisTransport::inlet(const PlanStage& stage) {
  {
    std::lock_guard lock(session_->parts_mutex);
    session_->served.insert(stage.index);
  }
  return std::make_unique<detail::RedisInlet>(*session_, stage);
}

std::unique_ptr<Outlet> RedisTransport::outlet(const PlanStage& from, const PlanStage* to,
                                               std::size_t input) {
  if (to == nullptr) return std::make_unique<detail::DeadLetterOutlet>(*session_);
  return std::make_unique<detail::RedisOutlet>(*session_, from, *to, input);
}

void RedisTransport::start(Host& host) {
  if (started_) return;
  started_ = true;
  session_->set_host(&host);
  if (session_->is_run()) {
    auto conn = session_->connect();
    session_->begin_run(*conn);
  }
  session_->writer.start();
  keeper_->start();
}

bool RedisTransport::finished() const {
  if (!session_->is_run()) return false;
  std::lock_guard lock(session_->parts_mutex);
  for (detail::RedisInlet* inlet : session_->inlets) {
    const PlanStage& stage = inlet->stage();
    if (!stage.sink()) continue;
    if (stage.dead_letter) {
      if (!keeper_->letters_drained() || inlet->unsettled() > 0) return false;
      continue;
    }
    if (!inlet->complete(session_->produced_by(session_->plan->roots(stage.index)))) return false;
  }
  return true;
}

void RedisTransport::stop_taking() { session_->stop(); }

void RedisTransport::stop() {
  session_->stop();
  keeper_->stop();  // hands the leases over, sends the last acknowledgements
  session_->writer.drain();
  session_->writer.stop();
}

std::vector<HopBytes> RedisTransport::hop_bytes() const {
  auto conn = session_->connect();
  const detail::Reply all = conn->command({"HGETALL", session_->names->hops()});
  return detail::hop_counts(all.get(), *session_->plan);
}

std::uint64_t RedisTransport::dead_lettered() const {
  auto conn = session_->connect();
  return static_cast<std::uint64_t>(
      detail::integer(conn->command({"HGET", session_->names->counters(), "dead"}).get()));
}

std::vector<std::string> RedisTransport::served() const {
  std::vector<std::string> names;
  std::lock_guard lock(session_->parts_mutex);
  for (std::size_t i : session_->served) {
    const PlanStage& stage = session_->plan->stages()[i];
    if (!stage.sink()) names.push_back(stage.name());
  }
  return names;
}

std::map<std::string, std::uint64_t> RedisTransport::events() const {
  return {{"memory_pauses", session_->memory.pauses()},
          {"memory_paused_ms", session_->memory.paused_ms()},
          {"reconnects", session_->reconnects.load()},
          {"leases_lost", session_->leases_lost.load()}};
}

namespace {

// Packets a stage is done with: what its processes' counts add up to.
std::uint64_t done_with(const StageMetrics& s) { return s.processed + s.failed + s.dropped; }

}  // namespace

std::vector<StageMetrics> RedisTransport::served_elsewhere() const {
  std::vector<StageMetrics> stages;
  auto conn = session_->connect();
  const detail::Reply counters = conn->command({"HGETALL", session_->names->counters()});
  const MetricsSnapshot here =
      session_->host() != nullptr ? session_->host()->metrics() : MetricsSnapshot{};
  std::lock_guard lock(session_->parts_mutex);
  const std::vector<PlanStage>& planned = session_->plan->stages();
  for (std::size_t i = 0; i < planned.size(); ++i) {
    if (planned[i].source() || planned[i].sink()) continue;
    StageMetrics all = detail::stage_counts(counters.get(), planned[i].name());
    // Served here too: listed when other processes added to it (the table has this one's part).
    const StageMetrics* mine = here.stage(planned[i].name());
    if (session_->served.contains(i) && (mine == nullptr || done_with(all) <= done_with(*mine))) {
      continue;
    }
    all.type = planned[i].config.type;
    stages.push_back(std::move(all));
  }
  return stages;
}

std::string RedisTransport::report() const {
  const auto format_bytes = [](double bytes) {
    return bytes < 10e3   ? fmt::format("{:.0f} B", bytes)
           : bytes < 10e6 ? fmt::format("{:.1f} KiB", bytes / 1024)
                          : fmt::format("{:.1f} MiB", bytes / 1024 / 1024);
  };
  std::string out;
  try {
    std::vector<StageMetrics> elsewhere = served_elsewhere();
    if (!elsewhere.empty()) {
      // Their keepers add what they counted every 250 ms: read again after a round, until two
      // reads agree (a second at most), so that the counts include the last packets.
      const auto total = [](const std::vector<StageMetrics>& stages) {
        std::uint64_t n = 0;
        for (const StageMetrics& s : stages) n += done_with(s);
        return n;
      };
      for (int round = 0; round < 3; ++round) {
        std::this_thread::sleep_for(std::chrono::milliseconds(300));
        const std::uint64_t before = total(elsewhere);
        elsewhere = served_elsewhere();
        if (total(elsewhere) == before) break;
      }
      out +=
          "over every process, for the stages other processes served (the table and its "
          "bottleneck line have this process's part only; micromodels status --broker URL shows "
          "every stage):\n";
      for (const StageMetrics& s : elsewhere) {
        out += fmt::format(
            "  {:<14} processed {:>10}  failed {:>8}  dropped {:>8}  dead-lettered {:>8}", s.name,
            s.processed, s.failed, s.dropped, s.dead_lettered);
        for (const auto& [event, n] : s.events) out += fmt::format("  {} {}", event, n);
        out += '\n';
      }
    }
    out += "\nbytes per hop (all processes):\n";
    for (const HopBytes& hop : hop_bytes()) {
      // No packets, no bytes: 0 per packet.
      const auto packets = static_cast<double>(std::max<std::uint64_t>(1, hop.packets));
      out += fmt::format(
          "  {:<14} -> {:<14} {:>10} packets {:>12}  {:>12}/packet  + images stored "
          "{:>12}/packet\n",
          hop.from, hop.to, hop.packets, format_bytes(static_cast<double>(hop.bytes)),
          format_bytes(static_cast<double>(hop.bytes) / packets),
          format_bytes(static_cast<double>(hop.image_bytes) / packets));
    }
    auto conn = session_->connect();
    const detail::Reply counters = conn->command({"HGETALL", session_->names->counters()});
    const auto count = [&](const char* key) {
      return detail::integer(detail::field(counters.get(), key));
    };
    out += "dead-letter stream " + session_->names->dead_letter() + ": " +
           std::to_string(count("dead")) + " entries (all processes)";
    if (!session_->plan->pipeline().dead_letter().empty()) {
      out += "; failed packets went to stage '" + session_->plan->pipeline().dead_letter() +
             "', the stream has the entries no stage could be given";
    }
    out += "\n";
    if (const long long pauses = count("memory_pauses"); pauses > 0) {
      const double paused_s = static_cast<double>(count("memory_paused_ms")) / 1000;
      out +=
          fmt::format("held back for Redis's memory: {} times, {:.1f} s in all (all processes)\n",
                      pauses, paused_s);
    }
  } catch (const BrokerError& error) {
    out += "  (Redis unreachable: " + std::string(error.what()) + ")\n";
  }
  return out + round_trip();
}

// Where Redis is some milliseconds away, its round trips bound what a consumer can do.
std::string RedisTransport::round_trip() const {
  const double ms = keeper_->round_trip_ms();
  if (ms < 2) return {};
  return fmt::format(
      "round trip to Redis from this process: {:.1f} ms (median): every read and back-pressure "
      "probe waits for one (docs/distributed.md#a-broker-far-away)\n",
      ms);
}

}  // namespace micromodels
