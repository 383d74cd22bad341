// `micromodels inspect FILE`: validate a pipeline without running it and print its graph.
#include <iostream>
#include <memory>

#include "commands.hpp"
#include "exit_codes.hpp"

namespace micromodels::cli {

namespace {

struct InspectOptions {
  PipelineOptions pipeline;
  bool dot = false;
};

}  // namespace

Command add_inspect_command(CLI::App& app) {
  auto options = std::make_shared<InspectOptions>();
  CLI::App* command =
      app.add_subcommand("inspect", "Validate a pipeline without running it and print its graph");
  add_pipeline_options(*command, options->pipeline);
  command->add_flag("--dot", options->dot, "Print the graph as Graphviz DOT instead of text");
  return {command, [options] {
            const Pipeline pipeline = load_pipeline(options->pipeline);
            std::cout << (options->dot ? pipeline.to_dot() : pipeline.to_text()) << std::flush;
            return kExitOk;
          }};
}

}  // namespace micromodels::cli
