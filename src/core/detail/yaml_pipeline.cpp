// Reads a pipeline YAML document into a PipelineDocument (yaml_pipeline.hpp), recording where
// every key was written. About 660 lines: one Reader walks every key of the format, and each
// key's checks (type, range, the suggestion for a misspelt name, its file:line) sit next to
// where it is read, so that the format's rules are read in one place.
#include "yaml_pipeline.hpp"

#include <algorithm>
#include <cctype>
#include <optional>
#include <sstream>
#include <utility>

#include <yaml-cpp/eventhandler.h>
#include <yaml-cpp/yaml.h>

#include "config_checks.hpp"
#include "suggest.hpp"

namespace micromodels::detail {
namespace {

const std::vector<std::string> kTopKeys = {"pipeline", "broker", "workers", "dead_letter",
                                           "autoscale", "wire", "trace", "live", "plugins",
                                           "stages"};
const std::vector<std::string> kAutoscaleKeys = {"max_consumers", "budget", "interval_ms",
                                                 "stages"};
const std::vector<std::string> kWireKeys = {"images", "jpeg_quality", "image_refs", "image_ttl_s"};
const std::vector<std::string> kTraceKeys = {"path", "every", "max_mb"};
const std::vector<std::string> kLiveKeys = {"max_age_ms", "policy"};
const std::vector<std::string> kStageKeys = {"name",  "type",   "params",  "consumers",
                                             "queue", "state",  "ordered", "blocking",
                                             "batch", "inputs", "join",    "partitions",
                                             "live"};
const std::vector<std::string> kQueueKeys = {"capacity", "overflow"};
const std::vector<std::string> kBatchKeys = {"max_batch", "max_delay_ms"};
const std::vector<std::string> kJoinKeys = {"timeout_ms", "on_timeout"};

struct Entry {
  std::string key;
  YAML::Node value;
  SourceLocation where;  // of the key
};

std::string kind_of(const YAML::Node& node) {
  switch (node.Type()) {
    case YAML::NodeType::Sequence:
      return "a list";
    case YAML::NodeType::Map:
      return "a map";
    case YAML::NodeType::Null:
      return "nothing";
    default:
      return "a single value";
  }
}

// Quoted YAML scalars ("10", '10') and explicit !!str stay text; plain ones are typed by
// their text, as YAML 1.2's core schema does.
bool is_quoted(const YAML::Node& node) {
  return node.Tag() == "!" || node.Tag() == "tag:yaml.org,2002:str";
}

std::optional<bool> yaml_boolean(std::string_view text) {
  if (text == "true" || text == "True" || text == "TRUE") {
    return true;
  }
  if (text == "false" || text == "False" || text == "FALSE") {
    return false;
  }
  return std::nullopt;
}

bool looks_integer(std::string_view text) {
  if (!text.empty() && (text.front() == '-' || text.front() == '+')) {
    text.remove_prefix(1);
  }
  return !text.empty() && std::all_of(text.begin(), text.end(), [](char c) {
    return std::isdigit(static_cast<unsigned char>(c)) != 0;
  });
}

ParamValue typed_scalar(const YAML::Node& node) {
  const std::string& text = node.Scalar();
  if (is_quoted(node)) {
    return text;
  }
  if (std::optional<bool> flag = yaml_boolean(text)) {
    return *flag;
  }
  if (looks_integer(text)) {
    // Too large for int64: kept as text, so an error can show exactly what was written.
    std::optional<ParamValue> integer = parse_param(text, ParamType::integer);
    return integer ? *integer : ParamValue(text);
  }
  if (std::optional<ParamValue> number = parse_param(text, ParamType::number)) {
    return *number;
  }
  return text;
}

class Reader {
 public:
  explicit Reader(std::string file) : file_(std::move(file)) {}

  SourceLocation at(const YAML::Mark& mark) const {
    if (mark.is_null()) {
      return SourceLocation{file_, 0, 0};
    }
    return SourceLocation{file_, mark.line + 1, mark.column + 1};
  }

  PipelineDocument document(const YAML::Node& root) const {
    PipelineDocument doc;
    const SourceLocation root_where = at(root.Mark());
    doc.locations[""] = root_where;
    if (!root.IsMap()) {
      fail(root_where, "", "",
           "the top level must be a map with the keys pipeline and stages, not " + kind_of(root));
    }
    bool has_stages = false;
    for (const Entry& entry : entries(root, "", "", kTopKeys)) {
      doc.locations[entry.key] = entry.where;
      if (entry.key == "pipeline") {
        doc.name = text(entry, "");
        if (doc.name.empty()) {
          fail(entry.where, "", entry.key, "the pipeline needs a name, e.g. pipeline: demo");
        }
      } else if (entry.key == "broker") {
        doc.broker = text(entry, "");
        check_broker(doc.broker, entry.where);
      } else if (entry.key == "workers") {
        const std::int64_t workers = integer(entry, "");
        check_count(workers, 0, kMaxWorkers, entry.where, "", entry.key);
        doc.workers = static_cast<int>(workers);
      } else if (entry.key == "dead_letter") {
        doc.dead_letter = text(entry, "");
      } else if (entry.key == "autoscale") {
        doc.autoscale = autoscale(entry, doc.locations);
      } else if (entry.key == "wire") {
        doc.wire = wire(entry, doc.locations);
      } else if (entry.key == "trace") {
        doc.trace = trace(entry, doc.locations);
      } else if (entry.key == "live") {
        doc.live = live(entry, "", doc.locations);
      } else if (entry.key == "plugins") {
        doc.plugins = plugins(entry);
      } else {
        has_stages = true;
        doc.stages = stages(entry);
      }
    }
    if (doc.name.empty()) {
      fail(root_where, "", "pipeline",
           "missing; start the file with the pipeline's name, e.g. pipeline: demo");
    }
    if (!has_stages) {
      fail(root_where, "", "stages", "missing; list the stages under stages:");
    }
    return doc;
  }

 private:
  // The entries of a map in file order, after checking that every key is known and given once.
  std::vector<Entry> entries(const YAML::Node& map, std::string_view subject,
                             std::string_view prefix, const std::vector<std::string>& valid) const {
    std::vector<Entry> out;
    for (auto it = map.begin(); it != map.end(); ++it) {
      const SourceLocation where = at(it->first.Mark());
      if (!it->first.IsScalar()) {
        fail(where, subject, prefix, "keys must be plain words, not " + kind_of(it->first));
      }
      const std::string key = it->first.Scalar();
      const std::string path = std::string(prefix) + (prefix.empty() ? "" : ".") + key;
      if (!valid.empty() && std::find(valid.begin(), valid.end(), key) == valid.end()) {
        fail(where, subject, path, "unknown key" + unknown_hint(key, valid, "keys"));
      }
      for (const Entry& earlier : out) {
        if (earlier.key == key) {
          fail(
              where, subject, path,
              "given twice (first at line " + std::to_string(earlier.where.line) + "); remove one");
        }
      }
      out.push_back(Entry{key, it->second, where});
    }
    return out;
  }

  // The entries of a map-valued key (queue, batch, join, params; autoscale, wire), located as
  // "queue.capacity" in `locations`. A wrong kind of value is explained with `example` when given,
  // else with the valid keys.
  std::vector<Entry> sub_entries(const Entry& entry, std::string_view subject,
                                 const std::vector<std::string>& valid,
                                 std::map<std::string, SourceLocation>& locations,
                                 std::string_view example = {}) const {
    if (!entry.value.IsMap()) {
      fail(entry.where, subject, entry.key,
           (example.empty() ? "must be a map of " + join_names(valid)
                            : "must be a map, e.g. " + std::string(example)) +
               ", not " + kind_of(entry.value));
    }
    std::vector<Entry> out = entries(entry.value, subject, entry.key, valid);
    for (Entry& sub : out) {
      sub.key = entry.key + "." + sub.key;
      locations[sub.key] = sub.where;
    }
    return out;
  }

  // `autoscale: {}` turns it on with the defaults; each key changes one of them.
  AutoscaleConfig autoscale(const Entry& entry,
                            std::map<std::string, SourceLocation>& locations) const {
    AutoscaleConfig config;
    config.enabled = true;
    if (entry.value.IsNull()) return config;
    for (const Entry& sub :
         sub_entries(entry, "", kAutoscaleKeys, locations,
                     "autoscale: { max_consumers: 8 } (or {} for the defaults)")) {
      if (sub.key == "autoscale.max_consumers") {
        const std::int64_t value = integer(sub, "");
        check_count(value, 1, kMaxConsumers, sub.where, "", sub.key);
        config.max_consumers = static_cast<int>(value);
      } else if (sub.key == "autoscale.budget") {
        const std::int64_t value = integer(sub, "");
        check_count(value, 0, kMaxConsumers, sub.where, "", sub.key);
        config.budget = static_cast<int>(value);
      } else if (sub.key == "autoscale.interval_ms") {
        config.interval_ms = number(sub, "");
        check_duration(config.interval_ms, true, sub.where, "", sub.key);
      } else {
        const YAML::Node& list = sub.value;
        if (!list.IsSequence()) {
          fail(sub.where, "", sub.key,
               "must be a list of stage names, e.g. stages: [landmarks, iris], not " +
                   kind_of(list));
        }
        for (const YAML::Node& item : list) {
          if (!item.IsScalar()) {
            fail(at(item.Mark()), "", sub.key, "expected a stage name, not " + kind_of(item));
          }
          config.stages.push_back(item.Scalar());
        }
      }
    }
    return config;
  }

  // `plugins: [libmy_stages.so, ...]`: paths as written, each with its own line.
  std::vector<PluginPath> plugins(const Entry& entry) const {
    if (!entry.value.IsSequence()) {
      fail(entry.where, "", entry.key,
           "must be a list of plugin files, e.g. plugins: [build/libmy_stages.so], not " +
               kind_of(entry.value));
    }
    std::vector<PluginPath> out;
    for (const YAML::Node& item : entry.value) {
      if (!item.IsScalar() || item.Scalar().empty()) {
        fail(at(item.Mark()), "", entry.key,
             "expected the path of a plugin's .so file, not " +
                 (item.IsScalar() ? std::string("an empty value") : kind_of(item)));
      }
      out.push_back(PluginPath{item.Scalar(), at(item.Mark())});
    }
    return out;
  }

  // `wire: { images: jpeg, jpeg_quality: 80, image_refs: true, image_ttl_s: 60 }`; a key left
  // out keeps its default.
  WireConfig wire(const Entry& entry, std::map<std::string, SourceLocation>& locations) const {
    WireConfig config;
    for (const Entry& sub :
         sub_entries(entry, "", kWireKeys, locations, "wire: { images: jpeg, jpeg_quality: 90 }")) {
      if (sub.key == "wire.images") {
        config.images = text(sub, "");
        check_wire_images(config.images, sub.where);
      } else if (sub.key == "wire.image_refs") {
        config.image_refs = boolean(sub, "");
      } else if (sub.key == "wire.image_ttl_s") {
        const std::int64_t ttl = integer(sub, "");
        check_count(ttl, 1, kMaxImageTtlS, sub.where, "", sub.key);
        config.image_ttl_s = static_cast<int>(ttl);
      } else {
        const std::int64_t quality = integer(sub, "");
        check_count(quality, 1, 100, sub.where, "", sub.key);
        config.jpeg_quality = static_cast<int>(quality);
      }
    }
    return config;
  }

  // `trace: { path: t.json, every: 1, max_mb: 256 }`; path is required.
  TraceConfig trace(const Entry& entry, std::map<std::string, SourceLocation>& locations) const {
    TraceConfig config;
    for (const Entry& sub : sub_entries(entry, "", kTraceKeys, locations,
                                        "trace: { path: trace.json, every: 1, max_mb: 256 }")) {
      if (sub.key == "trace.path") {
        config.path = text(sub, "");
      } else if (sub.key == "trace.every") {
        const std::int64_t every = integer(sub, "");
        check_count(every, 1, kMaxTraceEvery, sub.where, "", sub.key);
        config.every = static_cast<int>(every);
      } else {
        config.max_mb = number(sub, "");
        check_megabytes(config.max_mb, sub.where, sub.key);
      }
    }
    if (config.path.empty()) {
      fail(entry.where, "", "trace.path",
           "missing; name the file to write, e.g. trace: { path: trace.json }");
    }
    return config;
  }

  // `live: { max_age_ms: 120, policy: newest }`, for the pipeline or (an override) a stage;
  // `live: {}` is live mode without an age limit.
  LiveConfig live(const Entry& entry, std::string_view subject,
                  std::map<std::string, SourceLocation>& locations) const {
    LiveConfig config;
    if (entry.value.IsNull()) return config;
    for (const Entry& sub : sub_entries(entry, subject, kLiveKeys, locations,
                                        "live: { max_age_ms: 120, policy: newest }")) {
      if (sub.key == "live.max_age_ms") {
        config.max_age_ms = number(sub, subject);
        check_max_age(config.max_age_ms, sub.where, subject, sub.key);
      } else {
        choice(sub, subject, {"newest"});
        config.policy = LiveConfig::Policy::newest;
      }
    }
    return config;
  }

  std::string text(const Entry& entry, std::string_view subject) const {
    if (entry.value.IsNull()) {
      fail(entry.where, subject, entry.key, "has no value; give one or remove the key");
    }
    if (!entry.value.IsScalar()) {
      fail(entry.where, subject, entry.key, "expected a single value, got " + kind_of(entry.value));
    }
    return entry.value.Scalar();
  }

  std::int64_t integer(const Entry& entry, std::string_view subject) const {
    const std::string value = text(entry, subject);
    if (std::optional<ParamValue> parsed = parse_param(value, ParamType::integer)) {
      return std::get<std::int64_t>(*parsed);
    }
    const bool fraction =
        parse_param(value, ParamType::number).has_value() && !looks_integer(value);
    fail(entry.where, subject, entry.key,
         std::string(fraction ? "must be a whole number" : "expected an integer") + ", got " +
             (fraction ? value : in_quotes(value)));
  }

  double number(const Entry& entry, std::string_view subject) const {
    const std::string value = text(entry, subject);
    if (std::optional<ParamValue> parsed = parse_param(value, ParamType::number)) {
      return std::get<double>(*parsed);
    }
    fail(entry.where, subject, entry.key, "expected a number, got " + in_quotes(value));
  }

  bool boolean(const Entry& entry, std::string_view subject) const {
    const std::string value = text(entry, subject);
    if (std::optional<bool> flag = yaml_boolean(value)) {
      return *flag;
    }
    fail(entry.where, subject, entry.key, "expected true or false, got " + in_quotes(value));
  }

  // One of `choices`, spelled exactly.
  std::string choice(const Entry& entry, std::string_view subject,
                     const std::vector<std::string>& choices) const {
    std::string value = text(entry, subject);
    if (std::find(choices.begin(), choices.end(), value) == choices.end()) {
      fail(entry.where, subject, entry.key,
           "unknown value " + in_quotes(value) + unknown_hint(value, choices, "values"));
    }
    return value;
  }

  std::vector<StageConfig> stages(const Entry& entry) const {
    if (entry.value.IsNull() || (entry.value.IsSequence() && entry.value.size() == 0)) {
      fail(entry.where, "", entry.key, "no stages; list at least a source and one stage");
    }
    if (!entry.value.IsSequence()) {
      fail(entry.where, "", entry.key,
           "must be a list of stages, each starting with '- name:', not " + kind_of(entry.value));
    }
    std::vector<StageConfig> out;
    std::size_t index = 0;
    for (const YAML::Node& node : entry.value) {
      out.push_back(stage(node, index++));
    }
    return out;
  }

  StageConfig stage(const YAML::Node& node, std::size_t index) const {
    StageConfig stage;
    const SourceLocation where = at(node.Mark());
    stage.locations[""] = where;
    if (!node.IsMap()) {
      std::string hint;
      if (node.IsScalar()) {
        hint = "; write '- name: " + node.Scalar() + "' and a type on the next line";
      }
      fail(where, stage_label("", index), "",
           "a stage is a map with at least name and type, not " + kind_of(node) + hint);
    }
    // The name first: every other message about this stage uses it.
    std::vector<Entry> all;
    {
      const YAML::Node name = node["name"];
      const bool named = name.IsDefined() && name.IsScalar() && !name.Scalar().empty();
      all = entries(node, stage_label(named ? name.Scalar() : "", index), "", kStageKeys);
    }
    for (const Entry& entry : all) {
      stage.locations[entry.key] = entry.where;
      if (entry.key == "name") {
        stage.name = text(entry, stage_label("", index));
        check_stage_name(stage.name, entry.where, index);
      }
    }
    if (stage.name.empty()) {
      check_stage_name(stage.name, where, index);
    }
    const std::string subject = stage_label(stage.name, index);

    for (const Entry& entry : all) {
      const std::string& key = entry.key;
      if (key == "type") {
        stage.type = text(entry, subject);
      } else if (key == "params") {
        read_params(entry, subject, stage);
      } else if (key == "consumers") {
        const std::int64_t consumers = integer(entry, subject);
        check_count(consumers, 1, kMaxConsumers, entry.where, subject, key);
        stage.consumers = static_cast<int>(consumers);
      } else if (key == "queue") {
        for (const Entry& sub : sub_entries(entry, subject, kQueueKeys, stage.locations)) {
          if (sub.key == "queue.capacity") {
            const std::int64_t capacity = integer(sub, subject);
            check_count(capacity, 1, kMaxQueueCapacity, sub.where, subject, sub.key);
            stage.queue_capacity = static_cast<std::size_t>(capacity);
          } else {
            const std::string overflow =
                choice(sub, subject, {"block", "drop_oldest", "drop_newest"});
            stage.overflow = overflow == "block"         ? Overflow::block
                             : overflow == "drop_oldest" ? Overflow::drop_oldest
                                                         : Overflow::drop_newest;
          }
        }
      } else if (key == "state") {
        const std::string state = text(entry, subject);
        if (state != "per_stream") {
          fail(entry.where, subject, key,
               "unknown state " + in_quotes(state) +
                   "; the only state is per_stream (leave the key out for a stateless stage)");
        }
        stage.per_stream = true;
      } else if (key == "ordered") {
        stage.ordered = boolean(entry, subject);
      } else if (key == "partitions") {
        const std::int64_t partitions = integer(entry, subject);
        check_count(partitions, 1, kMaxConsumers, entry.where, subject, key);
        stage.partitions = static_cast<int>(partitions);
      } else if (key == "blocking") {
        stage.blocking = boolean(entry, subject);
      } else if (key == "batch") {
        for (const Entry& sub : sub_entries(entry, subject, kBatchKeys, stage.locations)) {
          if (sub.key == "batch.max_batch") {
            const std::int64_t max_batch = integer(sub, subject);
            check_count(max_batch, 1, kMaxBatch, sub.where, subject, sub.key);
            stage.max_batch = static_cast<std::size_t>(max_batch);
          } else {
            stage.max_delay_ms = number(sub, subject);
            check_duration(stage.max_delay_ms, false, sub.where, subject, sub.key);
          }
        }
      } else if (key == "inputs") {
        read_inputs(entry, subject, stage);
      } else if (key == "live") {
        stage.live = live(entry, subject, stage.locations);
      } else if (key == "join") {
        for (const Entry& sub : sub_entries(entry, subject, kJoinKeys, stage.locations)) {
          if (sub.key == "join.timeout_ms") {
            stage.join_timeout_ms = number(sub, subject);
            check_duration(stage.join_timeout_ms, true, sub.where, subject, sub.key);
          } else {
            stage.join_on_timeout = choice(sub, subject, {"drop", "partial"}) == "drop"
                                        ? JoinTimeout::drop
                                        : JoinTimeout::partial;
          }
        }
      }
    }
    if (stage.type.empty()) {
      const auto found = stage.locations.find("type");
      fail(found == stage.locations.end() ? where : found->second, subject, "type",
           "missing; every stage needs a type, e.g. type: model.spin");
    }
    return stage;
  }

  void read_params(const Entry& entry, std::string_view subject, StageConfig& stage) const {
    if (entry.value.IsNull()) {
      return;  // `params:` with nothing under it: no params
    }
    for (const Entry& param : sub_entries(entry, subject, {}, stage.locations)) {
      const YAML::Node& value = param.value;
      if (value.IsScalar()) {
        stage.params[param.key.substr(entry.key.size() + 1)] = typed_scalar(value);
      } else if (value.IsSequence()) {
        std::vector<double> numbers;
        for (std::size_t i = 0; i < value.size(); ++i) {
          const YAML::Node item = value[i];
          std::optional<ParamValue> number;
          if (item.IsScalar()) {
            number = parse_param(item.Scalar(), ParamType::number);
          }
          if (!number) {
            fail(at(item.Mark()), subject, param.key,
                 "item " + std::to_string(i + 1) + " is " +
                     (item.IsScalar() ? in_quotes(item.Scalar()) : kind_of(item)) +
                     "; a list param holds only numbers");
          }
          numbers.push_back(std::get<double>(*number));
        }
        stage.params[param.key.substr(entry.key.size() + 1)] = std::move(numbers);
      } else if (value.IsNull()) {
        fail(param.where, subject, param.key, "has no value; give one or remove the key");
      } else {
        fail(param.where, subject, param.key,
             "a param is a single value or a list of numbers, not " + kind_of(value));
      }
    }
  }

  void read_inputs(const Entry& entry, std::string_view subject, StageConfig& stage) const {
    const YAML::Node& value = entry.value;
    if (value.IsScalar()) {
      stage.inputs.push_back(value.Scalar());
      stage.locations["inputs[0]"] = at(value.Mark());
      return;
    }
    if (!value.IsSequence()) {
      fail(entry.where, subject, entry.key,
           "must be a list of stage names, e.g. inputs: [detect, track], not " + kind_of(value));
    }
    if (value.size() == 0) {
      fail(entry.where, subject, entry.key,
           "the list is empty; remove the key (a stage reads the previous stage by default, a "
           "source reads nothing)");
    }
    for (std::size_t i = 0; i < value.size(); ++i) {
      const YAML::Node item = value[i];
      const SourceLocation where = at(item.Mark());
      if (!item.IsScalar()) {
        fail(where, subject, entry.key,
             "item " + std::to_string(i + 1) + " is " + kind_of(item) + ", not a stage name");
      }
      const std::string& input = item.Scalar();
      if (std::find(stage.inputs.begin(), stage.inputs.end(), input) != stage.inputs.end()) {
        fail(where, subject, entry.key, "lists '" + input + "' twice; remove one");
      }
      stage.locations["inputs[" + std::to_string(i) + "]"] = where;
      stage.inputs.push_back(input);
    }
  }

  std::string file_;
};

// The documents of a YAML stream, counted with yaml-cpp's parser: the first two, and whether the
// parser got stuck. YAML::LoadAll cannot be used: yaml-cpp 0.7 does not consume a stray ',' at
// the top level and reports an empty document for it again and again, which LoadAll collects
// without end until memory runs out (jbeder/yaml-cpp#1040; fixed upstream after 0.7 by stopping
// at the first empty document, as this does).
class DocumentCount final : public YAML::EventHandler {
 public:
  struct Document {
    YAML::Mark first{};  // where its first node is
    bool seen = false;   // a node was seen
    bool empty = true;   // nothing but a null
  };

  /// Reads documents until the stream ends, a second one is found, or the parser is stuck.
  explicit DocumentCount(std::string_view yaml) {
    std::istringstream in{std::string(yaml)};
    YAML::Parser parser(in);
    while (documents.size() < 2 && parser.HandleNextDocument(*this)) {
      if (!documents.back().empty) continue;
      // An empty document ends the stream, unless the parser is stuck on a token it cannot read:
      // it then reports another empty document at the same place.
      const std::size_t at = documents.size();
      if (parser.HandleNextDocument(*this) && documents.size() > at && documents.back().empty &&
          documents.back().first.pos == documents[at - 1].first.pos) {
        stuck = documents.back().first;
      }
      break;
    }
  }

  std::vector<Document> documents;
  std::optional<YAML::Mark> stuck;

 private:
  void node(const YAML::Mark& mark, bool null) {
    Document& d = documents.back();
    if (!d.seen) d.first = mark;
    d.seen = true;
    if (!null) d.empty = false;
  }
  void OnDocumentStart(const YAML::Mark&) override { documents.emplace_back(); }
  void OnDocumentEnd() override {}
  void OnNull(const YAML::Mark& mark, YAML::anchor_t) override { node(mark, true); }
  void OnAlias(const YAML::Mark& mark, YAML::anchor_t) override { node(mark, false); }
  void OnScalar(const YAML::Mark& mark, const std::string&, YAML::anchor_t,
                const std::string&) override {
    node(mark, false);
  }
  void OnSequenceStart(const YAML::Mark& mark, const std::string&, YAML::anchor_t,
                       YAML::EmitterStyle::value) override {
    node(mark, false);
  }
  void OnSequenceEnd() override {}
  void OnMapStart(const YAML::Mark& mark, const std::string&, YAML::anchor_t,
                  YAML::EmitterStyle::value) override {
    node(mark, false);
  }
  void OnMapEnd() override {}
};

}  // namespace

PipelineDocument read_pipeline_yaml(std::string_view yaml, const std::string& file_name) {
  Reader reader(file_name);
  try {
    const DocumentCount count(yaml);
    if (count.stuck) {
      throw ConfigError(reader.at(*count.stuck), "",
                        "invalid YAML: nothing readable here (a stray ',' or the like); check "
                        "indentation, brackets and quotes");
    }
    if (count.documents.empty() || count.documents.front().empty) {
      throw ConfigError(SourceLocation{file_name, 1, 1}, "",
                        "the file is empty; a pipeline needs at least the keys pipeline and "
                        "stages");
    }
    if (count.documents.size() > 1) {
      throw ConfigError(reader.at(count.documents[1].first), "",
                        "a second YAML document starts here (after a '---', or text left of "
                        "where the first one began); a pipeline file holds one: remove it, or "
                        "split the file in two");
    }
    return reader.document(YAML::Load(std::string(yaml)));  // the first document only
  } catch (const YAML::Exception& error) {
    throw ConfigError(reader.at(error.mark), "",
                      "invalid YAML: " + error.msg + "; check indentation, brackets and quotes");
  }
}

}  // namespace micromodels::detail
