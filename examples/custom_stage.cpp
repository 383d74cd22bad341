// custom_stage: a stage type of our own, registered by name and used from YAML.
//
//   +------------------+      +------------------+      +---------------------+
//   | source           | ---> | label  x2        | ---> | collect  (ordered)  |
//   | synthetic.source |      | example.label    |      | example.collect     |
//   | 12 packets       |      | prefix: "frame-" |      | reads "label"       |
//   +------------------+      +------------------+      +---------------------+
//
// A stage type is a name, its parameters (typed, with defaults), what an instance reads and
// writes, and a factory. Once registered, YAML uses it like any built-in type, and the same
// checks apply: a misspelt parameter or a field nobody writes fails before anything runs.

#include <cstdint>
#include <iostream>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "micromodels/micromodels.hpp"

using micromodels::Packet;
using micromodels::Params;
using micromodels::ParamType;
using micromodels::ParamValue;
using micromodels::StageInfo;

namespace {

/// Writes "label" = prefix + seq.
class Label final : public micromodels::Stage {
 public:
  explicit Label(std::string prefix) : prefix_(std::move(prefix)) {}
  void process(Packet packet, std::vector<Packet>& out) override {
    packet.set("label", prefix_ + std::to_string(packet.seq));
    out.push_back(std::move(packet));
  }

 private:
  const std::string prefix_;  // read by every consumer at once, so never written after opening
};

/// Keeps the labels it receives. `ordered: true` in the YAML restores seq order before this stage
/// even though two `label` consumers may finish out of order.
class Collect final : public micromodels::Stage {
 public:
  struct Labels {
    std::mutex mutex;
    std::vector<std::string> values;
  };
  explicit Collect(std::shared_ptr<Labels> labels) : labels_(std::move(labels)) {}
  void process(Packet packet, std::vector<Packet>& /*out*/) override {
    const std::lock_guard lock(labels_->mutex);
    labels_->values.push_back(packet.get<std::string>("label"));
  }

 private:
  std::shared_ptr<Labels> labels_;
};

constexpr const char* kPipelineYaml = R"(
pipeline: custom_stage
stages:
  - name: source
    type: synthetic.source
    params: { count: 12 }
  - name: label
    type: example.label
    consumers: 2
    params: { prefix: "frame-" }
  - name: collect
    type: example.collect
    ordered: true
)";

}  // namespace

int main() {
  micromodels::Registry registry = micromodels::Registry::with_builtins();

  registry.add(
      {.name = "example.label",
       .help = "writes \"label\" = prefix + seq",
       .params = {{.name = "prefix",
                   .type = ParamType::text,
                   .default_value = ParamValue{std::string("packet-")},
                   .help = "text before the sequence number"}},
       .info = [](const Params&) { return StageInfo{.writes = {"label"}}; },
       .make =
           [](const Params& params) { return std::make_unique<Label>(params.text("prefix")); }});

  auto labels = std::make_shared<Collect::Labels>();
  registry.add({.name = "example.collect",
                .help = "keeps every \"label\"",
                .info = [](const Params&) { return StageInfo{.reads = {"label"}}; },
                .make = [labels](const Params&) { return std::make_unique<Collect>(labels); }});

  micromodels::Pipeline pipeline =
      micromodels::Pipeline::from_yaml_string(kPipelineYaml, "custom_stage.yaml");
  pipeline.validate(registry);  // the Runner validates too; here errors would name the YAML line

  micromodels::Runner runner(pipeline, registry);
  runner.start();
  runner.wait();

  for (const std::string& value : labels->values) std::cout << value << '\n';
  if (labels->values.size() != 12 || labels->values.front() != "frame-0" ||
      labels->values.back() != "frame-11") {
    std::cerr << "expected frame-0 .. frame-11 in order\n";
    return 1;
  }
  return 0;
}
