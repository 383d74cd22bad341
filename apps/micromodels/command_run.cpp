// `micromodels run FILE`: run a pipeline in this process, show progress, report metrics.
#include <cstdio>
#include <fstream>
#include <iostream>
#include <memory>

#include "micromodels/runner.hpp"

#include "commands.hpp"
#include "control_options.hpp"
#include "exit_codes.hpp"
#include "interrupts.hpp"
#include "progress_bar.hpp"

namespace micromodels::cli {

namespace {

struct RunOptions {
  PipelineOptions pipeline;
  BrokerOptions broker;
  std::string metrics_json;
  bool quiet = false;
  int workers = 0;
  ControlCliOptions control;
};

std::uint64_t in_flight(const MetricsSnapshot& metrics) {
  return metrics.packets_in > metrics.packets_out ? metrics.packets_in - metrics.packets_out : 0;
}

int run(RunOptions options, const CLI::App& command) {
  if (command.count("--workers") > 0) options.pipeline.workers = options.workers;
  Pipeline pipeline = load_pipeline(options.pipeline);
  if (!options.broker.broker.empty()) pipeline.set_broker(options.broker.broker);
  if (pipeline.broker() != "memory") {
#ifdef MICROMODELS_HAS_REDIS
    return run_distributed(pipeline, options.broker, options.metrics_json, options.quiet,
                           options.control);
#else
    std::cerr << "error: broker '" << pipeline.broker()
              << "': this build has no Redis support (configure with -DMICROMODELS_BUILD_REDIS=ON "
                 "and libhiredis-dev), or use --broker memory\n";
    return kExitConfigError;
#endif
  }

  // Opened before the run so that a wrong path fails now, not after an hour of work.
  std::ofstream metrics_file;
  if (!options.metrics_json.empty()) {
    metrics_file.open(options.metrics_json);
    if (!metrics_file) {
      std::cerr << "error: cannot write metrics to '" << options.metrics_json << "'\n";
      return kExitConfigError;
    }
  }

  Runner runner(pipeline);  // builds every stage: models load here
  bool interrupted = false;
  {
    Interrupts interrupts;
    ProgressBar progress(options.quiet);
    const auto control = start_control(options.control, runner);  // stops when the run has ended
    runner.start();
    // Polling at 10 Hz drives the progress bar and notices signals; the handler only counts.
    while (!runner.wait_for(100)) {
      if (interrupts.count() > 0 && !interrupted) {
        interrupted = true;
        const std::uint64_t draining = in_flight(runner.metrics());
        interrupts.set_in_flight(draining);
        progress.clear();
        std::fprintf(stderr, "stopping: draining %llu in-flight packets (Ctrl-C again to abort)\n",
                     static_cast<unsigned long long>(draining));
        std::fflush(stderr);
        runner.stop();
      } else if (interrupted) {
        interrupts.set_in_flight(in_flight(runner.metrics()));
      }
      progress.update(runner.retired_packets(), runner.expected_packets());
    }
    progress.finish(runner.retired_packets(), runner.expected_packets());
  }

  const MetricsSnapshot metrics = runner.metrics();
  std::cout << metrics.to_table() << std::flush;
  if (metrics_file.is_open()) {
    metrics_file << metrics.to_json();
    metrics_file.close();
    if (!metrics_file) {
      std::cerr << "error: failed writing metrics to '" << options.metrics_json << "'\n";
      return kExitFailure;
    }
  }
  return interrupted ? kExitInterrupted : kExitOk;
}

}  // namespace

Command add_run_command(CLI::App& app) {
  auto options = std::make_shared<RunOptions>();
  CLI::App* command = app.add_subcommand(
      "run", "Run a pipeline in this process, or across processes with --broker redis://...");
  add_pipeline_options(*command, options->pipeline);
  command->add_option("--metrics-json", options->metrics_json,
                      "Write the final metrics as JSON to this file");
  command
      ->add_option("--workers", options->workers,
                   "Pool threads for CPU-bound stages (0: one per core; overrides the file)")
      ->check(CLI::NonNegativeNumber);
  command->add_flag("-q,--quiet", options->quiet, "Show no progress bar");
  add_control_options(*command, options->control);
  add_broker_options(*command, options->broker, true);
  return {command, [options, command] { return run(*options, *command); }};
}

}  // namespace micromodels::cli
