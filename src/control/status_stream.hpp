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
  /// Where one client's stream is: when its next event is due, and whether it had the last.
  struct Cursor {
    Clock::time_point due = Clock::now();
    bool ended = false;
  };
  /// The next event ("data: {...}\n\n"), once `cursor.due` has come (then it moves on a
  /// period); when the endpoint stops after the run ended, the last event (once); then empty,
  /// as when the client no longer reads (`writable`).
  [[nodiscard]] std::string next_event(Cursor& cursor, const std::function<bool()>& writable);
  /// The endpoint stops: every stream ends within a fraction of a second. `last`: the run has
  /// ended, and this is its last /status document (`ended` true), sent to every stream first.
  void stop(const nlohmann::ordered_json& last = nullptr);

 private:
  StatusSampler& sampler_;
  std::atomic<bool> stopping_{false};
  std::string last_event_;  // set before stopping_, read after it
  std::mutex mutex_;
  int clients_ = 0;
};

}  // namespace micromodels::detail
