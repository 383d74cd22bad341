// `micromodels trace merge A.json B.json -o all.json`: the trace parts that the processes of a
// distributed run wrote (`run --trace`, `worker --trace`) on one timeline, each packet's stages
// linked by one flow across processes.
#include <algorithm>
#include <cstdint>
#include <fstream>
#include <iostream>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <tuple>
#include <vector>

#include <nlohmann/json.hpp>

#include "commands.hpp"
#include "exit_codes.hpp"

namespace micromodels::cli {

namespace {

using Json = nlohmann::json;

struct MergeOptions {
  std::vector<std::string> parts;
  std::string output;
};

[[noreturn]] void refuse(const std::string& file, const std::string& message) {
  throw ConfigError(SourceLocation{file}, "trace", message);
}

Json read_part(const std::string& file) {
  std::ifstream in(file);
  if (!in) refuse(file, "cannot read the trace file; check the path");
  Json part = Json::parse(in, nullptr, false);
  if (part.is_discarded() || !part.is_object() || !part.contains("traceEvents") ||
      !part["traceEvents"].is_array()) {
    refuse(file, "not a trace: expected a JSON object with a traceEvents array, as `run --trace` "
                 "and `worker --trace` write it");
  }
  return part;
}

std::uint64_t number_of(const Json& event, const char* key) {
  const Json& args = event["args"];
  return args.is_object() && args.contains(key) && args[key].is_number_unsigned()
             ? args[key].get<std::uint64_t>()
             : 0;
}

int merge(const MergeOptions& options) {
  std::ofstream out(options.output);
  if (!out) {
    throw ConfigError({}, "output", "cannot write the merged trace to '" + options.output +
                                        "'; give a path in a directory that exists");
  }
  std::vector<Json> metadata;
  std::vector<Json> slices;
  std::set<std::int64_t> pids;
  for (const std::string& file : options.parts) {
    Json part = read_part(file);
    // Two machines may have used the same process id: a later part's id moves to a free one.
    std::map<std::int64_t, std::int64_t> renamed;
    for (const Json& event : part["traceEvents"]) {
      if (!event.is_object() || !event.contains("pid") || !event["pid"].is_number_integer()) {
        continue;
      }
      const auto pid = event["pid"].get<std::int64_t>();
      if (renamed.contains(pid)) continue;
      std::int64_t fresh = pid;
      while (pids.contains(fresh)) ++fresh;
      renamed[pid] = fresh;
    }
    for (const auto& [pid, fresh] : renamed) pids.insert(fresh);
    for (Json& event : part["traceEvents"]) {
      if (!event.is_object() || !event.contains("ph") || !event["ph"].is_string()) continue;
      if (event.contains("pid") && event["pid"].is_number_integer()) {
        event["pid"] = renamed[event["pid"].get<std::int64_t>()];
      }
      const std::string phase = event["ph"].get<std::string>();
      if (phase == "M") {
        metadata.push_back(std::move(event));
      } else if (phase == "X") {
        slices.push_back(std::move(event));
      }
      // Flow steps are made again below, across the parts.
    }
  }
  // One packet's stages together, in the order they started, whichever process ran them.
  const auto key = [](const Json& e) {
    return std::make_tuple(number_of(e, "stream"), number_of(e, "seq"), e.value("ts", 0.0));
  };
  std::stable_sort(slices.begin(), slices.end(),
                   [&](const Json& a, const Json& b) { return key(a) < key(b); });

  out << "{\"traceEvents\":[\n";
  bool comma = false;
  const auto put = [&](const Json& event) {
    out << (comma ? ",\n" : "") << event.dump();
    comma = true;
  };
  for (const Json& event : metadata) put(event);
  std::size_t packets = 0;
  std::size_t across = 0;  // packets whose stages ran in more than one process
  for (std::size_t begin = 0; begin < slices.size();) {
    std::size_t end = begin + 1;
    const auto packet = [&](std::size_t i) {
      return std::make_pair(number_of(slices[i], "stream"), number_of(slices[i], "seq"));
    };
    while (end < slices.size() && packet(end) == packet(begin)) ++end;
    ++packets;
    std::set<std::int64_t> processes;
    for (std::size_t i = begin; i < end; ++i) {
      const Json& slice = slices[i];
      processes.insert(slice.value("pid", std::int64_t{0}));
      put(slice);
      if (end - begin < 2) continue;
      const auto [stream, seq] = packet(i);
      put(Json{{"name", "packet"},
               {"cat", slice.value("cat", "stage")},
               {"ph", i == begin ? "s" : (i + 1 == end ? "f" : "t")},
               {"bp", "e"},
               {"id", (stream << 32) + (seq & 0xffffffffU)},
               {"ts", slice.value("ts", 0.0)},
               {"pid", slice.value("pid", std::int64_t{0})},
               {"tid", slice.value("tid", std::int64_t{0})}});
    }
    if (processes.size() > 1) ++across;
    begin = end;
  }
  out << "\n],\"displayTimeUnit\":\"ms\",\"otherData\":{\"clock\":\"wall-clock microseconds "
         "since the epoch\",\"parts\":"
      << Json(options.parts).dump() << "}}\n";
  out.close();
  if (!out) throw std::runtime_error("writing the merged trace to '" + options.output + "' failed");
  std::cerr << "trace merge: " << slices.size() << " stage events of " << pids.size()
            << " processes, " << packets << " packets (" << across
            << " seen in more than one process) -> " << options.output << '\n';
  return kExitOk;
}

}  // namespace

Command add_trace_command(CLI::App& app) {
  auto options = std::make_shared<MergeOptions>();
  CLI::App* command = app.add_subcommand("trace", "Work with trace files (run --trace)");
  command->require_subcommand(1);
  CLI::App* merge_command = command->add_subcommand(
      "merge", "Merge the trace parts of a distributed run's processes onto one timeline");
  merge_command->add_option("parts", options->parts, "Trace files (run --trace, worker --trace)")
      ->required()
      ->check(CLI::ExistingFile);
  merge_command->add_option("-o,--output", options->output, "The merged trace file")->required();
  return {command, [options] { return merge(*options); }};
}

}  // namespace micromodels::cli
