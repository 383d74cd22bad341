// `micromodels worker FILE --broker URL --stages a,b`: serves stages of a distributed run, and
// `run --broker` (run_distributed): feeds the sources and collects the sinks.
#include <cstdio>
#include <fstream>
#include <iostream>
#include <memory>

#include "micromodels/redis.hpp"

#include "commands.hpp"
#include "control_options.hpp"
#include "exit_codes.hpp"
#include "interrupts.hpp"
#include "progress_bar.hpp"

namespace micromodels::cli {

namespace {

RedisOptions redis_options(const Pipeline& pipeline, const BrokerOptions& broker) {
  RedisOptions options;
  options.url = broker.broker.empty() ? pipeline.broker() : broker.broker;
  options.max_deliveries = broker.max_deliveries;
  options.reclaim_idle_ms = broker.reclaim_ms;
  options.reconnect_s = broker.reconnect_s;
  options.wire_images = broker.wire_images;
  options.jpeg_quality = broker.jpeg_quality;
  if (broker.serve == "all") options.serve = RedisOptions::Serve::all;
  if (broker.serve == "none") options.serve = RedisOptions::Serve::none;
  return options;
}

std::string join(const std::vector<std::string>& items) {
  std::string text;
  for (const std::string& item : items) text += (text.empty() ? "" : ",") + item;
  return text.empty() ? "none" : text;
}

std::string format_bytes(double bytes) {
  char text[32];
  if (bytes < 10e3) {
    std::snprintf(text, sizeof text, "%.0f B", bytes);
  } else if (bytes < 10e6) {
    std::snprintf(text, sizeof text, "%.1f KiB", bytes / 1024);
  } else {
    std::snprintf(text, sizeof text, "%.1f MiB", bytes / 1024 / 1024);
  }
  return text;
}

BrokerOptions worker_broker_defaults() {
  BrokerOptions broker;
  broker.reconnect_s = 0;  // a worker is a server: it waits for Redis to come back
  return broker;
}

struct WorkerOptions {
  std::string file;
  std::vector<std::string> sets;
  std::vector<std::string> stages;
  int consumers = 0;
  BrokerOptions broker = worker_broker_defaults();
  ControlCliOptions control;
};

// The control endpoint of a distributed process: metrics and status. Consumers are scaled by
// starting and stopping workers (or by the external autoscaler reading the lag), so scale and
// swap answer 501 here.
ControlHandlers redis_handlers(const RedisRunner& runner) {
  return ControlHandlers{.metrics = [&runner] { return runner.metrics(); }};
}

int worker(const WorkerOptions& options) {
  PipelineOptions pipeline_options;
  pipeline_options.file = options.file;
  pipeline_options.sets = options.sets;
  Pipeline pipeline = load_pipeline(pipeline_options);
  RedisOptions redis = redis_options(pipeline, options.broker);
  if (redis.url == "memory") {
    std::cerr << "error: a worker needs a Redis broker: pass --broker redis://host:port or set "
                 "broker: in "
              << options.file << '\n';
    return kExitConfigError;
  }
  redis.role = RedisOptions::Role::worker;
  redis.stages = options.stages;
  redis.consumers = options.consumers;
  RedisRunner runner(pipeline, redis);
  Interrupts interrupts;
  const auto control = start_control(options.control, redis_handlers(runner));
  runner.start();
  std::fprintf(stderr, "worker: serving %s of pipeline '%s' on %s (Ctrl-C to stop)\n",
               join(runner.served_stages()).c_str(), pipeline.name().c_str(), redis.url.c_str());
  std::fflush(stderr);
  while (!runner.wait_for(100)) {
    if (interrupts.count() > 0) runner.stop();
  }
  std::cout << runner.metrics().to_table() << std::flush;
  return kExitOk;
}

}  // namespace

int run_distributed(const Pipeline& pipeline, const BrokerOptions& broker,
                    const std::string& metrics_json, bool quiet,
                    const ControlCliOptions& control_options) {
  std::ofstream metrics_file;
  if (!metrics_json.empty()) {
    metrics_file.open(metrics_json);
    if (!metrics_file) {
      std::cerr << "error: cannot write metrics to '" << metrics_json << "'\n";
      return kExitConfigError;
    }
  }
  RedisRunner runner(pipeline, redis_options(pipeline, broker));
  bool interrupted = false;
  {
    Interrupts interrupts;
    ProgressBar progress(quiet);
    const auto control = start_control(control_options, redis_handlers(runner));
    runner.start();
    progress.clear();
    std::fprintf(stderr, "run: pipeline '%s' on %s; serving here: %s\n", pipeline.name().c_str(),
                 (broker.broker.empty() ? pipeline.broker() : broker.broker).c_str(),
                 join(runner.served_stages()).c_str());
    std::fflush(stderr);
    while (!runner.wait_for(100)) {
      if (interrupts.count() > 0 && !interrupted) {
        interrupted = true;
        progress.clear();
        std::fprintf(stderr, "stopping: the sources stop, in-flight packets drain (Ctrl-C again "
                             "to abort)\n");
        std::fflush(stderr);
        runner.stop();
      }
      progress.update(runner.retired_packets(), runner.expected_packets());
    }
    progress.finish(runner.retired_packets(), runner.expected_packets());
  }
  const MetricsSnapshot metrics = runner.metrics();
  std::cout << metrics.to_table();
  std::cout << "\nbytes per hop (all processes):\n";
  for (const HopBytes& hop : runner.hop_bytes()) {
    const double per_packet =
        hop.packets > 0 ? static_cast<double>(hop.bytes) / static_cast<double>(hop.packets) : 0;
    std::printf("  %-14s -> %-14s %10llu packets %12s  %12s/packet\n", hop.from.c_str(),
                hop.to.c_str(), static_cast<unsigned long long>(hop.packets),
                format_bytes(static_cast<double>(hop.bytes)).c_str(),
                format_bytes(per_packet).c_str());
  }
  std::printf("dead-lettered: %llu\n", static_cast<unsigned long long>(runner.dead_lettered()));
  std::fflush(stdout);
  if (metrics_file.is_open()) {
    metrics_file << metrics.to_json();
    metrics_file.close();
    if (!metrics_file) {
      std::cerr << "error: failed writing metrics to '" << metrics_json << "'\n";
      return kExitFailure;
    }
  }
  return interrupted ? kExitInterrupted : kExitOk;
}

Command add_worker_command(CLI::App& app) {
  auto options = std::make_shared<WorkerOptions>();
  CLI::App* command = app.add_subcommand(
      "worker", "Serve stages of a pipeline that runs on Redis, from this machine");
  command->add_option("file", options->file, "Pipeline description (YAML), as `run` uses it")
      ->required()
      ->check(CLI::ExistingFile);
  command->add_option("--set", options->sets, "Set a stage parameter (repeatable)")
      ->allow_extra_args(false);
  command->add_option("--stages", options->stages, "Stages to serve, comma-separated")
      ->required()
      ->delimiter(',');
  command
      ->add_option("--consumers", options->consumers,
                   "Consumers per served stage (default: the pipeline's)")
      ->check(CLI::Range(1, 1024));
  add_broker_options(*command, options->broker, false);
  add_control_options(*command, options->control);
  return {command, [options] { return worker(*options); }};
}

}  // namespace micromodels::cli
