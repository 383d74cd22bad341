// Redis near or at its memory limit (`maxmemory` with `noeviction`): a run pauses, says so,
// and resumes by itself; nothing is lost or written twice. Two things hold a process back:
//  - the gate: above 90% of maxmemory (INFO memory, read by the keeper four times a second) the
//    sources' outlets are full until Redis is below 80% again, so no new packet enters the run
//    while the packets in it go on to the sinks (whose acknowledgements free their entries);
//  - a refusal: a write Redis refused for memory waits in the writer, and the outlets of this
//    process are full, until the writer's next try is taken (writer.cpp).
#pragma once

#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <string>

#include "redis_connection.hpp"

namespace micromodels::detail {

class Session;

class MemoryGate {
 public:
  explicit MemoryGate(Session& session) : session_(session) {}

  /// Reads INFO memory on `conn`; closes or opens the gate; says when a pause starts, every
  /// 30 s while it lasts, and when it ends; counts the pauses in the run's counters.
  void sample(Connection& conn);
  /// Whether Redis has a maxmemory (or it is not known yet): the writer then sends what makes
  /// Redis grow as transactions that Redis takes whole or refuses whole.
  [[nodiscard]] bool limited() const noexcept { return maxmemory_.load() != 0; }
  /// Whether an outlet holds back: a source's while the gate is closed; every one while Redis
  /// refuses this process's writes.
  [[nodiscard]] bool holds(bool source) const noexcept {
    return held_outputs_.load() > 0 || (source && closed_.load());
  }
  /// The writer: Redis refused a write for memory and `outputs` stage outputs wait (at least
  /// 1); 0 once its writes are taken again.
  void refused(std::size_t outputs);
  /// Whether a single write of `bytes` could ever be taken: not when it is larger than
  /// maxmemory less what Redis uses empty.
  [[nodiscard]] bool fits(std::size_t bytes) const noexcept;
  /// "used U of maxmemory M (P%)", from the last sample.
  [[nodiscard]] std::string figures() const;
  /// Pauses begun in this process, and their milliseconds (the one under way included).
  [[nodiscard]] std::uint64_t pauses() const noexcept { return pauses_.load(); }
  [[nodiscard]] std::uint64_t paused_ms() const;

 private:
  void log_pause(const std::string& state, const std::string& note);
  [[nodiscard]] std::string window_note(Connection& conn) const;
  void wake_outlets();

  Session& session_;
  std::atomic<long long> maxmemory_{-1};  // -1: not read yet
  std::atomic<long long> used_{0};
  std::atomic<long long> startup_{0};  // what Redis uses empty
  std::atomic<bool> closed_{false};
  std::atomic<std::size_t> held_outputs_{0};
  bool info_refused_ = false;  // the ACL denies INFO: said once
  std::atomic<std::uint64_t> pauses_{0};
  std::atomic<std::uint64_t> paused_ms_{0};          // of the pauses that ended
  std::atomic<std::int64_t> paused_since_ns_{0};     // steady clock; 0: no pause under way
  std::chrono::steady_clock::time_point said_at_{};  // the keeper's thread only
};

}  // namespace micromodels::detail
