// `run --listen ADDR:PORT [--token TEXT]`: the control endpoint of a run.
#pragma once

#include <map>
#include <memory>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>

#include "micromodels/control/control_server.hpp"
#include "micromodels/pipeline.hpp"
#include "micromodels/run.hpp"

namespace micromodels::cli {

struct ControlCliOptions {
  std::string listen;  // empty: no endpoint
  std::string token;   // --token or MICROMODELS_TOKEN
};

/// --listen or --token cannot be served (a port in use, an address not this machine's, no token
/// off loopback): the command line itself is well formed, so the error says what to change
/// without the usage hint CLI11 adds to a parse error.
class EndpointRefused : public CLI::ValidationError {
 public:
  explicit EndpointRefused(const std::string& what) : CLI::ValidationError(what) {}
};

/// Adds --listen and --token to `command`. A non-loopback --listen without a token, or a port
/// in use, is refused while the command line is parsed, before any stage is built (exit 2).
void add_control_options(CLI::App& command, ControlCliOptions& options);

/// Each stage's inputs (Pipeline::inputs_of): the graph /status gives the dashboard.
[[nodiscard]] std::map<std::string, std::vector<std::string>> stage_inputs(
    const Pipeline& pipeline);

/// Starts the endpoint for `run` when --listen was given and prints "control: URL" on stderr;
/// null otherwise. `endpoint` carries what the run adds (its graph, its broker's view); its
/// listen address and token are set here. A port that cannot be bound is a ConfigError (exit 2:
/// nothing ran yet).
[[nodiscard]] std::unique_ptr<ControlServer> start_control(const ControlCliOptions& options,
                                                           Run& run, ControlOptions endpoint);

}  // namespace micromodels::cli
