// Benchmarks behind `micromodels bench NAME`.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace micromodels::bench {

struct BenchOptions {
  std::string json_path;     // write the figures as JSON here when set
  bool quick = false;        // fewer packets and trials: a smoke run for CI, not for figures
  std::uint64_t frames = 0;  // eye_contact: frames per run, 720p runs at most their default;
                             // 0: the default (all frames, or 300 with quick); live: frames
                             // per stream (default 250, 50 with quick)
  std::string broker;        // redis: redis://host:port to use; empty: start a redis-server
  bool no_netns = false;     // scaleout: every process on loopback, no network namespaces
};

/// Runs the benchmark `name` ("engine", or one part of it: "engine.hop", "engine.composition",
/// "engine.scale"; "autoscale"; "dashboard"; "trace"; "python" when built with the Python stages; "eye_contact" and "live" when built with the vision stages; "scaleout" with the vision stages and Redis), prints a table of figures
/// against their targets, writes JSON when asked.
/// Returns 0 when it ran (targets missed are reported, not failed), 2 for an unknown name.
///
///   micromodels::bench::run_bench("engine", {.json_path = "engine.json", .quick = true});
int run_bench(const std::string& name, const BenchOptions& options);

/// The names run_bench accepts.
[[nodiscard]] std::vector<std::string> bench_names();

}  // namespace micromodels::bench
