// A plugin that registers a new type and then one whose name is built in (`pass`): refused as a
// whole, so that `plugin.fresh` is not registered either.
#include <memory>

#include "micromodels/plugin.hpp"
#include "micromodels/stage.hpp"

namespace {
class Pass final : public micromodels::Stage {
 public:
  void process(micromodels::Packet packet, std::vector<micromodels::Packet>& out) override {
    out.push_back(std::move(packet));
  }
};
}  // namespace

MICROMODELS_PLUGIN(registry) {
  for (const char* name : {"plugin.fresh", "pass"}) {
    registry.add({.name = name,
                  .make = [](const micromodels::Params&) { return std::make_unique<Pass>(); }});
  }
}
