// `micromodels status`: each stage's queue as Redis sees it, and what its processes counted.
#include <algorithm>
#include <chrono>
#include <map>
#include <thread>

#include <nlohmann/json.hpp>
#include <spdlog/fmt/fmt.h>

#include "micromodels/redis.hpp"

#include "core/detail/redis_url.hpp"
#include "core/detail/text_table.hpp"
#include "live_set.hpp"
#include "redis_connection.hpp"
#include "redis_password.hpp"
#include "stage_counts.hpp"
#include "stream_names.hpp"

namespace micromodels {

namespace {

using detail::Reply;

struct Sample {
  std::uint64_t length = 0, lag = 0, pending = 0, read = 0;
};

// stage -> totals over its partitions, for every pipeline (or one).
std::map<std::pair<std::string, std::string>, Sample> sample(
    detail::Connection& conn, const std::vector<std::string>& pipelines) {
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
      const redisReply* info = detail::group(groups.get(), stage);
      s.pending += static_cast<std::uint64_t>(detail::integer(detail::field(info, "pending")));
      s.lag += static_cast<std::uint64_t>(detail::integer(detail::field(info, "lag")));
      s.read += static_cast<std::uint64_t>(detail::integer(detail::field(info, "entries-read")));
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
      throw ConfigError(
          {}, "pipeline",
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
  std::vector<StageStatus> status;
  for (const std::string& p : pipelines) {
    // Consumers of the run's pipeline version ("RUN VERSION"): a worker started with another
    // file takes none of its entries (any version, while there is no run).
    const Reply record = conn.command({"GET", detail::StreamNames(p).run()});
    const std::string run(detail::text(record.get()));
    const std::string version = run.size() == 33 ? run.substr(17) : "";
    std::map<std::string, std::uint64_t> live;
    for (const detail::LiveMember& m : detail::live_members(conn, detail::StreamNames(p))) {
      if (version.empty() || m.version == version) live[m.stage] += m.consumers;
    }
    const Reply counters = conn.command({"HGETALL", detail::StreamNames(p).counters()});
    for (const auto& [id, s] : second) {
      if (id.first != p) continue;
      const StageMetrics counts = detail::stage_counts(counters.get(), id.second);
      StageStatus row{.pipeline = p,
                      .stage = id.second,
                      .length = s.length,
                      .lag = s.lag,
                      .pending = s.pending,
                      .consumers = live[id.second],
                      .processed = counts.processed,
                      .failed = counts.failed,
                      .dropped = counts.dropped};
      const auto before = first.find(id);
      if (before != first.end() && sample_s > 0 && s.read >= before->second.read) {
        row.rate = static_cast<double>(s.read - before->second.read) / elapsed;
      }
      status.push_back(row);
    }
  }
  return status;
}

std::vector<ProcessStatus> redis_processes(const std::string& url, const std::string& pipeline) {
  detail::Connection conn(detail::with_password(detail::parse_redis_url(url)));
  const auto now_ms = static_cast<double>(detail::wall_ms());
  std::map<std::string, ProcessStatus> processes;
  for (const detail::LiveMember& m : detail::live_members(conn, detail::StreamNames(pipeline))) {
    ProcessStatus& w = processes[m.process];
    w.id = m.process;
    w.stages[m.stage] = m.consumers;
    const double age = std::max(0.0, (detail::kLiveTtlMs - (m.expiry_ms - now_ms)) / 1000);
    w.heartbeat_age_s = w.stages.size() == 1 ? age : std::min(w.heartbeat_age_s, age);
  }
  std::vector<ProcessStatus> list;
  for (auto& [id, w] : processes) list.push_back(std::move(w));
  return list;
}

std::string status_table(const std::vector<StageStatus>& status) {
  if (status.empty()) {
    return "no pipelines on this Redis yet (start one with `micromodels run FILE --broker URL`)\n";
  }
  std::vector<std::vector<std::string>> rows;
  for (const StageStatus& s : status) {
    rows.push_back({s.pipeline, s.stage, std::to_string(s.lag), std::to_string(s.pending),
                    std::to_string(s.length), std::to_string(s.consumers),
                    s.rate ? fmt::format("{:.1f}", *s.rate) : "-", std::to_string(s.processed),
                    std::to_string(s.failed), std::to_string(s.dropped)});
  }
  return detail::render_table({{"", "pipeline", true},
                               {"", "stage", true},
                               {"", "backlog"},
                               {"", "pending"},
                               {"", "length"},
                               {"", "consumers"},
                               {"", "rate/s"},
                               {"", "processed"},
                               {"", "failed"},
                               {"", "dropped"}},
                              rows);
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
                      {"rate_per_s", s.rate ? nlohmann::json(*s.rate) : nullptr},
                      {"processed", s.processed},
                      {"failed", s.failed},
                      {"dropped", s.dropped}});
  }
  return nlohmann::json{{"stages", stages}}.dump(2) + "\n";
}

}  // namespace micromodels
