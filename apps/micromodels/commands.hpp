// The subcommands of `micromodels`, each in its own file, and what they share.
#pragma once

#include <functional>
#include <optional>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>

#include "micromodels/control/control_server.hpp"
#include "micromodels/pipeline.hpp"
#ifdef MICROMODELS_HAS_REDIS
#include "micromodels/redis.hpp"
#endif

namespace micromodels::cli {

/// A subcommand registered on the application. `run` is called after the command line parsed
/// and `app` was the chosen subcommand; it returns the exit code and may throw ConfigError,
/// ParamError or any std::exception, which main() turns into a message and an exit code.
struct Command {
  CLI::App* app = nullptr;
  std::function<int()> run;
};

/// A number from `min` to `max`: "must be from 10 to 3600000, got 1" (CLI::Range would print
/// every digit of its bounds).
[[nodiscard]] CLI::Validator between(double min, double max);

Command add_run_command(CLI::App& app);
Command add_inspect_command(CLI::App& app);
Command add_types_command(CLI::App& app);
Command add_trace_command(CLI::App& app);
#ifdef MICROMODELS_HAS_REDIS
Command add_worker_command(CLI::App& app);
Command add_status_command(CLI::App& app);
#endif
#ifdef MICROMODELS_HAS_BENCH
Command add_bench_command(CLI::App& app);
#endif
#ifdef MICROMODELS_HAS_EVAL
Command add_eval_command(CLI::App& app);
#endif
// Live operations: a running pipeline's control endpoint (run --listen), changed and watched.
Command add_ctl_command(CLI::App& app);
Command add_top_command(CLI::App& app);

/// Adds --plugin (repeatable) to `command`, storing the paths into `plugins`.
void add_plugin_option(CLI::App& command, std::vector<std::string>& plugins);
/// Loads each plugin into the global registry. Throws ConfigError naming the file.
void load_plugins(const std::vector<std::string>& plugins);

/// A pipeline file and the command-line changes to it, shared by `run`, `inspect` and `worker`.
struct PipelineOptions {
  std::string file;
  std::vector<std::string> plugins;    // --plugin, loaded before the file's `plugins:`
  std::vector<std::string> sets;       // "stage.param=value"
  std::vector<std::string> consumers;  // "stage=N"
  std::optional<int> workers;
  bool autoscale = false;              // --autoscale: on, with the file's settings or defaults
};

struct ControlCliOptions;  // control_options.hpp

/// How a process reaches the broker of a distributed run (`run --broker`, `worker`).
struct BrokerOptions {
  std::string broker;          // "" : the pipeline file's `broker:`
  std::string serve = "missing";
  int max_deliveries = 3;
  double reclaim_ms = 1000;
  double reconnect_s = 10;
  std::string wire_images;     // "" : the pipeline file's `wire.images`
  int jpeg_quality = 0;        // 0 : the pipeline file's `wire.jpeg_quality`
};
/// Adds --broker and the delivery options; `run` also gets --serve.
void add_broker_options(CLI::App& command, BrokerOptions& options, bool run);
/// A run in this process (`broker: memory`) given options that only a run on Redis reads: a
/// ConfigError naming them, rather than ignoring them.
void refuse_broker_options(const CLI::App& command, const Pipeline& pipeline);
#ifdef MICROMODELS_HAS_REDIS
/// The Redis options --broker and the delivery options give (`run --broker`, `worker`).
[[nodiscard]] RedisOptions redis_options(const Pipeline& pipeline, const BrokerOptions& broker);
/// The control endpoint's view of the broker: `micromodels status` of this pipeline and its
/// live processes, read when the endpoint asks (about once a second).
[[nodiscard]] std::function<BrokerView()> broker_view(const std::string& url,
                                                      const std::string& pipeline);
/// "a,b", or "none".
[[nodiscard]] std::string join_or_none(const std::vector<std::string>& items);
#endif

/// Adds --trace FILE (`run`, `worker`): per-packet timings as Chrome trace-event JSON.
void add_trace_option(CLI::App& command, std::string& path);
/// Traces `pipeline` into `path` when given, keeping the file's trace.every and trace.max_mb.
void apply_trace_option(Pipeline& pipeline, const std::string& path);

/// Adds FILE, --plugin, --set, --consumers and --autoscale to `command`, storing into `options`.
void add_pipeline_options(CLI::App& command, PipelineOptions& options);
/// Reads the file, loads the plugins (--plugin, then the file's `plugins:`), applies the changes
/// in command-line order, validates against the global registry. Throws ConfigError (or
/// ParamError) naming the file, line and key.
[[nodiscard]] Pipeline load_pipeline(const PipelineOptions& options);

}  // namespace micromodels::cli
