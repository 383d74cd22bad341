// What a process does for a distributed run besides moving packets, on a thread of its own:
// keeps the entries it works on fresh and its leases alive, watches Redis's memory
// (memory_gate.hpp), announces its consumers, adds up the bytes per hop and the stages' counts
// and, in the run process, trims the streams and serves what nobody serves.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <map>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "micromodels/metrics.hpp"

#include "redis_connection.hpp"

namespace micromodels::detail {

class Session;

class Keeper {
 public:
  explicit Keeper(Session& session) : session_(session) {}
  ~Keeper() { stop(); }
  Keeper(const Keeper&) = delete;
  Keeper& operator=(const Keeper&) = delete;

  void start();
  /// Ends the thread after a last round: hop bytes added up, the live set left, leases handed
  /// over, the last acknowledgements sent.
  void stop();
  /// The run process: whether the dead-letter stage's stream was last seen drained.
  [[nodiscard]] bool letters_drained() const noexcept { return letters_drained_.load(); }
  /// The median of the round trips to Redis measured so far (a PING each round), in ms; 0 when
  /// none was.
  [[nodiscard]] double round_trip_ms() const;

 private:
  void run();
  void every_second(Connection& conn);
  /// Stage -> the live processes of this pipeline version that serve it (this one included).
  using Processes = std::map<std::string, std::set<std::string>>;
  Processes announce(Connection& conn, bool leave);
  void add_counts(Connection& conn);
  void trim(Connection& conn);
  /// The stages (not sources or sinks) that no live process of this version serves.
  [[nodiscard]] std::vector<std::string> unserved(const Processes& processes) const;
  void serve_missing(const Processes& processes);
  void warn_unserved(const Processes& processes);
  /// Times a PING; once a few are measured, says when --reclaim-ms is too short for them.
  void measure_round_trip(Connection& conn, double round_ms);

  Session& session_;
  std::mutex mutex_;
  std::condition_variable wake_;
  bool stopping_ = false;
  bool running_ = false;
  std::atomic<bool> letters_drained_{false};
  int rounds_ = 0;      // every_second calls so far
  std::string warned_;  // the unserved stages last warned about
  std::map<std::string, StageMetrics> added_;  // per stage: the counts add_counts added so far
  Processes other_versions_;  // stage -> live processes of another pipeline version (announce)
  int warned_round_ = 0;
  mutable std::mutex round_trips_mutex_;
  std::vector<double> round_trips_ms_;  // the last kRoundTrips measured
  std::size_t round_trips_seen_ = 0;
  std::thread thread_;
};

}  // namespace micromodels::detail
