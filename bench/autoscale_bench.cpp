// `micromodels bench autoscale`: from one consumer per stage, how long the autoscaler takes to
// reach 90% of the best hand-tuned throughput, and whether it then stays put.
//
// Each case runs twice in this process: once with the hand-tuned consumer counts (the reference
// rate), once from one consumer per stage with `autoscale:` on. Rates are measured on one stage's
// processed count over a sliding window; the consumer counts are sampled as often, so every
// scaling decision shows as a change. `oscillations` counts the decisions made during
// `steady_seconds` of unchanged load that start kSettleS after the 90% mark.
#include <chrono>
#include <cstdio>
#include <fstream>
#include <functional>
#include <iostream>
#include <string>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

#include "bench.hpp"
#include "json_file.hpp"
#include "micromodels/micromodels.hpp"
#ifdef MICROMODELS_HAS_VISION
#include "eye_contact_support.hpp"
#endif

namespace micromodels::bench {

namespace {

using Json = nlohmann::ordered_json;
using Clock = std::chrono::steady_clock;

constexpr auto kSample = std::chrono::milliseconds(50);
constexpr double kWindowS = 1.0;  // sliding window of the rate

struct Sample {
  double t = 0;                // seconds since start
  std::uint64_t done = 0;      // the measured stage's processed count
  std::vector<int> consumers{};  // every stage's, in pipeline order
};

Sample take_sample(const Runner& runner, Clock::time_point start, const std::string& measured) {
  const MetricsSnapshot m = runner.metrics();
  Sample sample{.t = std::chrono::duration<double>(Clock::now() - start).count()};
  if (const StageMetrics* stage = m.stage(measured)) sample.done = stage->processed;
  for (const StageMetrics& stage : m.stages) sample.consumers.push_back(stage.consumers);
  return sample;
}

struct Trace {
  std::vector<Sample> samples;
  [[nodiscard]] double rate_at(std::size_t i) const {
    std::size_t j = i;
    while (j > 0 && samples[i].t - samples[j].t < kWindowS) --j;
    const double span = samples[i].t - samples[j].t;
    return span > 0 ? static_cast<double>(samples[i].done - samples[j].done) / span : 0.0;
  }
};

// Runs `pipeline` for `seconds` (or until it ends), sampling every kSample.
Trace run_traced(const Pipeline& pipeline, const std::string& measured, double seconds) {
  Runner runner(pipeline);
  Trace trace;
  const auto start = Clock::now();
  runner.start();
  while (!runner.finished()) {
    std::this_thread::sleep_for(kSample);
    trace.samples.push_back(take_sample(runner, start, measured));
    if (trace.samples.back().t >= seconds) break;
  }
  runner.stop();
  runner.wait();
  return trace;
}

// Steady rate of a run: packets per second over its second half.
double steady_rate(const Trace& trace) {
  if (trace.samples.size() < 4) return 0;
  const Sample& last = trace.samples.back();
  const Sample* mid = &trace.samples[trace.samples.size() / 2];
  const double span = last.t - mid->t;
  return span > 0 ? static_cast<double>(last.done - mid->done) / span : 0.0;
}

struct Case {
  std::string name;
  Pipeline tuned;      // the best hand-tuned counts
  Pipeline automatic;  // one consumer per stage, autoscale on
  std::string measured;
  double tuned_seconds = 0;
  double auto_seconds = 0;  // before convergence is looked for and after it, in all
  double steady_seconds = 0;  // after convergence and settling, for counting oscillations
};

// After reaching 90%, decisions already under way may still land (the autoscaler measures over an
// interval and waits one after a change): they are counted as decisions, not oscillations.
constexpr double kSettleS = 2.0;

Json run_case(const Case& c) {
  std::cerr << "bench autoscale: " << c.name << ": hand-tuned run...\n";
  const double best = steady_rate(run_traced(c.tuned, c.measured, c.tuned_seconds));
  std::cerr << "bench autoscale: " << c.name << ": autoscaled run...\n";
  // Runs until converged plus the steady period (or the time limit when it never converges).
  Runner runner(c.automatic);
  Trace trace;
  const auto start = Clock::now();
  double converged_at = -1;
  runner.start();
  while (!runner.finished()) {
    std::this_thread::sleep_for(kSample);
    trace.samples.push_back(take_sample(runner, start, c.measured));
    const double t = trace.samples.back().t;
    if (converged_at < 0 && t >= kWindowS &&
        trace.rate_at(trace.samples.size() - 1) >= 0.9 * best) {
      converged_at = t;
    }
    if (converged_at >= 0 && t >= converged_at + kSettleS + c.steady_seconds) break;
    if (converged_at < 0 && t >= c.auto_seconds) break;
  }
  runner.stop();
  runner.wait();

  int decisions = 0;
  int after = 0;
  for (std::size_t i = 1; i < trace.samples.size(); ++i) {
    if (trace.samples[i].consumers == trace.samples[i - 1].consumers) continue;
    ++decisions;
    if (converged_at >= 0 && trace.samples[i].t > converged_at + kSettleS) ++after;
  }
  std::string counts;
  for (const StageMetrics& stage : runner.metrics().stages) {
    counts += (counts.empty() ? "" : " ") + stage.name + "=" + std::to_string(stage.consumers);
  }
  Json out{{"best_rate", best},
           {"seconds_to_90", converged_at >= 0 ? Json(converged_at) : Json(nullptr)},
           {"final_rate", steady_rate(trace)},
           {"decisions", decisions},
           {"oscillations", converged_at >= 0 ? Json(after) : Json(nullptr)},
           {"steady_seconds",
            converged_at >= 0 ? trace.samples.back().t - converged_at - kSettleS : 0.0},
           {"final_consumers", counts}};
  return out;
}

Pipeline synthetic(bool autoscale, std::uint64_t count) {
  Pipeline p("autoscale_synthetic");
  p.add({.name = "source", .type = "synthetic.source",
         .params = {{"count", static_cast<std::int64_t>(count)}}});
  const std::vector<std::pair<std::string, double>> stages = {{"a", 1}, {"b", 4}, {"c", 1}};
  for (const auto& [name, ms] : stages) {
    p.add({.name = name, .type = "model.sleep", .params = {{"service_ms", ms}},
           .consumers = autoscale ? 1 : (name == "b" ? 4 : 1)});
  }
  // One consumer each plus 3: the hand-tuned 1/4/1 uses as many.
  if (autoscale) p.set_autoscale({.enabled = true, .budget = 3, .interval_ms = 250});
  return p;
}

void print(const Json& results) {
  std::printf("\nmicromodels bench autoscale\n%-40s %14s   %s\n", "figure", "value", "target");
  std::printf("%s\n", std::string(66, '-').c_str());
  auto row = [](const std::string& name, const Json& value, const char* target) {
    if (value.is_null()) {
      std::printf("%-40s %14s   %s\n", name.c_str(), "never", target);
    } else if (value.is_number_integer()) {
      std::printf("%-40s %14lld   %s\n", name.c_str(), value.get<long long>(), target);
    } else if (value.is_number()) {
      std::printf("%-40s %14.2f   %s\n", name.c_str(), value.get<double>(), target);
    } else {
      std::printf("%-40s %14s   %s\n", name.c_str(), value.dump().c_str(), target);
    }
  };
  for (const auto& [key, value] : results.items()) {
    if (!value.is_object()) {
      const bool to90 = key.ends_with("seconds_to_90");
      const bool met = !value.is_null() && (to90 ? value.get<double>() <= 2.0 : value == 0);
      row(key, value, (std::string(to90 ? "<= 2 s " : "= 0 ") + (met ? "met" : "MISSED")).c_str());
    }
  }
  for (const auto& [key, value] : results.items()) {
    if (!value.is_object()) continue;
    for (const auto& [figure, v] : value.items()) row(key + "." + figure, v, "");
  }
  std::fflush(stdout);
}

}  // namespace

int run_autoscale_bench(const BenchOptions& options) {
  const bool quick = options.quick;
  Json results;
  std::vector<Case> cases;
  const std::uint64_t count = quick ? 20'000 : 100'000;
  cases.push_back({.name = "synthetic",
                   .tuned = synthetic(false, count),
                   .automatic = synthetic(true, count),
                   .measured = "c",
                   .tuned_seconds = quick ? 3.0 : 6.0,
                   .auto_seconds = quick ? 10.0 : 30.0,
                   .steady_seconds = quick ? 5.0 : 30.0});
#ifdef MICROMODELS_HAS_VISION
  ensure_vision_stages();
  // As in `bench eye_contact`: the pipeline's parallelism is its stages, so OpenCV runs each call
  // on one thread, and a stage's service time is the CPU it takes.
  const OpenCvThreads opencv_threads(1);
  ScratchDir scratch("micromodels-bench-autoscale");
  Pipeline tuned = Pipeline::from_yaml_file(find_repo_file("pipelines/eye_contact.yaml"));
  retarget_pipeline(tuned, media_file("franck.mp4"), 0, scratch.path());
  Pipeline automatic = tuned;
  for (const StageConfig& stage : tuned.stages()) automatic.set_consumers(stage.name, 1);
  automatic.set_autoscale({.enabled = true});
  cases.push_back({.name = "eye_contact",
                   .tuned = tuned,
                   .automatic = automatic,
                   .measured = "sink",
                   .tuned_seconds = quick ? 8.0 : 20.0,
                   .auto_seconds = quick ? 15.0 : 45.0,
                   .steady_seconds = quick ? 5.0 : 30.0});
#endif
  int status = 0;
  int oscillations = 0;
  bool all_converged = true;
  for (const Case& c : cases) {
    try {
      Json figures = run_case(c);
      results[c.name + "_seconds_to_90"] = figures["seconds_to_90"];
      if (figures["oscillations"].is_null()) {
        all_converged = false;
      } else {
        oscillations += figures["oscillations"].get<int>();
      }
      results[c.name] = std::move(figures);
    } catch (const std::exception& error) {
      std::cerr << "bench autoscale: " << c.name << " failed: " << error.what() << '\n';
      results[c.name] = Json{{"error", error.what()}};
      status = 1;
    }
  }
  results["oscillations"] = all_converged ? Json(oscillations) : Json(nullptr);
  // Keep the headline keys first.
  Json ordered;
  for (const char* key : {"synthetic_seconds_to_90", "eye_contact_seconds_to_90", "oscillations"}) {
    if (results.contains(key)) ordered[key] = results[key];
  }
  for (const auto& [key, value] : results.items()) {
    if (!ordered.contains(key)) ordered[key] = value;
  }
  print(ordered);
  if (write_json_file(ordered, options.json_path, "bench autoscale") != 0) return 1;
  return status;
}

}  // namespace micromodels::bench
