// `micromodels inspect FILE`: validate a pipeline without running it and print its graph.
#include <iostream>
#include <memory>
#include <string>

#include "micromodels/registry.hpp"

#include "commands.hpp"
#include "exit_codes.hpp"

namespace micromodels::cli {

namespace {

struct InspectOptions {
  PipelineOptions pipeline;
  bool dot = false;
  bool params = false;
};

// Each stage's params as its stage will get them: the file's and --set's values, then the
// defaults, marked, including those a stage's own code declares (a Python class's `params`).
void print_params(const Pipeline& pipeline) {
  std::cout << "params:\n";
  for (const StageConfig& stage : pipeline.stages()) {
    const StageType* type = Registry::global().find(stage.type);
    if (type == nullptr) continue;  // validate() has refused it already
    const Params params = type->resolve(stage.name, stage.params);
    std::string line;
    for (const auto& [name, value] : params.values()) {
      const std::string text = format_param(value);
      line += " " + name + "=" + (text.empty() ? "\"\"" : text);
      if (!stage.params.contains(name)) line += " (default)";
    }
    std::cout << "  " << stage.name << ":" << (line.empty() ? " none" : line) << "\n";
  }
}

}  // namespace

Command add_inspect_command(CLI::App& app) {
  auto options = std::make_shared<InspectOptions>();
  CLI::App* command =
      app.add_subcommand("inspect", "Validate a pipeline without running it and print its graph");
  add_pipeline_options(*command, options->pipeline);
  command->add_flag("--dot", options->dot, "Print the graph as Graphviz DOT instead of text");
  command->add_flag("--params", options->params,
                    "Also print every stage's params, defaults included (a Python class's own "
                    "too)");
  return {command, [options] {
            const Pipeline pipeline = load_pipeline(options->pipeline);
            std::cout << (options->dot ? pipeline.to_dot() : pipeline.to_text());
            if (options->params && !options->dot) print_params(pipeline);
            std::cout << std::flush;
            return kExitOk;
          }};
}

}  // namespace micromodels::cli
