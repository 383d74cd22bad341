#include "micromodels/runner.hpp"

#include <spdlog/spdlog.h>

#include <algorithm>

#include "autoscaler.hpp"
#include "engine.hpp"

namespace micromodels {

namespace {

SourceLocation where(const StageConfig& stage, const std::string& key) {
  const auto found = stage.locations.find(key);
  if (found != stage.locations.end()) return found->second;
  const auto whole = stage.locations.find("");
  return whole == stage.locations.end() ? SourceLocation{} : whole->second;
}

// A pipeline that needs what the transport cannot do is refused before anything is built.
void check_capabilities(const Plan& plan, const Transport& transport) {
  const Capabilities can = transport.capabilities();
  const auto refuse = [&](const PlanStage& stage, const std::string& key, const std::string& what) {
    throw ConfigError(where(stage.config, key), key,
                      "stage '" + stage.name() + "': key '" + key + "': " + what +
                          " is not supported on " + transport.name() +
                          "; run this pipeline with broker: memory, or change the stage");
  };
  const Pipeline& pipeline = plan.pipeline();
  if (!can.live && pipeline.live()) {
    throw ConfigError(pipeline.location("live"), "live",
                      "key 'live': a latency budget (live mode) is not supported on " +
                          transport.name() +
                          " yet; run this pipeline with broker: memory, or remove live:");
  }
  for (const PlanStage& stage : plan.stages()) {
    if (!can.joins && stage.inputs.size() > 1) refuse(stage, "inputs", "joining several inputs");
    if (!can.ordered && stage.config.ordered) refuse(stage, "ordered", "restoring order");
    if (!can.ordered && stage.config.per_stream) refuse(stage, "state", "per-stream state");
    if (!can.dead_letter && stage.dead_letter) refuse(stage, "", "a dead_letter stage");
  }
}

// How long a stopped process drains before it says what it still waits for, and again after.
constexpr auto kDrainReport = std::chrono::seconds(10);

void report_draining(const detail::Engine& engine, std::chrono::seconds waited) {
  std::string waiting;
  for (const StageMetrics& s : engine.metrics().stages) {
    if (s.queue_depth == 0) continue;
    waiting += (waiting.empty() ? "" : ", ") + s.name + " " + std::to_string(s.queue_depth);
  }
  spdlog::warn("still draining {} s after the stop; packets queued per stage: {}", waited.count(),
               waiting.empty() ? "none (a stage is still processing)" : waiting);
}

}  // namespace

class Runner::Host final : public Transport::Host {
 public:
  detail::Engine* engine = nullptr;
  void serve(std::string_view stage) override { engine->serve_here(stage); }
  void restart(std::string_view stage) override { engine->swap(stage, {}, {}); }
  void fail(std::exception_ptr error) override { engine->fail(std::move(error)); }
  [[nodiscard]] MetricsSnapshot metrics() const override { return engine->metrics(); }
};

namespace {

// Runner(pipeline) runs in this process: a file that asks for a broker is not run in memory
// without a word.
const Pipeline& in_memory(const Pipeline& pipeline) {
  if (pipeline.broker() != "memory") {
    throw ConfigError(pipeline.location("broker"), "broker",
                      "key 'broker': pipeline '" + pipeline.name() + "' runs on " +
                          pipeline.broker() +
                          ", and Runner(pipeline) runs in this process: give the Runner that "
                          "transport (Runner(pipeline, std::make_unique<RedisTransport>(...)), "
                          "micromodels/redis.hpp), or set_broker(\"memory\") to run it here");
  }
  return pipeline;
}

}  // namespace

Runner::Runner(const Pipeline& pipeline, const Registry& registry)
    : plan_(std::make_unique<const Plan>(in_memory(pipeline), registry)),
      engine_(std::make_unique<detail::Engine>(*plan_, nullptr)) {}

Runner::Runner(const Pipeline& pipeline, std::unique_ptr<Transport> transport,
               const Registry& registry)
    : plan_(std::make_unique<const Plan>(pipeline, registry)),
      transport_(std::move(transport)),
      host_(std::make_unique<Host>()) {
  check_capabilities(*plan_, *transport_);
  transport_->bind(*plan_);
  engine_ = std::make_unique<detail::Engine>(*plan_, transport_.get());
  host_->engine = engine_.get();
}

Runner::~Runner() {
  autoscaler_.reset();
  if (engine_ && transport_ && !transport_stopped_) {
    finish();
    // A drain that takes long says what it waits for (a queue held by a full outlet, a stage
    // that does not return), instead of hanging without a word.
    for (auto waited = kDrainReport; engine_->started() && !engine_->wait_for(kDrainReport);
         waited += kDrainReport) {
      report_draining(*engine_, waited);
    }
    transport_->stop();
  }
  engine_.reset();  // (without a transport, the engine stops and drains itself)
}

void Runner::finish() {
  engine_->stop();
  transport_->stop_taking();
}

void Runner::start() {
  // The transport first: a run process opens its run before its sources send anything.
  if (transport_) transport_->start(*host_);
  engine_->start();
  const Pipeline& pipeline = engine_->plan().pipeline();
  if (pipeline.autoscale().enabled && !autoscaler_) {
    detail::Engine& engine = *engine_;
    std::vector<std::string> served;
    for (const StageMetrics& s : engine.metrics().stages) served.push_back(s.name);
    autoscaler_ = std::make_unique<detail::Autoscaler>(
        detail::autoscale_policy(engine.plan(), served, engine.workers()),
        pipeline.autoscale().interval_ms, [&engine] { return engine.metrics(); },
        [&engine](const std::string& stage, int consumers) { engine.scale(stage, consumers); });
  }
}

bool Runner::wait_for(double timeout_ms) {
  const auto timeout = std::chrono::duration_cast<detail::Clock::duration>(
      std::chrono::duration<double, std::milli>(timeout_ms));
  if (transport_) {
    // A distributed run ends when its sinks have every packet the sources made; then its inlets
    // stop and what is in flight here drains. A process without sources ends when stopped.
    // How often to look: a run's end soon after its last packet; a worker only for a fatal
    // error (at 5 ms, this loop was most of an idle worker's CPU).
    const auto step = std::chrono::milliseconds(engine_->runs_sources() ? 5 : 100);
    const auto deadline = detail::Clock::now() + timeout;
    while (!engine_->wait_for(std::chrono::milliseconds(0))) {
      if (engine_->fatal() ||
          (engine_->runs_sources() && engine_->sources_done() && transport_->finished())) {
        finish();
      }
      const auto now = detail::Clock::now();
      if (now >= deadline) return false;
      engine_->wait_for(std::min<detail::Clock::duration>(deadline - now, step));
    }
  } else if (!engine_->wait_for(timeout)) {
    return false;
  }
  engine_->close_stages();  // the sinks' files are complete when the run says it is done
  if (transport_ && !transport_stopped_) {
    transport_stopped_ = true;
    transport_->stop();  // and this process has left the distributed run (its counts are in)
  }
  if (std::exception_ptr error = engine_->fatal()) std::rethrow_exception(error);
  return true;
}

void Runner::stop() {
  if (!transport_) {
    engine_->stop();
  } else if (engine_->runs_sources()) {
    engine_->stop_sources();  // what is in flight still reaches the sinks, here
  } else {
    finish();  // a worker: takes nothing more, finishes what it holds
  }
}

void Runner::scale(std::string_view stage, int consumers) { engine_->scale(stage, consumers); }

void Runner::swap(std::string_view stage, const std::map<std::string, std::string>& params,
                  std::string_view type) {
  engine_->swap(stage, params, type);
}

PacketTap& Runner::tap(std::string_view stage) { return engine_->tap(stage); }

bool Runner::finished() const { return engine_->finished(); }
MetricsSnapshot Runner::metrics() const { return engine_->metrics(); }

Progress Runner::progress() const {
  return {.done = engine_->metrics().packets_out, .expected = engine_->expected()};
}

}  // namespace micromodels
