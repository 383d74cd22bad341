#include "status_sampler.hpp"

#include <algorithm>
#include <optional>

namespace micromodels::detail {

namespace {

using Json = nlohmann::ordered_json;

// Figures over the window between a past sample and now; null where nothing can be said yet.
struct Recent {
  double window_s = 0;
  std::optional<double> rate_per_s;
  std::optional<double> busy_share;
  std::optional<double> service_mean_us;
  std::optional<double> age_mean_us;  // capture to done, at a last stage
};

Json optional_number(const std::optional<double>& value) {
  return value ? Json(*value) : Json(nullptr);
}

Recent recent_of(const StageMetrics& now, const StageMetrics* before, double window_s) {
  Recent recent;
  recent.window_s = window_s;
  if (before == nullptr || window_s <= 0) return recent;
  const std::uint64_t finished = now.processed + now.failed;
  const std::uint64_t earlier = before->processed + before->failed;
  const std::uint64_t done = finished >= earlier ? finished - earlier : 0;
  recent.rate_per_s = static_cast<double>(done) / window_s;
  // Busy time is estimated from the service times of the packets that finished in the window:
  // exact for short packets, lumpy for packets that take a good part of the window.
  const double busy_us = std::max(0.0, now.service.sum_us - before->service.sum_us);
  recent.busy_share =
      now.consumers > 0 ? std::min(1.0, busy_us / 1e6 / (window_s * now.consumers)) : 0.0;
  const std::uint64_t count =
      now.service.count >= before->service.count ? now.service.count - before->service.count : 0;
  if (count > 0) recent.service_mean_us = busy_us / static_cast<double>(count);
  const std::uint64_t aged = now.age.count >= before->age.count ? now.age.count - before->age.count : 0;
  if (aged > 0) recent.age_mean_us = std::max(0.0, now.age.sum_us - before->age.sum_us) / static_cast<double>(aged);
  return recent;
}

Json stage_json(const StageMetrics& s, const Recent& recent, Json inputs) {
  return Json{{"name", s.name},
              {"type", s.type},
              {"source", s.source},
              {"inputs", std::move(inputs)},
              {"consumers", s.consumers},
              {"queue_depth", s.queue_depth},
              {"queue_max", s.queue_max},
              {"queue_capacity", s.queue_capacity},
              {"processed", s.processed},
              {"failed", s.failed},
              {"dropped", s.dropped},
              {"dropped_age", s.dropped_age},
              {"dropped_newest", s.dropped_newest},
              {"dropped_unserved", s.dropped_unserved},
              {"dead_lettered", s.dead_lettered},
              {"events", s.events},
              {"rate_per_s", optional_number(recent.rate_per_s)},
              {"busy_share", s.busy_share},
              {"recent_busy_share", optional_number(recent.busy_share)},
              {"service_us", Json{{"p50", s.service.p50_us},
                                  {"p95", s.service.p95_us},
                                  {"p99", s.service.p99_us},
                                  {"mean", s.service.mean_us}}},
              {"recent_service_mean_us", optional_number(recent.service_mean_us)},
              {"age_us", s.age.count == 0 ? Json(nullptr)
                                          : Json{{"p50", s.age.p50_us}, {"p99", s.age.p99_us}}},
              {"recent_age_mean_us", optional_number(recent.age_mean_us)}};
}

}  // namespace

StatusSampler::StatusSampler(std::function<MetricsSnapshot()> metrics, double period_s,
                             double window_s, std::map<std::string, std::vector<std::string>> inputs,
                             std::function<BrokerView()> broker)
    : metrics_(std::move(metrics)),
      inputs_(std::move(inputs)),
      broker_(std::move(broker)),
      period_(std::chrono::duration_cast<Clock::duration>(
          std::chrono::duration<double>(std::max(period_s, 0.01)))),
      window_(std::chrono::duration_cast<Clock::duration>(
          std::chrono::duration<double>(std::max(window_s, 0.05)))) {
  samples_.push_back({Clock::now(), metrics_()});
  thread_ = std::thread([this] { loop(); });
}

StatusSampler::~StatusSampler() {
  {
    std::lock_guard lock(mutex_);
    stopping_ = true;
  }
  wake_.notify_all();
  thread_.join();
}

void StatusSampler::read_broker() {
  Json view = Json::array();
  Json processes = Json::array();
  Json error = nullptr;
  try {
    const BrokerView read = broker_();
    for (const BrokerStage& s : read.stages) {
      view.push_back(Json{{"stage", s.stage},
                          {"backlog", s.backlog},
                          {"pending", s.pending},
                          {"consumers", s.consumers},
                          {"processed", s.processed},
                          {"failed", s.failed},
                          {"dropped", s.dropped}});
    }
    for (const BrokerProcess& w : read.processes) {
      Json consumers = Json::object();
      for (const auto& [stage, count] : w.consumers) consumers[stage] = count;
      processes.push_back(Json{{"id", w.id},
                             {"consumers", std::move(consumers)},
                             {"heartbeat_age_s", w.heartbeat_age_s}});
    }
  } catch (const std::exception& e) {
    view = nullptr;
    processes = nullptr;
    error = e.what();
  }
  std::lock_guard lock(mutex_);
  broker_view_ = std::move(view);
  processes_view_ = std::move(processes);
  broker_error_ = std::move(error);
}

void StatusSampler::loop() {
  Clock::time_point broker_read{};  // never yet
  std::unique_lock lock(mutex_);
  while (!wake_.wait_for(lock, period_, [this] { return stopping_; })) {
    lock.unlock();
    // Outside the lock: a snapshot reads every stage, and the broker is another process; neither
    // may hold up /status.
    if (broker_ && Clock::now() - broker_read >= std::chrono::seconds(1)) {
      broker_read = Clock::now();
      read_broker();
    }
    Sample sample{Clock::now(), metrics_()};
    lock.lock();
    samples_.push_back(std::move(sample));
    // Keep one sample older than the window, so that there is always a full window to look at.
    while (samples_.size() > 2 && samples_[1].time <= samples_.back().time - window_) {
      samples_.pop_front();
    }
  }
}

Json StatusSampler::status() { return status(metrics_()); }

Json StatusSampler::status(const MetricsSnapshot& now, bool ended) {
  const Clock::time_point time = Clock::now();
  std::optional<Sample> base;
  Json broker_view, processes_view, broker_error;
  {
    std::lock_guard lock(mutex_);
    broker_view = broker_view_;
    processes_view = processes_view_;
    broker_error = broker_error_;
    // The newest sample at least a window old; the oldest when the server is younger than that.
    for (auto it = samples_.rbegin(); it != samples_.rend(); ++it) {
      if (it->time <= time - window_) {
        base = *it;
        break;
      }
    }
    if (!base && !samples_.empty()) base = samples_.front();
  }
  double window_s = base ? std::chrono::duration<double>(time - base->time).count() : 0;
  if (ended) {
    // The last document: the window is the whole run, from nothing to the final counts, so that
    // its rates are the run's own (as in the metrics table), not those of its last second.
    base = Sample{time, MetricsSnapshot{}};
    window_s = now.elapsed_s;
  }
  if (window_s < 0.05) {
    base.reset();  // too short to say anything about rates
    window_s = 0;
  }

  const StageMetrics nothing{};
  bool moved = base && now.packets_in != base->metrics.packets_in;
  Json stages = Json::array();
  for (const StageMetrics& s : now.stages) {
    const auto inputs = inputs_.find(s.name);
    const StageMetrics* before = base ? base->metrics.stage(s.name) : nullptr;
    if (ended) before = &nothing;
    Recent recent = recent_of(s, before, window_s);
    if (ended) recent.busy_share = s.busy_share;  // the run's, as the metrics table has it
    if (before != nullptr && s.processed + s.failed + s.dropped !=
                                 before->processed + before->failed + before->dropped) {
      moved = true;
    }
    stages.push_back(
        stage_json(s, recent, inputs != inputs_.end() ? Json(inputs->second) : Json(nullptr)));
  }
  // The same rule as the run's report (MetricsSnapshot::bottleneck), on the service times of the
  // last window when packets finished in it, so that after a change the limit moves at once. At
  // the end, the report's own: over the whole run. None while idle: when nothing entered,
  // finished or was dropped in the window and nothing is in flight, nothing limits anything
  // (a worker whose run is over, a run whose sources are done).
  std::optional<Bottleneck> limit;
  if (ended) {
    limit = now.bottleneck();
  } else if (!base || moved || now.in_flight > 0) {
    if (base && now.packets_in > base->metrics.packets_in) limit = now.bottleneck(&base->metrics);
    if (!limit) limit = now.bottleneck();
  }

  // Each stage the broker knows gets its inputs too: on a distributed run most stages run in
  // other processes, and the dashboard draws them all.
  if (broker_view.is_array()) {
    for (Json& stage : broker_view) {
      const auto inputs = inputs_.find(stage.at("stage").get<std::string>());
      stage["inputs"] = inputs != inputs_.end() ? Json(inputs->second) : Json(nullptr);
    }
  }

  std::optional<double> throughput;
  if (base) {
    const std::uint64_t out = now.packets_out >= base->metrics.packets_out
                                  ? now.packets_out - base->metrics.packets_out
                                  : 0;
    throughput = static_cast<double>(out) / window_s;
  }
  return Json{{"pipeline", now.pipeline},
              {"elapsed_s", now.elapsed_s},
              {"packets_in", now.packets_in},
              {"packets_out", now.packets_out},
              {"in_flight", now.in_flight},
              {"window_s", base ? Json(window_s) : Json(nullptr)},
              {"throughput_per_s", optional_number(throughput)},
              {"bottleneck", limit ? Json(limit->name) : Json(nullptr)},
              {"stages", std::move(stages)},
              {"transport", now.transport},
              {"broker", std::move(broker_view)},
              {"processes", std::move(processes_view)},
              {"broker_error", std::move(broker_error)},
              {"ended", ended}};
}

Json StatusSampler::stage_status(const std::string& name) {
  const Json document = status();
  for (const auto& stage : document.at("stages")) {
    if (stage.at("name") == name) return stage;
  }
  return nullptr;
}

}  // namespace micromodels::detail
