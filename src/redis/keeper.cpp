#include "keeper.hpp"

#include <algorithm>
#include <chrono>
#include <map>
#include <set>

#include "live_set.hpp"
#include "redis_inlet.hpp"
#include "redis_outlet.hpp"
#include "session.hpp"
#include "stage_counts.hpp"

namespace micromodels::detail {

namespace {

constexpr auto kRound = std::chrono::milliseconds(250);  // between two rounds
constexpr std::size_t kRoundTrips = 64;                  // measured round trips kept

double median(std::vector<double> values) {
  if (values.empty()) return 0;
  const auto middle = values.begin() + static_cast<std::ptrdiff_t>(values.size() / 2);
  std::nth_element(values.begin(), middle, values.end());
  return *middle;
}

}  // namespace

void Keeper::start() {
  std::lock_guard lock(mutex_);
  if (running_) return;
  running_ = true;
  thread_ = std::thread([this] { run(); });
}

void Keeper::stop() {
  {
    std::lock_guard lock(mutex_);
    if (!running_) return;
    running_ = false;
    stopping_ = true;
  }
  wake_.notify_all();
  thread_.join();
}

void Keeper::run() {
  std::unique_ptr<Connection> conn;
  auto next_second = std::chrono::steady_clock::now();
  for (;;) {
    {
      std::unique_lock lock(mutex_);
      if (stopping_) break;
    }
    try {
      const bool on = session_.attempt(conn, "keeper", [&](Connection& redis, bool /*fresh*/) {
        const auto round_start = std::chrono::steady_clock::now();
        session_.memory.sample(redis);
        for (RedisInlet* inlet : session_.inlets_now()) {
          inlet->refresh_idle(redis);
          inlet->flush_acks();
        }
        add_counts(redis);  // every round, so that a run's report soon has the workers' counts
        if (std::chrono::steady_clock::now() >= next_second) {
          next_second = std::chrono::steady_clock::now() + std::chrono::seconds(1);
          every_second(redis);
        }
        measure_round_trip(redis, std::chrono::duration<double, std::milli>(
                                      std::chrono::steady_clock::now() - round_start)
                                      .count());
      });
      if (!on) break;
    } catch (const std::exception& error) {
      log().error("keeper: {}", error.what());
    }
    std::unique_lock lock(mutex_);
    wake_.wait_for(lock, kRound, [this] { return stopping_; });
  }
  // Leave at once, so that the run notices a stopped worker without waiting for its heartbeat
  // to expire, and another process takes its partitions without waiting for the leases to.
  try {
    if (!conn) conn = session_.connect();
    for (RedisInlet* inlet : session_.inlets_now()) inlet->leave();
    session_.writer.drain();
    add_counts(*conn);
    announce(*conn, true);
    // What the run's sinks acknowledged last goes now, not with the next run: a short run
    // would leave most of its entries in Redis (only acknowledged ones go: it is safe on any run).
    if (session_.is_run()) trim(*conn);
  } catch (const std::exception&) {
    // Redis is gone: the heartbeats and leases expire by themselves.
  }
}

void Keeper::every_second(Connection& conn) {
  for (RedisInlet* inlet : session_.inlets_now()) inlet->renew_leases(conn);
  const Processes processes = announce(conn, false);
  if (!session_.is_run() || !session_.holds_run(conn)) return;
  trim(conn);
  ++rounds_;
  if (session_.options.serve == RedisOptions::Serve::missing) serve_missing(processes);
  if (session_.options.serve == RedisOptions::Serve::none) warn_unserved(processes);
}

// One member per stage served here (live_set.hpp), its former ones replaced: the new ones are
// added before the old ones go, so that no read in between finds this process gone (a run would
// say that nobody serves its stages). The processes of this version per stage (returned) also
// give each inlet its share of the partitions.
Keeper::Processes Keeper::announce(Connection& conn, bool leave) {
  const std::int64_t wall = wall_ms();
  const std::string version = version_text(session_.version);
  Processes processes;
  Processes sharing;  // other processes that renewed within a lease, for the shares
  Args add{"ZADD", session_.names->live()};
  std::set<std::string> mine;
  if (!leave) {
    const MetricsSnapshot here =
        session_.host() != nullptr ? session_.host()->metrics() : MetricsSnapshot{};
    std::lock_guard lock(session_.parts_mutex);
    for (std::size_t stage : session_.served) {
      const std::string& name = session_.plan->stages()[stage].name();
      const StageMetrics* metrics = here.stage(name);
      const int consumers = metrics != nullptr ? metrics->consumers : 0;
      const std::string member = LiveMember{.stage = name,
                                            .process = session_.consumer,
                                            .version = version,
                                            .consumers = static_cast<std::uint64_t>(consumers)}
                                     .text();
      add.add(std::to_string(wall + kLiveTtlMs)).add(member);
      mine.insert(member);
      processes[name].insert(session_.consumer);
    }
  }
  if (add.items().size() > 2) conn.command(add);
  conn.command({"ZREMRANGEBYSCORE", session_.names->live(), "-inf", std::to_string(wall)});
  Args remove{"ZREM", session_.names->live()};
  other_versions_.clear();
  for (const LiveMember& m : live_members(conn, *session_.names)) {
    if (m.process == session_.consumer) {
      if (!mine.contains(m.text())) remove.add(m.text());
    } else if (m.version == version) {
      processes[m.stage].insert(m.process);
      // Shares of the partitions count the processes that renewed within a lease: a dead one's
      // partitions are free once its leases expire (3 s), before its heartbeat does (5 s).
      if (m.expiry_ms - kLiveTtlMs >= static_cast<double>(wall - kLeaseMs))
        sharing[m.stage].insert(m.process);
    } else {
      other_versions_[m.stage].insert(m.process);
    }
  }
  if (remove.items().size() > 2) conn.command(remove);
  if (leave) return processes;
  std::lock_guard lock(session_.parts_mutex);
  for (RedisInlet* inlet : session_.inlets) {
    inlet->processes = 1 + static_cast<int>(sharing[inlet->stage().name()].size());
  }
  return processes;
}

// What this process added since the last round, to the run's totals in Redis: bytes per hop,
// and what its stages (not sources) processed, failed, dropped and dead-lettered (the run
// process reports and judges stages served elsewhere by these, RedisTransport::served_elsewhere;
// `micromodels status` shows them; src/redis/stage_counts.hpp), in one round trip.
void Keeper::add_counts(Connection& conn) {
  std::vector<Args> adds;
  if (session_.host() != nullptr) {
    for (const StageMetrics& stage : session_.host()->metrics().stages) {
      const PlanStage* planned = session_.plan->find(stage.name);
      if (planned == nullptr || planned->source()) continue;
      StageMetrics& added = added_[stage.name];
      for (const StageCount& count : kStageCounts) {
        const std::uint64_t now = stage.*count.member;
        if (now <= added.*count.member) continue;
        adds.push_back({"HINCRBY", session_.names->counters(),
                        stage.name + ':' + std::string(count.name),
                        std::to_string(now - added.*count.member)});
        added.*count.member = now;
      }
      for (const auto& [event, now] : stage.events) {
        std::uint64_t& before = added.events[event];
        if (now <= before) continue;
        adds.push_back({"HINCRBY", session_.names->counters(),
                        stage.name + std::string(kEventField) + event,
                        std::to_string(now - before)});
        before = now;
      }
    }
  }
  std::vector<std::pair<std::string, RedisOutlet::Sent>> sent;
  {
    std::lock_guard lock(session_.parts_mutex);
    for (RedisOutlet* outlet : session_.outlets)
      sent.emplace_back(outlet->hop(), outlet->take_sent());
  }
  for (const auto& [hop, counts] : sent) {
    for (const auto& [what, n] : {std::pair{":bytes", counts.bytes},
                                  {":packets", counts.packets},
                                  {":images", counts.image_bytes}}) {
      if (n > 0) adds.push_back({"HINCRBY", session_.names->hops(), hop + what, std::to_string(n)});
    }
  }
  if (adds.empty()) return;
  for (const Args& add : adds) conn.append(add);
  conn.send();
  for (std::size_t i = 0; i < adds.size(); ++i) (void)conn.read("add counts");
}

// Drops what every consumer has acknowledged: entries older than the oldest pending one, or
// than the last delivered one when nothing is pending. Unread entries are newer than the last
// delivered one, so they are never trimmed. Also notes whether the dead letters are all read.
// Three round trips, however many streams (a broker far away would take one per command).
void Keeper::trim(Connection& conn) {
  struct Queue {
    std::string key;
    const PlanStage* stage;
    std::string min_id{};
  };
  std::vector<Queue> queues;
  for (const PlanStage& stage : session_.plan->stages()) {
    if (stage.source()) continue;
    for (std::string& key : session_.keys(stage)) queues.push_back({std::move(key), &stage});
  }
  for (const Queue& q : queues) conn.append({"XINFO", "GROUPS", q.key});
  bool letters_drained = true;
  std::vector<Queue*> pending;
  for (Queue& q : queues) {
    const Reply groups = conn.read("XINFO GROUPS");
    const redisReply* info = group(groups.get(), q.stage->name());
    if (info == nullptr) continue;
    q.min_id = text(field(info, "last-delivered-id"));
    const long long waiting = integer(field(info, "pending"));
    if (q.stage->dead_letter && (waiting > 0 || integer(field(info, "lag")) > 0)) {
      letters_drained = false;
    }
    if (waiting > 0) pending.push_back(&q);
  }
  for (const Queue* q : pending) conn.append({"XPENDING", q->key, q->stage->name()});
  for (Queue* q : pending) q->min_id = text(at(conn.read("XPENDING").get(), 1));
  std::size_t trims = 0;
  for (const Queue& q : queues) {
    if (q.min_id.empty() || q.min_id == "0-0") continue;
    conn.append({"XTRIM", q.key, "MINID", q.min_id});
    ++trims;
  }
  for (; trims > 0; --trims) (void)conn.read("XTRIM");
  letters_drained_ = letters_drained;
}

std::vector<std::string> Keeper::unserved(const Processes& processes) const {
  std::vector<std::string> names;
  for (const PlanStage& stage : session_.plan->stages()) {
    if (stage.source() || stage.sink() || processes.contains(stage.name())) continue;
    names.push_back(stage.name());
  }
  return names;
}

// Serves here every stage that no live process of this pipeline version serves: a run works
// with nothing else running, and a stage whose workers all died is picked up.
void Keeper::serve_missing(const Processes& processes) {
  for (const std::string& name : unserved(processes)) {
    log().info("no worker serves stage '{}': serving it here", name);
    try {
      session_.host()->serve(name);
    } catch (const std::exception& error) {
      log().error("cannot serve stage '{}' here: {}", name, error.what());
    }
  }
}

// With --serve none the run waits for workers: say which stages nobody serves, so that a run
// that waits for ever says why. Workers get a few seconds to announce themselves first; then
// the warning comes when the set changes, and again every half minute while it stands.
void Keeper::warn_unserved(const Processes& processes) {
  constexpr int kGraceRounds = 5;
  constexpr int kRepeatRounds = 30;
  if (rounds_ < kGraceRounds) return;
  const std::vector<std::string> names = unserved(processes);
  std::string list;
  for (const std::string& name : names) list += (list.empty() ? "" : ",") + name;
  if (list.empty()) {
    if (!warned_.empty()) log().info("every stage has a live worker again");
    warned_.clear();
    return;
  }
  if (list == warned_ && rounds_ - warned_round_ < kRepeatRounds) return;
  warned_ = list;
  warned_round_ = rounds_;
  const bool one = names.size() == 1;
  // The usual cause when workers are running: they were started with another pipeline file.
  std::string others;
  for (const std::string& name : names) {
    const auto found = other_versions_.find(name);
    if (found == other_versions_.end()) continue;
    for (const std::string& process : found->second) {
      others += (others.empty() ? "" : ", ") + process + " ('" + name + "')";
    }
  }
  // Redis at its memory limit refuses the workers' heartbeats too: they may be running.
  const std::string full =
      session_.memory.holds(true)
          ? ". Redis is at its memory limit (" + session_.memory.figures() +
                "): it refuses heartbeats too, so workers that run may look gone; give Redis "
                "more memory (CONFIG SET maxmemory) if the run does not resume by itself"
          : "";
  log().warn(
      "no live worker serves {} '{}', and --serve none keeps this run from serving {}: "
      "{} packets wait in Redis; start `micromodels worker FILE --broker URL --stages {}`, "
      "or run with --serve missing{}{}",
      one ? "stage" : "stages", list, one ? "it" : "them", one ? "its" : "their", list,
      others.empty() ? ""
                     : ". Workers of another version of the pipeline are live: " + others +
                           "; their file differs from this run's (stages, types, inputs, "
                           "ordering, partitions, or what decides drops): start them with "
                           "the run's file",
      full);
}

// A process keeps the entries it works on from looking idle by claiming them again each round
// (RedisInlet::refresh_idle): an entry looks idle for up to a round's pause and its own length
// plus a round trip. A --reclaim-ms under that has the other processes (or this one) take over
// entries still being worked on: they run twice, and the sinks drop the copies. Said once, with
// the figure to use, after eight rounds measured it.
void Keeper::measure_round_trip(Connection& conn, double round_ms) {
  const auto start = std::chrono::steady_clock::now();
  conn.command({"PING"});
  const double ms =
      std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();
  std::size_t seen = 0;
  double typical = 0;
  {
    std::lock_guard lock(round_trips_mutex_);
    if (round_trips_ms_.size() == kRoundTrips) round_trips_ms_.erase(round_trips_ms_.begin());
    round_trips_ms_.push_back(ms);
    seen = ++round_trips_seen_;
    typical = median(round_trips_ms_);
  }
  const double idle_ms = static_cast<double>(kRound.count()) + round_ms + typical;
  if (seen == 8 && session_.options.reclaim_idle_ms < idle_ms) {
    log().warn(
        "round trips to Redis take {:.0f} ms from this process, and its rounds {:.0f} ms: the "
        "entries it works on can look idle for {:.0f} ms, longer than --reclaim-ms {:g}, so that "
        "they may be taken over while they run (and run twice; the sinks drop the copies): raise "
        "--reclaim-ms to {:.0f} or more (docs/distributed.md#a-broker-far-away)",
        typical, round_ms, idle_ms, session_.options.reclaim_idle_ms, 2 * idle_ms);
  }
}

double Keeper::round_trip_ms() const {
  std::lock_guard lock(round_trips_mutex_);
  return median(round_trips_ms_);
}

}  // namespace micromodels::detail
