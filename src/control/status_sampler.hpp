// GET /status: the metrics with rates and busy shares over the last second, from successive
// snapshots taken in the background.
#pragma once

#include <chrono>
#include <condition_variable>
#include <deque>
#include <functional>
#include <map>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

#include "micromodels/control/control_server.hpp"
#include "micromodels/metrics.hpp"

namespace micromodels::detail {

/// Takes a metrics snapshot every `period_s` on its own thread and keeps those of the last
/// `window_s` and a little more. `status()` compares a fresh snapshot with the newest sample at
/// least `window_s` old (or the oldest one there is), so rates follow changes within a second
/// whoever polls and however often.
class StatusSampler {
 public:
  using Clock = std::chrono::steady_clock;

  /// `inputs`: each stage's inputs, given in /status as they are (empty: null). `broker`: read
  /// about once a second beside the samples (empty: /status's `broker` is null).
  StatusSampler(std::function<MetricsSnapshot()> metrics, double period_s, double window_s,
                std::map<std::string, std::vector<std::string>> inputs = {},
                std::function<BrokerView()> broker = {});
  ~StatusSampler();
  StatusSampler(const StatusSampler&) = delete;
  StatusSampler& operator=(const StatusSampler&) = delete;

  /// The /status document for a fresh snapshot.
  [[nodiscard]] nlohmann::ordered_json status();
  /// The same, but for a snapshot the caller has already taken. `ended`: the run has finished
  /// and this is its last document: `ended` true, the recent figures over the whole run.
  [[nodiscard]] nlohmann::ordered_json status(const MetricsSnapshot& now, bool ended = false);
  /// One stage's entry of `status()`, or null when there is no such stage.
  [[nodiscard]] nlohmann::ordered_json stage_status(const std::string& name);

  /// What /status is computed from: the metrics at one instant.
  struct Sample {
    Clock::time_point time;
    MetricsSnapshot metrics;
  };

 private:
  void loop();
  void read_broker();

  std::function<MetricsSnapshot()> metrics_;
  std::map<std::string, std::vector<std::string>> inputs_;
  std::function<BrokerView()> broker_;
  Clock::duration period_;
  Clock::duration window_;
  std::mutex mutex_;
  std::condition_variable wake_;
  bool stopping_ = false;
  std::deque<Sample> samples_;  // oldest first
  nlohmann::ordered_json broker_view_;   // /status's `broker`: null until read
  nlohmann::ordered_json processes_view_;  // /status's `processes`: null until read
  nlohmann::ordered_json broker_error_;  // /status's `broker_error`: null or the message
  std::thread thread_;
};

}  // namespace micromodels::detail
