// `micromodels status --broker URL`: per stage backlog, pending, consumers, rate and counts.
#include <iostream>
#include <memory>

#include "micromodels/redis.hpp"

#include "commands.hpp"
#include "exit_codes.hpp"

namespace micromodels::cli {

namespace {

struct StatusOptions {
  std::string broker;
  std::string pipeline;
  bool json = false;
  double interval_s = 1;
};

}  // namespace

Command add_status_command(CLI::App& app) {
  auto options = std::make_shared<StatusOptions>();
  CLI::App* command = app.add_subcommand(
      "status", "Show each stage's queue on Redis: backlog, pending, rate, counts");
  command->add_option("--broker", options->broker, "redis://host:port[/db]")->required();
  command->add_option("--pipeline", options->pipeline, "Only this pipeline");
  command->add_flag("--json", options->json, "Print JSON instead of a table");
  command
      ->add_option("--interval", options->interval_s,
                   "Seconds between the two samples the rate is taken from")
      ->check(between(0, 60));
  return {command, [options] {
            const auto status = redis_status(options->broker, options->pipeline, options->interval_s);
            std::cout << (options->json ? status_json(status) : status_table(status)) << std::flush;
            return kExitOk;
          }};
}

}  // namespace micromodels::cli
