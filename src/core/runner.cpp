#include "micromodels/runner.hpp"

#include "autoscaler.hpp"
#include "engine.hpp"

namespace micromodels {

Runner::Runner(const Pipeline& pipeline, const Registry& registry)
    : engine_(std::make_unique<detail::Engine>(pipeline, registry)),
      pipeline_(pipeline),
      registry_(registry) {}

Runner::~Runner() = default;

void Runner::start() {
  engine_->start();
  const AutoscaleConfig& config = pipeline_.autoscale();
  if (config.enabled && !autoscaler_) {
    detail::Engine& engine = *engine_;
    autoscaler_ = std::make_unique<detail::Autoscaler>(
        detail::autoscale_policy(pipeline_, registry_, engine.metrics().workers),
        config.interval_ms, [&engine] { return engine.metrics(); },
        [&engine](const std::string& stage, int consumers) { engine.scale(stage, consumers); });
  }
}
void Runner::wait() { engine_->wait_for(std::nullopt); }
bool Runner::wait_for(double timeout_ms) {
  return engine_->wait_for(std::chrono::duration_cast<detail::Clock::duration>(
      std::chrono::duration<double, std::milli>(timeout_ms)));
}
void Runner::stop() { engine_->stop(); }
void Runner::scale(std::string_view stage, int consumers) { engine_->scale(stage, consumers); }
void Runner::swap(std::string_view stage, const std::map<std::string, std::string>& params,
                  std::string_view type) {
  engine_->swap(stage, params, type);
}
bool Runner::finished() const { return engine_->finished(); }
MetricsSnapshot Runner::metrics() const { return engine_->metrics(); }
std::uint64_t Runner::expected_packets() const { return engine_->expected_packets(); }
std::uint64_t Runner::retired_packets() const { return engine_->retired_packets(); }

}  // namespace micromodels
