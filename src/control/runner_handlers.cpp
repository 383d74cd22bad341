// The control endpoint's handlers for a Runner in this process.
#include "micromodels/control/control_server.hpp"
#include "micromodels/runner.hpp"

namespace micromodels {

ControlHandlers runner_handlers(Runner& runner) {
  return {
      .metrics = [&runner] { return runner.metrics(); },
      .scale = [&runner](const std::string& stage,
                         int consumers) { runner.scale(stage, consumers); },
      .swap = [&runner](const std::string& stage, const std::map<std::string, std::string>& params,
                        const std::string& type) { runner.swap(stage, params, type); }};
}

}  // namespace micromodels
