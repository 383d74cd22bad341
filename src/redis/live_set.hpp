// The live set, `mm:{P}:live`: which processes serve which stages now. Each process's keeper
// adds one member per stage it serves, "STAGE|host:pid|VERSION|CONSUMERS", scored with the
// expiry of its heartbeat (kLiveTtlMs after it), and renews them every second; a member past its
// expiry is a process that died.
#pragma once

#include <cstdint>
#include <map>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "redis_connection.hpp"
#include "stream_names.hpp"

namespace micromodels::detail {

inline constexpr int kLiveTtlMs = 5000;  // a consumer counts as live this long after its heartbeat

/// Milliseconds since the epoch: the live set's scores, shared by every machine of a run.
[[nodiscard]] std::int64_t wall_ms();

struct LiveMember {
  std::string stage{};
  std::string process{};  // host:pid (Session::consumer)
  std::string version{};  // version_text of the pipeline version it runs
  std::uint64_t consumers = 0;
  double expiry_ms = 0;  // its score

  /// The member's text, as it is stored.
  [[nodiscard]] std::string text() const;
};

/// The members not expired yet, in score order.
[[nodiscard]] std::vector<LiveMember> live_members(Connection& conn, const StreamNames& names);

/// Stage -> the live processes that run pipeline version `version` and serve it.
[[nodiscard]] std::map<std::string, std::set<std::string>> live_processes(Connection& conn,
                                                                          const StreamNames& names,
                                                                          std::string_view version);

}  // namespace micromodels::detail
