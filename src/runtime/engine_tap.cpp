// A stage's tap (PacketTap): the packets leaving it, for a live preview. The engine passes
// them to it where they leave: a source's turn, route() and, for a last stage, its turn.
#include <stdexcept>
#include <string>

#include "engine.hpp"

namespace micromodels::detail {

PacketTap& Engine::tap(std::string_view stage) {
  const PlanStage* found = plan_.find(stage);
  if (found == nullptr) {
    std::string names;
    for (const PlanStage& s : plan_.stages()) names += (names.empty() ? "" : ", ") + s.name();
    throw std::invalid_argument("no stage named '" + std::string(stage) + "'; the stages are " +
                                names);
  }
  Node& node = *nodes_[found->index];
  if (!node.served) {
    throw std::invalid_argument("stage '" + std::string(stage) +
                                "' is not served in this process; preview it where it runs");
  }
  return node.tap;
}

void Engine::close_taps() {
  for (std::size_t i = 0; i < stage_count_; ++i) nodes_[i]->tap.close();
}

}  // namespace micromodels::detail
