#include "run_loop.hpp"

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <exception>
#include <fstream>
#include <iostream>
#include <string>

#include <nlohmann/json.hpp>

#include "micromodels/pipeline.hpp"

#include "detail/stage_counts.hpp"
#include "exit_codes.hpp"
#include "interrupts.hpp"
#include "progress_bar.hpp"

namespace micromodels::cli {

namespace {

// Work finished by this process's stages: what a drain's progress is measured in.
std::uint64_t finished(const MetricsSnapshot& metrics) {
  std::uint64_t done = metrics.packets_out;
  for (const StageMetrics& stage : metrics.stages) done += stage.processed + stage.failed;
  return done;
}

// Packets on their way: in this process or, where the sources and sinks run, anywhere between
// them (made by the sources, not yet done at the sinks). A worker's packets out may be none:
// its last stage's outputs go to a stage another process holds.
std::uint64_t in_flight(const MetricsSnapshot& metrics, const RunLoopOptions& options) {
  if (!options.sources_and_sinks) return metrics.in_flight;
  const std::uint64_t between =
      metrics.packets_in > metrics.packets_out ? metrics.packets_in - metrics.packets_out : 0;
  return std::max(metrics.in_flight, between);
}

// After the first Ctrl-C: says once when the drain has made no progress for a while, so that a
// run whose packets wait for a stage nobody serves (a `--serve none` run without its workers)
// does not wait without a word.
class DrainWatch {
 public:
  static constexpr int kStallSeconds = 5;

  void start(std::uint64_t done) {
    done_ = done;
    since_ = std::chrono::steady_clock::now();
  }
  /// True once per stall: the first time `done` has not moved for kStallSeconds.
  bool stalled(std::uint64_t done) {
    const auto now = std::chrono::steady_clock::now();
    if (done != done_) {
      done_ = done;
      since_ = now;
      said_ = false;
      return false;
    }
    if (said_ || now - since_ < std::chrono::seconds(kStallSeconds)) return false;
    said_ = true;
    return true;
  }

 private:
  std::uint64_t done_ = 0;
  std::chrono::steady_clock::time_point since_;
  bool said_ = false;
};

// The stages that failed packets, "'work' 8 of 40, 'sink' 2 of 32", and whether one of them
// failed every packet it took: nothing came out of it.
struct Failures {
  std::string stages{};
  std::uint64_t failed = 0;
  std::uint64_t dead_lettered = 0;
  std::string failed_all{};  // the first stage that failed every packet, "'sink' (40 of 40)"
  bool failed_all_elsewhere = false;  // ... served by other processes: its errors are in theirs
  // Packets a transport handed to the dead letter before a stage ran them (its entry unreadable,
  // delivered too often, an image gone): "'track' 5".
  std::string lost_stages{};
};

Failures failures(const MetricsSnapshot& metrics, const std::vector<StageMetrics>& elsewhere) {
  const auto counted_elsewhere = [&](const std::string& name) {
    return std::any_of(elsewhere.begin(), elsewhere.end(),
                       [&](const StageMetrics& s) { return s.name == name; });
  };
  Failures f;
  for (const auto* stages : {&metrics.stages, &elsewhere}) {
    for (const StageMetrics& stage : *stages) {
      // A stage this process served with others: judged by its counts over all of them.
      if (stages != &elsewhere && counted_elsewhere(stage.name)) continue;
      if (stage.dead_lettered > stage.failed) {
        f.lost_stages += (f.lost_stages.empty() ? "'" : ", '") + stage.name + "' " +
                         std::to_string(stage.dead_lettered - stage.failed);
      }
      if (stage.failed == 0) continue;
      const std::string counts =
          std::to_string(stage.failed) + " of " + std::to_string(stage.failed + stage.processed);
      f.stages += (f.stages.empty() ? "'" : ", '") + stage.name + "' " + counts;
      f.failed += stage.failed;
      f.dead_lettered += stage.dead_lettered;
      if (stage.processed == 0 && f.failed_all.empty()) {
        f.failed_all = "'" + stage.name + "' (" + counts + ")";
        f.failed_all_elsewhere = stages == &elsewhere;
      }
    }
  }
  return f;
}

// The metrics JSON, and for a run across processes the counts over every process of the stages
// other processes served (`served_elsewhere`), which the table's last lines give in text.
std::string metrics_json(const MetricsSnapshot& metrics,
                         const std::vector<StageMetrics>& elsewhere) {
  if (elsewhere.empty()) return metrics.to_json();
  using Json = nlohmann::ordered_json;
  Json out = Json::parse(metrics.to_json());
  Json stages = Json::array();
  for (const StageMetrics& s : elsewhere) {
    Json stage{{"name", s.name}};
    for (const detail::StageCount& count : detail::kStageCounts) {
      stage[std::string(count.name)] = s.*count.member;
    }
    stage["events"] = s.events;
    stages.push_back(std::move(stage));
  }
  out["served_elsewhere"] = std::move(stages);
  return out.dump(2, ' ', false, Json::error_handler_t::replace) + '\n';
}

// Why the metrics file at `path` could not be opened (errno, as the open left it), and what to do.
ConfigError unwritable_metrics(const std::string& path) {
  return ConfigError({}, "metrics-json",
                     "cannot write metrics to '" + path + "': " + std::strerror(errno) +
                         "; give a path in a directory that exists and is writable");
}

}  // namespace

void check_metrics_path(const std::string& path) {
  if (path.empty()) return;
  errno = 0;
  std::ofstream file(path, std::ios::app);
  if (!file) throw unwritable_metrics(path);
}

int run_to_end(Run& run, const RunLoopOptions& options, bool interrupted_is_ok) {
  // Opened before the run so that a wrong path fails now, not after an hour of work.
  std::ofstream metrics_file;
  if (!options.metrics_json.empty()) {
    errno = 0;
    metrics_file.open(options.metrics_json);
    if (!metrics_file) throw unwritable_metrics(options.metrics_json);
  }
  bool interrupted = false;
  std::exception_ptr failure;
  {
    Interrupts interrupts;
    ProgressBar progress(options.quiet || !options.progress);
    const auto control = start_control(options.control, run, options.endpoint);  // stops when the run has ended
    run.start();
    if (options.started) {
      progress.clear();
      options.started();
    }
    // Polling at 10 Hz drives the progress bar and notices signals; the handler only counts.
    DrainWatch drain;
    try {
      while (!run.wait_for(100)) {
        if (interrupts.count() > 0 && !interrupted) {
          interrupted = true;
          const MetricsSnapshot now = run.metrics();
          const std::uint64_t draining = in_flight(now, options);
          interrupts.set_in_flight(draining);
          drain.start(finished(now));
          progress.clear();
          std::fprintf(stderr,
                       "stopping: draining %llu in-flight packets (Ctrl-C again to abort)\n",
                       static_cast<unsigned long long>(draining));
          std::fflush(stderr);
          run.stop();
        } else if (interrupted) {
          const MetricsSnapshot now = run.metrics();
          interrupts.set_in_flight(in_flight(now, options));
          if (drain.stalled(finished(now))) {
            progress.clear();
            std::fprintf(
                stderr,
                "stopping: %llu packets still in flight, and none has finished for %d s: "
                "a stage they wait for may have no one to serve it (see the messages above); "
                "Ctrl-C again abandons them\n",
                static_cast<unsigned long long>(in_flight(now, options)),
                DrainWatch::kStallSeconds);
            std::fflush(stderr);
          }
        }
        const Progress now = run.progress();
        progress.update(now.done, now.expected);
      }
    } catch (const std::exception&) {
      // The run failed (its error, rethrown below, sets the exit code). What this process did
      // up to then is still written, for the post-mortem; the report and the other processes'
      // counts are not asked for: their broker may be what failed.
      failure = std::current_exception();
    }
    const Progress last = run.progress();
    progress.finish(last.done, last.expected);
  }
  const MetricsSnapshot metrics = run.metrics();
  std::cout << metrics.to_table();
  if (options.report && !failure) std::cout << options.report();
  std::cout << std::flush;
  const std::vector<StageMetrics> elsewhere =
      options.elsewhere && !failure ? options.elsewhere() : std::vector<StageMetrics>{};
  if (metrics_file.is_open()) {
    metrics_file << metrics_json(metrics, elsewhere);
    metrics_file.close();
    if (!metrics_file) {
      std::cerr << "error: failed writing metrics to '" << options.metrics_json << "'\n";
      return kExitFailure;
    }
  }
  if (failure) std::rethrow_exception(failure);
  // Failed packets are the pipeline's business (counted, and kept by a dead-letter stage when
  // it has one), but a stage that failed every packet is a broken part: the run says so.
  const Failures failed = failures(metrics, elsewhere);
  if (!failed.failed_all.empty()) {
    std::cerr << "error: stage " << failed.failed_all
              << " failed every packet it took, so nothing came out of it; its first errors are "
                 "in the log "
              << (failed.failed_all_elsewhere ? "of the workers that serve it" : "above")
              << " (a missing file, an output that cannot be written, a wrong parameter)\n";
  } else if (failed.failed > 0) {
    std::cerr << "warning: packets failed at " << failed.stages << " ("
              << (failed.dead_lettered >= failed.failed
                      ? "handed to the dead letter"
                      : "the table's `failed` column; without a `dead_letter:` stage they are "
                        "dropped")
              << ")\n";
  }
  if (!failed.lost_stages.empty()) {
    std::cerr << "warning: packets handed to the dead letter before their stage ran them, so no "
                 "sink has them: at "
              << failed.lost_stages
              << " (the log of the process that serves the stage says why: an entry delivered "
                 "too often, unreadable, or whose image was gone)\n";
  }
  if (interrupted && !interrupted_is_ok) return kExitInterrupted;
  return failed.failed_all.empty() ? kExitOk : kExitFailure;
}

}  // namespace micromodels::cli
