// `micromodels run FILE`: runs a pipeline in this process, or, with a Redis broker, its sources
// and sinks (and the stages no worker serves) while workers serve the rest.
#include <cstdio>
#include <memory>

#include "micromodels/runner.hpp"
#ifdef MICROMODELS_HAS_REDIS
#include "micromodels/redis.hpp"
#endif

#include "commands.hpp"
#include "exit_codes.hpp"
#include "run_loop.hpp"

namespace micromodels::cli {

namespace {

struct RunOptions {
  PipelineOptions pipeline;
  BrokerOptions broker;
  std::string metrics_json;
  std::string trace;
  bool quiet = false;
  int workers = 0;
  ControlCliOptions control;
};

int run(RunOptions options, const CLI::App& command) {
  if (command.count("--workers") > 0) options.pipeline.workers = options.workers;
  Pipeline pipeline = load_pipeline(options.pipeline);
  if (!options.broker.broker.empty()) pipeline.set_broker(options.broker.broker);
  apply_trace_option(pipeline, options.trace);
  check_metrics_path(options.metrics_json);
  RunLoopOptions loop{.metrics_json = options.metrics_json,
                      .quiet = options.quiet,
                      .control = options.control,
                      .endpoint = {.inputs = stage_inputs(pipeline)}};
  if (pipeline.broker() == "memory") {
    refuse_broker_options(command, pipeline);
    Runner runner(pipeline);  // builds every stage: models load here
    return run_to_end(runner, loop);
  }
#ifdef MICROMODELS_HAS_REDIS
  const RedisOptions redis = redis_options(pipeline, options.broker);
  loop.endpoint.broker = broker_view(redis.url, pipeline.name());
  auto owned = std::make_unique<RedisTransport>(redis);
  RedisTransport& transport = *owned;
  Runner runner(pipeline, std::move(owned));
  loop.started = [&] {
    std::fprintf(stderr, "run: pipeline '%s' on %s; serving here: %s\n", pipeline.name().c_str(),
                 transport.name().c_str(), join_or_none(transport.served()).c_str());
    std::fflush(stderr);
  };
  loop.report = [&] { return transport.report(); };
  loop.elsewhere = [&] {
    try {
      return transport.served_elsewhere();
    } catch (const BrokerError&) {
      return std::vector<StageMetrics>{};  // the report said that Redis is unreachable
    }
  };
  return run_to_end(runner, loop);
#else
  throw ConfigError({}, "broker",
                    "broker '" + pipeline.broker() +
                        "': this build has no Redis support (configure with "
                        "-DMICROMODELS_BUILD_REDIS=ON and libhiredis-dev), or use --broker memory");
#endif
}

}  // namespace

Command add_run_command(CLI::App& app) {
  auto options = std::make_shared<RunOptions>();
  CLI::App* command = app.add_subcommand(
      "run", "Run a pipeline in this process, or across processes with --broker redis://...");
  add_pipeline_options(*command, options->pipeline);
  command->add_option("--metrics-json", options->metrics_json,
                      "Write the final metrics as JSON to this file");
  add_trace_option(*command, options->trace);
  command
      ->add_option("--workers", options->workers,
                   "Pool threads for CPU-bound stages (0: one per core; overrides the file)")
      ->check(between(0, 1024));
  command->add_flag("-q,--quiet", options->quiet, "Show no progress bar");
  add_control_options(*command, options->control);
  add_broker_options(*command, options->broker, true);
  return {command, [options, command] { return run(*options, *command); }};
}

}  // namespace micromodels::cli
