// Pipeline: reading YAML, the C++ builder, validation against a registry, text and DOT output.
// About 1,100 lines: one test per rule of the format and of validation, each naming the
// key and its file:line, on the helpers at the top.
#include "micromodels/pipeline.hpp"

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <memory>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "micromodels/registry.hpp"

namespace micromodels {
namespace {

class Pass : public Stage {
 public:
  void process(Packet packet, std::vector<Packet>& out) override {
    out.push_back(std::move(packet));
  }
};

class Empty : public Source {
 public:
  bool next(std::vector<Packet>&) override { return false; }
};

ParamSpec spec(std::string name, ParamType type, std::optional<ParamValue> default_value) {
  ParamSpec out;
  out.name = std::move(name);
  out.type = type;
  out.default_value = std::move(default_value);
  return out;
}

StageType type(std::string name, const std::vector<std::string>& reads,
               const std::vector<std::string>& writes, bool source = false, bool batching = false) {
  StageType out;
  out.name = std::move(name);
  out.info = [reads, writes, batching](const Params&) {
    StageInfo info;
    info.reads = reads;
    info.writes = writes;
    info.batching = batching;
    return info;
  };
  if (source) {
    out.make_source = [](const Params&) { return std::make_unique<Empty>(); };
  } else {
    out.make = [](const Params&) { return std::make_unique<Pass>(); };
  }
  return out;
}

// A face pipeline's types, with the fields each reads and writes; independent of the built-ins.
const Registry& registry() {
  static const Registry kRegistry = [] {
    Registry r;
    StageType camera = type("test.camera", {}, {"image"}, true);
    camera.params = {spec("count", ParamType::integer, std::int64_t{10}),
                     spec("path", ParamType::text, std::string("cam0"))};
    camera.info = [](const Params& params) {
      return StageInfo{.writes = {"image"},
                       .files_read = {{.param = "path", .path = params.text("path")}}};
    };
    r.add(camera);
    StageType detect = type("face.detect", {"image"}, {"faces"});
    detect.params = {spec("model", ParamType::text, std::string("hog")),
                     spec("every", ParamType::integer, std::int64_t{10}),
                     spec("threshold", ParamType::number, 0.5),
                     spec("scales", ParamType::numbers, std::vector<double>{1.0}),
                     spec("upsample", ParamType::boolean, false)};
    r.add(detect);
    r.add(type("face.track", {"image", "faces"}, {"faces", "tracks"}));
    r.add(type("face.landmarks", {"image", "faces"}, {"points"}));
    r.add(type("gaze.redirect", {"image", "points"}, {"eyes"}));
    r.add(type("model.batched", {"image"}, {"embedding"}, false, true));
    StageType sink = type("sink.jsonl", {}, {});
    sink.params = {spec("path", ParamType::text, std::nullopt)};
    sink.info = [](const Params& params) {
      return StageInfo{.files_written = {{.param = "path", .path = params.text("path")}}};
    };
    r.add(sink);
    return r;
  }();
  return kRegistry;
}

// what() of the ConfigError thrown by reading `yaml` and validating it, or "" when it is valid.
std::string error_of(std::string_view yaml) {
  try {
    Pipeline::from_yaml_string(yaml, "bad.yaml").validate(registry());
  } catch (const ConfigError& error) {
    return error.what();
  }
  return "";
}

// The same for a pipeline built in C++.
std::string error_of(const Pipeline& pipeline) {
  try {
    pipeline.validate(registry());
  } catch (const ConfigError& error) {
    return error.what();
  }
  return "";
}

StageConfig stage(std::string name, std::string type_name) {
  StageConfig out;
  out.name = std::move(name);
  out.type = std::move(type_name);
  return out;
}

// A valid 4-stage pipeline that bad files below start from.
constexpr std::string_view kHeader = R"(pipeline: faces
stages:
  - name: camera
    type: test.camera
  - name: detect
    type: face.detect
)";

std::string with_header(std::string_view rest) { return std::string(kHeader) + std::string(rest); }

// ---------------------------------------------------------------------------------------------
// Reading YAML

TEST(PipelineYaml, ReadsEveryKey) {
  const std::string yaml = R"(pipeline: faces
broker: redis://127.0.0.1:6379
workers: 3
dead_letter: failed
stages:
  - name: camera
    type: test.camera
    params: { count: 20 }
  - name: detect
    type: face.detect
    consumers: 4
    queue: { capacity: 8, overflow: drop_oldest }
    blocking: true
    params:
      every: 5
      model: cnn
  - name: track
    type: face.track
    state: per_stream
    inputs: [camera, detect]
    join: { timeout_ms: 250, on_timeout: partial }
  - name: embed
    type: model.batched
    inputs: camera
    batch: { max_batch: 16, max_delay_ms: 2.5 }
    queue: { overflow: drop_newest }
  - name: sink
    type: sink.jsonl
    ordered: true
    blocking: false
    inputs: [track, embed]
    params: { path: out.jsonl }
  - name: failed
    type: sink.jsonl
    params: { path: failed.jsonl }
)";
  Pipeline p = Pipeline::from_yaml_string(yaml, "faces.yaml");
  EXPECT_NO_THROW(p.validate(registry()));
  EXPECT_EQ(p.name(), "faces");
  EXPECT_EQ(p.broker(), "redis://127.0.0.1:6379");
  EXPECT_EQ(p.workers(), 3);
  EXPECT_EQ(p.dead_letter(), "failed");
  ASSERT_EQ(p.stages().size(), 6U);

  const StageConfig& camera = p.stage("camera");
  EXPECT_EQ(camera.type, "test.camera");
  EXPECT_EQ(camera.params.at("count"), ParamValue(std::int64_t{20}));
  EXPECT_EQ(camera.consumers, 1);
  EXPECT_TRUE(camera.inputs.empty());

  const StageConfig& detect = p.stage("detect");
  EXPECT_EQ(detect.consumers, 4);
  EXPECT_EQ(detect.queue_capacity, 8U);
  EXPECT_EQ(detect.overflow, Overflow::drop_oldest);
  EXPECT_EQ(detect.blocking, std::optional<bool>(true));
  EXPECT_EQ(detect.params.at("every"), ParamValue(std::int64_t{5}));
  EXPECT_EQ(detect.params.at("model"), ParamValue(std::string("cnn")));
  EXPECT_FALSE(detect.ordered);
  EXPECT_FALSE(detect.per_stream);

  const StageConfig& track = p.stage("track");
  EXPECT_TRUE(track.per_stream);
  EXPECT_EQ(track.inputs, (std::vector<std::string>{"camera", "detect"}));
  EXPECT_DOUBLE_EQ(track.join_timeout_ms, 250);
  EXPECT_EQ(track.join_on_timeout, JoinTimeout::partial);

  const StageConfig& embed = p.stage("embed");
  EXPECT_EQ(embed.inputs, std::vector<std::string>{"camera"});
  EXPECT_EQ(embed.max_batch, 16U);
  EXPECT_DOUBLE_EQ(embed.max_delay_ms, 2.5);
  EXPECT_EQ(embed.queue_capacity, 64U);
  EXPECT_EQ(embed.overflow, Overflow::drop_newest);

  const StageConfig& sink = p.stage("sink");
  EXPECT_TRUE(sink.ordered);
  EXPECT_EQ(sink.blocking, std::optional<bool>(false));
  EXPECT_FALSE(p.stage("failed").blocking.has_value());

  // Every key is located (1-based), for errors found later.
  EXPECT_EQ(detect.locations.at("").str(), "faces.yaml:9:5");
  EXPECT_EQ(detect.locations.at("consumers").str(), "faces.yaml:11:5");
  EXPECT_EQ(detect.locations.at("queue.overflow").str(), "faces.yaml:12:27");
  EXPECT_EQ(detect.locations.at("params.model").str(), "faces.yaml:16:7");
  EXPECT_EQ(track.locations.at("inputs[1]").str(), "faces.yaml:20:22");
  EXPECT_EQ(track.locations.at("join.on_timeout").str(), "faces.yaml:21:30");
}

TEST(PipelineYaml, DefaultsForWhatIsNotWritten) {
  Pipeline p = Pipeline::from_yaml_string(kHeader);
  EXPECT_EQ(p.broker(), "memory");
  EXPECT_EQ(p.workers(), 0);
  EXPECT_EQ(p.dead_letter(), "");
  const StageConfig& detect = p.stage("detect");
  EXPECT_EQ(detect.consumers, 1);
  EXPECT_EQ(detect.queue_capacity, 64U);
  EXPECT_EQ(detect.overflow, Overflow::block);
  EXPECT_FALSE(detect.per_stream);
  EXPECT_FALSE(detect.ordered);
  EXPECT_FALSE(detect.blocking.has_value());
  EXPECT_EQ(detect.max_batch, 1U);
  EXPECT_DOUBLE_EQ(detect.max_delay_ms, 0);
  EXPECT_TRUE(detect.inputs.empty());
  EXPECT_DOUBLE_EQ(detect.join_timeout_ms, 1000);
  EXPECT_EQ(detect.join_on_timeout, JoinTimeout::drop);
  EXPECT_TRUE(detect.params.empty());
}

TEST(PipelineYaml, ParamScalarsAreTypedByTheirText) {
  Pipeline p = Pipeline::from_yaml_string(with_header(R"(    params:
      a: 10
      b: "10"
      c: 2.5
      d: -1e3
      e: true
      f: False
      g: yes
      h: hog
      i: [1, 2.5, -3]
      j: []
      k: '2.5'
      l: 99999999999999999999
      m: !!str 7
)"));
  const auto& params = p.stage("detect").params;
  EXPECT_EQ(params.at("a"), ParamValue(std::int64_t{10}));
  EXPECT_EQ(params.at("b"), ParamValue(std::string("10")));  // quoted: text
  EXPECT_EQ(params.at("c"), ParamValue(2.5));
  EXPECT_EQ(params.at("d"), ParamValue(-1000.0));
  EXPECT_EQ(params.at("e"), ParamValue(true));
  EXPECT_EQ(params.at("f"), ParamValue(false));
  EXPECT_EQ(params.at("g"), ParamValue(std::string("yes")));  // YAML 1.2: not a boolean
  EXPECT_EQ(params.at("h"), ParamValue(std::string("hog")));
  EXPECT_EQ(params.at("i"), ParamValue(std::vector<double>{1, 2.5, -3}));
  EXPECT_EQ(params.at("j"), ParamValue(std::vector<double>{}));
  EXPECT_EQ(params.at("k"), ParamValue(std::string("2.5")));
  EXPECT_EQ(params.at("l"), ParamValue(std::string("99999999999999999999")));
  EXPECT_EQ(params.at("m"), ParamValue(std::string("7")));
}

TEST(PipelineYaml, QuotedParamsAreStillTypedByTheStageType) {
  // Text reaches Params::resolve, which parses it as the declared type.
  Pipeline p = Pipeline::from_yaml_string(
      with_header(R"(    params: { every: "5", upsample: "yes", model: "5" }
)"));
  EXPECT_NO_THROW(p.validate(registry()));
}

TEST(PipelineYaml, InvalidYamlNamesLineAndColumn) {
  EXPECT_EQ(error_of("pipeline: demo\nstages: [\n"),
            "bad.yaml:3:1: invalid YAML: end of sequence flow not found; check indentation, "
            "brackets and quotes");
  EXPECT_EQ(error_of("pipeline: demo\nstages:\n  - name: a\n   type: b\n"),
            "bad.yaml:4:4: invalid YAML: end of sequence not found; check indentation, brackets "
            "and quotes");
  EXPECT_EQ(error_of(""),
            "bad.yaml:1:1: the file is empty; a pipeline needs at least the keys pipeline and "
            "stages");
  EXPECT_EQ(error_of("- camera\n- detect\n"),
            "bad.yaml:1:1: the top level must be a map with the keys pipeline and stages, not a "
            "list");
  EXPECT_EQ(error_of(with_header("---\npipeline: other\n")),
            "bad.yaml:8:1: a second YAML document starts here (after a '---', or text left of "
            "where the first one began); a pipeline file holds one: remove it, or split the file "
            "in two");
  // yaml-cpp's parser does not move past a stray ',' at the top level (found by the YAML
  // fuzzer: it used to fill memory for ever); an error, at once.
  EXPECT_EQ(error_of(","),
            "bad.yaml:1:1: invalid YAML: nothing readable here (a stray ',' or the like); check "
            "indentation, brackets and quotes");
  EXPECT_EQ(error_of("# a pipeline\n\n  ,\n"),
            "bad.yaml:3:3: invalid YAML: nothing readable here (a stray ',' or the like); check "
            "indentation, brackets and quotes");
}

TEST(PipelineYaml, PluginsKeepTheirLinesAndResolveFromTheFilesFolder) {
  const std::string yaml =
      "pipeline: demo\nplugins:\n  - lib/libone.so\n  - /abs/libtwo.so\n"
      "stages:\n  - { name: source, type: synthetic.source }\n";
  const micromodels::Pipeline text = micromodels::Pipeline::from_yaml_string(yaml, "p.yaml");
  ASSERT_EQ(text.plugins().size(), 2U);
  EXPECT_EQ(text.plugins()[0].path, "lib/libone.so");
  EXPECT_EQ(text.plugins()[0].where.str(), "p.yaml:3:5");
  EXPECT_EQ(text.plugins()[1].path, "/abs/libtwo.so");
  EXPECT_EQ(text.plugins()[1].where.str(), "p.yaml:4:5");

  const std::filesystem::path dir =
      std::filesystem::temp_directory_path() / "micromodels_pipeline_test_plugins";
  std::filesystem::create_directories(dir);
  std::ofstream(dir / "p.yaml") << yaml;
  const micromodels::Pipeline file = micromodels::Pipeline::from_yaml_file(dir / "p.yaml");
  ASSERT_EQ(file.plugins().size(), 2U);
  EXPECT_EQ(file.plugins()[0].path, dir / "lib/libone.so");
  EXPECT_EQ(file.plugins()[1].path, "/abs/libtwo.so");
  std::filesystem::remove_all(dir);

  EXPECT_EQ(error_of("pipeline: demo\nplugins: [[a]]\nstages:\n  - name: camera\n"),
            "bad.yaml:2:11: key 'plugins': expected the path of a plugin's .so file, not a list");
}

TEST(PipelineYaml, LiveBudgetForThePipelineAndAStage) {
  const Pipeline p = Pipeline::from_yaml_string(
      "pipeline: faces\nlive: { max_age_ms: 120, policy: newest }\nstages:\n"
      "  - name: camera\n    type: test.camera\n  - name: detect\n    type: face.detect\n"
      "    live: { max_age_ms: 80 }\n  - name: out\n    type: sink.jsonl\n"
      "    params: { path: x.jsonl }\n",
      "live.yaml");
  p.validate(registry());
  ASSERT_TRUE(p.live());
  EXPECT_DOUBLE_EQ(p.live()->max_age_ms, 120);
  EXPECT_EQ(p.live()->policy, LiveConfig::Policy::newest);
  EXPECT_DOUBLE_EQ(p.live_at("detect")->max_age_ms, 80);
  EXPECT_DOUBLE_EQ(p.live_at("out")->max_age_ms, 120) << "the pipeline's budget by default";
  EXPECT_EQ(p.location("live").str(), "live.yaml:2:1");
  EXPECT_FALSE(Pipeline::from_yaml_string(kHeader).live()) << "batch mode without the key";
  EXPECT_FALSE(Pipeline::from_yaml_string(kHeader).live_at("detect"));
  const Pipeline empty = Pipeline::from_yaml_string("live: {}\n" + std::string(kHeader));
  ASSERT_TRUE(empty.live());
  EXPECT_DOUBLE_EQ(empty.live()->max_age_ms, 0) << "live without an age limit";
}

TEST(PipelineYaml, BadLiveValuesNameTheLineAndSayWhatToDo) {
  EXPECT_EQ(error_of("live: { max_age_ms: -5 }\n" + std::string(kHeader)),
            "bad.yaml:1:9: key 'live.max_age_ms': must be from 0 (no age limit) to 3600000 "
            "milliseconds, got -5; a live budget is a packet's most age since capture, e.g. 120");
  EXPECT_EQ(error_of("live: { max_age_ms: soon }\n" + std::string(kHeader)),
            "bad.yaml:1:9: key 'live.max_age_ms': expected a number, got \"soon\"");
  EXPECT_EQ(error_of("live: { policy: oldest }\n" + std::string(kHeader)),
            "bad.yaml:1:9: key 'live.policy': unknown value \"oldest\"; valid values: newest");
  EXPECT_EQ(error_of("live: 120\n" + std::string(kHeader)),
            "bad.yaml:1:1: key 'live': must be a map, e.g. live: { max_age_ms: 120, policy: "
            "newest }, not a single value");
  EXPECT_EQ(error_of(with_header("    live: { max_age_ms: 80 }\n")),
            "bad.yaml:7:5: stage 'detect': key 'live': a stage's live: overrides the pipeline's "
            "budget, and this pipeline has none; add live: { max_age_ms: 120 } at the top level, "
            "or remove this key");
  EXPECT_EQ(error_of("live: {}\npipeline: faces\nstages:\n  - name: camera\n    type: "
                     "test.camera\n    live: { max_age_ms: 80 }\n  - name: detect\n    type: "
                     "face.detect\n"),
            "bad.yaml:6:5: stage 'camera': key 'live': a source is never held back in live mode "
            "and its packets are not old yet; put the budget on the stages after it");
  Pipeline built("built");
  built.set_live(LiveConfig{.max_age_ms = std::nan("")});
  built.add(stage("camera", "test.camera"));
  EXPECT_EQ(error_of(built),
            "key 'live.max_age_ms': must be from 0 (no age limit) to 3600000 milliseconds, got "
            "nan; a live budget is a packet's most age since capture, e.g. 120");
}

TEST(PipelineYaml, UnknownKeysSuggestTheClosestKnownKey) {
  EXPECT_EQ(error_of("pipeline: demo\nstage:\n  - name: camera\n"),
            "bad.yaml:2:1: key 'stage': unknown key; did you mean 'stages'? Valid keys: pipeline, "
            "broker, workers, dead_letter, autoscale, wire, trace, live, plugins, stages");
  EXPECT_EQ(error_of(with_header("    consumer: 2\n")),
            "bad.yaml:7:5: stage 'detect': key 'consumer': unknown key; did you mean 'consumers'? "
            "Valid keys: name, type, params, consumers, queue, state, ordered, blocking, batch, "
            "inputs, join, partitions, live");
  EXPECT_EQ(error_of(with_header("    colour: red\n")),
            "bad.yaml:7:5: stage 'detect': key 'colour': unknown key; valid keys: name, type, "
            "params, consumers, queue, state, ordered, blocking, batch, inputs, join, partitions, "
            "live");
  EXPECT_EQ(error_of(with_header("    queue: { capacity: 8, overflw: block }\n")),
            "bad.yaml:7:27: stage 'detect': key 'queue.overflw': unknown key; did you mean "
            "'overflow'? Valid keys: capacity, overflow");
  EXPECT_EQ(error_of(with_header("    batch:\n      max_batches: 4\n")),
            "bad.yaml:8:7: stage 'detect': key 'batch.max_batches': unknown key; did you mean "
            "'max_batch'? Valid keys: max_batch, max_delay_ms");
  EXPECT_EQ(error_of(with_header("    join: { timeout: 5 }\n")),
            "bad.yaml:7:13: stage 'detect': key 'join.timeout': unknown key; valid keys: "
            "timeout_ms, on_timeout");
}

TEST(PipelineYaml, KeysGivenTwice) {
  EXPECT_EQ(error_of(with_header("    params:\n      every: 5\n      every: 6\n")),
            "bad.yaml:9:7: stage 'detect': key 'params.every': given twice (first at line 8); "
            "remove one");
  EXPECT_EQ(error_of(with_header("    consumers: 2\n    consumers: 3\n")),
            "bad.yaml:8:5: stage 'detect': key 'consumers': given twice (first at line 7); "
            "remove one");
}

TEST(PipelineYaml, MissingRequiredKeys) {
  EXPECT_EQ(error_of("stages:\n  - name: camera\n    type: test.camera\n"),
            "bad.yaml:1:1: key 'pipeline': missing; start the file with the pipeline's name, "
            "e.g. pipeline: demo");
  EXPECT_EQ(error_of("pipeline: demo\n"),
            "bad.yaml:1:1: key 'stages': missing; list the stages under stages:");
  EXPECT_EQ(error_of("pipeline: demo\nstages: []\n"),
            "bad.yaml:2:1: key 'stages': no stages; list at least a source and one stage");
  EXPECT_EQ(error_of("pipeline: demo\nstages:\n"),
            "bad.yaml:2:1: key 'stages': no stages; list at least a source and one stage");
  EXPECT_EQ(error_of(with_header("  - type: face.track\n")),
            "bad.yaml:7:5: stage #3: key 'name': missing; every stage needs a unique name, e.g. "
            "name: detect");
  EXPECT_EQ(error_of(with_header("  - name: track\n    consumers: 2\n")),
            "bad.yaml:7:5: stage 'track': key 'type': missing; every stage needs a type, e.g. "
            "type: model.spin");
  EXPECT_EQ(error_of(with_header("  - name: track\n    type:\n")),
            "bad.yaml:8:5: stage 'track': key 'type': has no value; give one or remove the key");
}

TEST(PipelineYaml, ValuesOfTheWrongKind) {
  EXPECT_EQ(error_of(with_header("    ordered: yes\n")),
            "bad.yaml:7:5: stage 'detect': key 'ordered': expected true or false, got \"yes\"");
  EXPECT_EQ(error_of(with_header("    consumers: 2.5\n")),
            "bad.yaml:7:5: stage 'detect': key 'consumers': must be a whole number, got 2.5");
  EXPECT_EQ(error_of(with_header("    consumers: two\n")),
            "bad.yaml:7:5: stage 'detect': key 'consumers': expected an integer, got \"two\"");
  EXPECT_EQ(error_of(with_header("    queue: 8\n")),
            "bad.yaml:7:5: stage 'detect': key 'queue': must be a map of capacity, overflow, not "
            "a single value");
  EXPECT_EQ(error_of(with_header("    queue: { overflow: drop_olde }\n")),
            "bad.yaml:7:14: stage 'detect': key 'queue.overflow': unknown value \"drop_olde\"; "
            "did you mean 'drop_oldest'? Valid values: block, drop_oldest, drop_newest");
  EXPECT_EQ(error_of(with_header("    join: { on_timeout: wait }\n")),
            "bad.yaml:7:13: stage 'detect': key 'join.on_timeout': unknown value \"wait\"; valid "
            "values: drop, partial");
  EXPECT_EQ(error_of(with_header("    state: stateful\n")),
            "bad.yaml:7:5: stage 'detect': key 'state': unknown state \"stateful\"; the only "
            "state is per_stream (leave the key out for a stateless stage)");
  EXPECT_EQ(error_of(with_header("    params: [1, 2]\n")),
            "bad.yaml:7:5: stage 'detect': key 'params': must be a map of (none), not a list");
  EXPECT_EQ(error_of(with_header("    params: { scales: [1, two] }\n")),
            "bad.yaml:7:27: stage 'detect': key 'params.scales': item 2 is \"two\"; a list param "
            "holds only numbers");
  EXPECT_EQ(error_of(with_header("    params: { every: }\n")),
            "bad.yaml:7:15: stage 'detect': key 'params.every': has no value; give one or remove "
            "the key");
  EXPECT_EQ(error_of(with_header("    params: { crop: { x: 1 } }\n")),
            "bad.yaml:7:15: stage 'detect': key 'params.crop': a param is a single value or a "
            "list of numbers, not a map");
  EXPECT_EQ(error_of(with_header("    inputs: []\n")),
            "bad.yaml:7:5: stage 'detect': key 'inputs': the list is empty; remove the key (a "
            "stage reads the previous stage by default, a source reads nothing)");
  EXPECT_EQ(error_of(with_header("    inputs: [camera, camera]\n")),
            "bad.yaml:7:22: stage 'detect': key 'inputs': lists 'camera' twice; remove one");
  EXPECT_EQ(error_of("pipeline: demo\nstages:\n  - camera\n"),
            "bad.yaml:3:5: stage #1: a stage is a map with at least name and type, not a single "
            "value; write '- name: camera' and a type on the next line");
  EXPECT_EQ(error_of("pipeline: demo\nstages: { camera: test.camera }\n"),
            "bad.yaml:2:1: key 'stages': must be a list of stages, each starting with '- name:', "
            "not a map");
  EXPECT_EQ(error_of("pipeline: [a]\nstages: []\n"),
            "bad.yaml:1:1: key 'pipeline': expected a single value, got a list");
}

TEST(PipelineYaml, StageNamesAreLowerCaseWords) {
  EXPECT_EQ(error_of("pipeline: demo\nstages:\n  - name: Camera-1\n    type: test.camera\n"),
            "bad.yaml:3:5: stage 'Camera-1': key 'name': \"Camera-1\" is not a valid stage name; "
            "use lower-case letters, digits and '_', e.g. camera_1");
}

TEST(PipelineYaml, ImpossibleNumbers) {
  EXPECT_EQ(error_of(with_header("    consumers: 0\n")),
            "bad.yaml:7:5: stage 'detect': key 'consumers': must be between 1 and 1024, got 0");
  EXPECT_EQ(error_of(with_header("    consumers: 5000\n")),
            "bad.yaml:7:5: stage 'detect': key 'consumers': must be between 1 and 1024, got 5000");
  EXPECT_EQ(error_of(with_header("    queue:\n      capacity: 0\n")),
            "bad.yaml:8:7: stage 'detect': key 'queue.capacity': must be between 1 and 1048576, "
            "got 0");
  EXPECT_EQ(error_of(with_header("    batch: { max_batch: 0 }\n")),
            "bad.yaml:7:14: stage 'detect': key 'batch.max_batch': must be between 1 and 4096, "
            "got 0");
  EXPECT_EQ(error_of(with_header("    batch: { max_delay_ms: -1 }\n")),
            "bad.yaml:7:14: stage 'detect': key 'batch.max_delay_ms': must be 0 or more "
            "(milliseconds), got -1");
  EXPECT_EQ(error_of(with_header("    join: { timeout_ms: 0 }\n")),
            "bad.yaml:7:13: stage 'detect': key 'join.timeout_ms': must be more than 0 "
            "(milliseconds), got 0");
  EXPECT_EQ(error_of("pipeline: demo\nworkers: -2\n"),
            "bad.yaml:2:1: key 'workers': must be between 0 and 1024, got -2");
  EXPECT_EQ(error_of("pipeline: demo\nbroker: memroy\n"),
            "bad.yaml:2:1: key 'broker': unknown broker \"memroy\"; did you mean 'memory'? Use "
            "memory (in this process) or redis://host:port");
  const std::string in_file = error_of("pipeline: demo\nbroker: redis://app:s3cret@h:6379\n");
  EXPECT_TRUE(
      in_file.starts_with("bad.yaml:2:1: key 'broker': broker 'redis://app:***@h:6379': "
                          "a password in the URL would show"))
      << in_file;
  EXPECT_EQ(in_file.find("s3cret"), std::string::npos) << in_file;
  // The URL's grammar is checked with the file (`inspect` too), not first when a run connects.
  const std::string port = error_of("pipeline: demo\nbroker: redis://127.0.0.1:notaport\n");
  EXPECT_TRUE(
      port.starts_with("bad.yaml:2:1: key 'broker': broker 'redis://127.0.0.1:notaport': "
                       "port 'notaport' is not a number from 1 to 65535"))
      << port;
}

// ---------------------------------------------------------------------------------------------
// Validation against a registry

TEST(PipelineValidate, AcceptsAGoodPipeline) {
  EXPECT_EQ(error_of(with_header(R"(    consumers: 2
  - name: track
    type: face.track
    state: per_stream
  - name: sink
    type: sink.jsonl
    ordered: true
    params: { path: out.jsonl }
)")),
            "");
}

TEST(PipelineValidate, ParamsAreCheckedAtTheirKey) {
  EXPECT_EQ(error_of(with_header("    params: { every: ten }\n")),
            "bad.yaml:7:15: stage 'detect': param 'every': expected an integer, got \"ten\"");
  EXPECT_EQ(error_of(with_header("    params:\n      model: hog\n      evrey: 3\n")),
            "bad.yaml:9:7: stage 'detect': param 'evrey': unknown param; did you mean 'every'? "
            "Valid params: model, every, threshold, scales, upsample");
  // A required param that is missing points at the stage's params, else at the stage.
  EXPECT_EQ(error_of(with_header("  - name: sink\n    type: sink.jsonl\n    params: {}\n")),
            "bad.yaml:9:5: stage 'sink': param 'path': required but not given; set it under "
            "params (text)");
  EXPECT_EQ(error_of(with_header("  - name: sink\n    type: sink.jsonl\n")),
            "bad.yaml:7:5: stage 'sink': param 'path': required but not given; set it under "
            "params (text)");
  try {
    Pipeline::from_yaml_string(with_header("    params: { every: ten }\n"), "bad.yaml")
        .validate(registry());
    FAIL() << "expected ConfigError";
  } catch (const ConfigError& error) {
    EXPECT_EQ(error.key(), "params.every");
    EXPECT_EQ(error.where().line, 7);
    EXPECT_EQ(error.where().column, 15);
  }
}

// A type that carries each stream's state from packet to packet needs them one at a time, in
// order: without state: per_stream it would see them out of order, and the pipeline says so.
// The built-in stages' ranges are checked at validation (what `inspect` runs), at the param's
// line, as every stage type's should be.
TEST(PipelineValidate, TheBuiltInStagesRangesAreCheckedAtTheParamsLine) {
  const auto error_with = [](const std::string& yaml) -> std::string {
    try {
      Pipeline::from_yaml_string(yaml, "bad.yaml").validate(Registry::with_builtins());
    } catch (const ConfigError& error) {
      return error.what();
    }
    return "";
  };
  const std::string head =
      "pipeline: ranges\nstages:\n  - name: source\n"
      "    type: synthetic.source\n";
  EXPECT_EQ(error_with(head + "    params: { streams: 0 }\n"),
            "bad.yaml:5:15: stage 'source': param 'streams' must be at least 1; got 0");
  EXPECT_EQ(error_with(head + "  - name: work\n    type: model.spin\n    params:\n"
                              "      jitter: 5\n"),
            "bad.yaml:8:7: stage 'work': param 'jitter' must be within 0..1; got 5");
  EXPECT_EQ(error_with(head + "  - name: work\n    type: model.sleep\n"
                              "    params: { service_ms: -1 }\n"),
            "bad.yaml:7:15: stage 'work': param 'service_ms' must be at least 0; got -1");
}

TEST(PipelineValidate, ATypeThatKeepsStreamStateNeedsStatePerStream) {
  Registry with_follow = registry();
  StageType follow = type("test.follow", {"image"}, {"tracks"});
  follow.info = [](const Params&) {
    return StageInfo{.reads = {"image"}, .writes = {"tracks"}, .per_stream = true};
  };
  with_follow.add(follow);
  const auto error_with = [&](const std::string& rest) -> std::string {
    try {
      Pipeline::from_yaml_string(with_header(rest), "bad.yaml").validate(with_follow);
    } catch (const ConfigError& error) {
      return error.what();
    }
    return "";
  };
  EXPECT_EQ(error_with("  - name: follow\n    type: test.follow\n    consumers: 2\n"),
            "bad.yaml:7:5: stage 'follow': key 'state': stage type 'test.follow' carries each "
            "stream's state from one packet to the next, so it needs them one at a time and in "
            "order; add state: per_stream");
  EXPECT_EQ(error_with("  - name: follow\n    type: test.follow\n    state: per_stream\n"), "");
}

// One stage's output may not be another's input (it would be destroyed while it is read) or
// another's output; files are compared by where they are, not by how they are written.
TEST(PipelineValidate, AFileWrittenIsNoOtherStagesInputOrOutput) {
  const auto sinks = [](std::string_view first, std::string_view second) {
    return with_header("  - name: sink\n    type: sink.jsonl\n    params: { path: " +
                       std::string(first) + " }\n  - name: copy\n    type: sink.jsonl\n" +
                       "    inputs: [detect]\n    params: { path: " + std::string(second) + " }\n");
  };
  EXPECT_EQ(error_of(sinks("out/a.jsonl", "out/b.jsonl")), "");
  EXPECT_EQ(error_of(sinks("out/a.jsonl", "out/../out/./a.jsonl")),
            "bad.yaml:13:15: stage 'copy': key 'params.path': 'out/../out/./a.jsonl' is written "
            "by stage 'sink' (params.path) too; give each output a file of its own");
  EXPECT_EQ(error_of(sinks("cam0", "out/b.jsonl")),
            "bad.yaml:9:15: stage 'sink': key 'params.path': 'cam0' is the input of stage "
            "'camera' (params.path): writing it would destroy it while it is read; write to "
            "another file");
  // An override names itself.
  Pipeline p = Pipeline::from_yaml_string(sinks("out/a.jsonl", "out/b.jsonl"), "bad.yaml");
  p.set_param("copy.path=cam0");
  EXPECT_EQ(error_of(p),
            "--set copy.path=cam0: stage 'copy': key 'params.path': 'cam0' is the input of stage "
            "'camera' (params.path): writing it would destroy it while it is read; write to "
            "another file");
}

TEST(PipelineValidate, UnknownTypeSuggestsARegisteredOne) {
  EXPECT_EQ(error_of("pipeline: demo\nstages:\n  - name: camera\n    type: test.camera\n"
                     "  - name: detect\n    type: face.detct\n"),
            "bad.yaml:6:5: stage 'detect': key 'type': unknown stage type 'face.detct'; did you "
            "mean 'face.detect'? Valid types: face.detect, face.landmarks, face.track, "
            "gaze.redirect, model.batched, sink.jsonl, test.camera");
}

TEST(PipelineValidate, DuplicateNames) {
  EXPECT_EQ(error_of(with_header("  - name: camera\n    type: face.track\n")),
            "bad.yaml:7:5: stage 'camera': key 'name': the name is already used by stage #1 (line "
            "3); stage names must be unique");
}

TEST(PipelineValidate, InputsMustNameOtherExistingStages) {
  EXPECT_EQ(error_of(with_header("    inputs: [camra]\n")),
            "bad.yaml:7:14: stage 'detect': key 'inputs': unknown stage 'camra'; did you mean "
            "'camera'? Valid stages: camera, detect");
  EXPECT_EQ(error_of(with_header("    inputs:\n      - camera\n      - detect\n")),
            "bad.yaml:9:9: stage 'detect': key 'inputs': a stage cannot read its own output; "
            "remove 'detect'");
}

TEST(PipelineValidate, CyclesAreNamed) {
  EXPECT_EQ(error_of(R"(pipeline: demo
stages:
  - name: camera
    type: test.camera
  - name: a
    type: face.detect
    inputs: [camera, c]
  - name: b
    type: face.track
  - name: c
    type: face.landmarks
)"),
            "bad.yaml:7:5: stage 'a': key 'inputs': the inputs form a cycle a -> b -> c -> a, "
            "which no packet from a source can enter; make one of these stages read from a stage "
            "outside the cycle");
}

TEST(PipelineValidate, FieldsReadMustBeWrittenUpstream) {
  EXPECT_EQ(error_of(R"(pipeline: demo
stages:
  - name: camera
    type: test.camera
  - name: landmarks
    type: face.landmarks
)"),
            "bad.yaml:6:5: stage 'landmarks': reads field 'faces', which no stage upstream writes "
            "(upstream fields: image (from 'camera')); add a stage that writes 'faces' before "
            "'landmarks' or change its inputs");
  // Upstream is transitive and follows inputs, not the order of the list: `gaze` reads
  // `points`, written by `landmarks`, but its input is `detect`.
  EXPECT_EQ(error_of(with_header(R"(  - name: landmarks
    type: face.landmarks
  - name: gaze
    type: gaze.redirect
    inputs: [detect]
)")),
            "bad.yaml:10:5: stage 'gaze': reads field 'points', which no stage upstream writes "
            "(upstream fields: faces (from 'detect'), image (from 'camera')); add a stage that "
            "writes 'points' before 'gaze' or change its inputs");
  EXPECT_EQ(error_of(with_header(R"(  - name: landmarks
    type: face.landmarks
  - name: gaze
    type: gaze.redirect
)")),
            "");
}

TEST(PipelineValidate, FanInMergesFieldsAndMayWriteOneFieldTwice) {
  // Both branches write `faces`; `merge` reads fields from both.
  const std::string yaml = R"(pipeline: demo
stages:
  - name: camera
    type: test.camera
  - name: detect
    type: face.detect
  - name: track
    type: face.track
    inputs: [camera, detect]
  - name: marks
    type: face.landmarks
    inputs: [detect]
  - name: gaze
    type: gaze.redirect
    inputs: [track, marks]
    join: { timeout_ms: 100, on_timeout: partial }
)";
  EXPECT_EQ(error_of(yaml), "");
  Pipeline p = Pipeline::from_yaml_string(yaml);
  EXPECT_EQ(p.inputs_of(4, registry()), (std::vector<std::string>{"track", "marks"}));
}

TEST(PipelineValidate, JoinNeedsTwoInputs) {
  EXPECT_EQ(error_of(with_header("    join: { timeout_ms: 50 }\n")),
            "bad.yaml:7:5: stage 'detect': key 'join': join applies only to a stage with two or "
            "more inputs; remove it");
}

TEST(PipelineValidate, BatchingNeedsABatchingType) {
  EXPECT_EQ(error_of(with_header("    batch: { max_batch: 8 }\n")),
            "bad.yaml:7:14: stage 'detect': key 'batch.max_batch': stage type 'face.detect' "
            "processes one packet at a time (it does not batch); remove batch or set max_batch: 1");
  EXPECT_EQ(error_of(with_header(
                "  - name: embed\n    type: model.batched\n    batch: { max_batch: 8 }\n")),
            "");
  // max_batch 1 (no batching) is fine anywhere but on a source.
  EXPECT_EQ(error_of(with_header("    batch: { max_batch: 1, max_delay_ms: 0 }\n")), "");
}

TEST(PipelineValidate, SourcesTakeNoInputsOrderOrState) {
  const std::string head = "pipeline: demo\nstages:\n  - name: camera\n    type: test.camera\n";
  EXPECT_EQ(error_of(head + "    ordered: true\n"),
            "bad.yaml:5:5: stage 'camera': key 'ordered': a source emits each stream in order "
            "already; put ordered on the stage that needs order");
  EXPECT_EQ(error_of(head + "    state: per_stream\n"),
            "bad.yaml:5:5: stage 'camera': key 'state': a source has no per-stream state to pin; "
            "remove the key");
  EXPECT_EQ(error_of(head + "    consumers: 2\n"),
            "bad.yaml:5:5: stage 'camera': key 'consumers': a source runs on one thread; remove "
            "the key and give the stages after it more consumers");
  EXPECT_EQ(error_of(head + "  - name: cam2\n    type: test.camera\n    inputs: [camera]\n"),
            "bad.yaml:7:5: stage 'cam2': key 'inputs': a source (type 'test.camera') reads no "
            "inputs; remove the key");
}

TEST(PipelineValidate, TheFirstStageMustBeASource) {
  EXPECT_EQ(error_of("pipeline: demo\nstages:\n  - name: detect\n    type: face.detect\n"),
            "bad.yaml:3:5: stage 'detect': key 'inputs': stage type 'face.detect' is not a source "
            "and nothing comes before it; put a source first or give inputs");
  // Without any source nothing would ever flow, even when every stage has inputs.
  EXPECT_EQ(error_of("pipeline: demo\nstages:\n  - name: a\n    type: face.detect\n"
                     "    inputs: [b]\n  - name: b\n    type: face.track\n"),
            "bad.yaml:2:1: key 'stages': no stage is a source, so no packet would ever flow; "
            "start with a source type (test.camera)");
}

TEST(PipelineValidate, DeadLetter) {
  const std::string sinks =
      "  - name: failed\n    type: sink.jsonl\n    params: { path: failed.jsonl }\n";
  EXPECT_EQ(error_of("dead_letter: failed\n" + with_header(sinks)), "");
  EXPECT_EQ(error_of("dead_letter: faild\n" + with_header(sinks)),
            "bad.yaml:1:1: key 'dead_letter': unknown stage 'faild'; did you mean 'failed'? Valid "
            "stages: camera, detect, failed");
  EXPECT_EQ(error_of("dead_letter: camera\n" + with_header(sinks)),
            "bad.yaml:1:1: key 'dead_letter': stage 'camera' is a source; name a stage that takes "
            "packets (a sink)");
  EXPECT_EQ(error_of("dead_letter: failed\n" + with_header(sinks + "    inputs: [detect]\n")),
            "bad.yaml:11:5: stage 'failed': key 'inputs': the dead-letter stage receives the "
            "failed packets of every stage; remove its inputs");
}

TEST(PipelineYaml, Autoscale) {
  EXPECT_FALSE(Pipeline::from_yaml_string(with_header("")).autoscale().enabled);
  const AutoscaleConfig defaults =
      Pipeline::from_yaml_string("autoscale: {}\n" + with_header("")).autoscale();
  EXPECT_TRUE(defaults.enabled);
  EXPECT_EQ(defaults.max_consumers, 8);
  EXPECT_EQ(defaults.budget, 0);
  EXPECT_TRUE(defaults.stages.empty());
  const AutoscaleConfig given =
      Pipeline::from_yaml_string(
          "autoscale: { max_consumers: 3, budget: 5, interval_ms: 250, stages: [detect] }\n" +
          with_header(""))
          .autoscale();
  EXPECT_EQ(given.max_consumers, 3);
  EXPECT_EQ(given.budget, 5);
  EXPECT_DOUBLE_EQ(given.interval_ms, 250);
  EXPECT_EQ(given.stages, std::vector<std::string>{"detect"});
  EXPECT_EQ(error_of("autoscale: { stages: [detect] }\n" + with_header("")), "");

  EXPECT_EQ(error_of("autoscale: { max_consumer: 3 }\n" + with_header("")),
            "bad.yaml:1:14: key 'autoscale.max_consumer': unknown key; did you mean "
            "'max_consumers'? Valid keys: max_consumers, budget, interval_ms, stages");
  EXPECT_EQ(error_of("autoscale: { max_consumers: 0 }\n" + with_header("")),
            "bad.yaml:1:14: key 'autoscale.max_consumers': must be between 1 and 1024, got 0");
  EXPECT_EQ(error_of("autoscale: { interval_ms: 0 }\n" + with_header("")),
            "bad.yaml:1:14: key 'autoscale.interval_ms': must be more than 0 (milliseconds), got 0");
  EXPECT_EQ(error_of("autoscale: 4\n" + with_header("")),
            "bad.yaml:1:1: key 'autoscale': must be a map, e.g. autoscale: { max_consumers: 8 } "
            "(or {} for the defaults), not a single value");
  EXPECT_EQ(error_of("autoscale: { stages: [detct] }\n" + with_header("")),
            "bad.yaml:1:14: key 'autoscale.stages': unknown stage 'detct'; did you mean 'detect'? "
            "Valid stages: camera, detect");
  EXPECT_EQ(error_of("autoscale: { stages: [camera] }\n" + with_header("")),
            "bad.yaml:1:14: key 'autoscale.stages': stage 'camera' is a source; a source has "
            "exactly one consumer");
}

TEST(PipelineYaml, Wire) {
  const WireConfig defaults = Pipeline::from_yaml_string(with_header("")).wire();
  EXPECT_EQ(defaults.images, "raw");
  EXPECT_EQ(defaults.jpeg_quality, 90);
  const WireConfig given =
      Pipeline::from_yaml_string("wire: { images: jpeg, jpeg_quality: 75 }\n" + with_header(""))
          .wire();
  EXPECT_EQ(given.images, "jpeg");
  EXPECT_EQ(given.jpeg_quality, 75);
  EXPECT_TRUE(defaults.image_refs);
  EXPECT_EQ(defaults.image_ttl_s, 60);
  const WireConfig refs =
      Pipeline::from_yaml_string("wire: { image_refs: false, image_ttl_s: 300 }\n" + with_header(""))
          .wire();
  EXPECT_FALSE(refs.image_refs);
  EXPECT_EQ(refs.image_ttl_s, 300);
  EXPECT_EQ(error_of("wire: { image_refs: maybe }\n" + with_header("")),
            "bad.yaml:1:9: key 'wire.image_refs': expected true or false, got \"maybe\"");
  EXPECT_EQ(error_of("wire: { image_ttl_s: 0 }\n" + with_header("")),
            "bad.yaml:1:9: key 'wire.image_ttl_s': must be between 1 and 604800, got 0");
  EXPECT_EQ(Pipeline::from_yaml_string("wire:\n  images: png\n" + with_header("")).wire().images,
            "png");
  EXPECT_EQ(error_of("wire: { images: png }\n" + with_header("")), "");

  EXPECT_EQ(error_of("wire: { images: jpg }\n" + with_header("")),
            "bad.yaml:1:9: key 'wire.images': unknown value \"jpg\"; did you mean 'jpeg'? Valid "
            "values: raw, png, jpeg (png is lossless, jpeg lossy, with wire.jpeg_quality)");
  EXPECT_EQ(error_of("wire: { images: webp }\n" + with_header("")),
            "bad.yaml:1:9: key 'wire.images': unknown value \"webp\"; valid values: raw, png, "
            "jpeg (png is lossless, jpeg lossy, with wire.jpeg_quality)");
  EXPECT_EQ(error_of("wire: { jpeg_quality: 0 }\n" + with_header("")),
            "bad.yaml:1:9: key 'wire.jpeg_quality': must be between 1 and 100, got 0");
  EXPECT_EQ(error_of("wire: { jpeg_quality: high }\n" + with_header("")),
            "bad.yaml:1:9: key 'wire.jpeg_quality': expected an integer, got \"high\"");
  EXPECT_EQ(error_of("wire: { image: jpeg }\n" + with_header("")),
            "bad.yaml:1:9: key 'wire.image': unknown key; did you mean 'images'? Valid keys: "
            "images, jpeg_quality, image_refs, image_ttl_s");
  EXPECT_EQ(error_of("wire: jpeg\n" + with_header("")),
            "bad.yaml:1:1: key 'wire': must be a map, e.g. wire: { images: jpeg, jpeg_quality: "
            "90 }, not a single value");
  EXPECT_EQ(error_of(with_header("") + "wire: { images: raw }\nwire: { images: png }\n"),
            "bad.yaml:8:1: key 'wire': given twice (first at line 7); remove one");

  // Built in C++: the same checks, without a location.
  Pipeline p("demo");
  p.add(stage("camera", "test.camera"));
  p.add(stage("detect", "face.detect"));
  p.set_wire({.images = "gif", .jpeg_quality = 90});
  EXPECT_EQ(error_of(p), "key 'wire.images': unknown value \"gif\"; valid values: raw, png, "
                         "jpeg (png is lossless, jpeg lossy, with wire.jpeg_quality)");
  p.set_wire({.images = "jpeg", .jpeg_quality = 101});
  EXPECT_EQ(error_of(p), "key 'wire.jpeg_quality': must be between 1 and 100, got 101");
}

TEST(PipelineValidate, OptionalReadsNeedNoWriterUpstream) {
  Registry r = registry();
  StageType reader = type("test.optional", {"image"}, {});
  reader.info = [](const Params&) {
    return StageInfo{.reads = {"image"}, .optional_reads = {"faces", "nobody_writes_this"}};
  };
  r.add(reader);
  Pipeline p("demo");
  p.add(stage("camera", "test.camera"));
  p.add(stage("maybe", "test.optional"));
  EXPECT_NO_THROW(p.validate(r));
}

TEST(PipelineValidate, BuilderPipelinesHaveNoLocations) {
  Pipeline p("demo");
  p.add(stage("camera", "test.camera")).add(stage("detect", "face.detect"));
  EXPECT_EQ(error_of(p), "");

  StageConfig bad = stage("detect2", "face.detect");
  bad.consumers = 0;
  Pipeline q = p;
  q.add(bad);
  EXPECT_EQ(error_of(q), "stage 'detect2': key 'consumers': must be between 1 and 1024, got 0");

  StageConfig typo = stage("track", "face.trak");
  Pipeline r = p;
  r.add(typo);
  EXPECT_EQ(error_of(r),
            "stage 'track': key 'type': unknown stage type 'face.trak'; did you mean "
            "'face.track'? Valid types: face.detect, face.landmarks, face.track, gaze.redirect, "
            "model.batched, sink.jsonl, test.camera");

  StageConfig params = stage("detect3", "face.detect");
  params.params["every"] = 2.5;
  Pipeline s = p;
  s.add(params);
  EXPECT_EQ(error_of(s), "stage 'detect3': param 'every': expected an integer, got 2.5");

  Pipeline t = p;
  t.add(stage("Bad Name", "face.track"));
  EXPECT_EQ(error_of(t),
            "stage 'Bad Name': key 'name': \"Bad Name\" is not a valid stage name; use lower-case "
            "letters, digits and '_', e.g. bad_name");

  Pipeline u = p;
  u.set_workers(-1);
  EXPECT_EQ(error_of(u), "key 'workers': must be between 0 and 1024, got -1");
  Pipeline v = p;
  v.set_broker("redis://");
  EXPECT_TRUE(
      error_of(v).starts_with("key 'broker': broker 'redis://': no host; expected "
                              "redis://host:port[/db]"))
      << error_of(v);
  v.set_broker("redis://app@10.0.0.5:6379/1");  // an ACL user, its password from the environment
  EXPECT_EQ(error_of(v), "");
  for (const std::string url : {"redis://app:s3cret@h:6379", "redis://:s3cret@h", "rediss://a:s3cret@h"}) {
    v.set_broker(url);
    const std::string error = error_of(v);
    EXPECT_TRUE(error.starts_with("key 'broker': broker '")) << error;
    EXPECT_NE(error.find("a password in the URL would show"), std::string::npos) << error;
    EXPECT_NE(error.find("MICROMODELS_REDIS_PASSWORD_FILE"), std::string::npos) << error;
    EXPECT_EQ(error.find("s3cret"), std::string::npos) << error;
  }
  Pipeline w = p;
  w.set_dead_letter("detect");
  EXPECT_EQ(error_of(w), "");
  EXPECT_EQ(error_of(Pipeline("empty")),
            "key 'stages': no stages; list at least a source and one "
            "stage");
}

// ---------------------------------------------------------------------------------------------
// Overrides

TEST(PipelineOverrides, SetParamStoresTextTypedLaterByTheStageType) {
  Pipeline p = Pipeline::from_yaml_string(with_header("    params: { every: 3 }\n"), "faces.yaml");
  p.set_param("detect.every=7");
  p.set_param("camera", "path", "/dev/video1");
  EXPECT_EQ(p.stage("detect").params.at("every"), ParamValue(std::string("7")));
  EXPECT_EQ(p.stage("camera").params.at("path"), ParamValue(std::string("/dev/video1")));
  EXPECT_NO_THROW(p.validate(registry()));
  p.set_param("detect.scales=[1, 1.5]");
  p.set_param("detect.model=");  // empty text is a value
  EXPECT_EQ(p.stage("detect").params.at("model"), ParamValue(std::string()));
  EXPECT_NO_THROW(p.validate(registry()));
}

TEST(PipelineOverrides, ErrorsInOverridesNameTheOverride) {
  Pipeline p = Pipeline::from_yaml_string(with_header("    params: { every: 3 }\n"), "faces.yaml");
  p.set_param("detect.every=ten");
  EXPECT_EQ(error_of(p),
            "--set detect.every=ten: stage 'detect': param 'every': expected an integer, got "
            "\"ten\"");
  Pipeline q = Pipeline::from_yaml_string(kHeader, "faces.yaml");
  q.set_param("detect.evry=3");
  EXPECT_EQ(error_of(q),
            "--set detect.evry=3: stage 'detect': param 'evry': unknown param; did you mean "
            "'every'? Valid params: model, every, threshold, scales, upsample");
}

TEST(PipelineOverrides, UnknownStagesAndBadAssignments) {
  Pipeline p = Pipeline::from_yaml_string(kHeader);
  auto message = [&p](std::string_view assignment) {
    try {
      p.set_param(assignment);
    } catch (const ConfigError& error) {
      return std::string(error.what());
    }
    return std::string();
  };
  // The stage named wrong is said with the argument that named it.
  EXPECT_EQ(message("detetc.every=3"),
            "--set detetc.every=3: unknown stage 'detetc'; did you mean 'detect'? Valid stages: "
            "camera, detect");
  EXPECT_EQ(message("sink.path=x"),
            "--set sink.path=x: unknown stage 'sink'; valid stages: camera, detect");
  EXPECT_EQ(message("every=3"),
            "cannot read \"every=3\" as stage.param=value; write e.g. source.count=100");
  EXPECT_EQ(message("detect.every"),
            "cannot read \"detect.every\" as stage.param=value; write e.g. source.count=100");
  EXPECT_EQ(message("detect.=3"),
            "cannot read \"detect.=3\" as stage.param=value; write e.g. source.count=100");
  EXPECT_THROW(p.set_consumers("detct", 2), ConfigError);
  try {
    p.set_consumers("detct", 2, "--consumers");
    ADD_FAILURE() << "an unknown stage was taken";
  } catch (const ConfigError& error) {
    EXPECT_EQ(std::string(error.what()),
              "--consumers detct=2: unknown stage 'detct'; did you mean 'detect'? Valid stages: "
              "camera, detect");
  }
  EXPECT_THROW((void)p.stage("nope"), ConfigError);
}

TEST(PipelineOverrides, SetConsumers) {
  Pipeline p = Pipeline::from_yaml_string(with_header("    consumers: 2\n"));
  p.set_consumers("detect", 6);
  EXPECT_EQ(p.stage("detect").consumers, 6);
  EXPECT_FALSE(p.stage("detect").locations.contains("consumers"));
  try {
    p.set_consumers("detect", 0);
    FAIL() << "expected ConfigError";
  } catch (const ConfigError& error) {
    EXPECT_EQ(std::string(error.what()),
              "stage 'detect': key 'consumers': must be between 1 and 1024, got 0");
  }
  EXPECT_EQ(p.stage("detect").consumers, 6);
}

// ---------------------------------------------------------------------------------------------
// Inputs, text and DOT

TEST(PipelineGraph, InputsOf) {
  Pipeline p("demo");
  p.add(stage("cam_a", "test.camera"))
      .add(stage("cam_b", "test.camera"))  // a second source reads nothing, despite its place
      .add(stage("detect", "face.detect"))
      .add(stage("failed", "sink.jsonl"))
      .add(stage("track", "face.track"));
  StageConfig both = stage("sink", "sink.jsonl");
  both.inputs = {"cam_a", "track"};
  p.add(both);
  p.set_dead_letter("failed");
  EXPECT_TRUE(p.inputs_of(0, registry()).empty());
  EXPECT_TRUE(p.inputs_of(1, registry()).empty());
  EXPECT_EQ(p.inputs_of(2, registry()), std::vector<std::string>{"cam_b"});
  EXPECT_TRUE(p.inputs_of(3, registry()).empty());  // the dead-letter stage is outside the flow
  EXPECT_EQ(p.inputs_of(4, registry()), std::vector<std::string>{"detect"});  // skips it
  EXPECT_EQ(p.inputs_of(5, registry()), (std::vector<std::string>{"cam_a", "track"}));
  EXPECT_THROW((void)p.inputs_of(6, registry()), std::out_of_range);
}

Pipeline graph_pipeline() {
  return Pipeline::from_yaml_string(R"(pipeline: faces
workers: 2
dead_letter: failed
stages:
  - name: camera
    type: test.camera
  - name: detect
    type: face.detect
    consumers: 3
    queue: { capacity: 8, overflow: drop_oldest }
  - name: track
    type: face.track
    state: per_stream
    blocking: false
  - name: embed
    type: model.batched
    inputs: [camera]
    batch: { max_batch: 16, max_delay_ms: 2.5 }
  - name: sink
    type: sink.jsonl
    ordered: true
    blocking: true
    inputs: [track, embed]
    join: { timeout_ms: 500, on_timeout: partial }
    params: { path: out.jsonl }
  - name: failed
    type: sink.jsonl
    params: { path: failed.jsonl }
)");
}

TEST(PipelineGraph, ToText) {
  Pipeline p = graph_pipeline();
  ASSERT_NO_THROW(p.validate(registry()));
  // One line per stage: name, type, consumers, queue, flags, inputs; columns aligned.
  EXPECT_EQ(p.to_text(registry()), R"(pipeline faces: 6 stages, broker memory, workers 2
  camera  test.camera    ×1  source
  detect  face.detect    ×3  queue 8 drop_oldest                                                <- camera
  track   face.track     ×1  queue 64 block       per_stream, not blocking                      <- detect
  embed   model.batched  ×1  queue 64 block       batch 16 within 2.5 ms                        <- camera
  sink    sink.jsonl     ×1  queue 64 block       ordered, blocking, join partial after 500 ms  <- track, embed
  failed  sink.jsonl     ×1  queue 64 block       dead letter
)");
}

TEST(PipelineGraph, ToDot) {
  Pipeline p = graph_pipeline();
  EXPECT_EQ(p.to_dot(registry()),
            "digraph \"faces\" {\n"
            "  rankdir=LR;\n"
            "  node [shape=box, style=rounded, fontname=\"Helvetica\"];\n"
            "  \"camera\" [label=\"camera\\ntest.camera ×1\", shape=invhouse, style=\"\"];\n"
            "  \"detect\" [label=\"detect\\nface.detect ×3\"];\n"
            "  \"track\" [label=\"track\\nface.track ×1\", peripheries=2];\n"
            "  \"embed\" [label=\"embed\\nmodel.batched ×1\"];\n"
            "  \"sink\" [label=\"sink\\nsink.jsonl ×1\", peripheries=2];\n"
            "  \"failed\" [label=\"failed\\nsink.jsonl ×1\", style=\"rounded,dashed\"];\n"
            "  \"camera\" -> \"detect\";\n"
            "  \"detect\" -> \"track\";\n"
            "  \"camera\" -> \"embed\";\n"
            "  \"track\" -> \"sink\";\n"
            "  \"embed\" -> \"sink\";\n"
            "}\n");
}

TEST(PipelineGraph, DotEscapesQuotes) {
  Pipeline p("say \"hi\"");
  p.add(stage("a\"b", "x\\y"));
  EXPECT_EQ(p.to_dot(registry()),
            "digraph \"say \\\"hi\\\"\" {\n"
            "  rankdir=LR;\n"
            "  node [shape=box, style=rounded, fontname=\"Helvetica\"];\n"
            "  \"a\\\"b\" [label=\"a\\\"b\\nx\\\\y ×1\"];\n"
            "}\n");
}

TEST(PipelineGraph, GraphvizAcceptsTheDot) {
  if (std::system("command -v dot > /dev/null 2>&1") != 0) {
    GTEST_SKIP() << "graphviz's dot is not installed";
  }
  const std::filesystem::path dir = std::filesystem::temp_directory_path();
  const std::filesystem::path dot = dir / "micromodels_pipeline_test.dot";
  const std::filesystem::path svg = dir / "micromodels_pipeline_test.svg";
  const std::filesystem::path log = dir / "micromodels_pipeline_test.log";
  std::ofstream(dot) << graph_pipeline().to_dot(registry());
  const std::string command =
      "dot -Tsvg '" + dot.string() + "' -o '" + svg.string() + "' 2> '" + log.string() + "'";
  EXPECT_EQ(std::system(command.c_str()), 0);
  std::ifstream in(svg);
  const std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  EXPECT_NE(text.find("<svg"), std::string::npos);
  EXPECT_NE(text.find("face.detect ×3"), std::string::npos);
  // Five edges, one per input.
  std::size_t edges = 0;
  for (std::size_t at = text.find("class=\"edge\""); at != std::string::npos;
       at = text.find("class=\"edge\"", at + 1)) {
    ++edges;
  }
  EXPECT_EQ(edges, 5U);
  std::ifstream warnings(log);
  EXPECT_EQ(
      std::string((std::istreambuf_iterator<char>(warnings)), std::istreambuf_iterator<char>()),
      "");
  std::filesystem::remove(dot);
  std::filesystem::remove(svg);
  std::filesystem::remove(log);
}

// ---------------------------------------------------------------------------------------------
// Files

TEST(PipelineFile, MissingFile) {
  try {
    (void)Pipeline::from_yaml_file("no/such/pipeline.yaml");
    FAIL() << "expected ConfigError";
  } catch (const ConfigError& error) {
    EXPECT_TRUE(std::string(error.what())
                    .starts_with("no/such/pipeline.yaml: no such file; check "
                                 "the path (relative paths start from "))
        << error.what();
    EXPECT_EQ(error.where().file, "no/such/pipeline.yaml");
  }
}

TEST(PipelineFile, ErrorsNameTheFileAsGiven) {
  const std::filesystem::path path =
      std::filesystem::temp_directory_path() / "micromodels_pipeline_test_bad.yaml";
  std::ofstream(path) << with_header("    consumers: 0\n");
  try {
    Pipeline::from_yaml_file(path).validate(registry());
    FAIL() << "expected ConfigError";
  } catch (const ConfigError& error) {
    EXPECT_EQ(std::string(error.what()),
              path.string() +
                  ":7:5: stage 'detect': key 'consumers': must be between 1 and "
                  "1024, got 0");
  }
  std::filesystem::remove(path);
}

TEST(PipelineFile, TheExamplePipelineIsValid) {
  Pipeline p = Pipeline::from_yaml_file(std::filesystem::path(MICROMODELS_SOURCE_DIR) /
                                        "pipelines/example.yaml");
  EXPECT_EQ(p.name(), "example");
  ASSERT_EQ(p.stages().size(), 3U);
  EXPECT_EQ(p.stages()[0].type, "synthetic.source");
  EXPECT_EQ(p.stages()[0].params.at("count"), ParamValue(std::int64_t{2000}));
  EXPECT_EQ(p.stages()[1].type, "model.spin");
  EXPECT_EQ(p.stages()[1].consumers, 2);
  EXPECT_EQ(p.stages()[1].params.at("service_ms"), ParamValue(0.5));
  EXPECT_EQ(p.stages()[2].type, "sink.jsonl");
  EXPECT_TRUE(p.stages()[2].ordered);
  EXPECT_EQ(p.stages()[2].params.at("path"), ParamValue(std::string("out/example.jsonl")));
  // Against the real built-in types.
  EXPECT_NO_THROW(p.validate(Registry::with_builtins()));
}

TEST(SourceLocation, Formats) {
  EXPECT_EQ((SourceLocation{"a.yaml", 3, 7}).str(), "a.yaml:3:7");
  EXPECT_EQ((SourceLocation{"--set a.b=1", 0, 0}).str(), "--set a.b=1");
  EXPECT_EQ(SourceLocation{}.str(), "");
  EXPECT_EQ(std::string(ConfigError({"a.yaml", 3, 7}, "k", "stage 'x': key 'k': bad").what()),
            "a.yaml:3:7: stage 'x': key 'k': bad");
  EXPECT_EQ(std::string(ConfigError({}, "k", "stage 'x': key 'k': bad").what()),
            "stage 'x': key 'k': bad");
}

}  // namespace
}  // namespace micromodels
