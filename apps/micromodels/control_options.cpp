#include "control_options.hpp"

#include <utility>

#include <cstdio>
#include <stdexcept>

#include "micromodels/pipeline.hpp"

namespace micromodels::cli {

void add_control_options(CLI::App& command, ControlCliOptions& options) {
  command.add_option("--listen", options.listen,
                     "Serve the control endpoint (metrics, status, scale, swap) on ADDR:PORT; "
                     "port 0 picks a free one (see docs/operations.md)");
  command
      .add_option("--token", options.token,
                  "Token clients must send (Authorization: Bearer); needed off loopback")
      ->envname("MICROMODELS_TOKEN");
  command.parse_complete_callback([&options] {
    if (options.listen.empty()) return;
    // Before any stage is built: a run that cannot serve its endpoint must not start work
    // (a sink would already have truncated its output file).
    try {
      probe_control_options({.listen = options.listen, .token = options.token});
    } catch (const std::exception& e) {
      throw EndpointRefused(e.what());
    }
  });
}

std::map<std::string, std::vector<std::string>> stage_inputs(const Pipeline& pipeline) {
  std::map<std::string, std::vector<std::string>> inputs;
  for (std::size_t i = 0; i < pipeline.stages().size(); ++i) {
    inputs[pipeline.stages()[i].name] = pipeline.inputs_of(i);
  }
  return inputs;
}

std::unique_ptr<ControlServer> start_control(const ControlCliOptions& options, Run& run,
                                             ControlOptions endpoint) {
  if (options.listen.empty()) return nullptr;
  endpoint.listen = options.listen;
  endpoint.token = options.token;
  std::unique_ptr<ControlServer> server;
  try {
    server = std::make_unique<ControlServer>(run, std::move(endpoint));
  } catch (const std::exception& e) {
    throw ConfigError({}, "listen", e.what());
  }
  std::fprintf(stderr, "control: %s\n", server->url().c_str());
  std::fflush(stderr);
  return server;
}

}  // namespace micromodels::cli
