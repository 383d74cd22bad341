// What `run` and `worker` share: driving a Run to its end in this process.
#pragma once

#include <functional>
#include <string>
#include <vector>

#include "micromodels/run.hpp"

#include "control_options.hpp"

namespace micromodels::cli {

struct RunLoopOptions {
  std::string metrics_json;    // also write the final metrics here (opened before the run)
  bool progress = true;        // a progress bar on stderr (run); a worker has no end to show
  // The sources and the sinks run here (run, not worker): what is in flight is what the sources
  // made and the sinks do not have yet, wherever it is (other processes, Redis).
  bool sources_and_sinks = true;
  bool quiet = false;
  ControlCliOptions control;   // --listen, --token
  ControlOptions endpoint{};   // the graph and the broker's view, for /status
  std::function<void()> started{};       // called once the run has started (a banner)
  std::function<std::string()> report{};  // lines after the metrics table
  /// A distributed run: the stages other processes served (wholly or in part), with their
  /// counts over all of them, which the exit rule judges instead of this process's share (asked
  /// after `report`).
  std::function<std::vector<StageMetrics>()> elsewhere{};
};

/// Starts `run`, serves its control endpoint, shows progress, and on the first SIGINT or
/// SIGTERM stops it and lets what is in flight drain (a second one aborts); then prints the
/// metrics table (and `report`) and writes --metrics-json. Returns the exit code: 0, or 130
/// after a signal (`interrupted_is_ok`: 0, as a worker that was told to stop).
int run_to_end(Run& run, const RunLoopOptions& options, bool interrupted_is_ok = false);

/// Opens --metrics-json before anything runs, so that a wrong path fails at once (exit 2).
void check_metrics_path(const std::string& path);

}  // namespace micromodels::cli
