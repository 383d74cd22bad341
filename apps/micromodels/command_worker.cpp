// `micromodels worker FILE --broker URL --stages a,b`: serves stages of a pipeline that runs on
// Redis, on the same engine as `run` (consumers, scale, swap, metrics, autoscale).
#include <algorithm>
#include <cstdio>
#include <iostream>
#include <memory>

#include "micromodels/redis.hpp"
#include "micromodels/runner.hpp"

#include "commands.hpp"
#include "exit_codes.hpp"
#include "run_loop.hpp"

namespace micromodels::cli {

namespace {

BrokerOptions worker_broker_defaults() {
  BrokerOptions broker;
  broker.reconnect_s = 0;  // a worker is a server: it waits for Redis to come back
  return broker;
}

struct WorkerOptions {
  std::string file;
  std::vector<std::string> plugins;
  std::vector<std::string> sets;
  std::vector<std::string> stages;
  int consumers = 0;
  BrokerOptions broker = worker_broker_defaults();
  std::string metrics_json;
  std::string trace;
  ControlCliOptions control;
};

int worker(const WorkerOptions& options) {
  PipelineOptions pipeline_options;
  pipeline_options.file = options.file;
  pipeline_options.plugins = options.plugins;
  pipeline_options.sets = options.sets;
  Pipeline pipeline = load_pipeline(pipeline_options);
  // The file's trace.path is the run process's; a worker writes its own part only with --trace.
  if (options.trace.empty()) pipeline.set_trace({});
  apply_trace_option(pipeline, options.trace);
  RedisOptions redis = redis_options(pipeline, options.broker);
  if (redis.url == "memory") {
    throw ConfigError({}, "broker",
                      "a worker needs a Redis broker: pass --broker redis://host:port or set "
                      "broker: in " + options.file);
  }
  redis.role = RedisOptions::Role::worker;
  redis.stages = options.stages;
  // --consumers: this process's consumers for each stage it serves.
  // (A stage the pipeline does not have is refused by the transport, with the ones it has.)
  for (const StageConfig& stage : pipeline.stages()) {
    const bool served = std::find(options.stages.begin(), options.stages.end(), stage.name) !=
                        options.stages.end();
    if (options.consumers > 0 && served) pipeline.set_consumers(stage.name, options.consumers);
  }
  check_metrics_path(options.metrics_json);
  const std::string url = redis.url;
  auto owned = std::make_unique<RedisTransport>(std::move(redis));
  RedisTransport& transport = *owned;
  Runner runner(pipeline, std::move(owned));
  RunLoopOptions loop{
      .metrics_json = options.metrics_json,
      .progress = false,
      .sources_and_sinks = false,
      .control = options.control,
      .endpoint = {.inputs = stage_inputs(pipeline), .broker = broker_view(url, pipeline.name())}};
  loop.started = [&] {
    std::fprintf(stderr, "worker: serving %s of pipeline '%s' on %s (Ctrl-C to stop)\n",
                 join_or_none(transport.served()).c_str(), pipeline.name().c_str(),
                 transport.name().c_str());
    std::fflush(stderr);
  };
  loop.report = [&] { return transport.round_trip(); };
  return run_to_end(runner, loop, /*interrupted_is_ok=*/true);
}

}  // namespace

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

std::function<BrokerView()> broker_view(const std::string& url, const std::string& pipeline) {
  return [url, pipeline] {
    BrokerView view;
    for (const StageStatus& s : redis_status(url, pipeline, 0)) {
      view.stages.push_back({.stage = s.stage,
                             .backlog = s.lag,
                             .pending = s.pending,
                             .consumers = s.consumers,
                             .processed = s.processed,
                             .failed = s.failed,
                             .dropped = s.dropped});
    }
    for (ProcessStatus& w : redis_processes(url, pipeline)) {
      view.processes.push_back({.id = std::move(w.id),
                              .consumers = std::move(w.stages),
                              .heartbeat_age_s = w.heartbeat_age_s});
    }
    return view;
  };
}

std::string join_or_none(const std::vector<std::string>& items) {
  std::string text;
  for (const std::string& item : items) text += (text.empty() ? "" : ",") + item;
  return text.empty() ? "none" : text;
}

Command add_worker_command(CLI::App& app) {
  auto options = std::make_shared<WorkerOptions>();
  CLI::App* command = app.add_subcommand(
      "worker", "Serve stages of a pipeline that runs on Redis, from this machine");
  command->add_option("file", options->file, "Pipeline description (YAML), as `run` uses it")
      ->required()
      ->check(CLI::ExistingFile);
  add_plugin_option(*command, options->plugins);
  command->add_option("--set", options->sets, "Set a stage parameter (repeatable)")
      ->allow_extra_args(false);
  command->add_option("--stages", options->stages, "Stages to serve, comma-separated")
      ->required()
      ->delimiter(',');
  command
      ->add_option("--consumers", options->consumers,
                   "Consumers of each served stage in this process (default: the pipeline's)")
      ->check(between(1, 1024));
  command->add_option("--metrics-json", options->metrics_json,
                      "Write the final metrics as JSON to this file");
  add_trace_option(*command, options->trace);
  add_broker_options(*command, options->broker, false);
  add_control_options(*command, options->control);
  return {command, [options] { return worker(*options); }};
}

}  // namespace micromodels::cli
