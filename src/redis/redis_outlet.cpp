#include "redis_outlet.hpp"

#include <algorithm>
#include <chrono>
#include <memory>
#include <set>

#include "micromodels/packet_codec.hpp"

#include "redis_inlet.hpp"
#include "session.hpp"
#include "wire/hop_codec.hpp"
#include "wire/retired_keys.hpp"

namespace micromodels::detail {

namespace {

std::int64_t now_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

// How often a waiting outlet asks for its stage's backlog (XINFO GROUPS): at first every 2 ms,
// then less often while the stage stays full, so that a slow stage does not have its producers
// ask hundreds of times per packet (what most of Redis's CPU went to, bench scaleout).
constexpr std::int64_t kProbeFirstNs = 2'000'000;
constexpr std::int64_t kProbeMostNs = 32'000'000;
// In live mode, how long a stage's stream may go unread (no entry delivered to any consumer)
// before its source's outlet sheds: a stage that reads, however slowly, reads more often than
// this (its process takes all it can, its queue keeping each stream's newest); a process that
// is busy or descheduled (a loaded machine, a sanitizer) may not read for some milliseconds.
constexpr std::int64_t kUnreadNs = 500'000'000;

}  // namespace

RedisOutlet::RedisOutlet(Session& session, const PlanStage& from, const PlanStage& to,
                         std::size_t input)
    : session_(session),
      from_(from),
      to_(to),
      input_(static_cast<std::uint16_t>(input)),
      // In live mode a source never waits (docs/yaml-reference.md#live-mode): the stage after it
      // keeps each stream's newest and drops the rest as it reads them.
      blocks_(to.config.overflow == Overflow::block &&
              !(from.source() && session.plan->pipeline().live())),
      sheds_(from.source() && session.plan->pipeline().live()),
      probe_below_(std::max<long long>(1, static_cast<long long>(to.config.queue_capacity) / 2)),
      keys_(session.keys(to)),
      limit_(static_cast<long long>(to.config.queue_capacity)) {
  std::lock_guard lock(session_.parts_mutex);
  session_.outlets.push_back(this);
}

RedisOutlet::~RedisOutlet() {
  {
    std::lock_guard lock(session_.parts_mutex);
    std::erase(session_.outlets, this);
    if (waiting_) --session_.outlets_waiting;
  }
  session_.writer.drain();  // no probe reply may reach this outlet any more
}

void RedisOutlet::put(const Packet& packet) {
  if (sheds_ && sheds_now()) return add(Entry::Kind::unserved, packet.stream, packet.seq, {});
  std::uint64_t stored = 0;
  std::string payload =
      encode_for_hop(packet, to_.carried, session_.images,
                     session_.image_refs ? session_.image_store.get() : nullptr, &stored);
  image_bytes_.fetch_add(stored, std::memory_order_relaxed);
  add(Entry::Kind::packet, packet.stream, packet.seq, payload);
}

bool RedisOutlet::sheds_now() {
  if (room() >= probe_below_) return false;
  wait_for_room();
  const bool full = room() <= 0 && unread_.load();
  if (full != std::exchange(shedding_, full)) {
    if (full) {
      log().warn(
          "live mode: nobody reads stage '{}' (its backlog in Redis is at its queue capacity, "
          "{}): the packets of '{}' are dropped, counted at '{}', until it reads again",
          to_.name(), to_.config.queue_capacity, from_.name(), to_.name());
    } else {
      log().info("live mode: stage '{}' reads again", to_.name());
    }
  }
  return full;
}

// A skip carries on the image keys that the packet in its place held when it came into the
// stage (RedisInlet::keys_held), so that they go with their frame once the sinks have it.
void RedisOutlet::skip(std::uint32_t stream, std::uint64_t seq) {
  std::set<std::string> keys;
  {
    std::lock_guard lock(session_.parts_mutex);
    for (const RedisInlet* inlet : session_.inlets) {
      if (inlet->stage().index == from_.index) keys = inlet->keys_held(stream, seq);
    }
  }
  const Buffer list = encode_keys(keys);
  add(Entry::Kind::skip, stream, seq, {reinterpret_cast<const char*>(list.data()), list.size()});
}

void RedisOutlet::add(Entry::Kind kind, std::uint32_t stream, std::uint64_t seq,
                      std::string_view payload) {
  const Entry entry{.kind = kind,
                    .version = session_.version,
                    .run = session_.run(),
                    .stream = stream,
                    .seq = seq,
                    .input = input_};
  std::string value = encode_entry(entry, payload);
  bytes_.fetch_add(value.size(), std::memory_order_relaxed);
  packets_.fetch_add(1, std::memory_order_relaxed);
  if (from_.source()) session_.produced(from_.index, entry.stream, entry.seq);
  Args args{"XADD", keys_[entry.stream % keys_.size()], "*", kEntryField};
  session_.writer.add(std::move(args.add(std::move(value))));
  ++adds_;  // after: a probe never misses it (probe())
  // Half the room used: the backlog is asked for now, while the stage still has room, so that
  // a reader some milliseconds away has the stage held for no round trip when it keeps up.
  if (blocks_ && room() < probe_below_) wait_for_room();
}

bool RedisOutlet::full() const {
  if (session_.memory.holds(from_.source())) return true;  // until Redis has room (memory_gate.hpp)
  if (!blocks_ || room() > 0) return false;
  // A process that stops drains what it holds without waiting for room: the stage may have no
  // reader left (this process's own inlets, stopped; a finished run's sink), and what it adds
  // past the capacity is at most what it held.
  if (session_.stopping()) return false;
  wait_for_room();
  return true;
}

void RedisOutlet::wait_for_room() const {
  if (!waiting_.exchange(true)) ++session_.outlets_waiting;  // the writer probes from now on
}

void RedisOutlet::probe_waiting(Session& session) {
  if (session.outlets_waiting.load() == 0) return;
  std::vector<RedisOutlet*> due;
  {
    std::lock_guard lock(session.parts_mutex);
    const std::int64_t now = now_ns();
    for (RedisOutlet* outlet : session.outlets) {
      if (outlet->waiting_ && !outlet->probing_ &&
          now - outlet->last_probe_ns_ >= std::max(outlet->probe_every_ns_.load(), kProbeFirstNs)) {
        outlet->probing_ = true;
        outlet->last_probe_ns_ = now;
        due.push_back(outlet);
      }
    }
  }
  for (RedisOutlet* outlet : due) outlet->probe();
}

void RedisOutlet::probe() {
  // The backlog is the consumer group's lag summed over the stage's partitions: entries not yet
  // delivered to any consumer. The writer sends the probe after the adds counted so far (and
  // perhaps a few more, which then count twice); those made after it count against its room.
  struct Sum {
    long long lag = 0;
    std::size_t replies = 0;
    long long adds = 0;       // adds_ when the probe was queued
    std::string delivered{};  // each partition's last delivered entry
  };
  auto sum = std::make_shared<Sum>(Sum{.adds = adds_.load()});
  for (const std::string& key : keys_) {
    session_.writer.add({"XINFO", "GROUPS", key}, [this, sum](const redisReply* reply) {
      const redisReply* info = group(reply, to_.name());
      sum->lag += integer(field(info, "lag"));
      sum->delivered.append(text(field(info, "last-delivered-id"))).push_back(' ');
      if (++sum->replies < keys_.size()) return;
      limit_ = static_cast<long long>(to_.config.queue_capacity) - sum->lag + sum->adds;
      const long long room = this->room();
      // Nobody read the stream for kUnreadNs: a full backlog is not one being read.
      const std::int64_t now = now_ns();
      if (sum->delivered != last_delivered_) {
        last_delivered_ = std::move(sum->delivered);
        delivered_changed_ns_ = now;
      }
      unread_ = now - delivered_changed_ns_ >= kUnreadNs;
      probe_every_ns_ =
          room > 0 ? kProbeFirstNs
                   : std::min(std::max(probe_every_ns_.load(), kProbeFirstNs) * 2, kProbeMostNs);
      probing_ = false;
      if ((room >= probe_below_ || session_.stopping()) && waiting_.exchange(false)) {
        std::lock_guard lock(session_.parts_mutex);
        --session_.outlets_waiting;
      }
      // Room, or the process stops (full() waits no more): the stage feeding it goes on.
      if ((room > 0 || session_.stopping()) && wake) wake();
    });
  }
}

void DeadLetterOutlet::put(const Packet& packet) {
  // The engine set "failed_stage" and "error", and logged the failure (Engine::report_failure).
  const auto text_of = [&](const char* name) {
    const auto* value = std::get_if<std::string>(packet.find(name));
    return value != nullptr ? *value : std::string();
  };
  const std::vector<std::byte> bytes = encode_packet(packet);
  write_dead_letter(session_,
                    {.stage = text_of("failed_stage"),
                     .error = text_of("error"),
                     .position = std::make_pair(packet.stream, packet.seq),
                     .payload = {reinterpret_cast<const char*>(bytes.data()), bytes.size()}});
}

void write_dead_letter(Session& session, const DeadLetter& letter) {
  Args args{"XADD",      session.names->dead_letter(),
            "MAXLEN",    "~",
            "10000",     "*",
            "stage",     letter.stage,
            "error",     letter.error,
            "deliveries"};
  args.add(static_cast<std::uint64_t>(std::max<std::int64_t>(1, letter.deliveries)));
  args.add("run").add(version_text(session.run()));
  if (!letter.entry_id.empty()) args.add("entry").add(letter.entry_id);
  if (letter.position) {
    args.add("s").add(std::uint64_t{letter.position->first}).add("q").add(letter.position->second);
  }
  if (!letter.payload.empty()) args.add("p").add(letter.payload);
  session.writer.add(std::move(args));
  session.writer.add({"HINCRBY", session.names->counters(), "dead", "1"});
}

}  // namespace micromodels::detail
