// FILE, --plugin, --set, --consumers and --autoscale: how the command line names a pipeline and
// changes it.
#include <charconv>
#include <string_view>

#include "micromodels/plugin.hpp"
#include "micromodels/registry.hpp"

#include "commands.hpp"
#include "detail/config_checks.hpp"

namespace micromodels::cli {

namespace {

// Rejects malformed assignments while parsing the command line, so that the message points at
// the option rather than at the pipeline.
CLI::Validator assignment_validator() {
  return CLI::Validator(
      [](std::string& text) -> std::string {
        const auto equals = text.find('=');
        const auto dot = text.find('.');
        if (equals == std::string::npos || dot == std::string::npos || dot == 0 || dot > equals ||
            dot + 1 == equals) {
          return "expected stage.param=value, got '" + text + "'";
        }
        return {};
      },
      "STAGE.PARAM=VALUE");
}

struct ConsumersAssignment {
  std::string_view stage;
  int consumers = 0;
};

std::optional<ConsumersAssignment> parse_consumers(std::string_view text) {
  const auto equals = text.rfind('=');
  if (equals == std::string_view::npos || equals == 0) return std::nullopt;
  const std::string_view number = text.substr(equals + 1);
  int consumers = 0;
  const auto [end, error] =
      std::from_chars(number.data(), number.data() + number.size(), consumers);
  if (error != std::errc() || end != number.data() + number.size() || consumers < 1) {
    return std::nullopt;
  }
  return ConsumersAssignment{text.substr(0, equals), consumers};
}

CLI::Validator consumers_validator() {
  return CLI::Validator(
      [](std::string& text) -> std::string {
        return parse_consumers(text) ? std::string()
                                     : "expected stage=N with N at least 1, got '" + text + "'";
      },
      "STAGE=N");
}

}  // namespace

CLI::Validator between(double min, double max) {
  return CLI::Validator(
      [min, max](std::string& text) -> std::string {
        double value = 0;
        const auto [end, error] = std::from_chars(text.data(), text.data() + text.size(), value);
        if (error != std::errc() || end != text.data() + text.size() || !(value >= min) ||
            !(value <= max)) {
          return "must be a number from " + detail::plain_number(min) + " to " +
                 detail::plain_number(max) + ", got '" + text + "'";
        }
        return {};
      },
      "");
}

void add_pipeline_options(CLI::App& command, PipelineOptions& options) {
  command.add_option("file", options.file, "Pipeline description (YAML)")
      ->required()
      ->check(CLI::ExistingFile);
  add_plugin_option(command, options.plugins);
  // allow_extra_args(false): each --set takes one value, so `--set a.b=1 FILE` leaves FILE alone.
  command
      .add_option("--set", options.sets, "Set a stage parameter, overriding the file (repeatable)")
      ->allow_extra_args(false)
      ->check(assignment_validator());
  command
      .add_option("--consumers", options.consumers,
                  "Set a stage's consumer count, overriding the file (repeatable)")
      ->allow_extra_args(false)
      ->check(consumers_validator());
  command.add_flag("--autoscale", options.autoscale,
                   "Move consumers to the stage that limits throughput while running (the file's "
                   "autoscale: settings, or the defaults)");
}

void add_trace_option(CLI::App& command, std::string& path) {
  command
      .add_option("--trace", path,
                  "Write per-packet timings of this process (queue wait, service time, thread) "
                  "as Chrome trace-event JSON to this file, for Perfetto (overrides the "
                  "file's trace.path)")
      ->check(CLI::Validator(
          [](const std::string& file) -> std::string {
            return file.empty() ? "an empty path: give the file to write, e.g. --trace trace.json"
                                : "";
          },
          "FILE"));
}

void apply_trace_option(Pipeline& pipeline, const std::string& path) {
  if (path.empty()) return;
  TraceConfig trace = pipeline.trace();
  trace.path = path;
  pipeline.set_trace(std::move(trace));
}

Pipeline load_pipeline(const PipelineOptions& options) {
  Pipeline pipeline = Pipeline::from_yaml_file(options.file);
  load_plugins(options.plugins);
  for (const PluginPath& plugin : pipeline.plugins()) {
    load_plugin(plugin.path, Registry::global(), plugin.where);
  }
  for (const std::string& assignment : options.sets) pipeline.set_param(assignment);
  for (const std::string& assignment : options.consumers) {
    const auto parsed = parse_consumers(assignment);  // checked by the validator already
    pipeline.set_consumers(parsed->stage, parsed->consumers, "--consumers");
  }
  if (options.workers) pipeline.set_workers(*options.workers);
  if (options.autoscale && !pipeline.autoscale().enabled) pipeline.set_autoscale({.enabled = true});
  pipeline.validate(Registry::global());
  return pipeline;
}

}  // namespace micromodels::cli

namespace micromodels::cli {

void add_broker_options(CLI::App& command, BrokerOptions& options, bool run) {
  command
      .add_option("--broker", options.broker,
                  "memory, or redis://host:port[/db] to run across processes (overrides the "
                  "file's broker:)")
      ->check(CLI::Validator(
          [](std::string& text) -> std::string {
            // rediss:// goes on to the transport, which says how to reach a TLS Redis.
            if (text == "memory" || text.starts_with("redis://") || text.starts_with("rediss://")) {
              return {};
            }
            return "expected memory or redis://host:port[/db], got '" + text + "'";
          },
          "URL"));
  command
      .add_option("--max-deliveries", options.max_deliveries,
                  "Redis: deliveries of a packet whose processes died with it before it goes to "
                  "the dead-letter stream")
      ->check(between(1, 1000));
  command
      .add_option("--reclaim-ms", options.reclaim_ms,
                  "Redis: least idle time before a dead consumer's packets are taken over")
      ->check(between(10, 3600e3));
  command
      .add_option("--reconnect-s", options.reconnect_s,
                  "Redis: how long to retry a lost connection before giving up (0: for ever)")
      ->check(between(0, 604800));
  command
      .add_option("--wire-images", options.wire_images,
                  "Redis: how this process sends images to the next stage: raw, png (lossless) or "
                  "jpeg (default: the pipeline's wire.images, else raw)")
      ->check(CLI::IsMember({"raw", "png", "jpeg"}));
  command
      .add_option("--jpeg-quality", options.jpeg_quality,
                  "Redis: JPEG quality, 1-100 (default: the pipeline's wire.jpeg_quality, else 90)")
      ->check(between(1, 100));
  if (run) {
    command
        .add_option("--serve", options.serve,
                    "Redis: stages this process serves: missing (those no worker serves), all, "
                    "none")
        ->check(CLI::IsMember({"missing", "all", "none"}));
  }
}

void refuse_broker_options(const CLI::App& command, const Pipeline& pipeline) {
  std::string given;
  for (const char* name : {"--serve", "--max-deliveries", "--reclaim-ms", "--reconnect-s",
                           "--wire-images", "--jpeg-quality"}) {
    if (command.count(name) > 0) given += (given.empty() ? "" : ", ") + std::string(name);
  }
  if (given.empty()) return;
  const std::string them = given.find(',') == std::string::npos ? "it" : "them";
  throw ConfigError({}, "broker",
                    given + ": only a run on Redis reads " + them + ", and pipeline '" +
                        pipeline.name() +
                        "' runs in this process (broker: memory); add --broker redis://host:port, "
                        "or leave " +
                        them + " out");
}

}  // namespace micromodels::cli
