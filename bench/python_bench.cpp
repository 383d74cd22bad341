// `micromodels bench python`: what a Python stage costs. Public API only.
//
//   call:     source ─► X ─► pass, X = the C++ `pass`, the same on its own thread
//             (`blocking: true`, as Python stages run), or a Python stage that returns its
//             packet: the difference per packet is what calling Python costs (thread hand-off,
//             GIL, packet wrapper), in CPU time (the process's, which other processes on a
//             shared machine hardly change: the target's figure) and in wall time
//   scaling_cv2: source ─► blur (Python: cv2.GaussianBlur of a 640x480 array it holds, one
//             pixel of the result written to the packet) ─► pass, with 1 and 2 consumers on blur: OpenCV releases
//             the GIL, so two consumers use two cores. Nothing else in the pipeline takes CPU,
//             and OpenCV's own threads are set to 1, so that the engine's consumers are measured.
//   scaling_pure_python: the same with a pure-Python loop of about the same cost, which holds
//             the GIL: what does not scale.
//   scaling_cpp: the same with the C++ model.spin (spinning 1.3 ms of wall time, on its own
//             threads), run after them: a sign of the shared machine's load at the time, not a
//             bound (a spin preempted by other processes still ends on time).

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iostream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>
#include <time.h>
#include <unistd.h>

#include "micromodels/micromodels.hpp"

#include "bench.hpp"
#include "json_file.hpp"
#include "stats.hpp"

namespace micromodels::bench {
namespace {

using Json = nlohmann::ordered_json;

constexpr const char* kStages = R"(import cv2
import numpy as np

cv2.setNumThreads(1)


class Trivial:
    def process(self, packet):
        return packet


class Blur:
    writes = {"centre": "int"}

    def __init__(self):
        self.image = np.random.default_rng(1).integers(0, 255, (480, 640, 3), np.uint8)

    def process(self, packet):
        packet["centre"] = int(cv2.GaussianBlur(self.image, (15, 15), 0)[240, 320, 0])
        return packet


class Loop:
    writes = {"mean": "number"}  # of i % 7 over the loop

    def process(self, packet):
        total = 0
        for i in range(30000):
            total += i % 7
        packet["mean"] = total / 30000
        return packet
)";


double cpu_seconds() {
  timespec now{};
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &now);
  return static_cast<double>(now.tv_sec) + static_cast<double>(now.tv_nsec) * 1e-9;
}

struct Timed {
  double seconds = 0;
  double cpu_seconds = 0;
  double service_p50_us = 0;  // of the stage named "x"
};

Timed run_timed(const std::string& yaml) {
  Runner runner(Pipeline::from_yaml_string(yaml, "bench python"));
  const auto start = std::chrono::steady_clock::now();
  const double cpu_start = cpu_seconds();
  runner.start();
  runner.wait();
  const double cpu = cpu_seconds() - cpu_start;
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  const MetricsSnapshot metrics = runner.metrics();
  if (metrics.stage("x")->failed > 0) throw std::runtime_error("stage x failed packets; see the log");
  return {seconds, cpu, metrics.stage("x")->service.p50_us};
}

Json bench_call(const std::string& dir, bool quick) {
  const int count = quick ? 2000 : 20000;
  const int trials = quick ? 1 : 5;
  const auto pipeline = [&](const std::string& x) {
    return "pipeline: call\nstages:\n"
           "  - { name: source, type: synthetic.source, params: { count: " + std::to_string(count) +
           " } }\n  - " + x + "\n  - { name: sink, type: pass }\n";
  };
  const std::string cpp = pipeline("{ name: x, type: pass }");
  const std::string cpp_thread = pipeline("{ name: x, type: pass, blocking: true }");
  const std::string python =
      pipeline("{ name: x, type: python, params: { module: bench_stages, class: Trivial, path: " +
               dir + " } }");
  std::vector<double> cpp_us, thread_us, python_us, cpp_service, python_service;
  std::vector<double> cpp_cpu, thread_cpu, python_cpu;
  for (int t = 0; t < trials; ++t) {  // interleaved, so that a change of load hits all three
    const Timed a = run_timed(cpp);
    const Timed own = run_timed(cpp_thread);
    const Timed b = run_timed(python);
    cpp_us.push_back(a.seconds * 1e6 / count);
    thread_us.push_back(own.seconds * 1e6 / count);
    cpp_cpu.push_back(a.cpu_seconds * 1e6 / count);
    thread_cpu.push_back(own.cpu_seconds * 1e6 / count);
    python_cpu.push_back(b.cpu_seconds * 1e6 / count);
    python_us.push_back(b.seconds * 1e6 / count);
    cpp_service.push_back(a.service_p50_us);
    python_service.push_back(b.service_p50_us);
  }
  return Json{{"packets", count},
              {"trials", trials},
              {"pass_cpu_us_per_packet", median(cpp_cpu)},
              {"pass_own_thread_cpu_us_per_packet", median(thread_cpu)},
              {"python_cpu_us_per_packet", median(python_cpu)},
              {"overhead_cpu_us_per_packet", median(python_cpu) - median(cpp_cpu)},
              {"pass_wall_us_per_packet", median(cpp_us)},
              {"pass_own_thread_wall_us_per_packet", median(thread_us)},
              {"python_wall_us_per_packet", median(python_us)},
              {"overhead_wall_us_per_packet", median(python_us) - median(cpp_us)},
              {"pass_service_p50_us", median(cpp_service)},
              {"python_service_p50_us", median(python_service)}};
}

// `x` (a stage's YAML after its consumers: type and params) with 1 and 2 consumers.
Json bench_scaling(bool quick, const std::string& x) {
  const int count = quick ? 60 : 1500;  // about 2 s a run: shorter runs are noise on a shared machine
  const int trials = quick ? 1 : 3;
  const auto pipeline = [&](int consumers) {
    return "pipeline: scaling\nstages:\n"
           "  - { name: source, type: synthetic.source, params: { count: " + std::to_string(count) +
           " } }\n"
           "  - { name: x, consumers: " + std::to_string(consumers) + ", " + x + " }\n"
           "  - { name: sink, type: pass }\n";
  };
  std::vector<double> one, two, ratios;
  double service_one = 0;
  for (int t = 0; t < trials; ++t) {
    const Timed a = run_timed(pipeline(1));
    const Timed b = run_timed(pipeline(2));
    one.push_back(count / a.seconds);
    two.push_back(count / b.seconds);
    ratios.push_back(a.seconds / b.seconds);
    service_one = a.service_p50_us;
  }
  return Json{{"packets", count},
              {"trials", trials},
              {"service_p50_ms", service_one / 1000},
              {"one_consumer_per_s", median(one)},
              {"two_consumers_per_s", median(two)},
              {"speedup", median(ratios)}};
}

struct Target {
  const char* part;
  const char* key;
  bool at_most;
  double bound;
};
constexpr Target kTargets[] = {{"call", "overhead_cpu_us_per_packet", true, 5.0},
                               {"scaling_cv2", "speedup", false, 1.7}};

void print_table(const Json& results, bool quick) {
  std::printf("\nmicromodels bench python%s\n", quick ? " (quick: rough figures)" : "");
  std::printf("%-42s %16s   %-10s\n", "figure", "value", "target");
  std::printf("%s\n", std::string(80, '-').c_str());
  for (const auto& [part, figures] : results.items()) {
    for (const auto& [key, value] : figures.items()) {
      if (!value.is_number()) continue;
      std::string target_text, status;
      for (const Target& target : kTargets) {
        if (part != target.part || key != target.key) continue;
        char text[32];
        std::snprintf(text, sizeof text, "%s %g", target.at_most ? "<=" : ">=", target.bound);
        target_text = text;
        const double v = value.get<double>();
        status = (target.at_most ? v <= target.bound : v >= target.bound) ? "met" : "MISSED";
      }
      std::printf("%-42s %16.3f   %-10s %s\n", (part + "." + key).c_str(), value.get<double>(),
                  target_text.c_str(), status.c_str());
    }
  }
  std::fflush(stdout);
}

}  // namespace

int run_python_bench(const BenchOptions& options) {
  const std::filesystem::path dir = std::filesystem::temp_directory_path() /
                                    ("micromodels-bench-python-" + std::to_string(::getpid()));
  std::filesystem::create_directories(dir);
  std::ofstream(dir / "bench_stages.py") << kStages;
  Json results = Json::object();
  int status = 0;
  const auto python = [&](const std::string& stage_class) {
    return "type: python, params: { module: bench_stages, class: " + stage_class +
           ", path: " + dir.string() + " }";
  };
  const std::pair<const char*, std::function<Json()>> parts[] = {
      {"call", [&] { return bench_call(dir.string(), options.quick); }},
      {"scaling_cv2", [&] { return bench_scaling(options.quick, python("Blur")); }},
      {"scaling_pure_python", [&] { return bench_scaling(options.quick, python("Loop")); }},
      {"scaling_cpp", [&] {
         return bench_scaling(options.quick, "type: model.spin, blocking: true, params: { service_ms: 1.3 }");
       }}};
  for (const auto& [part, bench] : parts) {
    std::cerr << "bench python: " << part << "...\n";
    try {
      results[part] = bench();
    } catch (const std::exception& error) {
      std::cerr << "bench python: " << part << " failed: " << error.what() << '\n';
      results[part] = Json{{"error", error.what()}};
      status = 1;
    }
  }
  std::filesystem::remove_all(dir);
  print_table(results, options.quick);
  if (write_json_file(results, options.json_path, "bench python") != 0) return 1;
  return status;
}

}  // namespace micromodels::bench
