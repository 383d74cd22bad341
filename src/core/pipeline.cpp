// Pipeline: the builder, the YAML entry points, validate() and the text and DOT views. Over 600
// lines because validate() checks the whole description in one pass (each check names the key's
// file:line), and splitting it would scatter one rule set over several files.
#include "micromodels/pipeline.hpp"

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <set>
#include <sstream>
#include <utility>

#include "micromodels/registry.hpp"

#include "detail/config_checks.hpp"
#include "detail/file_uses.hpp"
#include "detail/suggest.hpp"
#include "detail/text_table.hpp"
#include "detail/yaml_pipeline.hpp"

namespace micromodels {
namespace {

using detail::fail;
using detail::in_quotes;
using detail::stage_label;

std::string with_location(const SourceLocation& where, const std::string& message) {
  const std::string prefix = where.str();
  return prefix.empty() ? message : prefix + ": " + message;
}

// The location of `key` in a stage, else of the key it belongs to ("queue" for
// "queue.capacity", "inputs" for "inputs[1]"), else of the stage itself.
SourceLocation where(const StageConfig& stage, std::string_view key) {
  std::string path(key);
  while (true) {
    auto found = stage.locations.find(path);
    if (found != stage.locations.end()) {
      return found->second;
    }
    if (path.empty()) {
      return {};
    }
    const std::size_t cut = path.find_last_of(".[");
    path = cut == std::string::npos ? std::string() : path.substr(0, cut);
  }
}

SourceLocation where(const std::map<std::string, SourceLocation>& locations,
                     const std::string& key) {
  auto found = locations.find(key);
  if (found != locations.end()) {
    return found->second;
  }
  found = locations.find("");
  return found == locations.end() ? SourceLocation{} : found->second;
}

std::vector<std::string> names_of(const std::vector<StageConfig>& stages) {
  std::vector<std::string> names;
  names.reserve(stages.size());
  for (const StageConfig& stage : stages) {
    names.push_back(stage.name);
  }
  return names;
}

[[noreturn]] void unknown_stage(std::string_view name, const std::vector<StageConfig>& stages,
                                SourceLocation where = {}) {
  throw ConfigError(std::move(where), std::string(name),
                    "unknown stage '" + std::string(name) + "'" +
                        detail::unknown_hint(name, names_of(stages), "stages"));
}

// Converts a param problem into a configuration error at the param's key.
[[noreturn]] void param_failed(const StageConfig& stage, const ParamError& error) {
  const std::string key = "params." + error.key();
  // Params::resolve names the stage; a stage type's own checks name only the param.
  const std::string subject = stage_label(stage.name, 0) + ": ";
  const std::string what = error.what();
  throw ConfigError(where(stage, key), key, what.starts_with(subject) ? what : subject + what);
}

// A field `stage` reads that nothing upstream writes; `upstream` maps fields to their writers.
[[noreturn]] void missing_field(const StageConfig& stage, std::size_t index,
                                const std::string& field,
                                const std::map<std::string, std::string>& upstream) {
  std::string fields;
  for (const auto& [name, writer] : upstream) {
    fields += fields.empty() ? "" : ", ";
    fields += name;
    fields += " (from '";
    fields += writer;
    fields += "')";
  }
  fail(where(stage, "type"), stage_label(stage.name, index), "",
       "reads field '" + field + "', which no stage upstream writes (upstream fields: " +
           (fields.empty() ? "none" : fields) + "); add a stage that writes '" + field +
           "' before '" + stage.name + "' or change its inputs");
}

std::string dot_escaped(std::string_view text) {
  std::string out;
  for (char c : text) {
    if (c == '"' || c == '\\') {
      out += '\\';
    }
    out += c == '\n' ? ' ' : c;
  }
  return out;
}

std::string dot_quoted(std::string_view text) { return "\"" + dot_escaped(text) + "\""; }

std::string_view overflow_name(Overflow overflow) {
  switch (overflow) {
    case Overflow::block:
      return "block";
    case Overflow::drop_oldest:
      return "drop_oldest";
    case Overflow::drop_newest:
      return "drop_newest";
  }
  return "?";
}

bool is_source(const Registry& registry, const StageConfig& stage) {
  const StageType* type = registry.find(stage.type);
  return type != nullptr && type->is_source();
}

std::string milliseconds(double value) { return detail::plain_number(value) + " ms"; }

}  // namespace

std::string SourceLocation::str() const {
  if (file.empty()) {
    return {};
  }
  if (line <= 0) {
    return file;
  }
  return file + ":" + std::to_string(line) + ":" + std::to_string(column);
}

ConfigError::ConfigError(SourceLocation where, std::string key, const std::string& message)
    : std::runtime_error(with_location(where, message)),
      where_(std::move(where)),
      key_(std::move(key)),
      message_(message) {}

Pipeline Pipeline::from_yaml_file(const std::filesystem::path& path) {
  const std::string file = path.string();
  std::error_code error;
  if (!std::filesystem::is_regular_file(path, error)) {
    throw ConfigError(SourceLocation{file}, "",
                      std::filesystem::exists(path, error)
                          ? "not a regular file; give the path of a pipeline .yaml file"
                          : "no such file; check the path (relative paths start from " +
                                std::filesystem::current_path(error).string() + ")");
  }
  std::ifstream in(path, std::ios::binary);
  std::ostringstream text;
  text << in.rdbuf();
  if (!in) {
    throw ConfigError(SourceLocation{file}, "",
                      std::string("cannot read the file: ") + std::strerror(errno));
  }
  Pipeline pipeline = from_yaml_string(text.str(), file);
  for (PluginPath& plugin : pipeline.plugins_) {
    if (plugin.path.is_relative()) plugin.path = path.parent_path() / plugin.path;
  }
  return pipeline;
}

Pipeline Pipeline::from_yaml_string(std::string_view yaml, std::string file_name) {
  detail::PipelineDocument doc = detail::read_pipeline_yaml(yaml, file_name);
  Pipeline pipeline(std::move(doc.name));
  pipeline.file_ = std::move(file_name);
  pipeline.broker_ = std::move(doc.broker);
  pipeline.workers_ = doc.workers;
  pipeline.dead_letter_ = std::move(doc.dead_letter);
  pipeline.autoscale_ = std::move(doc.autoscale);
  pipeline.wire_ = std::move(doc.wire);
  pipeline.trace_ = std::move(doc.trace);
  pipeline.live_ = doc.live;
  pipeline.plugins_ = std::move(doc.plugins);
  pipeline.stages_ = std::move(doc.stages);
  pipeline.locations_ = std::move(doc.locations);
  return pipeline;
}

Pipeline& Pipeline::add(StageConfig stage) {
  stages_.push_back(std::move(stage));
  return *this;
}

void Pipeline::set_param(std::string_view assignment, std::string_view origin) {
  const std::size_t equals = assignment.find('=');
  const std::size_t dot = assignment.find('.');
  if (equals == std::string_view::npos || dot == std::string_view::npos || dot == 0 ||
      dot + 1 >= equals) {
    throw ConfigError({}, std::string(assignment),
                      "cannot read " + in_quotes(assignment) +
                          " as stage.param=value; write e.g. source.count=100");
  }
  set_param(assignment.substr(0, dot), assignment.substr(dot + 1, equals - dot - 1),
            assignment.substr(equals + 1), origin);
}

void Pipeline::set_param(std::string_view stage, std::string_view param, std::string_view text,
                         std::string_view origin) {
  if (param.empty()) {
    throw ConfigError({}, std::string(stage),
                      "stage '" + std::string(stage) + "': no param name given; write e.g. " +
                          std::string(stage) + ".count=100");
  }
  const std::string key(param);
  // The value no longer comes from the file: errors about it should point at the override.
  SourceLocation at{std::string(origin) + " " + std::string(stage) + "." + key + "=" +
                    std::string(text)};
  StageConfig& config = mutable_stage(stage, at);
  config.params[key] = std::string(text);
  config.locations["params." + key] = std::move(at);
}

void Pipeline::set_consumers(std::string_view stage, int consumers, std::string_view origin) {
  StageConfig& config = mutable_stage(
      stage, origin.empty() ? SourceLocation{}
                            : SourceLocation{std::string(origin) + " " + std::string(stage) + "=" +
                                             std::to_string(consumers)});
  detail::check_count(consumers, 1, detail::kMaxConsumers, {}, stage_label(stage, 0), "consumers");
  config.consumers = consumers;
  config.locations.erase("consumers");
}

std::vector<std::string> Pipeline::set_type(std::string_view stage, std::string_view type,
                                            const Registry& registry) {
  StageConfig& config = mutable_stage(stage);
  std::vector<std::string> dropped;
  if (const StageType* next = registry.find(type); next != nullptr && config.type != type) {
    std::erase_if(config.params, [&](const auto& param) {
      const bool known =
          std::any_of(next->params.begin(), next->params.end(),
                      [&](const ParamSpec& spec) { return spec.name == param.first; });
      if (!known) dropped.push_back(param.first);
      return !known;
    });
  }
  set_type(stage, type);
  return dropped;
}

void Pipeline::set_type(std::string_view stage, std::string_view type) {
  StageConfig& config = mutable_stage(stage);
  config.type = std::string(type);
  config.locations["type"] = SourceLocation{"type=" + std::string(type)};
}

const StageConfig& Pipeline::stage(std::string_view name) const {
  auto found = std::find_if(stages_.begin(), stages_.end(),
                            [name](const StageConfig& stage) { return stage.name == name; });
  if (found == stages_.end()) {
    unknown_stage(name, stages_);
  }
  return *found;
}

StageConfig& Pipeline::mutable_stage(std::string_view name, const SourceLocation& where) {
  auto found = std::find_if(stages_.begin(), stages_.end(),
                            [name](const StageConfig& stage) { return stage.name == name; });
  if (found == stages_.end()) {
    unknown_stage(name, stages_, where);
  }
  return *found;
}

std::vector<std::string> Pipeline::inputs_of(std::size_t index, const Registry& registry) const {
  const StageConfig& stage = stages_.at(index);
  if (!stage.inputs.empty()) {
    return stage.inputs;
  }
  if (is_source(registry, stage) || (!dead_letter_.empty() && stage.name == dead_letter_)) {
    return {};
  }
  // The dead-letter stage is outside the flow, so "the previous stage" skips it.
  for (std::size_t i = index; i > 0; --i) {
    if (dead_letter_.empty() || stages_[i - 1].name != dead_letter_) {
      return {stages_[i - 1].name};
    }
  }
  return {};
}

SourceLocation Pipeline::location(const std::string& key) const { return where(locations_, key); }

std::optional<LiveConfig> Pipeline::live_at(std::string_view name) const {
  if (!live_) return std::nullopt;
  const auto found = std::find_if(stages_.begin(), stages_.end(),
                                  [name](const StageConfig& stage) { return stage.name == name; });
  if (found != stages_.end() && found->live) return found->live;
  return live_;
}

void Pipeline::validate(const Registry& registry) const {
  if (name_.empty()) {
    fail(where(locations_, "pipeline"), "", "pipeline",
         "the pipeline needs a name, e.g. pipeline: demo");
  }
  detail::check_broker(broker_, where(locations_, "broker"));
  detail::check_count(workers_, 0, detail::kMaxWorkers, where(locations_, "workers"), "",
                      "workers");
  detail::check_wire_images(wire_.images, where(locations_, "wire.images"));
  detail::check_count(wire_.jpeg_quality, 1, 100, where(locations_, "wire.jpeg_quality"), "",
                      "wire.jpeg_quality");
  detail::check_count(trace_.every, 1, detail::kMaxTraceEvery, where(locations_, "trace.every"), "",
                      "trace.every");
  detail::check_megabytes(trace_.max_mb, where(locations_, "trace.max_mb"), "trace.max_mb");
  if (live_) {
    detail::check_max_age(live_->max_age_ms, where(locations_, "live.max_age_ms"), "",
                          "live.max_age_ms");
  }
  detail::check_count(wire_.image_ttl_s, 1, detail::kMaxImageTtlS,
                      where(locations_, "wire.image_ttl_s"), "", "wire.image_ttl_s");
  if (stages_.empty()) {
    fail(where(locations_, "stages"), "", "stages",
         "no stages; list at least a source and one stage");
  }

  // Each stage on its own: name, type, numbers, params, what it reads and writes.
  std::map<std::string, std::size_t, std::less<>> index_of;
  std::vector<const StageType*> types;
  std::vector<StageInfo> infos;
  for (std::size_t i = 0; i < stages_.size(); ++i) {
    const StageConfig& stage = stages_[i];
    const std::string subject = stage_label(stage.name, i);
    detail::check_stage_name(stage.name, where(stage, "name"), i);
    auto [earlier, inserted] = index_of.emplace(stage.name, i);
    if (!inserted) {
      const SourceLocation first = where(stages_[earlier->second], "name");
      fail(where(stage, "name"), subject, "name",
           "the name is already used by stage #" + std::to_string(earlier->second + 1) +
               (first.line > 0 ? " (line " + std::to_string(first.line) + ")" : "") +
               "; stage names must be unique");
    }
    const StageType* type = registry.find(stage.type);
    if (stage.type.empty()) {
      fail(where(stage, "type"), subject, "type",
           "missing; every stage needs a type, e.g. type: model.spin");
    }
    if (type == nullptr) {
      // No close name: the type may be a plugin's that nobody loaded.
      const bool typo = !detail::did_you_mean(stage.type, registry.names()).empty();
      fail(where(stage, "type"), subject, "type",
           "unknown stage type '" + stage.type + "'" +
               (typo ? ""
                     : "; a stage type from a plugin needs the plugin loaded (plugins: "
                       "[PATH] in the pipeline file, or --plugin PATH)") +
               detail::unknown_hint(stage.type, registry.names(), "types"));
    }
    detail::check_count(stage.consumers, 1, detail::kMaxConsumers, where(stage, "consumers"),
                        subject, "consumers");
    detail::check_count(static_cast<std::int64_t>(std::min<std::size_t>(
                            stage.queue_capacity, detail::kMaxQueueCapacity + 1)),
                        1, detail::kMaxQueueCapacity, where(stage, "queue.capacity"), subject,
                        "queue.capacity");
    detail::check_count(
        static_cast<std::int64_t>(std::min<std::size_t>(stage.max_batch, detail::kMaxBatch + 1)), 1,
        detail::kMaxBatch, where(stage, "batch.max_batch"), subject, "batch.max_batch");
    detail::check_duration(stage.max_delay_ms, false, where(stage, "batch.max_delay_ms"), subject,
                           "batch.max_delay_ms");
    detail::check_duration(stage.join_timeout_ms, true, where(stage, "join.timeout_ms"), subject,
                           "join.timeout_ms");
    detail::check_count(stage.partitions, 1, detail::kMaxConsumers, where(stage, "partitions"),
                        subject, "partitions");
    if (stage.live) {
      if (!live_) {
        fail(where(stage, "live"), subject, "live",
             "a stage's live: overrides the pipeline's budget, and this pipeline has none; add "
             "live: { max_age_ms: 120 } at the top level, or remove this key");
      }
      detail::check_max_age(stage.live->max_age_ms, where(stage, "live.max_age_ms"), subject,
                            "live.max_age_ms");
    }

    StageInfo info;
    try {
      info = type->info(type->resolve(stage.name, stage.params));
    } catch (const ParamError& error) {
      param_failed(stage, error);
    } catch (const std::exception& error) {
      fail(where(stage, "type"), subject, "type",
           "stage type '" + stage.type + "' failed to describe itself: " + error.what());
    }

    if (type->is_source()) {
      if (!stage.inputs.empty()) {
        fail(where(stage, "inputs"), subject, "inputs",
             "a source (type '" + stage.type + "') reads no inputs; remove the key");
      }
      if (stage.ordered) {
        fail(where(stage, "ordered"), subject, "ordered",
             "a source emits each stream in order already; put ordered on the stage that needs "
             "order");
      }
      if (stage.per_stream) {
        fail(where(stage, "state"), subject, "state",
             "a source has no per-stream state to pin; remove the key");
      }
      if (stage.consumers > 1) {
        fail(where(stage, "consumers"), subject, "consumers",
             "a source runs on one thread; remove the key and give the stages after it more "
             "consumers");
      }
      if (stage.max_batch > 1) {
        fail(where(stage, "batch.max_batch"), subject, "batch.max_batch",
             "a source is not batched; remove batch");
      }
      if (stage.live) {
        fail(where(stage, "live"), subject, "live",
             "a source is never held back in live mode and its packets are not old yet; put the "
             "budget on the stages after it");
      }
    } else if (info.per_stream && !stage.per_stream) {
      fail(where(stage, "state"), subject, "state",
           "stage type '" + stage.type +
               "' carries each stream's state from one packet to the next, so it needs them one "
               "at a time and in order; add state: per_stream");
    } else if (stage.max_batch > 1 && !info.batching) {
      fail(where(stage, "batch.max_batch"), subject, "batch.max_batch",
           "stage type '" + stage.type +
               "' processes one packet at a time (it does not batch); remove batch or set "
               "max_batch: 1");
    }
    types.push_back(type);
    infos.push_back(std::move(info));
  }

  std::vector<detail::FileUse> file_uses;
  for (std::size_t i = 0; i < stages_.size(); ++i) {
    const auto add = [&](const std::vector<FileParam>& files, bool written) {
      for (const FileParam& file : files) {
        const std::string key = "params." + file.param;
        file_uses.push_back({.path = file.path,
                             .written = written,
                             .at = where(stages_[i], key),
                             .subject = stage_label(stages_[i].name, i),
                             .key = key});
      }
    };
    add(infos[i].files_read, false);
    add(infos[i].files_written, true);
  }
  detail::check_file_uses(file_uses);

  for (const std::string& name : autoscale_.stages) {
    auto found = index_of.find(name);
    const SourceLocation at = where(locations_, "autoscale.stages");
    if (found == index_of.end()) {
      fail(at, "", "autoscale.stages",
           "unknown stage '" + name + "'" + detail::unknown_hint(name, names_of(stages_), "stages"));
    }
    if (types[found->second]->is_source()) {
      fail(at, "", "autoscale.stages",
           "stage '" + name + "' is a source; a source has exactly one consumer");
    }
  }

  if (!dead_letter_.empty()) {
    auto found = index_of.find(dead_letter_);
    const SourceLocation at = where(locations_, "dead_letter");
    if (found == index_of.end()) {
      fail(at, "", "dead_letter",
           "unknown stage '" + dead_letter_ + "'" +
               detail::unknown_hint(dead_letter_, names_of(stages_), "stages"));
    }
    const StageConfig& stage = stages_[found->second];
    if (types[found->second]->is_source()) {
      fail(at, "", "dead_letter",
           "stage '" + dead_letter_ + "' is a source; name a stage that takes packets (a sink)");
    }
    if (!stage.inputs.empty()) {
      fail(where(stage, "inputs"), stage_label(stage.name, found->second), "inputs",
           "the dead-letter stage receives the failed packets of every stage; remove its inputs");
    }
  }

  // The graph: every input exists, the first stage can read something, no cycles.
  bool any_source = false;
  std::vector<std::vector<std::size_t>> inputs(stages_.size());
  for (std::size_t i = 0; i < stages_.size(); ++i) {
    const StageConfig& stage = stages_[i];
    const std::string subject = stage_label(stage.name, i);
    any_source = any_source || types[i]->is_source();
    for (std::size_t j = 0; j < stage.inputs.size(); ++j) {
      const std::string& input = stage.inputs[j];
      const SourceLocation at = where(stage, "inputs[" + std::to_string(j) + "]");
      auto found = index_of.find(input);
      if (found == index_of.end()) {
        fail(at, subject, "inputs",
             "unknown stage '" + input + "'" +
                 detail::unknown_hint(input, names_of(stages_), "stages"));
      }
      if (found->second == i) {
        fail(at, subject, "inputs", "a stage cannot read its own output; remove '" + input + "'");
      }
      if (std::find(stage.inputs.begin(), stage.inputs.begin() + static_cast<std::ptrdiff_t>(j),
                    input) != stage.inputs.begin() + static_cast<std::ptrdiff_t>(j)) {
        fail(at, subject, "inputs", "lists '" + input + "' twice; remove one");
      }
    }
    for (const std::string& input : inputs_of(i, registry)) {
      inputs[i].push_back(index_of.find(input)->second);
    }
    const bool dead_letter = stage.name == dead_letter_;
    if (inputs[i].empty() && !types[i]->is_source() && !dead_letter) {
      fail(where(stage, ""), subject, "inputs",
           "stage type '" + stage.type +
               "' is not a source and nothing comes before it; put a source first or give "
               "inputs");
    }
    const bool join = stage.locations.contains("join") || stage.join_timeout_ms != 1000 ||
                      stage.join_on_timeout != JoinTimeout::drop;
    if (join && inputs[i].size() < 2) {
      fail(where(stage, "join"), subject, "join",
           "join applies only to a stage with two or more inputs; remove it");
    }
    if (stage.locations.contains("partitions") &&
        ((!stage.ordered && !stage.per_stream && inputs[i].size() < 2) || types[i]->is_source())) {
      fail(where(stage, "partitions"), subject, "partitions",
           "partitions apply only to a stage that needs each stream in one process (ordered, "
           "state: per_stream, or two or more inputs); remove it");
    }
  }
  if (!any_source) {
    std::vector<std::string> sources;
    for (const std::string& name : registry.names()) {
      if (registry.find(name)->is_source()) {
        sources.push_back(name);
      }
    }
    fail(where(locations_, "stages"), "", "stages",
         "no stage is a source, so no packet would ever flow; start with a source type (" +
             detail::join_names(sources) + ")");
  }

  // Depth-first over inputs; a stage met again while still on the path closes a cycle.
  enum class Mark { fresh, on_path, done };
  std::vector<Mark> marks(stages_.size(), Mark::fresh);
  std::vector<std::size_t> order;  // every stage after all its inputs
  std::vector<std::size_t> path;
  auto visit = [&](auto& self, std::size_t i) -> void {
    marks[i] = Mark::on_path;
    path.push_back(i);
    for (std::size_t input : inputs[i]) {
      if (marks[input] == Mark::on_path) {
        // path holds ..., input, ..., i and i reads input: the data flows the other way round.
        std::vector<std::size_t> cycle(std::find(path.begin(), path.end(), input), path.end());
        std::reverse(cycle.begin(), cycle.end());
        std::rotate(cycle.begin(), std::min_element(cycle.begin(), cycle.end()), cycle.end());
        std::string text;
        for (std::size_t k : cycle) {
          text += stages_[k].name + " -> ";
        }
        text += stages_[cycle.front()].name;
        const StageConfig& first = stages_[cycle.front()];
        fail(where(first, "inputs"), stage_label(first.name, cycle.front()), "inputs",
             "the inputs form a cycle " + text +
                 ", which no packet from a source can enter; make one of these stages read "
                 "from a stage outside the cycle");
      }
      if (marks[input] == Mark::fresh) {
        self(self, input);
      }
    }
    path.pop_back();
    marks[i] = Mark::done;
    order.push_back(i);
  };
  for (std::size_t i = 0; i < stages_.size(); ++i) {
    if (marks[i] == Mark::fresh) {
      visit(visit, i);
    }
  }

  // Fields: what each stage can read is what its upstream stages write, transitively. With
  // several inputs the sets merge (two inputs may write the same field; the later one wins).
  std::vector<std::map<std::string, std::string>> available(stages_.size());  // field -> writer
  for (std::size_t i : order) {
    std::map<std::string, std::string> upstream;
    for (std::size_t input : inputs[i]) {
      for (const auto& [field, writer] : available[input]) {
        upstream[field] = writer;
      }
    }
    const StageConfig& stage = stages_[i];
    // Failed packets reach the dead-letter stage from anywhere, with whatever fields they had.
    if (stage.name != dead_letter_) {
      for (const std::string& field : infos[i].reads) {
        if (upstream.contains(field)) {
          continue;
        }
        missing_field(stage, i, field, upstream);
      }
    }
    available[i] = std::move(upstream);
    for (const std::string& field : infos[i].writes) {
      available[i][field] = stage.name;
    }
  }
}

std::string Pipeline::to_text(const Registry& registry) const {
  std::vector<std::vector<std::string>> rows;
  for (std::size_t i = 0; i < stages_.size(); ++i) {
    const StageConfig& stage = stages_[i];
    const bool source = is_source(registry, stage);
    const bool dead_letter = !dead_letter_.empty() && stage.name == dead_letter_;
    std::vector<std::string> flags;
    if (dead_letter) {
      flags.emplace_back("dead letter");
    }
    if (stage.per_stream) {
      flags.emplace_back("per_stream");
    }
    if (stage.ordered) {
      flags.emplace_back("ordered");
    }
    if (stage.blocking) {
      flags.emplace_back(*stage.blocking ? "blocking" : "not blocking");
    }
    if (stage.max_batch > 1) {
      flags.push_back("batch " + std::to_string(stage.max_batch) + " within " +
                      milliseconds(stage.max_delay_ms));
    }
    const std::vector<std::string> inputs = inputs_of(i, registry);
    if (inputs.size() > 1) {
      flags.push_back(std::string("join ") +
                      (stage.join_on_timeout == JoinTimeout::drop ? "drop" : "partial") +
                      " after " + milliseconds(stage.join_timeout_ms));
    }
    std::string flag_text = detail::join_names(flags);
    if (flags.empty()) {
      flag_text.clear();
    }
    rows.push_back({
        stage.name,
        stage.type,
        "×" + std::to_string(stage.consumers),
        source ? "source"
               : "queue " + std::to_string(stage.queue_capacity) + " " +
                     std::string(overflow_name(stage.overflow)),
        flag_text,
        inputs.empty() ? "" : "<- " + detail::join_names(inputs),
    });
  }
  std::vector<std::size_t> widths(6, 0);
  for (const auto& row : rows) {
    for (std::size_t c = 0; c < row.size(); ++c) {
      widths[c] = std::max(widths[c], detail::display_width(row[c]));
    }
  }
  std::string out = "pipeline " + name_ + ": " + std::to_string(stages_.size()) +
                    (stages_.size() == 1 ? " stage" : " stages") + ", broker " + broker_ +
                    ", workers " + (workers_ == 0 ? "one per core" : std::to_string(workers_)) +
                    "\n";
  for (const auto& row : rows) {
    std::string line = " ";
    for (std::size_t c = 0; c < row.size(); ++c) {
      if (widths[c] == 0) {
        continue;
      }
      line += " " + row[c] + std::string(widths[c] - detail::display_width(row[c]), ' ') + " ";
    }
    while (!line.empty() && line.back() == ' ') {
      line.pop_back();
    }
    out += line + "\n";
  }
  return out;
}

std::string Pipeline::to_dot(const Registry& registry) const {
  std::string out = "digraph " + dot_quoted(name_) + " {\n";
  out += "  rankdir=LR;\n";
  out += "  node [shape=box, style=rounded, fontname=\"Helvetica\"];\n";
  for (const StageConfig& stage : stages_) {
    // DOT reads the two characters \n in a label as a line break.
    out += "  " + dot_quoted(stage.name) + " [label=\"" + dot_escaped(stage.name) + "\\n" +
           dot_escaped(stage.type) + " ×" + std::to_string(stage.consumers) + "\"";
    if (is_source(registry, stage)) {
      out += ", shape=invhouse, style=\"\"";
    }
    if (!dead_letter_.empty() && stage.name == dead_letter_) {
      out += ", style=\"rounded,dashed\"";
    }
    if (stage.ordered || stage.per_stream) {
      out += ", peripheries=2";
    }
    out += "];\n";
  }
  for (std::size_t i = 0; i < stages_.size(); ++i) {
    for (const std::string& input : inputs_of(i, registry)) {
      out += "  " + dot_quoted(input) + " -> " + dot_quoted(stages_[i].name) + ";\n";
    }
  }
  out += "}\n";
  return out;
}

}  // namespace micromodels
