// `micromodels status`: each stage's queue as Redis sees it.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <map>
#include <sstream>
#include <thread>

#include <nlohmann/json.hpp>

#include "micromodels/redis.hpp"
#include "redis_connection.hpp"
#include "redis_password.hpp"
#include "redis_url.hpp"
#include "stream_names.hpp"

namespace micromodels {

namespace {

using detail::Reply;

struct Sample {
  std::uint64_t length = 0, lag = 0, pending = 0, read = 0;
};

// stage -> totals over its partitions, for every pipeline (or one).
std::map<std::pair<std::string, std::string>, Sample> sample(detail::Connection& conn,
                                                             const std::vector<std::string>& pipelines) {
  std::map<std::pair<std::string, std::string>, Sample> result;
  for (const std::string& p : pipelines) {
    const detail::StreamNames names(p);
    const Reply streams = conn.command({"HGETALL", names.streams()});
    for (std::size_t i = 0; i + 1 < detail::size(streams.get()); i += 2) {
      const std::string key(detail::text(detail::at(streams.get(), i)));
      const std::string stage(detail::text(detail::at(streams.get(), i + 1)));
      Sample& s = result[{p, stage}];
      s.length += static_cast<std::uint64_t>(detail::integer(conn.command({"XLEN", key}).get()));
      const Reply groups = conn.command({"XINFO", "GROUPS", key});
      for (std::size_t g = 0; g < detail::size(groups.get()); ++g) {
        const redisReply* info = detail::at(groups.get(), g);
        if (detail::text(detail::field(info, "name")) != stage) continue;
        s.pending += static_cast<std::uint64_t>(detail::integer(detail::field(info, "pending")));
        s.lag += static_cast<std::uint64_t>(detail::integer(detail::field(info, "lag")));
        s.read += static_cast<std::uint64_t>(detail::integer(detail::field(info, "entries-read")));
      }
    }
  }
  return result;
}

}  // namespace

std::vector<StageStatus> redis_status(const std::string& url, const std::string& pipeline,
                                      double sample_s) {
  detail::Connection conn(detail::with_password(detail::parse_redis_url(url)));
  std::vector<std::string> pipelines;
  const Reply known = conn.command({"SMEMBERS", detail::StreamNames::pipelines()});
  for (std::size_t i = 0; i < detail::size(known.get()); ++i) {
    pipelines.emplace_back(detail::text(detail::at(known.get(), i)));
  }
  std::sort(pipelines.begin(), pipelines.end());
  if (!pipeline.empty()) {
    if (std::find(pipelines.begin(), pipelines.end(), pipeline) == pipelines.end()) {
      std::string here;
      for (const std::string& name : pipelines) here += (here.empty() ? "" : ", ") + name;
      throw ConfigError({}, "pipeline",
                        "no pipeline '" + pipeline + "' on this Redis" +
                            (here.empty() ? " (none yet: start one with `micromodels run FILE --broker URL`)"
                                          : "; pipelines here: " + here));
    }
    pipelines = {pipeline};
  }
  const auto first = sample(conn, pipelines);
  const auto start = std::chrono::steady_clock::now();
  if (sample_s > 0) std::this_thread::sleep_for(std::chrono::duration<double>(sample_s));
  const auto second = sample(conn, pipelines);
  const double elapsed =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  const auto now_ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                          std::chrono::system_clock::now().time_since_epoch())
                          .count();

  std::vector<StageStatus> status;
  for (const std::string& p : pipelines) {
    const detail::StreamNames names(p);
    std::map<std::string, std::uint64_t> live;
    const Reply members =
        conn.command({"ZRANGEBYSCORE", names.live(), std::to_string(now_ms), "+inf"});
    for (std::size_t i = 0; i < detail::size(members.get()); ++i) {
      const std::string member(detail::text(detail::at(members.get(), i)));
      const auto bar = member.find('|');
      const auto last = member.rfind('|');
      live[member.substr(0, bar)] += std::strtoull(member.c_str() + last + 1, nullptr, 10);
    }
    for (const auto& [id, s] : second) {
      if (id.first != p) continue;
      StageStatus row{.pipeline = p, .stage = id.second, .length = s.length, .lag = s.lag,
                      .pending = s.pending, .consumers = live[id.second]};
      const auto before = first.find(id);
      if (before != first.end() && elapsed > 0 && s.read >= before->second.read) {
        row.rate = static_cast<double>(s.read - before->second.read) / elapsed;
      }
      status.push_back(row);
    }
  }
  return status;
}

std::vector<ProcessStatus> redis_processes(const std::string& url, const std::string& pipeline) {
  detail::Connection conn(detail::with_password(detail::parse_redis_url(url)));
  const auto now_ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                          std::chrono::system_clock::now().time_since_epoch())
                          .count();
  // The keeper's live set: "STAGE|host:pid|VERSION|CONSUMERS", scored with its heartbeat's
  // expiry, 5 s after it (keeper.cpp).
  constexpr double kLiveTtlS = 5.0;
  const Reply members = conn.command({"ZRANGEBYSCORE", detail::StreamNames(pipeline).live(),
                                      std::to_string(now_ms), "+inf", "WITHSCORES"});
  std::map<std::string, ProcessStatus> processes;
  for (std::size_t i = 0; i + 1 < detail::size(members.get()); i += 2) {
    const std::string member(detail::text(detail::at(members.get(), i)));
    const double expiry_ms = std::strtod(std::string(detail::text(detail::at(members.get(), i + 1))).c_str(), nullptr);
    const auto a = member.find('|');
    const auto b = member.find('|', a == std::string::npos ? a : a + 1);
    const auto last = member.rfind('|');
    if (a == std::string::npos || b == std::string::npos || last <= b) continue;
    ProcessStatus& w = processes[member.substr(a + 1, b - a - 1)];
    w.id = member.substr(a + 1, b - a - 1);
    w.stages[member.substr(0, a)] = std::strtoull(member.c_str() + last + 1, nullptr, 10);
    const double age = std::max(0.0, kLiveTtlS - (expiry_ms - static_cast<double>(now_ms)) / 1000);
    w.heartbeat_age_s = w.stages.size() == 1 ? age : std::min(w.heartbeat_age_s, age);
  }
  std::vector<ProcessStatus> list;
  for (auto& [id, w] : processes) list.push_back(std::move(w));
  return list;
}

std::string status_table(const std::vector<StageStatus>& status) {
  std::ostringstream out;
  if (status.empty()) {
    out << "no pipelines on this Redis yet (start one with `micromodels run FILE --broker URL`)\n";
    return out.str();
  }
  char line[256];
  std::snprintf(line, sizeof line, "%-16s %-16s %10s %10s %10s %9s %10s\n", "pipeline", "stage",
                "backlog", "pending", "length", "consumers", "rate/s");
  out << line;
  for (const StageStatus& s : status) {
    std::snprintf(line, sizeof line, "%-16s %-16s %10llu %10llu %10llu %9llu %10.1f\n",
                  s.pipeline.c_str(), s.stage.c_str(), static_cast<unsigned long long>(s.lag),
                  static_cast<unsigned long long>(s.pending),
                  static_cast<unsigned long long>(s.length),
                  static_cast<unsigned long long>(s.consumers), s.rate);
    out << line;
  }
  return out.str();
}

std::string status_json(const std::vector<StageStatus>& status) {
  nlohmann::json stages = nlohmann::json::array();
  for (const StageStatus& s : status) {
    stages.push_back({{"pipeline", s.pipeline},
                      {"stage", s.stage},
                      {"backlog", s.lag},
                      {"pending", s.pending},
                      {"length", s.length},
                      {"consumers", s.consumers},
                      {"rate_per_s", s.rate}});
  }
  return nlohmann::json{{"stages", stages}}.dump(2) + "\n";
}

}  // namespace micromodels
