// `micromodels`: run, inspect and benchmark micro-model pipelines from the command line.
#include <algorithm>
#include <iostream>
#include <memory>
#include <string>
#include <vector>

#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>

#include "micromodels/params.hpp"
#include "micromodels/pipeline.hpp"
#include "micromodels/registry.hpp"
#ifdef MICROMODELS_HAS_PYTHON
#include "micromodels/python.hpp"
#endif
#ifdef MICROMODELS_HAS_REDIS
#include "micromodels/redis.hpp"
#endif
#ifdef MICROMODELS_HAS_VISION
#include "micromodels/vision/vision_stages.hpp"
#endif

#include "commands.hpp"
#include "control_options.hpp"
#include "detail/suggest.hpp"
#include "exit_codes.hpp"

namespace micromodels::cli {

namespace {

constexpr const char* kFooter = R"(Exit codes:
  0    success
  1    runtime failure; run, worker: also a stage that failed every packet it took
  2    configuration or command-line error (nothing ran); ctl: request refused
  3    a server could not be reached: the control endpoint (ctl, top) or Redis (distributed run),
       or Redis refused this process (a wrong password, a command its ACL denies)
  4    Redis cannot keep the run's data: its queues were lost (restarted without persistence),
       or one write is larger than its maxmemory
  130  interrupted (SIGINT/SIGTERM)

See docs/cli.md for examples.)";

// One error rule for every command: configuration mistakes are the user's to fix and name the
// file, line and key; anything else is a failure of the run.
int run_command(const Command& command) {
  try {
    return command.run();
  } catch (const ConfigError& e) {
    std::cerr << "error: " << e.what() << '\n';
    return kExitConfigError;
  } catch (const ParamError& e) {
    std::cerr << "error: " << e.what() << '\n';
    return kExitConfigError;
#ifdef MICROMODELS_HAS_REDIS
  } catch (const BrokerError& e) {
    std::cerr << "error: " << e.what() << '\n';
    return e.kind() == BrokerError::Kind::lost ? kExitBrokerLost : kExitUnreachable;
#endif
  } catch (const std::exception& e) {
    std::cerr << "error: " << e.what() << '\n';
    return kExitFailure;
  }
}

// Builds the command line, parses it and runs the chosen command; returns the exit code.
int run_tool(int argc, char** argv) {
  // Log lines (decisions, files written) go to stderr: stdout carries what a command prints
  // (the metrics table, JSON), ready for a pipe.
  spdlog::set_default_logger(spdlog::stderr_color_mt("micromodels"));
  spdlog::set_pattern("[%Y-%m-%d %H:%M:%S.%e] [%l] %v");
#ifdef MICROMODELS_HAS_VISION
  // Before any command reads a pipeline, so that every stage type is known.
  vision::register_stages(Registry::global());
#endif
#ifdef MICROMODELS_HAS_PYTHON
  register_python_stages(Registry::global());
#endif

  CLI::App app("Run micro-model AI pipelines.", "micromodels");
  app.set_version_flag("--version", "micromodels " MICROMODELS_VERSION);
  app.footer(kFooter);
  app.require_subcommand(1);
  // Every message to the user starts with "error:", whether the command line or the pipeline
  // was wrong.
  app.failure_message([](const CLI::App* failed, const CLI::Error& e) {
    return "error: " + CLI::FailureMessage::simple(failed, e);
  });

  std::vector<Command> commands;
  commands.push_back(add_run_command(app));
  commands.push_back(add_inspect_command(app));
  commands.push_back(add_types_command(app));
  commands.push_back(add_trace_command(app));
#ifdef MICROMODELS_HAS_REDIS
  commands.push_back(add_worker_command(app));
  commands.push_back(add_status_command(app));
#endif
#ifdef MICROMODELS_HAS_BENCH
  commands.push_back(add_bench_command(app));
#endif
#ifdef MICROMODELS_HAS_EVAL
  commands.push_back(add_eval_command(app));
#endif
  commands.push_back(add_ctl_command(app));
  commands.push_back(add_top_command(app));

  // `micromodels help [COMMAND]`, for those who type it before trying --help.
  std::string help_topic;
  CLI::App* help = app.add_subcommand("help", "Show help for the tool or for one command");
  std::vector<std::string> topics;
  for (const Command& command : commands) topics.push_back(command.app->get_name());
  help->add_option("command", help_topic, "Command to describe")->check(CLI::IsMember(topics));

  // A command line that names no known command: CLI11 would only say that one is required.
  const std::string first = argc > 1 ? argv[1] : "";
  if (!first.starts_with('-')) {
    std::vector<std::string> names;
    for (const CLI::App* command : app.get_subcommands({})) names.push_back(command->get_name());
    if (std::find(names.begin(), names.end(), first) == names.end()) {
      std::cerr << "error: "
                << (first.empty() ? "a command is required; valid commands: " + detail::join_names(names)
                                  : "unknown command '" + first + "'" +
                                        detail::unknown_hint(first, names, "commands"))
                << " (micromodels --help describes them)\n";
      return kExitConfigError;
    }
  }

  try {
    app.parse(argc, argv);
  } catch (const EndpointRefused& e) {
    std::cerr << "error: " << e.what() << '\n';
    return kExitConfigError;
  } catch (const CLI::ParseError& e) {
    // --help and --version arrive here too, with exit code 0.
    return app.exit(e) == 0 ? kExitOk : kExitConfigError;
  }

  if (help->parsed()) {
    // The parent's name as prefix gives "Usage: micromodels run", as `run --help` prints it.
    // The tool's own help from its formatter: app.help() would describe the selected `help`.
    std::cout << (help_topic.empty()
                      ? app.get_formatter()->make_help(&app, app.get_name(), CLI::AppFormatMode::Normal)
                      : app.get_subcommand(help_topic)->help(app.get_name()));
    return kExitOk;
  }
  for (const Command& command : commands) {
    if (command.app->parsed()) return run_command(command);
  }
  return kExitConfigError;  // unreachable: require_subcommand(1) rejected the command line
}

}  // namespace

}  // namespace micromodels::cli

int main(int argc, char** argv) { return micromodels::cli::run_tool(argc, argv); }
