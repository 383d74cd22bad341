// `run --listen ADDR:PORT [--token TEXT]`: the control endpoint of a run.
#pragma once

#include <memory>
#include <string>

#include <CLI/CLI.hpp>

#include "micromodels/control/control_server.hpp"
#include "micromodels/run.hpp"

namespace micromodels::cli {

struct ControlCliOptions {
  std::string listen;  // empty: no endpoint
  std::string token;   // --token or MICROMODELS_TOKEN
};

/// Adds --listen and --token to `command`. A non-loopback --listen without a token, or a port
/// in use, is refused while the command line is parsed, before any stage is built (exit 2).
void add_control_options(CLI::App& command, ControlCliOptions& options);

/// Starts the endpoint for `run` when --listen was given and prints "control: URL" on stderr;
/// null otherwise. A port that cannot be bound is a ConfigError (exit 2: nothing ran yet).
[[nodiscard]] std::unique_ptr<ControlServer> start_control(const ControlCliOptions& options,
                                                           Run& run);

}  // namespace micromodels::cli
