#include "memory_gate.hpp"

#include <charconv>
#include <vector>

#include "redis_outlet.hpp"
#include "session.hpp"
#include "stage_counts.hpp"

namespace micromodels::detail {

namespace {

constexpr double kClose = 0.90;  // the sources hold back from this share of maxmemory
constexpr double kOpen = 0.80;   // until Redis is below this one
constexpr auto kSayEvery = std::chrono::seconds(30);

// A field of INFO's text ("\r\nNAME:VALUE\r\n"); 0 when absent.
long long info_value(std::string_view info, std::string_view name) {
  const std::string key = "\n" + std::string(name) + ":";
  const auto at = info.find(key);
  long long value = 0;
  if (at != std::string_view::npos) {
    const char* first = info.data() + at + key.size();
    std::from_chars(first, info.data() + info.size(), value);
  }
  return value;
}

// Milliseconds since `since_ns` on the steady clock.
std::int64_t ms_since(std::int64_t since_ns) {
  using namespace std::chrono;
  const auto elapsed = steady_clock::now().time_since_epoch() - nanoseconds(since_ns);
  return duration_cast<milliseconds>(elapsed).count();
}

std::string mib(long long bytes) {
  return fmt::format("{:.1f} MiB", static_cast<double>(bytes) / (1024.0 * 1024.0));
}

}  // namespace

void MemoryGate::sample(Connection& conn) {
  Reply info;
  try {
    info = conn.command({"INFO", "memory"});
  } catch (const BrokerError& error) {
    if (error.kind() != BrokerError::Kind::refused) throw;
    if (!info_refused_) {  // maxmemory stays unknown: the writer sends transactions
      info_refused_ = true;
      log().warn(
          "cannot watch Redis's memory ({}): a Redis near its maxmemory is noticed only "
          "when it refuses a write; give the user +info",
          error.what());
    }
    return;
  }
  if (is_error(info.get())) return;
  const std::string_view text = detail::text(info.get());
  const long long max = info_value(text, "maxmemory");
  const long long used = info_value(text, "used_memory");
  maxmemory_ = max;
  used_ = used;
  startup_ = info_value(text, "used_memory_startup");
  const double share = max > 0 ? static_cast<double>(used) / static_cast<double>(max) : 0;
  if (max > 0 && share >= kClose) {
    closed_ = true;
  } else if ((max <= 0 || share < kOpen) && closed_.exchange(false)) {
    wake_outlets();
  }

  // A pause: what this process holds back (the run's sources, or refused writes).
  const bool holding = held_outputs_.load() > 0 || (closed_.load() && session_.is_run());
  const auto now = std::chrono::steady_clock::now();
  const std::int64_t since = paused_since_ns_.load();
  const std::int64_t ms = ms_since(since);  // of the pause under way
  if (holding && since == 0) {
    said_at_ = now;
    ++pauses_;
    paused_since_ns_ = now.time_since_epoch().count();
    log_pause("is at", window_note(conn));
  } else if (holding && now - said_at_ >= kSayEvery) {
    said_at_ = now;
    log_pause("still has no room after " + std::to_string(ms / 1000) + " s: at", window_note(conn));
  } else if (!holding && since != 0) {
    paused_ms_ += static_cast<std::uint64_t>(ms);
    paused_since_ns_ = 0;
    log().info("Redis at {} has room again, at {}: resuming after {:.1f} s", session_.url.where(),
               figures(), static_cast<double>(ms) / 1000);
    conn.command({"HINCRBY", session_.names->counters(), "memory_pauses", "1"});
    conn.command({"HINCRBY", session_.names->counters(), "memory_paused_ms", std::to_string(ms)});
  }
}

std::uint64_t MemoryGate::paused_ms() const {
  const std::int64_t since = paused_since_ns_.load();
  return paused_ms_.load() + (since == 0 ? 0 : static_cast<std::uint64_t>(ms_since(since)));
}

// The run process: what this pipeline's queues hold in Redis when full, each stage's queue
// capacity of entries at the largest size sent to it so far (its images stored included, from the
// run's hop counts), when that is more than maxmemory leaves room for. Then waiting may not help:
// the packets in Redis move on only into more memory, which is not there. Empty otherwise.
std::string MemoryGate::window_note(Connection& conn) const {
  const long long max = maxmemory_.load();
  if (!session_.is_run() || session_.plan == nullptr || max <= 0) return {};
  const Reply hops = conn.command({"HGETALL", session_.names->hops()});
  std::vector<double> entry(session_.plan->stages().size());  // per stage: its largest, bytes
  for (const HopBytes& hop : hop_counts(hops.get(), *session_.plan)) {
    if (hop.packets == 0) continue;
    double& largest = entry[session_.plan->find(hop.to)->index];
    largest = std::max(largest, static_cast<double>(hop.bytes + hop.image_bytes) /
                                    static_cast<double>(hop.packets));
  }
  double full = 0;
  for (const PlanStage& stage : session_.plan->stages()) {
    full += entry[stage.index] * static_cast<double>(stage.config.queue_capacity);
  }
  if (full < kOpen * static_cast<double>(max - startup_.load())) return {};
  return ". This pipeline's queues hold up to " + mib(static_cast<long long>(full)) +
         " in Redis when full (each stage's queue capacity of packets of the sizes sent so far), "
         "more than its maxmemory leaves room for: the run may not resume by itself; lower the "
         "stages' queue: { capacity: N } or raise maxmemory";
}

void MemoryGate::log_pause(const std::string& state, const std::string& note) {
  const std::size_t outputs = held_outputs_.load();
  std::string what = closed_.load() && session_.is_run() ? "the sources' packets" : "";
  if (outputs > 0) {
    what += (what.empty() ? "" : " and ") + std::to_string(outputs) + " stage output" +
            (outputs == 1 ? "" : "s") + " Redis refused";
  }
  log().warn(
      "Redis at {} {} {}; holding {} until it has room (below {:.0f}% of maxmemory): raise "
      "maxmemory, add consumers, or lower wire.image_ttl_s (an image whose frame the sinks do "
      "not have yet stays that long after its last hop){}",
      session_.url.where(), state, figures(), what, kOpen * 100, note);
}

void MemoryGate::refused(std::size_t outputs) {
  if (held_outputs_.exchange(outputs) > 0 && outputs == 0) wake_outlets();
}

bool MemoryGate::fits(std::size_t bytes) const noexcept {
  const long long max = maxmemory_.load();
  return max <= 0 || static_cast<long long>(bytes) + startup_.load() < max;
}

std::string MemoryGate::figures() const {
  const long long max = maxmemory_.load();
  if (max <= 0) return "maxmemory not known";
  const long long used = used_.load();
  return std::to_string(used * 100 / max) + "% of maxmemory (used " + mib(used) + " of " +
         mib(max) + ")";
}

void MemoryGate::wake_outlets() {
  std::vector<RedisOutlet*> outlets;
  {
    std::lock_guard lock(session_.parts_mutex);
    outlets = session_.outlets;
  }
  for (RedisOutlet* outlet : outlets) {
    if (outlet->wake) outlet->wake();
  }
}

}  // namespace micromodels::detail
