// What `micromodels` returns to the shell. docs/cli.md documents the same table.
#pragma once

namespace micromodels::cli {

/// The command did what was asked. A run that finished with failed or dropped packets still
/// succeeded as a run: those are counted in the metrics (and a warning says where they failed),
/// unless a stage failed every packet it took (kExitFailure).
inline constexpr int kExitOk = 0;
/// Something went wrong while running: a stage could not be built at run time, a stage failed
/// every packet it took, an output could not be written, an unexpected exception.
inline constexpr int kExitFailure = 1;
/// Nothing ran because the input was wrong: the command line, the pipeline file (YAML, stage
/// types, parameters, graph) or an output path. The message names the file, line and key.
inline constexpr int kExitConfigError = 2;
/// A server the command needs could not be reached. `ctl` and `top`: no control endpoint
/// answered at the URL (the run ended, the port is wrong, or it timed out); a request the endpoint
/// refused is kExitConfigError, it changed nothing. A distributed run: Redis could not be reached,
/// at start or for longer than the reconnect window, or refused this process (a wrong or missing
/// password, a command or key its ACL denies); the message names host:port and what to do.
inline constexpr int kExitUnreachable = 3;
/// Redis came back without the run's queues (restarted without persistence, or another run of
/// the same pipeline reset them): the run stopped rather than deliver an incomplete output.
inline constexpr int kExitBrokerLost = 4;
/// Stopped by SIGINT or SIGTERM (128 + SIGINT, as shells report a Ctrl-C). After one signal the
/// in-flight packets drained and the metrics were still written; after a second, they were not.
inline constexpr int kExitInterrupted = 130;

}  // namespace micromodels::cli
