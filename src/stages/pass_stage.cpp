// `pass`: forwards each packet unchanged (glue, tests, and the engine benchmark).
#include "builtin_stages.hpp"

namespace micromodels::detail {

namespace {

class PassStage final : public Stage {
 public:
  void process(Packet packet, std::vector<Packet>& out) override { out.push_back(std::move(packet)); }
};

}  // namespace

void register_pass_stage(Registry& registry) {
  registry.add({.name = "pass",
                .help = "Forwards each packet unchanged.",
                .params = {},
                // Reads nothing itself: the hop into it carries what the stages after it read.
                .info = [](const Params&) { return StageInfo{}; },
                .make = [](const Params&) -> std::unique_ptr<Stage> {
                  return std::make_unique<PassStage>();
                }});
}

}  // namespace micromodels::detail
