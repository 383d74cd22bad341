// GET /status/stream: the /status document as server-sent events, so that a page (the
// dashboard) is told of every change rather than asking for it.
#pragma once

#include <atomic>
#include <chrono>
#include <functional>
#include <mutex>
#include <string>

#include "status_sampler.hpp"

namespace micromodels::detail {

class StatusStreams {
 public:
  using Clock = std::chrono::steady_clock;
  /// Streams at once; a client beyond them gets 503 (and can still ask GET /status).
  static constexpr int kMaxClients = 8;
  /// One event this often: what the dashboard's polling asked for, a change shows within a second.
  static constexpr std::chrono::milliseconds kPeriod{750};

  explicit StatusStreams(StatusSampler& sampler) : sampler_(sampler) {}

  /// Takes a client's place; false when every place is taken.
  [[nodiscard]] bool claim();
  void release();
  /// The next event ("data: {...}\n\n"), once `due` has come (then `due` moves on a period);
  /// empty when the endpoint stops or the client no longer reads (`writable`).
  [[nodiscard]] std::string next_event(Clock::time_point& due, const std::function<bool()>& writable);
  /// The endpoint stops: every stream ends within a fraction of a second.
  void stop() { stopping_.store(true); }

 private:
  StatusSampler& sampler_;
  std::atomic<bool> stopping_{false};
  std::mutex mutex_;
  int clients_ = 0;
};

}  // namespace micromodels::detail
