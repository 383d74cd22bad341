// The description of a pipeline: stages, their parameters and how each is run.
#pragma once

#include <cstdint>
#include <filesystem>
#include <map>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include "micromodels/params.hpp"
#include "micromodels/registry.hpp"

namespace micromodels {

/// Where something was written: file, 1-based line and column. Empty for the C++ builder.
struct SourceLocation {
  std::string file{};
  int line = 0;
  int column = 0;
  [[nodiscard]] std::string str() const;  // "file:line:column", "file" when line is 0, or ""
};

/// A configuration error, found before anything runs: `what()` reads
/// "pipelines/x.yaml:12:7: stage 'track': key 'consumers': must be between 1 and 1024, got 0".
class ConfigError : public std::runtime_error {
 public:
  /// `what()` is "where.str(): message" (just `message` when the location is unknown), so the
  /// message names the stage and key itself; `key` is for programs.
  ConfigError(SourceLocation where, std::string key, const std::string& message);
  [[nodiscard]] const SourceLocation& where() const noexcept { return where_; }
  [[nodiscard]] const std::string& key() const noexcept { return key_; }
  /// `what()` without the location.
  [[nodiscard]] const std::string& message() const noexcept { return message_; }

 private:
  SourceLocation where_{};
  std::string key_{};
  std::string message_{};
};

enum class Overflow { block, drop_oldest, drop_newest };
enum class JoinTimeout { drop, partial };

/// `live:` in a pipeline (and a stage's override): the latency budget of live video. A source
/// is never held back; a packet older than `max_age_ms` (since its capture) when a stage takes
/// it is dropped; with `policy: newest`, where a source's packets wait, each stream keeps only
/// its newest (docs/yaml-reference.md#live).
struct LiveConfig {
  enum class Policy { newest };
  double max_age_ms = 0;  // 0: no age limit (at this stage)
  Policy policy = Policy::newest;
};

/// One stage of a pipeline, as configured.
struct StageConfig {
  std::string name{};
  std::string type{};
  std::map<std::string, ParamValue> params{};
  int consumers = 1;
  std::size_t queue_capacity = 64;
  Overflow overflow = Overflow::block;
  bool per_stream = false;  // `state: per_stream`: one stream at a time per consumer, in order
  bool ordered = false;     // restore (stream, seq) order before this stage
  std::optional<bool> blocking{};  // overrides the stage type's own answer
  std::size_t max_batch = 1;
  double max_delay_ms = 0;
  std::vector<std::string> inputs{};  // empty: the previous stage in the list (none for a source)
  double join_timeout_ms = 1000;
  JoinTimeout join_on_timeout = JoinTimeout::drop;
  /// Across processes (Redis): how many partitions the queue of a stage that needs each stream
  /// in one place (ordered, per_stream, joins) is split into, by stream id. A process serves
  /// the streams of the partitions it holds, so this bounds the processes that share the stage
  /// (its consumers within a process are `consumers`). A run in one process does not use it.
  int partitions = 8;
  /// `live:` of this stage: overrides the pipeline's budget here (only with the pipeline's `live:`).
  std::optional<LiveConfig> live{};
  /// Where each key was written, for errors found after parsing ("" is the stage itself).
  std::map<std::string, SourceLocation> locations{};
};

/// `autoscale:` in a pipeline: the runner moves consumers to the stage that limits throughput,
/// within a budget, from the service times it measures (see docs/operations.md).
struct AutoscaleConfig {
  bool enabled = false;
  int max_consumers = 8;    // per stage
  int budget = 0;           // consumers beyond one per managed stage; 0: one per core
  double interval_ms = 500;  // between decisions
  std::vector<std::string> stages{};  // empty: every stage but sources, ordered and per_stream ones
};

/// `wire:` in a pipeline: how images travel between processes on Redis (a run in one process
/// passes them by reference and ignores this). `--wire-images` and `--jpeg-quality` override it.
struct WireConfig {
  std::string images = "raw";  // raw, png (lossless) or jpeg (8-bit images of 1 or 3 channels)
  int jpeg_quality = 90;       // 1..100, for jpeg
  bool image_refs = true;      // an image goes to Redis once, hops carry a reference to it
  int image_ttl_s = 60;        // an image key lives this long after the last hop that carried it
};

/// `trace:` in a pipeline (or `--trace FILE`): per-packet timings of this process as a Chrome
/// trace-event JSON file, written when the run ends (docs/operations.md#tracing-a-run).
struct TraceConfig {
  std::string path{};  // empty: no tracing
  int every = 1;       // trace the packets whose seq is a multiple of `every`
  double max_mb = 256;  // the file's size bound: `every` doubles each time half the room left is used
};

/// A plugin a pipeline file names (`plugins:`), and where. from_yaml_file resolves a relative
/// path from the file's folder; from_yaml_string leaves it as written. load_plugin (plugin.hpp)
/// loads it.
struct PluginPath {
  std::filesystem::path path{};
  SourceLocation where{};
};

/// A pipeline description. Building it runs nothing; `Runner` runs it.
///
///   Pipeline p = Pipeline::from_yaml_file("pipelines/example.yaml");
///   p.set_param("source.count", "1000");       // like --set on the command line
///   p.validate(Registry::global());            // throws ConfigError naming file:line:column
///
///   Pipeline q("demo");                          // or in C++
///   q.add({.name = "source", .type = "synthetic.source", .params = {{"count", std::int64_t{100}}}});
///   q.add({.name = "work", .type = "model.spin", .consumers = 2});
class Pipeline {
 public:
  explicit Pipeline(std::string name = "pipeline") : name_(std::move(name)) {}
  static Pipeline from_yaml_file(const std::filesystem::path& path);
  static Pipeline from_yaml_string(std::string_view yaml, std::string file_name = "<string>");

  Pipeline& add(StageConfig stage);
  /// "stage.param=value" or (stage, param, text): the text is typed by the stage type's spec
  /// when the stage is built. Throws ConfigError for an unknown stage. An error about the value
  /// later names `origin` and the assignment ("--set work.service_ms=abc").
  void set_param(std::string_view assignment, std::string_view origin = "--set");
  void set_param(std::string_view stage, std::string_view param, std::string_view text,
                 std::string_view origin = "--set");
  /// An unknown stage is a ConfigError, which names `origin` and the assignment when given
  /// ("--consumers scor=3").
  void set_consumers(std::string_view stage, int consumers, std::string_view origin = {});
  /// Another type for a stage, with the params it has.
  void set_type(std::string_view stage, std::string_view type);
  /// The same for a type of `registry` (`swap`): the params it does not declare no longer apply
  /// and are dropped; returns their names.
  std::vector<std::string> set_type(std::string_view stage, std::string_view type,
                                    const Registry& registry);

  /// Checks everything that can be checked without running: types and params against
  /// `registry`, inputs, cycles, duplicate names, fields read but never written, numbers.
  void validate(const Registry& registry) const;

  [[nodiscard]] const std::string& name() const noexcept { return name_; }
  [[nodiscard]] const std::vector<StageConfig>& stages() const noexcept { return stages_; }
  [[nodiscard]] const StageConfig& stage(std::string_view name) const;
  /// The effective inputs of stage `index`: those given, else the previous stage in the list.
  /// A source and the dead-letter stage (fed only with failed packets) have none; `registry`
  /// says which types are sources. The stage after the dead-letter stage reads the one before.
  [[nodiscard]] std::vector<std::string> inputs_of(
      std::size_t index, const Registry& registry = Registry::global()) const;
  [[nodiscard]] const std::string& broker() const noexcept { return broker_; }
  [[nodiscard]] const std::string& dead_letter() const noexcept { return dead_letter_; }
  [[nodiscard]] int workers() const noexcept { return workers_; }
  void set_broker(std::string broker) { broker_ = std::move(broker); }
  void set_dead_letter(std::string stage) { dead_letter_ = std::move(stage); }
  void set_workers(int workers) { workers_ = workers; }
  [[nodiscard]] const AutoscaleConfig& autoscale() const noexcept { return autoscale_; }
  void set_autoscale(AutoscaleConfig autoscale) { autoscale_ = std::move(autoscale); }
  [[nodiscard]] const std::vector<PluginPath>& plugins() const noexcept { return plugins_; }
  [[nodiscard]] const WireConfig& wire() const noexcept { return wire_; }
  void set_wire(WireConfig wire) { wire_ = std::move(wire); }
  [[nodiscard]] const TraceConfig& trace() const noexcept { return trace_; }
  void set_trace(TraceConfig trace) { trace_ = std::move(trace); }
  /// `live:`: nullopt runs in batch mode (every packet, back-pressure up to the sources).
  [[nodiscard]] const std::optional<LiveConfig>& live() const noexcept { return live_; }
  void set_live(std::optional<LiveConfig> live) { live_ = live; }
  /// The budget at stage `name`: its own `live:`, else the pipeline's; nullopt in batch mode.
  [[nodiscard]] std::optional<LiveConfig> live_at(std::string_view name) const;

  /// Where a pipeline-level key ("live", "live.max_age_ms", ...) was written; the file when
  /// the key was not, empty for a pipeline built in C++.
  [[nodiscard]] SourceLocation location(const std::string& key) const;

  /// The graph as plain text and as Graphviz DOT (edges as `inputs_of` gives them).
  [[nodiscard]] std::string to_text(const Registry& registry = Registry::global()) const;
  [[nodiscard]] std::string to_dot(const Registry& registry = Registry::global()) const;

 private:
  /// The stage named `name`; an unknown one is a ConfigError at `where` (the argument that
  /// named it, when there is one).
  StageConfig& mutable_stage(std::string_view name, const SourceLocation& where = {});
  std::string name_{};
  std::string file_{};
  std::string broker_ = "memory";
  std::string dead_letter_;  // stage that receives failed packets, if any
  int workers_ = 0;          // pool threads for CPU-bound stages; 0: one per core
  AutoscaleConfig autoscale_{};
  WireConfig wire_{};
  TraceConfig trace_{};
  std::optional<LiveConfig> live_{};
  std::vector<PluginPath> plugins_{};
  std::vector<StageConfig> stages_{};
  std::map<std::string, SourceLocation> locations_;  // pipeline-level keys, for validate()
};

}  // namespace micromodels
