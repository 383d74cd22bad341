#include "session.hpp"

#include <algorithm>
#include <charconv>
#include <chrono>
#include <random>
#include <thread>

#include <spdlog/fmt/fmt.h>
#include <spdlog/sinks/stdout_color_sinks.h>
#include <unistd.h>

#include "redis_inlet.hpp"
#include "redis_password.hpp"

namespace micromodels::detail {

namespace {

using Clock = std::chrono::steady_clock;

// host:pid names this process's consumers; a second transport in one process (a test, or a
// program that runs and serves at once) adds .N: leases and pending entries go by this name.
std::string consumer_prefix() {
  static std::atomic<int> instances{0};
  const int n = ++instances;
  char host[256] = "host";
  gethostname(host, sizeof host - 1);
  return std::string(host) + ":" + std::to_string(getpid()) +
         (n > 1 ? "." + std::to_string(n) : "");
}

// `mm:{P}:run` holds "RUN VERSION", 16 hex digits each; {0, 0} when there is no run. An error
// reply (LOADING: a restarted Redis reads its files) is no answer: entries are never judged
// against it.
std::pair<std::uint64_t, std::uint64_t> read_run(Connection& conn, const Session& session) {
  const Reply reply = conn.command({"GET", session.names->run()});
  if (is_error(reply.get())) {
    throw BrokerError(
        BrokerError::Kind::unreachable,
        "Redis at " + session.url.where() + " is not ready: " + std::string(text(reply.get())));
  }
  const std::string_view value = text(reply.get());
  std::uint64_t run = 0;
  std::uint64_t version = 0;
  if (value.size() != 33) return {0, 0};
  std::from_chars(value.data(), value.data() + 16, run, 16);
  std::from_chars(value.data() + 17, value.data() + 33, version, 16);
  return {run, version};
}

}  // namespace

spdlog::logger& log() {
  static const std::shared_ptr<spdlog::logger> logger = [] {
    auto l = spdlog::get("micromodels.redis");
    return l ? l : spdlog::stderr_color_mt("micromodels.redis");
  }();
  return *logger;
}

Session::Session(RedisOptions options_in)
    : options(std::move(options_in)),
      url(options.url.empty() ? RedisUrl{} : parse_redis_url(options.url)),
      consumer(consumer_prefix()),
      writer(*this) {}

void Session::bind(const Plan& bound) {
  plan = &bound;
  const Pipeline& pipeline = bound.pipeline();
  if (options.url.empty()) url = parse_redis_url(pipeline.broker());
  url = with_password(std::move(url));
  names = std::make_unique<StreamNames>(pipeline.name());
  images = wire_images_for(options.wire_images, options.jpeg_quality, pipeline);
  version = bound.version();
  image_refs = pipeline.wire().image_refs;
  // What the pipeline can hold in flight: the packets its queues hold. A process keeps the
  // images of as many (ImageCache), so that it fetches an image once however large the frames.
  std::size_t in_flight = 0;
  for (const PlanStage& s : bound.stages()) {
    if (!s.source()) in_flight += s.config.queue_capacity;
  }
  // Once every sink has a frame, its images (those the sinks' packets refer to, and those its
  // hops retired on the way: wire/retired_keys.hpp) are kept only for a duplicate still on its
  // way: one taken back from a dead process (idle for reclaim_idle_ms) fetches them again within
  // about twice that. With several sources, sinks may see different frames under one (stream,
  // seq): the keys then go by their TTL only, and hops retire none.
  ImageStore::Settling settling;
  std::size_t sources = 0;
  for (const PlanStage& s : bound.stages()) {
    sources += s.source() ? 1 : 0;
    settling.sinks += s.sink() && !s.dead_letter ? 1 : 0;
  }
  if (sources == 1) {
    settling.ttl_ms =
        std::min(std::int64_t{pipeline.wire().image_ttl_s} * 1000,
                 std::max<std::int64_t>(5000, static_cast<std::int64_t>(4 * options.reclaim_idle_ms)));
  }
  image_store = std::make_unique<ImageStore>(writer, *names, images, pipeline.wire().image_ttl_s,
                                             in_flight, settling);
  if (options.max_deliveries < 1) {
    throw ConfigError(
        {}, "max_deliveries",
        "--max-deliveries must be at least 1, got " + std::to_string(options.max_deliveries));
  }
  if (!is_run()) {
    std::string servable;
    for (const PlanStage& s : bound.stages()) {
      if (!s.source() && !s.sink()) servable += (servable.empty() ? "" : ", ") + s.name();
    }
    if (options.stages.empty()) {
      throw ConfigError(
          {}, "stages",
          "a worker needs --stages, e.g. --stages " + servable.substr(0, servable.find(',')));
    }
    for (const std::string& name : options.stages) {
      const PlanStage* stage = bound.find(name);
      if (stage == nullptr) {
        throw ConfigError({}, "stages",
                          "pipeline '" + pipeline.name() + "' has no stage '" + name +
                              "' to serve; a worker can serve: " + servable);
      }
      if (stage->source() || stage->sink()) {
        throw ConfigError({}, "stages",
                          "stage '" + name + "' is " +
                              (stage->source()      ? "a source"
                               : stage->dead_letter ? "the dead-letter stage (a sink)"
                                                    : "a sink") +
                              ", which the run serves (`micromodels run --broker`, or a Runner "
                              "without stages); workers serve the stages between");
      }
    }
  }
  warn_short_joins();
  auto conn = connect();  // fails now, with the address, rather than in a thread
  memory.sample(*conn);   // the writer's first batch knows whether Redis has a maxmemory
  if (!is_run()) is_current_run(*conn, 0);
}

// A dead worker's packets come back to the others once idle for reclaim_idle_ms (or, for a
// stage that gathers a stream, once its lease expires): a join that waits less for a part drops
// the frames whose parts that worker held, where in one process it would have waited for them.
void Session::warn_short_joins() const {
  const double back_ms = 2 * (options.reclaim_idle_ms + kLeaseMs);
  for (const PlanStage& s : plan->stages()) {
    if (s.inputs.size() < 2 || s.config.join_timeout_ms >= back_ms) continue;
    log().warn(
        "stage '{}': join timeout_ms {:g} is shorter than a dead worker's packets may take to "
        "come back on Redis (up to about {:g} ms: --reclaim-ms {:g}, leases {} ms, the queue "
        "before it): a worker that dies mid-run would make this join {} the frames it held; "
        "raise timeout_ms to let them wait",
        s.name(), s.config.join_timeout_ms, back_ms, options.reclaim_idle_ms, kLeaseMs,
        s.config.join_on_timeout == JoinTimeout::drop ? "drop" : "pass on partial");
  }
}

std::vector<std::string> Session::keys(const PlanStage& stage) const {
  std::vector<std::string> keys;
  const int n = stage.gathers() && !stage.sink() ? std::max(1, stage.config.partitions) : 1;
  for (int k = 0; k < n; ++k) keys.push_back(names->stream(stage.name(), k, n));
  return keys;
}

bool Session::is_current_run(Connection& conn, std::uint64_t run) {
  if (run != 0 && run == run_.load()) return true;
  if (is_run()) return false;
  std::lock_guard lock(run_mutex_);
  const auto [current, current_version] = read_run(conn, *this);
  run_ = current;
  run_version_ = current_version;
  return run != 0 && run == current;
}

void Session::begin_run(Connection& conn) {
  std::random_device device;
  std::mt19937_64 random((std::uint64_t{device()} << 32) ^ device() ^
                         static_cast<std::uint64_t>(Clock::now().time_since_epoch().count()));
  run_ = random() | 1;  // never 0: no run
  run_version_ = version;
  // One DEL per hash slot (docs/distributed.md, "Keys"): the pipeline's keys, then each stage's,
  // and the run record, in one round trip: a worker that finds its leases gone finds the new
  // run too (RedisInlet::lease_round), however far away Redis is.
  std::vector<Args> reset{
      {"DEL", names->dead_letter(), names->hops(), names->streams(), names->counters()}};
  Args streams{"HSET", names->streams()};
  std::vector<std::pair<std::string, std::string>> groups;  // (stream, group)
  for (const PlanStage& stage : plan->stages()) {
    if (stage.source()) continue;
    Args del{"DEL"};
    for (const std::string& key : keys(stage)) {
      del.add(key).add(names->lease(key)).add(names->next_seq(key));
      streams.add(key).add(stage.name());
      groups.emplace_back(key, stage.name());
    }
    reset.push_back(std::move(del));
  }
  reset.push_back({"SET", names->run(), version_text(run_) + " " + version_text(version)});
  reset.push_back(std::move(streams));
  reset.push_back({"SADD", StreamNames::pipelines(), plan->pipeline().name()});
  conn.ok_all(reset);
  // A worker that read the old stream may have made the new one (and its group) already.
  create_groups(conn, std::move(groups));
}

void create_groups(Connection& conn, std::vector<std::pair<std::string, std::string>> groups) {
  // Redis at its maxmemory refuses a new stream (OOM), also for a moment while it reads another
  // client's large write: those are tried again for a while (kTries x kWait) before it is an
  // error.
  constexpr int kTries = 50;
  constexpr auto kWait = std::chrono::milliseconds(100);
  for (int tried = 1; !groups.empty(); ++tried) {
    for (const auto& [key, group] : groups) {
      conn.append({"XGROUP", "CREATE", key, group, "0", "MKSTREAM"});
    }
    std::vector<std::pair<std::string, std::string>> refused;
    std::string error;  // the first that cannot be made; thrown once every reply is read
    for (auto& [key, group] : groups) {
      const Reply made = conn.read("XGROUP CREATE");
      const std::string_view why = text(made.get());
      if (!is_error(made.get()) || why.starts_with("BUSYGROUP")) continue;
      const bool oom = !memory_refusal(made.get()).empty();
      if ((!oom || tried == kTries) && error.empty()) {
        error = "cannot create consumer group '" + group + "' on " + key + ": " + std::string(why) +
                (oom ? fmt::format(" (for {:g} s): raise maxmemory", kTries * kWait.count() / 1e3)
                     : "");
      }
      refused.emplace_back(std::move(key), std::move(group));
    }
    if (!error.empty()) throw std::runtime_error(error);
    groups = std::move(refused);
    if (!groups.empty()) std::this_thread::sleep_for(kWait);
  }
}

void Session::produced(std::size_t source, std::uint32_t stream, std::uint64_t seq) {
  std::lock_guard lock(produced_mutex_);
  std::uint64_t& n = produced_[source][stream];
  n = std::max(n, seq + 1);
}

std::map<std::uint32_t, std::uint64_t> Session::produced_by(
    const std::vector<std::size_t>& sources) const {
  std::map<std::uint32_t, std::uint64_t> counts;
  std::lock_guard lock(produced_mutex_);
  for (std::size_t source : sources) {
    const auto found = produced_.find(source);
    if (found == produced_.end()) continue;
    for (const auto& [stream, n] : found->second) counts[stream] = std::max(counts[stream], n);
  }
  return counts;
}

void Session::fail(const std::exception_ptr& error) {
  stopping_ = true;
  if (host_ != nullptr) host_->fail(error);
}

std::string Session::reached() const {
  std::uint64_t sent = 0;
  std::lock_guard lock(produced_mutex_);
  for (const auto& [source, streams] : produced_) {
    for (const auto& [stream, n] : streams) sent += n;
  }
  return std::to_string(host_ != nullptr ? host_->metrics().packets_out : 0) + " of " +
         std::to_string(sent) + " packets reached the sinks";
}

bool Session::holds_run(Connection& conn) {
  const std::uint64_t current = read_run(conn, *this).first;
  if (current == run_.load()) return true;
  const std::string what =
      current == 0 ? "Redis at " + url.where() + " no longer holds this run (its keys were deleted)"
                   : "another run of pipeline '" + plan->pipeline().name() +
                         "' started on Redis at " + url.where() + " and reset this run's queues";
  fail(std::make_exception_ptr(BrokerError(
      BrokerError::Kind::lost,
      what + ": " + reached() +
          "; run one at a time: let a run finish, or stop it (a second Ctrl-C abandons one that "
          "drains), before the next starts")));
  return false;
}

bool Session::reconnect(const BrokerError& error, std::string_view who) {
  const auto lost = [this](const BrokerError& e) {
    fail(std::make_exception_ptr(e));
    return false;
  };
  if (error.kind() != BrokerError::Kind::unreachable) return lost(error);
  log().warn("{}: {}; reconnecting", who, error.what());
  const auto start = Clock::now();
  for (; !stopping(); std::this_thread::sleep_for(std::chrono::milliseconds(200))) {
    try {
      auto conn = connect();
      const std::uint64_t current = read_run(*conn, *this).first;  // throws while Redis loads
      if (is_run() && current != run_.load()) {
        return lost(
            BrokerError(BrokerError::Kind::lost,
                        "Redis at " + url.where() +
                            " came back without this run's queues (it restarted without "
                            "persistence, or another run of pipeline '" +
                            plan->pipeline().name() + "' reset them): " + reached() +
                            "; rerun, or give Redis persistence (appendonly yes) so that a run "
                            "survives a restart"));
      }
      log().info("{}: reconnected to Redis at {}", who, url.where());
      reconnects.fetch_add(1, std::memory_order_relaxed);
      return true;
    } catch (const BrokerError& again) {
      if (again.kind() != BrokerError::Kind::unreachable) return lost(again);
      const double waited = std::chrono::duration<double>(Clock::now() - start).count();
      if (options.reconnect_s > 0 && waited > options.reconnect_s) {
        return lost(BrokerError(BrokerError::Kind::unreachable,
                                "lost Redis at " + url.where() + " for more than " +
                                    std::to_string(static_cast<int>(options.reconnect_s)) + " s (" +
                                    again.what() + "); " + reached() +
                                    ". Start redis-server again and rerun"));
      }
    }
  }
  return false;
}

}  // namespace micromodels::detail
