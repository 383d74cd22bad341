// Reads a pipeline YAML document into plain data, recording where every key was written.
#pragma once

#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "micromodels/pipeline.hpp"

namespace micromodels::detail {

/// What a pipeline file says, before Pipeline::validate checks it against a registry.
struct PipelineDocument {
  std::string name;
  std::string broker = "memory";
  int workers = 0;
  std::string dead_letter;
  AutoscaleConfig autoscale;
  WireConfig wire;
  TraceConfig trace;
  std::optional<LiveConfig> live;
  std::vector<PluginPath> plugins;
  std::vector<StageConfig> stages;
  /// Pipeline-level keys ("pipeline", "broker", "workers", "dead_letter", "autoscale",
  /// "autoscale.stages", "wire", "wire.images", "trace", "trace.path", "live", "live.max_age_ms", "plugins",
  /// "stages"; ""
  /// is the document itself).
  std::map<std::string, SourceLocation> locations;
};

/// Throws ConfigError for invalid YAML, unknown or duplicate keys, missing required keys and
/// values of the wrong kind, naming `file_name`:line:column.
[[nodiscard]] PipelineDocument read_pipeline_yaml(std::string_view yaml,
                                                  const std::string& file_name);

}  // namespace micromodels::detail
