// `model.sleep` and `model.spin`: a stand-in for a specialist model with a set service time,
// either waiting (a remote model call) or burning CPU (a local model).
#include <chrono>
#include <random>
#include <stdexcept>
#include <thread>

#include "builtin_stages.hpp"

namespace micromodels::detail {

namespace {

class ModelStage final : public Stage {
 public:
  ModelStage(const Params& params, bool spin)
      : spin_(spin),
        service_ms_(params.number("service_ms")),
        jitter_(params.number("jitter")),
        fail_every_(params.integer("fail_every")),
        writes_(params.text("writes")) {}

  void process(Packet packet, std::vector<Packet>& out) override {
    if (fail_every_ > 0 && (packet.seq + 1) % static_cast<std::uint64_t>(fail_every_) == 0) {
      throw std::runtime_error("model failed on purpose (fail_every " +
                               std::to_string(fail_every_) + ")");
    }
    double ms = service_ms_;
    if (jitter_ > 0) {
      // Deterministic per packet, so that runs are repeatable.
      std::mt19937 random(static_cast<std::uint32_t>(packet.seq * 2654435761u + packet.stream));
      ms *= std::uniform_real_distribution<double>(1 - jitter_, 1 + jitter_)(random);
    }
    const auto duration = std::chrono::duration_cast<std::chrono::steady_clock::duration>(
        std::chrono::duration<double, std::milli>(ms));
    if (spin_) {
      const auto until = std::chrono::steady_clock::now() + duration;
      while (std::chrono::steady_clock::now() < until) {
      }
    } else if (duration.count() > 0) {
      // sleep_for overshoots by tens of microseconds; sleep to just short of the deadline and
      // yield the rest, so a 1 ms model takes 1 ms (the composition benchmark depends on it).
      const auto until = std::chrono::steady_clock::now() + duration;
      std::this_thread::sleep_until(until - std::chrono::microseconds(100));
      while (std::chrono::steady_clock::now() < until) std::this_thread::yield();
    }
    if (!writes_.empty()) packet.set(writes_, ms);
    out.push_back(std::move(packet));
  }

 private:
  bool spin_;
  double service_ms_;
  double jitter_;
  std::int64_t fail_every_;
  std::string writes_;
};

StageType model_type(const std::string& name, bool spin) {
  return {
      .name = name,
      .help = spin ? "Stand-in for a local model: burns CPU for service_ms per packet."
                   : "Stand-in for a remote model: waits service_ms per packet.",
      .params = {{"service_ms", ParamType::number, 1.0, "time per packet, milliseconds",
                  ParamRange{.low = 0}},
                 {"jitter", ParamType::number, 0.0,
                  "relative spread of the service time (e.g. 0.5: 50% to 150%)",
                  ParamRange{.low = 0, .high = 1}},
                 {"fail_every", ParamType::integer, std::int64_t{0},
                  "throw on every Nth packet (seq+1 divisible by N); 0: never",
                  ParamRange{.low = 0}},
                 {"writes", ParamType::text, std::string{},
                  "field to write the service time to (number, ms); empty: none"}},
      .info =
          [spin](const Params& params) {
            StageInfo info;
            if (!params.text("writes").empty()) info.writes.push_back(params.text("writes"));
            info.blocking = !spin;
            return info;
          },
      .make = [spin](const Params& params) -> std::unique_ptr<Stage> {
        return std::make_unique<ModelStage>(params, spin);
      },
  };
}

}  // namespace

void register_model_stages(Registry& registry) {
  registry.add(model_type("model.sleep", false));
  registry.add(model_type("model.spin", true));
}

}  // namespace micromodels::detail
