// `micromodels bench engine`: what the in-memory runner costs per hop, how close a mixed pipeline
// gets to its ideal throughput, and how fast a live scale-up takes effect. Public API only, so the
// figures are what a user of the library gets.
//
//   hop:          source ─► pass ×8 ─► count          (throughput, and the same graph in oneTBB)
//                 source ◄──────────── count          (closed loop, one packet in flight: latency)
//   composition:  source ─► A 1 ms ×1 ─► B 4 ms ×4 ─► C 1 ms ×1 ─► count
//   scale:        source ─► slow 2 ms ×1 ─► count     then scale(slow, 2) while it runs

#include <algorithm>
#include <atomic>
#include <chrono>
#include <climits>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <exception>
#include <fstream>
#include <functional>
#include <iostream>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>
#include <oneapi/tbb/flow_graph.h>

#include "micromodels/micromodels.hpp"

#include "bench.hpp"
#include "count_source.hpp"
#include "json_file.hpp"
#include "stats.hpp"

namespace micromodels::bench {
namespace {

using Clock = std::chrono::steady_clock;
using Json = nlohmann::ordered_json;

constexpr int kPassStages = 8;

std::int64_t now_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(Clock::now().time_since_epoch())
      .count();
}

double seconds_since(Clock::time_point start) {
  return std::chrono::duration<double>(Clock::now() - start).count();
}


// ---------------------------------------------------------------------------------------------
// Stage types of the benchmark. They live in a local Registry so that the built-ins stay as
// they are; shared state reaches an instance through the factory's captured shared_ptr.


/// A terminal stage that only counts what reaches it.
class CountSink final : public Stage {
 public:
  explicit CountSink(std::shared_ptr<std::atomic<std::uint64_t>> count)
      : count_(std::move(count)) {}
  void process(Packet /*packet*/, std::vector<Packet>& /*out*/) override {
    count_->fetch_add(1, std::memory_order_relaxed);
  }

 private:
  std::shared_ptr<std::atomic<std::uint64_t>> count_;
};

/// A terminal stage that notes when the first and the last packet arrived: the rate between them
/// is the steady-state throughput, without the pipeline's fill time at the start.
struct Arrivals {
  std::atomic<std::uint64_t> count{0};
  std::atomic<std::int64_t> first_ns{0};
  std::atomic<std::int64_t> last_ns{0};
};

class ArrivalSink final : public Stage {
 public:
  explicit ArrivalSink(std::shared_ptr<Arrivals> arrivals) : arrivals_(std::move(arrivals)) {}
  void process(Packet /*packet*/, std::vector<Packet>& /*out*/) override {
    const std::int64_t now = now_ns();
    std::int64_t unset = 0;
    arrivals_->first_ns.compare_exchange_strong(unset, now);
    arrivals_->last_ns.store(now);
    arrivals_->count.fetch_add(1);
  }

 private:
  std::shared_ptr<Arrivals> arrivals_;
};

/// The closed loop of the latency measurement: the source emits packet i+1 only once the sink
/// has seen packet i, so every packet crosses an otherwise idle pipeline.
struct LoopState {
  std::atomic<std::uint64_t> seen{0};
  std::atomic<std::int64_t> emitted_ns{0};
  std::atomic<std::uint64_t> stalls{0};  // waits given up on (an engine that holds packets back)
  std::vector<double> latencies_us;      // written by the sink (one consumer), read after wait()
};

class LoopSource final : public Source {
 public:
  LoopSource(std::uint64_t count, std::shared_ptr<LoopState> state)
      : count_(count), state_(std::move(state)) {}
  bool next(std::vector<Packet>& out) override {
    if (next_seq_ >= count_) return false;
    wait_for_sink();
    state_->emitted_ns.store(now_ns(), std::memory_order_release);
    Packet packet;
    packet.seq = next_seq_++;
    out.push_back(std::move(packet));
    return next_seq_ < count_;
  }
  [[nodiscard]] std::optional<std::uint64_t> expected_count() const override { return count_; }

 private:
  // Spins (yielding) rather than sleeping so that a futex wake-up of this thread does not sit
  // between two packets and let the engine's workers fall asleep: we measure hops, not wake-ups.
  // Gives up after a second so that an engine that batches source output cannot deadlock us.
  void wait_for_sink() {
    const auto deadline = Clock::now() + std::chrono::seconds(1);
    std::uint32_t spins = 0;
    while (state_->seen.load(std::memory_order_acquire) < next_seq_) {
      std::this_thread::yield();
      if ((++spins & 1023U) == 0 && Clock::now() > deadline) {
        state_->stalls.fetch_add(1, std::memory_order_relaxed);
        return;
      }
    }
  }

  std::uint64_t count_;
  std::uint64_t next_seq_ = 0;
  std::shared_ptr<LoopState> state_;
};

class LoopSink final : public Stage {
 public:
  explicit LoopSink(std::shared_ptr<LoopState> state) : state_(std::move(state)) {}
  void process(Packet /*packet*/, std::vector<Packet>& /*out*/) override {
    const std::int64_t elapsed = now_ns() - state_->emitted_ns.load(std::memory_order_acquire);
    state_->latencies_us.push_back(static_cast<double>(elapsed) / 1e3);
    state_->seen.fetch_add(1, std::memory_order_release);
  }

 private:
  std::shared_ptr<LoopState> state_;
};

/// A slow stage that notes when `target` consumers are inside process() at once for the first
/// time: the moment a consumer added by scale() has taken its first packet. Counting concurrent
/// calls, not thread ids, keeps this right whatever threads the runner uses.
struct SlowState {
  std::atomic<int> active{0};
  std::atomic<int> target{INT_MAX};
  std::atomic<std::int64_t> reached_ns{0};
  std::atomic<std::uint64_t> processed{0};
};

class SlowStage final : public Stage {
 public:
  SlowStage(double service_ms, std::shared_ptr<SlowState> state)
      : service_(std::chrono::duration<double, std::milli>(service_ms)), state_(std::move(state)) {}
  void process(Packet packet, std::vector<Packet>& out) override {
    const int active = state_->active.fetch_add(1) + 1;
    if (active >= state_->target.load()) {
      std::int64_t unset = 0;
      state_->reached_ns.compare_exchange_strong(unset, now_ns());
    }
    std::this_thread::sleep_for(service_);
    state_->active.fetch_sub(1);
    state_->processed.fetch_add(1);
    out.push_back(std::move(packet));
  }

 private:
  std::chrono::duration<double, std::milli> service_;
  std::shared_ptr<SlowState> state_;
};

StageConfig stage_config(std::string name, std::string type,
                         std::map<std::string, ParamValue> params = {}, int consumers = 1) {
  return {.name = std::move(name),
          .type = std::move(type),
          .params = std::move(params),
          .consumers = consumers};
}

ParamSpec count_param(std::int64_t fallback) {
  return {.name = "count",
          .type = ParamType::integer,
          .default_value = ParamValue{fallback},
          .help = "packets to emit"};
}

/// `blocking` stages get threads of their own instead of a slot on the shared pool.
std::function<StageInfo(const Params&)> info_of(bool blocking) {
  return [blocking](const Params&) { return StageInfo{.blocking = blocking}; };
}

/// A stage type whose instances share `make`'s captured state.
StageType stage_type(std::string name, std::string help, bool blocking,
                     std::function<std::unique_ptr<Stage>(const Params&)> make) {
  return {.name = std::move(name),
          .help = std::move(help),
          .info = info_of(blocking),
          .make = std::move(make)};
}

StageType source_type(std::string name, std::string help, bool blocking,
                      std::function<std::unique_ptr<Source>(const Params&)> make) {
  return {.name = std::move(name),
          .help = std::move(help),
          .params = {count_param(1000)},
          .info = info_of(blocking),
          .make_source = std::move(make)};
}

std::uint64_t count_of(const Params& params) {
  return static_cast<std::uint64_t>(params.integer("count"));
}

void add_count_source(Registry& registry) {
  registry.add(source_type("bench.source", "field-less packets, as fast as asked", false,
                           [](const Params& params) -> std::unique_ptr<Source> {
                             return std::make_unique<CountSource>(count_of(params));
                           }));
}

void add_count_sink(Registry& registry, const std::shared_ptr<std::atomic<std::uint64_t>>& count) {
  registry.add(stage_type("bench.count", "counts packets", false,
                          [count](const Params&) -> std::unique_ptr<Stage> {
                            return std::make_unique<CountSink>(count);
                          }));
}

/// source ─► pass ×8 ─► sink
Pipeline hop_chain(const std::string& source, std::uint64_t count, const std::string& sink) {
  Pipeline pipeline("bench_hop");
  pipeline.add(
      stage_config("source", source, {{"count", ParamValue{static_cast<std::int64_t>(count)}}}));
  for (int i = 1; i <= kPassStages; ++i) {
    pipeline.add(stage_config("pass" + std::to_string(i), "pass"));
  }
  pipeline.add(stage_config("sink", sink));
  return pipeline;
}

// ---------------------------------------------------------------------------------------------
// hop

double engine_chain_rate(std::uint64_t count) {
  Registry registry = Registry::with_builtins();
  auto counted = std::make_shared<std::atomic<std::uint64_t>>(0);
  add_count_source(registry);
  add_count_sink(registry, counted);
  Runner runner(hop_chain("bench.source", count, "bench.count"), registry);
  const auto start = Clock::now();
  runner.start();
  runner.wait();
  const double elapsed = seconds_since(start);
  if (counted->load() != count) {
    throw std::runtime_error("engine chain: sink saw " + std::to_string(counted->load()) + " of " +
                             std::to_string(count) + " packets");
  }
  return static_cast<double>(count) / elapsed;
}

/// The same chain as a oneTBB flow graph: serial function_nodes passing the same Packet type.
double tbb_chain_rate(std::uint64_t count) {
  namespace flow = oneapi::tbb::flow;
  flow::graph graph;
  std::uint64_t next_seq = 0;
  flow::input_node<Packet> source(graph, [&](oneapi::tbb::flow_control& control) -> Packet {
    if (next_seq >= count) {
      control.stop();
      return {};
    }
    Packet packet;
    packet.seq = next_seq++;
    return packet;
  });
  std::vector<std::unique_ptr<flow::function_node<Packet, Packet>>> passes;
  passes.reserve(kPassStages);
  for (int i = 0; i < kPassStages; ++i) {
    passes.push_back(std::make_unique<flow::function_node<Packet, Packet>>(
        graph, flow::serial, [](const Packet& packet) { return packet; }));
  }
  std::uint64_t counted = 0;  // serial node: one body at a time
  flow::function_node<Packet, flow::continue_msg> sink(graph, flow::serial,
                                                       [&](const Packet& /*packet*/) {
                                                         ++counted;
                                                         return flow::continue_msg();
                                                       });
  flow::make_edge(source, *passes.front());
  for (std::size_t i = 1; i < passes.size(); ++i) flow::make_edge(*passes[i - 1], *passes[i]);
  flow::make_edge(*passes.back(), sink);

  const auto start = Clock::now();
  source.activate();
  graph.wait_for_all();
  const double elapsed = seconds_since(start);
  if (counted != count) throw std::runtime_error("tbb chain: sink saw the wrong count");
  return static_cast<double>(count) / elapsed;
}

Json bench_hop(bool quick) {
  const std::uint64_t count = quick ? 100'000 : 1'000'000;
  const std::uint64_t loop_count = quick ? 5'000 : 20'000;
  const int repeats = quick ? 1 : 5;

  // Alternate the two so that neither gets the warmer machine, and compare each one's best run:
  // on a shared machine a run is only ever slowed (other load, where the threads land), and
  // oneTBB's rate here is bimodal (runs at about half speed between runs at full speed), so a
  // median of a few would compare against whichever mode came up more often.
  std::vector<double> ours;
  std::vector<double> theirs;
  for (int i = 0; i < repeats; ++i) {
    ours.push_back(engine_chain_rate(count));
    theirs.push_back(tbb_chain_rate(count));
  }
  const double packets_per_s = *std::max_element(ours.begin(), ours.end());
  const double tbb_packets_per_s = *std::max_element(theirs.begin(), theirs.end());

  Registry registry = Registry::with_builtins();
  auto state = std::make_shared<LoopState>();
  state->latencies_us.reserve(loop_count);
  // The source waits for the sink, so it must not hold one of the pool's workers.
  registry.add(source_type("bench.loop_source",
                           "emits the next packet once the sink saw the previous one", true,
                           [state](const Params& params) -> std::unique_ptr<Source> {
                             return std::make_unique<LoopSource>(count_of(params), state);
                           }));
  registry.add(stage_type("bench.loop_sink", "records source-to-sink latency", false,
                          [state](const Params&) -> std::unique_ptr<Stage> {
                            return std::make_unique<LoopSink>(state);
                          }));
  {
    Runner runner(hop_chain("bench.loop_source", loop_count, "bench.loop_sink"), registry);
    runner.start();
    runner.wait();
  }
  // The first packets pay for cold caches and thread start-up.
  std::vector<double> latencies = state->latencies_us;
  const std::size_t warmup = std::min<std::size_t>(latencies.size() / 10, 500);
  latencies.erase(latencies.begin(), latencies.begin() + static_cast<std::ptrdiff_t>(warmup));
  const double p50 = percentile(latencies, 0.50);
  const double p99 = percentile(latencies, 0.99);

  return Json{{"packets", count},
              {"stages", kPassStages},
              {"packets_per_s", packets_per_s},
              {"tbb_packets_per_s", tbb_packets_per_s},
              {"ratio_vs_tbb", tbb_packets_per_s > 0 ? packets_per_s / tbb_packets_per_s : 0.0},
              {"runs_packets_per_s", ours},
              {"runs_tbb_packets_per_s", theirs},
              {"closed_loop_packets", state->latencies_us.size()},
              {"closed_loop_p50_us", p50},
              {"per_hop_p50_us", p50 / kPassStages},
              {"per_hop_p99_us", p99 / kPassStages},
              {"closed_loop_stalls", state->stalls.load()}};
}

// ---------------------------------------------------------------------------------------------
// composition

Json bench_composition(bool quick) {
  const std::uint64_t count = quick ? 300 : 2'000;
  // The pipeline's capacity is min over stages of consumers / service time: 1/1 ms, 4/4 ms and
  // 1/1 ms are all 1000 packets per second.
  constexpr double kIdealPerS = 1000.0;

  Registry registry = Registry::with_builtins();
  auto arrivals = std::make_shared<Arrivals>();
  registry.add(stage_type("bench.arrivals", "notes first and last arrival", false,
                          [arrivals](const Params&) -> std::unique_ptr<Stage> {
                            return std::make_unique<ArrivalSink>(arrivals);
                          }));
  Pipeline pipeline("bench_composition");
  pipeline.add(stage_config(
      "source", "synthetic.source",
      {{"count", ParamValue{static_cast<std::int64_t>(count)}}, {"rate", ParamValue{0.0}}}));
  pipeline.add(stage_config("a", "model.sleep", {{"service_ms", ParamValue{1.0}}}));
  pipeline.add(stage_config("b", "model.sleep", {{"service_ms", ParamValue{4.0}}}, 4));
  pipeline.add(stage_config("c", "model.sleep", {{"service_ms", ParamValue{1.0}}}));
  pipeline.add(stage_config("sink", "bench.arrivals"));

  Runner runner(pipeline, registry);
  const auto start = Clock::now();
  runner.start();
  runner.wait();
  const double elapsed = seconds_since(start);
  const std::uint64_t arrived = arrivals->count.load();
  if (arrived != count) {
    throw std::runtime_error("composition: sink saw " + std::to_string(arrived) + " of " +
                             std::to_string(count) + " packets");
  }
  // Steady state: first to last arrival. The fill time before the first arrival (about one
  // service time per stage) is a latency, not a throughput loss, and would weigh on short runs.
  const double span_s = static_cast<double>(arrivals->last_ns - arrivals->first_ns) / 1e9;
  const double throughput = span_s > 0 ? static_cast<double>(count - 1) / span_s : 0.0;

  Json result{{"packets", count},
              {"elapsed_s", elapsed},
              {"end_to_end_per_s", static_cast<double>(count) / elapsed},
              {"throughput_per_s", throughput},
              {"ideal_per_s", kIdealPerS},
              {"efficiency", throughput / kIdealPerS}};
  // How long the sleeps really took tells a slow clock apart from a slow engine.
  const MetricsSnapshot metrics = runner.metrics();
  for (const char* name : {"a", "b", "c"}) {
    if (const StageMetrics* stage = metrics.stage(name)) {
      result[std::string(name) + "_service_mean_ms"] = stage->service.mean_us / 1e3;
    }
  }
  return result;
}

// ---------------------------------------------------------------------------------------------
// scale

constexpr double kServiceMs = 2.0;

/// One trial: a running source ─► slow ×1 ─► count; the time from calling scale(slow, 2) until
/// two consumers are inside the slow stage at once. Negative when it never happened.
double scale_trial() {
  Registry registry = Registry::with_builtins();
  auto counted = std::make_shared<std::atomic<std::uint64_t>>(0);
  auto state = std::make_shared<SlowState>();
  add_count_source(registry);
  add_count_sink(registry, counted);
  registry.add(stage_type("bench.slow", "sleeps, and notes when a consumer count is first reached",
                          true, [state](const Params&) -> std::unique_ptr<Stage> {
                            return std::make_unique<SlowStage>(kServiceMs, state);
                          }));
  Pipeline pipeline("bench_scale");
  pipeline.add(
      stage_config("source", "bench.source", {{"count", ParamValue{std::int64_t{1'000'000}}}}));
  // A short queue keeps the drain after stop() short.
  pipeline.add({.name = "slow", .type = "bench.slow", .queue_capacity = 16});
  pipeline.add(stage_config("sink", "bench.count"));

  Runner runner(pipeline, registry);
  runner.start();
  const auto warm_deadline = Clock::now() + std::chrono::seconds(5);
  while (state->processed.load() < 5 && Clock::now() < warm_deadline) {
    std::this_thread::sleep_for(std::chrono::microseconds(200));
  }
  state->target.store(2);
  const std::int64_t asked = now_ns();
  runner.scale("slow", 2);
  const auto deadline = Clock::now() + std::chrono::seconds(2);
  while (state->reached_ns.load() == 0 && Clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::microseconds(50));
  }
  const std::int64_t reached = state->reached_ns.load();
  runner.stop();
  runner.wait_for(10'000);
  return reached == 0 ? -1.0 : static_cast<double>(reached - asked) / 1e6;
}

Json bench_scale(bool /*quick*/) {
  constexpr int kTrials = 7;  // the median of 7 is stable enough, and costs about a second
  std::vector<double> reactions;
  int missed = 0;
  for (int i = 0; i < kTrials; ++i) {
    const double reaction = scale_trial();
    if (reaction < 0) {
      ++missed;
    } else {
      reactions.push_back(reaction);
    }
  }
  // A trial where the new consumer never ran counts as the slowest possible.
  std::vector<double> ranked = reactions;
  for (int i = 0; i < missed; ++i) ranked.push_back(1e9);
  return Json{{"trials", kTrials},
              {"never_reacted", missed},
              {"reaction_ms", median(ranked)},
              {"reaction_ms_min",
               reactions.empty() ? 0.0 : *std::min_element(reactions.begin(), reactions.end())},
              {"reaction_ms_max",
               reactions.empty() ? 0.0 : *std::max_element(reactions.begin(), reactions.end())},
              {"reaction_ms_all", reactions}};
}

// ---------------------------------------------------------------------------------------------
// report

struct Target {
  const char* part;
  const char* key;
  bool at_most;  // true: value <= bound; false: value >= bound
  double bound;
};

constexpr Target kTargets[] = {
    {"hop", "per_hop_p50_us", true, 0.5},
    {"hop", "ratio_vs_tbb", false, 1.5},
    {"composition", "efficiency", false, 0.95},
    {"scale", "reaction_ms", true, 10.0},
};

const Target* target_of(const std::string& part, const std::string& key) {
  for (const Target& target : kTargets) {
    if (part == target.part && key == target.key) return &target;
  }
  return nullptr;
}

void print_table(const Json& results, bool quick) {
  std::printf("\nmicromodels bench engine%s\n",
              quick ? " (quick: fewer packets, rough figures)" : "");
  std::printf("%-34s %16s   %-10s %s\n", "figure", "value", "target", "");
  std::printf("%s\n", std::string(72, '-').c_str());
  for (const auto& [part, figures] : results.items()) {
    for (const auto& [key, value] : figures.items()) {
      if (!value.is_number()) continue;
      std::string name = part;
      name.append(".").append(key);
      char target_text[32] = "";
      const char* status = "";
      if (const Target* target = target_of(part, key)) {
        std::snprintf(target_text, sizeof target_text, "%s %g",
                      target->at_most ? "<=" : ">=", target->bound);
        const double v = value.get<double>();
        const bool met = target->at_most ? v <= target->bound : v >= target->bound;
        status = met ? "met" : "MISSED";
      }
      if (value.is_number_integer() || value.is_number_unsigned()) {
        std::printf("%-34s %16lld   %-10s %s\n", name.c_str(), value.get<long long>(), target_text,
                    status);
      } else {
        const double v = value.get<double>();
        std::printf(v >= 1000 ? "%-34s %16.0f   %-10s %s\n" : "%-34s %16.3f   %-10s %s\n",
                    name.c_str(), v, target_text, status);
      }
    }
  }
  std::fflush(stdout);
}

}  // namespace

int run_engine_bench(const std::vector<std::string>& parts, const BenchOptions& options) {
  const auto wanted = [&](const std::string& part) {
    return parts.empty() || std::find(parts.begin(), parts.end(), part) != parts.end();
  };
  Json results = Json::object();
  int status = 0;
  const auto run = [&](const std::string& part, Json (*bench)(bool)) {
    if (!wanted(part)) return;
    std::cerr << "bench engine: " << part << "...\n";
    try {
      results[part] = bench(options.quick);
    } catch (const std::exception& error) {
      std::cerr << "bench engine: " << part << " failed: " << error.what() << '\n';
      results[part] = Json{{"error", error.what()}};
      status = 1;
    }
  };
  run("hop", bench_hop);
  run("composition", bench_composition);
  run("scale", bench_scale);

  print_table(results, options.quick);
  if (write_json_file(results, options.json_path, "bench engine") != 0) return 1;
  return status;
}

}  // namespace micromodels::bench
