// Reading and checking a trace file as Perfetto would read it (Chrome trace-event JSON), for
// the tests of `trace:`, `run --trace` and `trace merge`.
#pragma once

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <tuple>
#include <string>
#include <utility>
#include <vector>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

namespace micromodels::testing {

/// One stage's turn with one packet, as the file says it.
struct TraceSlice {
  std::string stage;
  double ts = 0;   // microseconds since the epoch
  double dur = 0;  // microseconds
  double wait = 0;  // wait_us
  std::int64_t pid = 0;
  std::int64_t tid = 0;
};

/// What a trace holds: every slice of each (stream, seq), in the order they started.
struct TraceContent {
  std::map<std::pair<std::uint64_t, std::uint64_t>, std::vector<TraceSlice>> packets;
  std::set<std::int64_t> pids;
  std::size_t flow_steps = 0;
};

/// Parses `path` and checks every event's fields: complete events ("X") with a known stage name,
/// wall-clock ts near now, non-negative dur, a pid and tid named by metadata, args with stream,
/// seq and a non-negative wait_us; flow steps ("s", "t", "f") bound to a slice of theirs.
inline TraceContent read_trace(const std::filesystem::path& path,
                               const std::vector<std::string>& stages) {
  TraceContent content;
  std::ifstream in(path);
  EXPECT_TRUE(in) << path;
  const nlohmann::json trace = nlohmann::json::parse(in, nullptr, false);
  EXPECT_FALSE(trace.is_discarded()) << path << " is not JSON";
  if (trace.is_discarded()) return content;
  EXPECT_TRUE(trace.contains("traceEvents") && trace["traceEvents"].is_array());
  const double now_us = static_cast<double>(
      std::chrono::duration_cast<std::chrono::microseconds>(
          std::chrono::system_clock::now().time_since_epoch())
          .count());
  std::set<std::pair<std::int64_t, std::int64_t>> named_threads;
  std::set<std::int64_t> named_processes;
  std::set<std::tuple<std::int64_t, std::int64_t, double>> slice_starts;  // pid, tid, ts
  std::vector<nlohmann::json> flows;
  for (const nlohmann::json& event : trace["traceEvents"]) {
    const std::string phase = event.at("ph").get<std::string>();
    if (phase == "M") {
      if (event.at("name") == "thread_name") {
        named_threads.insert({event.at("pid").get<std::int64_t>(), event.at("tid").get<std::int64_t>()});
      } else if (event.at("name") == "process_name") {
        named_processes.insert(event.at("pid").get<std::int64_t>());
      }
      EXPECT_TRUE(event.at("args").at("name").is_string());
      continue;
    }
    if (phase == "s" || phase == "t" || phase == "f") {
      flows.push_back(event);
      continue;
    }
    EXPECT_EQ(phase, "X") << event.dump();
    TraceSlice slice;
    slice.stage = event.at("name").get<std::string>();
    EXPECT_NE(std::find(stages.begin(), stages.end(), slice.stage), stages.end()) << slice.stage;
    EXPECT_EQ(event.at("cat"), "stage");
    slice.ts = event.at("ts").get<double>();
    slice.dur = event.at("dur").get<double>();
    slice.pid = event.at("pid").get<std::int64_t>();
    slice.tid = event.at("tid").get<std::int64_t>();
    // Wall-clock microseconds since the epoch: within an hour of now.
    EXPECT_NEAR(slice.ts, now_us, 3600e6) << event.dump();
    EXPECT_GE(slice.dur, 0) << event.dump();
    const nlohmann::json& args = event.at("args");
    slice.wait = args.at("wait_us").get<double>();
    EXPECT_GE(slice.wait, 0) << event.dump();
    const auto key = std::make_pair(args.at("stream").get<std::uint64_t>(),
                                    args.at("seq").get<std::uint64_t>());
    content.packets[key].push_back(slice);
    content.pids.insert(slice.pid);
    slice_starts.insert({slice.pid, slice.tid, slice.ts});
  }
  for (const nlohmann::json& flow : flows) {
    const auto at = std::make_tuple(flow.at("pid").get<std::int64_t>(),
                                    flow.at("tid").get<std::int64_t>(), flow.at("ts").get<double>());
    EXPECT_TRUE(slice_starts.contains(at)) << "flow step without its slice: " << flow.dump();
    EXPECT_EQ(flow.at("cat"), "stage");
    EXPECT_TRUE(flow.at("id").is_number_unsigned());
  }
  content.flow_steps = flows.size();
  for (const auto& [pid, tid] : std::set<std::pair<std::int64_t, std::int64_t>>(
           [&] {
             std::set<std::pair<std::int64_t, std::int64_t>> used;
             for (const auto& [key, slices] : content.packets) {
               for (const TraceSlice& s : slices) used.insert({s.pid, s.tid});
             }
             return used;
           }())) {
    EXPECT_TRUE(named_threads.contains({pid, tid})) << "no thread_name for tid " << tid;
    EXPECT_TRUE(named_processes.contains(pid)) << "no process_name for pid " << pid;
  }
  for (auto& [key, slices] : content.packets) {
    std::sort(slices.begin(), slices.end(),
              [](const TraceSlice& a, const TraceSlice& b) { return a.ts < b.ts; });
  }
  return content;
}

/// Checks that packet `key` went through `stages`, in that order, each stage starting once the
/// one before it ended (within the microsecond that a double keeps of a time since the epoch).
inline void expect_path(const TraceContent& content, std::pair<std::uint64_t, std::uint64_t> key,
                        const std::vector<std::string>& stages) {
  const auto found = content.packets.find(key);
  ASSERT_NE(found, content.packets.end())
      << "stream " << key.first << " seq " << key.second << " is not in the trace";
  const std::vector<TraceSlice>& slices = found->second;
  ASSERT_EQ(slices.size(), stages.size()) << "stream " << key.first << " seq " << key.second;
  for (std::size_t i = 0; i < slices.size(); ++i) {
    EXPECT_EQ(slices[i].stage, stages[i]) << "seq " << key.second << " slice " << i;
    if (i > 0) {
      EXPECT_GE(slices[i].ts + 1.0, slices[i - 1].ts + slices[i - 1].dur);
    }
  }
}

}  // namespace micromodels::testing
