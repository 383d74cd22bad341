#include <iostream>
#include <string>
#include <vector>

#include "bench.hpp"

namespace micromodels::bench {

// Defined in engine_bench.cpp; `parts` empty means all of them.
int run_engine_bench(const std::vector<std::string>& parts, const BenchOptions& options);
// Defined in autoscale_bench.cpp (its eye-contact case only with the vision stages).
int run_autoscale_bench(const BenchOptions& options);
// Defined in dashboard_bench.cpp: runs bench/dashboard_bench.mjs with Node.js and Chromium.
int run_dashboard_bench(const BenchOptions& options);
// Defined in trace_bench.cpp (its eye-contact part only with the vision stages).
int run_trace_bench(const BenchOptions& options);
#ifdef MICROMODELS_HAS_REDIS
// Defined in redis_bench.cpp, built with the Redis broker. `hop_only`: just the hop against raw
// hiredis ("redis.hop"), without the worker and eye-contact parts.
int run_redis_bench(const BenchOptions& options, bool hop_only);
#endif
#if defined(MICROMODELS_HAS_REDIS) && defined(MICROMODELS_HAS_VISION)
// Defined in scaleout_bench.cpp, built with the Redis broker and the vision stages.
int run_scaleout_bench(const BenchOptions& options);
#endif
#ifdef MICROMODELS_HAS_PYTHON
// Defined in python_bench.cpp, built with the Python stages.
int run_python_bench(const BenchOptions& options);
#endif
#ifdef MICROMODELS_HAS_VISION
// Defined in eye_contact_bench.cpp, built only with the vision stages.
int run_eye_contact_bench(const BenchOptions& options);
// Defined in live_bench.cpp, built only with the vision stages.
int run_live_bench(const BenchOptions& options);
#endif

std::vector<std::string> bench_names() {
  std::vector<std::string> names{"engine", "engine.hop", "engine.composition", "engine.scale",
                                 "autoscale", "dashboard", "trace"};
#ifdef MICROMODELS_HAS_REDIS
  names.emplace_back("redis");
  names.emplace_back("redis.hop");
#endif
#ifdef MICROMODELS_HAS_PYTHON
  names.emplace_back("python");
#endif
#ifdef MICROMODELS_HAS_VISION
  names.emplace_back("eye_contact");
  names.emplace_back("live");
#endif
#if defined(MICROMODELS_HAS_REDIS) && defined(MICROMODELS_HAS_VISION)
  names.emplace_back("scaleout");
#endif
  return names;
}

int run_bench(const std::string& name, const BenchOptions& options) {
  if (name == "engine") return run_engine_bench({}, options);
  if (name == "autoscale") return run_autoscale_bench(options);
  if (name == "dashboard") return run_dashboard_bench(options);
  if (name == "trace") return run_trace_bench(options);
#ifdef MICROMODELS_HAS_REDIS
  if (name == "redis") return run_redis_bench(options, false);
  if (name == "redis.hop") return run_redis_bench(options, true);
#endif
#ifdef MICROMODELS_HAS_PYTHON
  if (name == "python") return run_python_bench(options);
#endif
#ifdef MICROMODELS_HAS_VISION
  if (name == "eye_contact") return run_eye_contact_bench(options);
  if (name == "live") return run_live_bench(options);
#endif
#if defined(MICROMODELS_HAS_REDIS) && defined(MICROMODELS_HAS_VISION)
  if (name == "scaleout") return run_scaleout_bench(options);
#endif
  const std::string prefix = "engine.";
  if (name.starts_with(prefix)) {
    const std::string part = name.substr(prefix.size());
    if (part == "hop" || part == "composition" || part == "scale") {
      return run_engine_bench({part}, options);
    }
  }
  std::cerr << "unknown benchmark '" << name << "'; benchmarks:";
  for (const std::string& known : bench_names()) std::cerr << ' ' << known;
  std::cerr << '\n';
  return 2;
}

}  // namespace micromodels::bench
