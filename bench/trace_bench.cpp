// `micromodels bench trace`: what tracing every packet (`trace:` with every: 1) costs, measured
// against the same run untraced, interleaved (untraced, traced, traced, untraced, ...) so that
// both see the same machine, several times; the medians' ratio is the figure.
//
//   engine:       bench engine's hop chain, source -> pass x8 -> sink: the engine's own cost per
//                 hop, where a trace event weighs most. Throughput is packets over the time
//                 from start to the sink's last packet; the trace file is written after that,
//                 when the run ends, and its writing time is reported apart.
//   eye_contact:  pipelines/eye_contact.yaml on the sample video (with the vision stages):
//                 frames per second, from start to the end of the run (file included).
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <iostream>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "micromodels/micromodels.hpp"

#include "bench.hpp"
#include "count_source.hpp"
#include "json_file.hpp"
#include "stats.hpp"
#ifdef MICROMODELS_HAS_VISION
#include "eye_contact_support.hpp"
#endif

namespace micromodels::bench {
namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;
using Json = nlohmann::ordered_json;

constexpr double kEngineTarget = 0.95;      // traced / untraced throughput, at least
constexpr double kEyeContactTarget = 0.99;  // traced / untraced fps, at least
// Large enough that every packet of the runs below is traced (the size bound never thins).
constexpr double kTraceMb = 4096;



/// Counts what arrives and notes when the last packet did.
struct Arrivals {
  std::atomic<std::uint64_t> count{0};
  std::atomic<std::int64_t> last_ns{0};
};

class ArrivalSink final : public Stage {
 public:
  explicit ArrivalSink(std::shared_ptr<Arrivals> arrivals) : arrivals_(std::move(arrivals)) {}
  void process(Packet /*packet*/, std::vector<Packet>& /*out*/) override {
    arrivals_->last_ns.store(Clock::now().time_since_epoch().count(), std::memory_order_relaxed);
    arrivals_->count.fetch_add(1, std::memory_order_relaxed);
  }

 private:
  std::shared_ptr<Arrivals> arrivals_;
};

struct HopRun {
  double packets_per_s = 0;  // start to the last arrival
  double finish_s = 0;       // the last arrival to the end of the run (the trace file, if any)
};

HopRun hop_run(std::uint64_t count, const fs::path& trace) {
  Registry registry = Registry::with_builtins();
  auto arrivals = std::make_shared<Arrivals>();
  registry.add({.name = "bench.trace_source",
                .help = "field-less packets",
                .params = {{.name = "count", .type = ParamType::integer,
                            .default_value = ParamValue{std::int64_t{1000}}, .help = "packets"}},
                .make_source = [](const Params& params) -> std::unique_ptr<Source> {
                  return std::make_unique<CountSource>(
                      static_cast<std::uint64_t>(params.integer("count")));
                }});
  registry.add({.name = "bench.trace_sink",
                .help = "notes the last arrival",
                .make = [arrivals](const Params&) -> std::unique_ptr<Stage> {
                  return std::make_unique<ArrivalSink>(arrivals);
                }});
  Pipeline pipeline("bench_trace_hop");
  pipeline.add({.name = "source",
                .type = "bench.trace_source",
                .params = {{"count", ParamValue{static_cast<std::int64_t>(count)}}}});
  for (int i = 1; i <= 8; ++i) pipeline.add({.name = "pass" + std::to_string(i), .type = "pass"});
  pipeline.add({.name = "sink", .type = "bench.trace_sink"});
  if (!trace.empty()) pipeline.set_trace({.path = trace.string(), .every = 1, .max_mb = kTraceMb});

  Runner runner(pipeline, registry);
  const auto start = Clock::now();
  runner.start();
  runner.wait();
  const auto end = Clock::now();
  if (arrivals->count.load() != count) throw std::runtime_error("hop chain: packets were lost");
  const Clock::time_point last{Clock::duration{arrivals->last_ns.load()}};
  return {.packets_per_s = static_cast<double>(count) /
                           std::chrono::duration<double>(last - start).count(),
          .finish_s = std::chrono::duration<double>(end - last).count()};
}

Json bench_engine(bool quick, const fs::path& dir) {
  const std::uint64_t count = quick ? 20'000 : 100'000;
  const int repeats = quick ? 2 : 7;
  const fs::path trace = dir / "hop_trace.json";
  std::vector<double> plain;
  std::vector<double> traced;
  std::vector<double> plain_finish;
  std::vector<double> traced_finish;
  std::uintmax_t bytes = 0;
  hop_run(count / 10, {});  // warm up: threads, caches, page faults
  for (int i = 0; i < repeats; ++i) {
    // Untraced first in even pairs, traced first in odd ones: a load that grows or falls during
    // the benchmark weighs on both alike.
    HopRun a;
    HopRun b;
    if (i % 2 == 0) {
      a = hop_run(count, {});
      b = hop_run(count, trace);
    } else {
      b = hop_run(count, trace);
      a = hop_run(count, {});
    }
    bytes = fs::file_size(trace);
    fs::remove(trace);
    plain.push_back(a.packets_per_s);
    traced.push_back(b.packets_per_s);
    plain_finish.push_back(a.finish_s);
    traced_finish.push_back(b.finish_s);
  }
  std::vector<double> ratios;
  std::vector<double> end_to_end;  // with the time the file took at the end
  for (int i = 0; i < repeats; ++i) {
    ratios.push_back(traced[i] / plain[i]);
    const auto whole = [&](double rate, double finish) {
      return static_cast<double>(count) / (static_cast<double>(count) / rate + finish);
    };
    end_to_end.push_back(whole(traced[i], traced_finish[i]) / whole(plain[i], plain_finish[i]));
  }
  return Json{{"packets", count},
              {"stages", 10},
              {"repeats", repeats},
              {"untraced_packets_per_s", median(plain)},
              {"traced_packets_per_s", median(traced)},
              {"ratio", median(traced) / median(plain)},
              {"ratio_per_pair_median", median(ratios)},
              {"end_to_end_ratio", median(end_to_end)},
              {"trace_mb", static_cast<double>(bytes) / 1e6},
              {"untraced_finish_s", median(plain_finish)},
              {"traced_finish_s", median(traced_finish)}};
}

#ifdef MICROMODELS_HAS_VISION
double eye_contact_fps(std::uint64_t frames, const fs::path& out, const fs::path& trace) {
  Pipeline pipeline = Pipeline::from_yaml_file(find_repo_file("pipelines/eye_contact.yaml"));
  retarget_pipeline(pipeline, media_file("franck.mp4"), frames, out);
  for (const StageConfig& stage : pipeline.stages()) {
    // Cheap to encode, as in bench eye_contact: the figure is the pipeline's, not the encoder's.
    if (stage.type == "video.sink") pipeline.set_param(stage.name, "codec", "mp4v");
  }
  if (!trace.empty()) pipeline.set_trace({.path = trace.string(), .every = 1, .max_mb = kTraceMb});
  Runner runner(pipeline);  // loads the models: not timed
  const auto start = Clock::now();
  runner.start();
  runner.wait();
  const double wall = std::chrono::duration<double>(Clock::now() - start).count();
  const StageMetrics* sink = runner.metrics().stage("sink");
  return sink != nullptr ? static_cast<double>(sink->processed) / wall : 0;
}

Json bench_eye_contact(bool quick, std::uint64_t frames, const fs::path& dir) {
  ensure_vision_stages();
  // As in `bench eye_contact`: the pipeline's parallelism is its stages, so OpenCV runs each
  // call on one thread.
  const OpenCvThreads opencv_threads(1);
  if (frames == 0) frames = quick ? 100 : 300;
  const int repeats = quick ? 1 : 4;
  fs::create_directories(dir / "plain");
  fs::create_directories(dir / "traced");
  std::vector<double> plain;
  std::vector<double> traced;
  for (int i = 0; i < repeats; ++i) {
    // As for the hop chain: the order alternates.
    if (i % 2 == 0) plain.push_back(eye_contact_fps(frames, dir / "plain", {}));
    traced.push_back(eye_contact_fps(frames, dir / "traced", dir / "eye_trace.json"));
    if (i % 2 == 1) plain.push_back(eye_contact_fps(frames, dir / "plain", {}));
  }
  return Json{{"frames", frames},
              {"repeats", repeats},
              {"untraced_fps", median(plain)},
              {"traced_fps", median(traced)},
              {"ratio", median(traced) / median(plain)},
              {"untraced_fps_all", plain},
              {"traced_fps_all", traced}};
}
#endif

void print_row(const char* name, double value, double target) {
  std::printf("%-34s %10.3f   >= %-6.2f %s\n", name, value, target,
              value >= target ? "met" : "MISSED");
}

}  // namespace

int run_trace_bench(const BenchOptions& options) {
  const fs::path dir = fs::temp_directory_path() / ("micromodels_bench_trace_" +
                                                    std::to_string(Clock::now().time_since_epoch().count()));
  fs::create_directories(dir);
  Json results = Json::object();
  int status = 0;
  const auto part = [&](const char* name, auto bench) {
    std::cerr << "bench trace: " << name << "...\n";
    try {
      results[name] = bench();
    } catch (const std::exception& error) {
      std::cerr << "bench trace: " << name << " failed: " << error.what() << '\n';
      results[name] = Json{{"error", error.what()}};
      status = 1;
    }
  };
  part("engine", [&] { return bench_engine(options.quick, dir); });
#ifdef MICROMODELS_HAS_VISION
  part("eye_contact", [&] { return bench_eye_contact(options.quick, options.frames, dir); });
#endif
  fs::remove_all(dir);

  std::printf("\nmicromodels bench trace%s: every packet traced against untraced, medians\n",
              options.quick ? " (quick: fewer packets, rough figures)" : "");
  if (results["engine"].contains("ratio")) {
    const Json& e = results["engine"];
    std::printf("engine hop chain: %.0f packets/s untraced, %.0f traced; the file (%.0f MB) took "
                "%.2f s more at the end\n",
                e["untraced_packets_per_s"].get<double>(), e["traced_packets_per_s"].get<double>(),
                e["trace_mb"].get<double>(),
                e["traced_finish_s"].get<double>() - e["untraced_finish_s"].get<double>());
    print_row("engine.ratio", e["ratio"].get<double>(), kEngineTarget);
    std::printf("%-34s %10.3f   (with the file written at the end; no target)\n",
                "engine.end_to_end_ratio", e["end_to_end_ratio"].get<double>());
  }
  if (results.contains("eye_contact") && results["eye_contact"].contains("ratio")) {
    const Json& e = results["eye_contact"];
    std::printf("eye contact: %.1f fps untraced, %.1f traced\n", e["untraced_fps"].get<double>(),
                e["traced_fps"].get<double>());
    print_row("eye_contact.ratio", e["ratio"].get<double>(), kEyeContactTarget);
  }
  std::fflush(stdout);
  if (write_json_file(results, options.json_path, "bench trace") != 0) return 1;
  return status;
}

}  // namespace micromodels::bench
