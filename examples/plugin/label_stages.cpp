// label_stages: examples/custom_stage.cpp's `example.label` as a plugin, so that
// `micromodels run` uses it with all its options:
//
//   micromodels run examples/plugin/label.yaml --plugin BUILD/libexample_label.so
//
// The same StageType as in custom_stage.cpp; only where it is registered differs.

#include <memory>
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

}  // namespace

MICROMODELS_PLUGIN(registry) {
  registry.add(
      {.name = "example.label",
       .help = "writes \"label\" = prefix + seq (a plugin: examples/plugin)",
       .params = {{.name = "prefix",
                   .type = ParamType::text,
                   .default_value = ParamValue{std::string("packet-")},
                   .help = "text before the sequence number"}},
       .info = [](const Params&) { return StageInfo{.writes = {"label"}}; },
       .make =
           [](const Params& params) { return std::make_unique<Label>(params.text("prefix")); }});
}
