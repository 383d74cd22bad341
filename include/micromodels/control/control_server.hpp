// The live-operations endpoint: metrics, status, scale and swap over HTTP.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "micromodels/run.hpp"

namespace micromodels {

/// A stage of a distributed run as its broker sees it, over every process (on Redis what
/// `micromodels status --broker URL` shows).
struct BrokerStage {
  std::string stage{};
  std::uint64_t backlog = 0;    // entries no process has taken yet
  std::uint64_t pending = 0;    // taken by a process, not yet done
  std::uint64_t consumers = 0;  // the consumers of every live process that serves it
  // In the current run, over every process that serves it:
  std::uint64_t processed = 0;
  std::uint64_t failed = 0;
  std::uint64_t dropped = 0;
};

/// A live process of a distributed run (a worker, or the run process), from its heartbeats.
struct BrokerProcess {
  std::string id{};                                    // host:pid
  std::map<std::string, std::uint64_t> consumers{};    // per stage it serves
  double heartbeat_age_s = 0;                          // since its last heartbeat
};

/// What the broker says of a distributed run: its stages and its live processes.
struct BrokerView {
  std::vector<BrokerStage> stages{};
  std::vector<BrokerProcess> processes{};
};

struct ControlOptions {
  /// "ADDR:PORT", "[IPv6]:PORT" or "PORT" (loopback). Port 0 picks a free port.
  std::string listen = "127.0.0.1:0";
  /// Required from clients as `Authorization: Bearer TOKEN` when not empty, and required to be
  /// set when `listen` is not a loopback address.
  std::string token{};
  /// Period of the samples that /status computes its recent rates from.
  double sample_period_s = 0.25;
  /// How far back /status looks for its recent rates and busy shares.
  double rate_window_s = 1.0;
  /// Each stage's inputs (Pipeline::inputs_of), for the graph the dashboard draws: /status
  /// gives a stage's as `inputs`. Empty: `inputs` is null and the dashboard draws no edges.
  std::map<std::string, std::vector<std::string>> inputs{};
  /// The broker's view of a distributed run, read about once a second on the endpoint's own
  /// thread: /status gives the last one's stages as `broker` and its processes as
  /// `processes`.
  /// Empty (a run in one process): both are null. When it throws, /status gives the message as
  /// `broker_error`.
  std::function<BrokerView()> broker{};
};

/// An HTTP server on its own threads for one Run (an embedded run, or a worker's part of a
/// distributed one): GET / (the dashboard, a web page), GET /metrics (Prometheus text),
/// GET /status (JSON), POST /stages/NAME/scale, POST /stages/NAME/swap. docs/operations.md
/// describes every route.
/// A refusal from the run (std::invalid_argument: 400, ConfigError: 422) changes nothing.
/// Construction binds and starts serving (throws std::invalid_argument for bad options,
/// std::runtime_error when the address cannot be bound); destruction stops it and waits for
/// requests in progress. When the run has finished by then, each GET /status/stream first gets
/// the run's last /status document, with `ended` true. The run must outlive the server.
///
///   Runner runner(pipeline);
///   ControlServer control(runner, {.listen = "127.0.0.1:0"});
///   std::cerr << "control: " << control.url() << '\n';
///   runner.start();
///   runner.wait();
class ControlServer {
 public:
  ControlServer(Run& run, ControlOptions options);
  ~ControlServer();
  ControlServer(const ControlServer&) = delete;
  ControlServer& operator=(const ControlServer&) = delete;

  /// "http://127.0.0.1:41234": the address and the port actually bound.
  [[nodiscard]] std::string url() const;
  [[nodiscard]] int port() const;

 private:
  struct State;
  std::unique_ptr<State> state_;
};

/// Checks a --listen address and the token rule without binding anything; throws
/// std::invalid_argument with a message for the operator.
void check_control_options(const ControlOptions& options);

/// check_control_options, and then binds the address and lets it go again: throws
/// std::runtime_error when the port is in use now. A program checks this before work that
/// should not start when the endpoint cannot (`micromodels run` does, before building stages).
void probe_control_options(const ControlOptions& options);

}  // namespace micromodels
