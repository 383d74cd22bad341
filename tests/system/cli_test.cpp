// The `micromodels` command-line tool, run as a user would: exit codes, output, files written.
// About 640 lines: one test per command and exit code, on one helper that runs the tool.
#include <chrono>
#include <csignal>
#include <filesystem>
#include <fstream>
#include <regex>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "tool_process.hpp"
#include "trace_checks.hpp"

namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;

void write_text(const fs::path& path, const std::string& text) { std::ofstream(path) << text; }

// The tool in the background, stdout and stderr in files (never a terminal, so the progress
// display is in its plain-lines style).
using Cli = micromodels::testing::ToolProcess;
using Result = micromodels::testing::ToolResult;
using micromodels::testing::read_text;

class CliTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = micromodels::testing::fresh_test_dir("micromodels_cli");
  }

  void TearDown() override {
    if (!HasFailure() && !dir_.empty()) fs::remove_all(dir_);
  }

  Result run(std::vector<std::string> args, std::chrono::seconds timeout = 60s) {
    return Cli(dir_, "cli", std::move(args)).wait(timeout);
  }

  // source -> work -> relay -> sink, `count` packets, the sink writing dir/out.jsonl.
  fs::path write_pipeline(int count, const std::string& work_type = "model.spin",
                          const std::string& work_params = "service_ms: 0.2",
                          const std::string& source_params = "") {
    const fs::path path = dir_ / "good.yaml";
    write_text(path,
               "pipeline: cli_demo\n"
               "stages:\n"
               "  - name: source\n"
               "    type: synthetic.source\n"
               "    params: { count: " +
                   std::to_string(count) + source_params +
                   " }\n"
                   "  - name: work\n"
                   "    type: " +
                   work_type +
                   "\n"
                   "    consumers: 2\n"
                   "    params: { " +
                   work_params +
                   " }\n"
                   "  - name: relay\n"
                   "    type: pass\n"
                   "  - name: sink\n"
                   "    type: sink.jsonl\n"
                   "    params: { path: " +
                   (dir_ / "out.jsonl").string() + " }\n");
    return path;
  }

  std::size_t sink_lines() const {
    std::ifstream in(dir_ / "out.jsonl");
    std::size_t lines = 0;
    for (std::string line; std::getline(in, line);) ++lines;
    return lines;
  }

  // A signal sent before the tool installs its handlers would kill it outright. The first
  // progress line (in a log: 2 s after the start) shows that they are installed: the progress
  // display is created after them. Sink output would not do: the sink's file is buffered.
  bool wait_until_running(std::chrono::seconds timeout = 30s) const {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    while (std::chrono::steady_clock::now() < deadline) {
      if (read_text(dir_ / "cli.err").find("progress: ") != std::string::npos) return true;
      std::this_thread::sleep_for(20ms);
    }
    return false;
  }

  nlohmann::json metrics_json() const {
    return nlohmann::json::parse(read_text(dir_ / "metrics.json"));
  }

  static const nlohmann::json& stage(const nlohmann::json& metrics, const std::string& name) {
    for (const auto& s : metrics.at("stages")) {
      if (s.at("name") == name) return s;
    }
    throw std::runtime_error("no stage '" + name + "' in the metrics");
  }

  fs::path dir_;
};

TEST_F(CliTest, VersionPrintsTheProjectVersion) {
  const Result r = run({"--version"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_TRUE(std::regex_search(r.out, std::regex(R"(^micromodels \d+\.\d+\.\d+\n$)"))) << r.out;
}

TEST_F(CliTest, HelpListsCommandsAndExitCodes) {
  const Result r = run({"--help"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  for (const char* text : {"run", "inspect", "help", "130"}) {
    EXPECT_NE(r.out.find(text), std::string::npos) << text << " missing from\n" << r.out;
  }
}

TEST_F(CliTest, HelpForACommandBothWays) {
  const Result flag = run({"run", "--help"});
  EXPECT_EQ(flag.exit_code, 0) << flag.err;
  EXPECT_NE(flag.out.find("--metrics-json"), std::string::npos) << flag.out;
  EXPECT_NE(flag.out.find("--consumers"), std::string::npos) << flag.out;

  const Result command = run({"help", "run"});
  EXPECT_EQ(command.exit_code, 0) << command.err;
  EXPECT_EQ(command.out, flag.out);

  const Result inspect = run({"help", "inspect"});
  EXPECT_EQ(inspect.exit_code, 0) << inspect.err;
  EXPECT_NE(inspect.out.find("--dot"), std::string::npos) << inspect.out;

  const Result help = run({"help"});
  EXPECT_EQ(help.exit_code, 0) << help.err;
  EXPECT_EQ(help.out, run({"--help"}).out);
}

TEST_F(CliTest, CommandLineMistakesExitWithTwo) {
  const Result none = run({});
  EXPECT_EQ(none.exit_code, 2);
  EXPECT_NE(none.err.find("error: a command is required; valid commands: run, inspect, types"),
            std::string::npos)
      << none.err;
  // An unknown command is named, with the valid ones (and the likely one when it is a typo).
  const Result unknown = run({"frobnicate"});
  EXPECT_EQ(unknown.exit_code, 2);
  EXPECT_NE(unknown.err.find("error: unknown command 'frobnicate'; valid commands: run, inspect"),
            std::string::npos)
      << unknown.err;
  const Result typo = run({"inspekt", "p.yaml"});
  EXPECT_EQ(typo.exit_code, 2);
  EXPECT_NE(typo.err.find("unknown command 'inspekt'; did you mean 'inspect'?"), std::string::npos)
      << typo.err;
  EXPECT_EQ(run({"inspect"}).exit_code, 2) << "FILE is required";

  const Result missing = run({"inspect", (dir_ / "nope.yaml").string()});
  EXPECT_EQ(missing.exit_code, 2);
  EXPECT_NE(missing.err.find("nope.yaml"), std::string::npos) << missing.err;

  const fs::path good = write_pipeline(10);
  EXPECT_EQ(run({"inspect", good.string(), "--set", "no-dot=1"}).exit_code, 2);
  EXPECT_EQ(run({"inspect", good.string(), "--consumers", "work=0"}).exit_code, 2);
  const Result workers = run({"run", good.string(), "--workers", "-1"});
  EXPECT_EQ(workers.exit_code, 2);
  // The range as people write it, not every digit of a double's bounds.
  EXPECT_NE(workers.err.find("error: --workers: must be a number from 0 to 1024, got '-1'"),
            std::string::npos)
      << workers.err;
}

// Options only a run on Redis reads are refused on a run in this process, naming them: nothing
// a user gives is ignored.
TEST_F(CliTest, RedisOptionsOnARunInThisProcessAreRefusedByName) {
  const fs::path good = write_pipeline(10);
  const Result one = run({"run", good.string(), "-q", "--serve", "none"});
  EXPECT_EQ(one.exit_code, 2);
  EXPECT_NE(one.err.find("error: --serve: only a run on Redis reads it, and pipeline"),
            std::string::npos)
      << one.err;
  EXPECT_NE(one.err.find("runs in this process (broker: memory); add --broker "
                         "redis://host:port, or leave it out"),
            std::string::npos)
      << one.err;
  const Result two =
      run({"run", good.string(), "-q", "--reclaim-ms", "50", "--wire-images", "jpeg"});
  EXPECT_EQ(two.exit_code, 2);
  EXPECT_NE(two.err.find("error: --reclaim-ms, --wire-images: only a run on Redis reads them"),
            std::string::npos)
      << two.err;
  EXPECT_EQ(sink_lines(), 0U) << "refused before it ran";
  EXPECT_EQ(run({"run", good.string(), "-q", "--broker", "memory"}).exit_code, 0);
}

TEST_F(CliTest, InspectParamsShowsEveryStagesParamsWithTheDefaultsMarked) {
  const fs::path good = write_pipeline(10);
  const Result r = run({"inspect", good.string(), "--params", "--set", "work.jitter=0.5"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("\nparams:\n"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("  source: count=10 payload_bytes=0 (default) rate=0.0 (default)"),
            std::string::npos)
      << r.out;
  // From the file, from --set, and a default; an empty text shows as "".
  EXPECT_NE(r.out.find("  work: fail_every=0 (default) jitter=0.5 service_ms=0.2 writes=\"\" "
                       "(default)\n"),
            std::string::npos)
      << r.out;
  EXPECT_NE(r.out.find("  relay: none\n"), std::string::npos) << r.out;
  EXPECT_EQ(run({"inspect", good.string()}).out.find("params:"), std::string::npos);
}

TEST_F(CliTest, BenchRunsWhenBuiltIn) {
  EXPECT_EQ(run({"bench", "no-such-benchmark"}).exit_code, 2);
  if (run({"--help"}).out.find("bench") == std::string::npos) {
    GTEST_SKIP() << "built without the benchmark library";
  }
  const Result r =
      run({"bench", "engine.hop", "--quick", "--json", (dir_ / "bench.json").string()});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const nlohmann::json figures = nlohmann::json::parse(read_text(dir_ / "bench.json"));
  EXPECT_TRUE(figures.contains("hop")) << figures.dump(2);
}

TEST_F(CliTest, EvalNamesAMistypedVideoBeforeRunningAny) {
  if (run({"--help"}).out.find("eval") == std::string::npos) {
    GTEST_SKIP() << "built without the vision stages";
  }
  const Result r = run({"eval", "eye_contact", "no_such_clip.mp4"});
  EXPECT_EQ(r.exit_code, 2) << r.out;
  EXPECT_NE(r.err.find("error: no video 'no_such_clip.mp4': not a file, nor a name in the media folder"),
            std::string::npos)
      << r.err;
  EXPECT_EQ(r.out.find("frames in"), std::string::npos) << "nothing ran:\n" << r.out;
}

TEST_F(CliTest, InspectPrintsEveryStage) {
  const fs::path good = write_pipeline(10);
  const Result text = run({"inspect", good.string()});
  ASSERT_EQ(text.exit_code, 0) << text.err;
  for (const char* name : {"source", "work", "relay", "sink", "synthetic.source", "model.spin"}) {
    EXPECT_NE(text.out.find(name), std::string::npos) << name << " missing from\n" << text.out;
  }

  const Result dot = run({"inspect", good.string(), "--dot"});
  ASSERT_EQ(dot.exit_code, 0) << dot.err;
  EXPECT_NE(dot.out.find("digraph"), std::string::npos) << dot.out;
  EXPECT_NE(dot.out.find("\"relay\""), std::string::npos) << dot.out;
}

TEST_F(CliTest, TypesListsEveryTypeAndDescribesOne) {
  const Result list = run({"types"});
  ASSERT_EQ(list.exit_code, 0) << list.err;
  for (const char* name : {"synthetic.source", "model.sleep", "model.spin", "pass", "sink.jsonl"}) {
    EXPECT_TRUE(std::regex_search(list.out, std::regex(std::string("(^|\n)") + name + " ")))
        << name << " missing from\n" << list.out;
  }

  const Result one = run({"types", "model.sleep", "synthetic.source"});
  ASSERT_EQ(one.exit_code, 0) << one.err;
  // The params with their types and defaults, and what an instance reads and writes.
  EXPECT_TRUE(std::regex_search(one.out, std::regex(R"(service_ms\s+number\s+default 1)")))
      << one.out;
  // The values a param takes, after its default; a param without a range shows none.
  EXPECT_TRUE(std::regex_search(
      one.out, std::regex(R"(\n    jitter +number +default 0\.0, within 0\.\.1: relative)")))
      << one.out;
  EXPECT_TRUE(std::regex_search(
      one.out, std::regex(R"(\n    streams +integer +default 1, at least 1: number of streams)")))
      << one.out;
  EXPECT_TRUE(std::regex_search(one.out, std::regex(R"(\n    writes +text +default "": field)")))
      << one.out;
  EXPECT_TRUE(std::regex_search(one.out, std::regex(R"(runs:\s+on threads of its own)")))
      << one.out;
  EXPECT_TRUE(std::regex_search(one.out, std::regex(R"(synthetic\.source  \(source\))")))
      << one.out;
  EXPECT_TRUE(std::regex_search(one.out, std::regex(R"(writes: value)"))) << one.out;

  const Result unknown = run({"types", "model.slep"});
  EXPECT_EQ(unknown.exit_code, 2);
  EXPECT_NE(unknown.err.find("unknown stage type 'model.slep'"), std::string::npos) << unknown.err;
  EXPECT_NE(unknown.err.find("model.sleep"), std::string::npos) << unknown.err;
}

// Defaults read as they were written: 0.08, not 0.07999999821186066, which is 0.08f widened to a
// double (a float constant as a number param's default). A long default that is exactly a float
// is that mistake; 1/255 (0.00392156862745098) is not.
TEST_F(CliTest, TypesShowsNumberDefaultsAsWritten) {
  const Result list = run({"types"});
  ASSERT_EQ(list.exit_code, 0) << list.err;
  std::vector<std::string> args{"types"};
  std::istringstream lines(list.out);
  for (std::string line; std::getline(lines, line);) {
    if (!line.empty()) args.push_back(line.substr(0, line.find(' ')));
  }
  ASSERT_GT(args.size(), 5U) << list.out;
  const Result all = run(args);
  ASSERT_EQ(all.exit_code, 0) << all.err;
  EXPECT_NE(all.out.find("default 1.0, at least 0:"),
            std::string::npos)  // model.sleep's service_ms
      << all.out;
  const std::regex number(R"((default |\[|, )(-?\d+\.\d{8,}))");
  for (std::sregex_iterator it(all.out.begin(), all.out.end(), number), end; it != end; ++it) {
    const double value = std::stod((*it)[2].str());
    EXPECT_NE(static_cast<double>(static_cast<float>(value)), value)
        << (*it)[2].str() << " is a float's value: make the default a double\n" << all.out;
  }
}

TEST_F(CliTest, InspectAppliesOverrides) {
  const fs::path good = write_pipeline(10);
  const Result r =
      run({"inspect", good.string(), "--consumers", "relay=3", "--set", "work.service_ms=5"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  // The text names consumer counts as "×N" or "consumers N", depending on the layout.
  EXPECT_TRUE(std::regex_search(r.out, std::regex(R"(relay[^\n]*(×\s*3|consumers:?\s*3))")))
      << r.out;
}

TEST_F(CliTest, BadFileExitsWithTwoAndNamesFileLineAndColumn) {
  const fs::path bad = dir_ / "bad.yaml";
  write_text(bad,
             "pipeline: bad\n"
             "stages:\n"
             "  - name: source\n"
             "    type: synthetic.source\n"
             "  - name: work\n"
             "    type: model.spin\n"
             "    consumers: 0\n");
  const Result r = run({"inspect", bad.string()});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_TRUE(std::regex_search(r.err, std::regex(R"(^error: .*bad\.yaml:7:\d+: )"))) << r.err;
  EXPECT_NE(r.err.find("consumers"), std::string::npos) << r.err;
  EXPECT_EQ(r.out, "");

  // run checks the same way before it starts anything
  EXPECT_EQ(run({"run", bad.string()}).exit_code, 2);
}

TEST_F(CliTest, UnknownStageTypeAndBrokenYamlExitWithTwo) {
  const fs::path unknown = dir_ / "unknown.yaml";
  write_text(unknown,
             "pipeline: bad\n"
             "stages:\n"
             "  - name: source\n"
             "    type: synthetic.source\n"
             "  - name: work\n"
             "    type: model.spinn\n");
  const Result type = run({"inspect", unknown.string()});
  EXPECT_EQ(type.exit_code, 2);
  EXPECT_TRUE(std::regex_search(type.err, std::regex(R"(unknown\.yaml:6:\d+: )"))) << type.err;

  const fs::path broken = dir_ / "broken.yaml";
  write_text(broken, "pipeline: bad\nstages:\n  - name: [source\n");
  const Result yaml = run({"inspect", broken.string()});
  EXPECT_EQ(yaml.exit_code, 2);
  EXPECT_TRUE(std::regex_search(yaml.err, std::regex(R"(broken\.yaml:\d+:\d+)"))) << yaml.err;

  const fs::path good = write_pipeline(10);
  const Result set = run({"inspect", good.string(), "--set", "nosuchstage.count=3"});
  EXPECT_EQ(set.exit_code, 2);
  EXPECT_NE(set.err.find("nosuchstage"), std::string::npos) << set.err;
}

TEST_F(CliTest, RunWritesMetricsJsonWithTheProcessedCounts) {
  const fs::path good = write_pipeline(40);
  const Result r =
      run({"run", good.string(), "--quiet", "--metrics-json", (dir_ / "metrics.json").string()});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.err, "") << "--quiet shows no progress";
  EXPECT_NE(r.out.find("bottleneck: "), std::string::npos) << r.out;
  EXPECT_TRUE(std::regex_search(r.out, std::regex(R"(packets in 40 \([0-9.]+/s\), out 40 )")))
      << r.out;

  const nlohmann::json m = metrics_json();
  EXPECT_EQ(m["pipeline"], "cli_demo");
  EXPECT_EQ(m["packets_in"], 40);
  EXPECT_EQ(m["packets_out"], 40);
  for (const char* name : {"work", "relay", "sink"}) {
    EXPECT_EQ(stage(m, name)["processed"], 40) << name;
    EXPECT_EQ(stage(m, name)["failed"], 0) << name;
  }
  EXPECT_EQ(stage(m, "work")["consumers"], 2);
  EXPECT_EQ(stage(m, "work")["type"], "model.spin");
  EXPECT_EQ(sink_lines(), 40U);
}

// `type: python` end to end: the tool embeds the interpreter and runs the class's process().
// tests/python/ has the rest (fields, errors, the GIL, swap).
TEST_F(CliTest, RunsAStageWrittenInPython) {
  if (run({"types"}).out.find("\npython ") == std::string::npos) {
    GTEST_SKIP() << "built without Python";
  }
  write_text(dir_ / "doubling.py",
             "class Double:\n"
             "    reads = {'value': 'int'}\n"
             "    writes = {'double': 'int'}\n"
             "    def process(self, packet):\n"
             "        packet['double'] = 2 * packet['value']\n"
             "        return packet if packet['value'] != 7 else None\n");
  const fs::path good =
      write_pipeline(40, "python", "module: doubling, class: Double, path: " + dir_.string());
  const Result r =
      run({"run", good.string(), "--quiet", "--metrics-json", (dir_ / "metrics.json").string()});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const nlohmann::json m = metrics_json();
  EXPECT_EQ(stage(m, "work")["processed"], 40);
  EXPECT_EQ(stage(m, "work")["emitted"], 39) << "None filters the packet out";
  EXPECT_EQ(stage(m, "work")["type"], "python");
  std::ifstream in(dir_ / "out.jsonl");
  std::size_t checked = 0;
  for (std::string line; std::getline(in, line); ++checked) {
    const nlohmann::json row = nlohmann::json::parse(line);
    EXPECT_EQ(row["fields"]["double"], 2 * row["fields"]["value"].get<int>()) << line;
    EXPECT_NE(row["seq"], 7) << line;
  }
  EXPECT_EQ(checked, 39U);
}

TEST_F(CliTest, RunAppliesSetConsumersAndWorkers) {
  const fs::path good = write_pipeline(40);
  const Result r =
      run({"run", good.string(), "-q", "--set", "source.count=25", "--consumers", "work=3",
           "--workers", "2", "--metrics-json", (dir_ / "metrics.json").string()});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const nlohmann::json m = metrics_json();
  EXPECT_EQ(m["packets_in"], 25);
  EXPECT_EQ(stage(m, "sink")["processed"], 25);
  EXPECT_EQ(stage(m, "work")["consumers"], 3);
  EXPECT_EQ(sink_lines(), 25U);
}

TEST_F(CliTest, RunAutoscaleGivesTheSlowStageConsumersAndReportsTheBottleneck) {
  const fs::path good = write_pipeline(1500, "model.sleep", "service_ms: 2");
  const Result r = run({"run", good.string(), "-q", "--consumers", "work=1", "--autoscale",
                        "--metrics-json", (dir_ / "metrics.json").string()});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.err.find("autoscale: work 1->"), std::string::npos) << r.err;
  EXPECT_GT(stage(metrics_json(), "work")["consumers"].get<int>(), 1);
  EXPECT_NE(r.out.find("\nbottleneck: "), std::string::npos) << r.out;
  EXPECT_EQ(sink_lines(), 1500U);
}

TEST_F(CliTest, FailedPacketsAreCountedNotAnExitCode) {
  const fs::path good = write_pipeline(40, "model.spin", "service_ms: 0.1, fail_every: 5");
  const Result r =
      run({"run", good.string(), "-q", "--metrics-json", (dir_ / "metrics.json").string()});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const nlohmann::json m = metrics_json();
  EXPECT_EQ(stage(m, "work")["failed"], 8);
  EXPECT_EQ(stage(m, "sink")["processed"], 32);
  EXPECT_EQ(m["packets_out"], 40) << "a failed packet is retired too";
  // The last line says so, after the table: a user need not read the table to notice.
  EXPECT_NE(r.err.find("warning: packets failed at 'work' 8 of 40 (the table's `failed` column; "
                       "without a `dead_letter:` stage they are dropped)"),
            std::string::npos)
      << r.err;
}

// A stage that fails every packet (a broken output, a missing file) leaves nothing to show for
// the run: that is a failure of the run, not a count in a table.
TEST_F(CliTest, AStageThatFailedEveryPacketExitsOneAndNamesIt) {
  const fs::path broken = write_pipeline(30, "model.spin", "service_ms: 0.1, fail_every: 1");
  const Result r =
      run({"run", broken.string(), "-q", "--metrics-json", (dir_ / "metrics.json").string()});
  EXPECT_EQ(r.exit_code, 1) << r.err;
  EXPECT_NE(r.err.find("error: stage 'work' (30 of 30) failed every packet it took, so nothing "
                       "came out of it"),
            std::string::npos)
      << r.err;
  EXPECT_NE(r.out.find("work"), std::string::npos) << "the table is still printed";
  EXPECT_EQ(stage(metrics_json(), "work")["failed"], 30) << "and the metrics still written";
  EXPECT_EQ(sink_lines(), 0U);
}

TEST_F(CliTest, UnwritableMetricsPathFailsBeforeRunning) {
  const fs::path good = write_pipeline(10);
  const std::string metrics = (dir_ / "no" / "such" / "dir" / "m.json").string();
  const Result r = run({"run", good.string(), "-q", "--metrics-json", metrics});
  EXPECT_EQ(r.exit_code, 2);
  // Why, and what to do, as for --trace.
  EXPECT_NE(r.err.find("error: cannot write metrics to '" + metrics +
                       "': No such file or directory; give a path in a directory that exists "
                       "and is writable"),
            std::string::npos)
      << r.err;
  EXPECT_FALSE(fs::exists(dir_ / "out.jsonl")) << "nothing ran";
}

// Live mode through the tool: 2 paced streams of 500 frames/s into a stage that serves about
// 300/s. The figures vary; the counts must add up exactly.
TEST_F(CliTest, LiveRunReportsAgesRatesAndDropsThatAddUp) {
  const fs::path live = dir_ / "live.yaml";
  write_text(live,
             "pipeline: live_demo\n"
             "live: { max_age_ms: 1000, policy: newest }\n"
             "stages:\n"
             "  - name: source\n"
             "    type: synthetic.source\n"
             "    params: { count: 200, streams: 2, rate: 500 }\n"
             "  - name: work\n"
             "    type: model.sleep\n"
             "    params: { service_ms: 3 }\n"
             "  - name: sink\n"
             "    type: sink.jsonl\n"
             "    ordered: true\n"
             "    params: { path: " +
                 (dir_ / "out.jsonl").string() + " }\n");
  const Result r =
      run({"run", live.string(), "--quiet", "--metrics-json", (dir_ / "metrics.json").string()});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_TRUE(std::regex_search(r.out, std::regex(R"(packets in 400 \([0-9.]+/s\), out 400 )")))
      << r.out;
  EXPECT_TRUE(std::regex_search(
      r.out, std::regex(R"((^|\n) +dropped +queue +queue wait +service time +age\n)")))
      << r.out;

  const nlohmann::json m = metrics_json();
  EXPECT_EQ(m["packets_in"], 400);
  EXPECT_EQ(m["packets_out"], 400);
  const nlohmann::json& work = stage(m, "work");
  const nlohmann::json& sink = stage(m, "sink");
  EXPECT_GT(work["dropped_newest"].get<int>(), 0) << "the source did not wait for the slow stage";
  std::uint64_t dropped = 0;
  for (const auto& s : m["stages"]) dropped += s["dropped"].get<std::uint64_t>();
  EXPECT_EQ(sink["processed"].get<std::uint64_t>() + dropped, 400U) << "in = out + dropped";
  EXPECT_EQ(sink_lines(), sink["processed"].get<std::size_t>());
  ASSERT_TRUE(sink["age_us"].is_object()) << sink;
  EXPECT_EQ(sink["age_us"]["count"], sink["processed"]);
  EXPECT_LE(sink["age_us"]["p99"].get<double>(), 1'000'000) << "older than the budget: dropped";
  EXPECT_GE(sink["age_us"]["p50"].get<double>(), 3'000) << "at least the slow stage's 3 ms";
  EXPECT_TRUE(work["age_us"].is_null()) << "ages are measured at the last stages";
  // Rates: each stage's own, and the run's is what the sources made, not a sum over sinks.
  const double elapsed = m["elapsed_s"].get<double>();
  EXPECT_NEAR(stage(m, "source")["rate_per_s"].get<double>(), 400 / elapsed, 1e-6);
  EXPECT_NEAR(m["in_per_s"].get<double>(), 400 / elapsed, 1e-6);
}

TEST_F(CliTest, RunTraceWritesAChromeTraceOfEveryPacket) {
  const fs::path good = write_pipeline(50);
  const fs::path trace = dir_ / "trace.json";
  const Result r = run({"run", good.string(), "-q", "--trace", trace.string()});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.err.find("trace '" + trace.string() + "': 200 stage events"), std::string::npos)
      << r.err;
  const std::vector<std::string> stages = {"source", "work", "relay", "sink"};
  const auto content = micromodels::testing::read_trace(trace, stages);
  ASSERT_EQ(content.packets.size(), 50U);
  for (std::uint64_t seq = 0; seq < 50; ++seq) {
    micromodels::testing::expect_path(content, {0, seq}, stages);
  }
}

TEST_F(CliTest, UnwritableTracePathFailsBeforeRunning) {
  const fs::path good = write_pipeline(10);
  const std::string trace = (dir_ / "no" / "such" / "dir" / "t.json").string();
  const Result r = run({"run", good.string(), "-q", "--trace", trace});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.err.find("error: cannot write the trace file '" + trace + "'"), std::string::npos)
      << r.err;
  EXPECT_FALSE(fs::exists(dir_ / "out.jsonl")) << "nothing ran";
}

TEST_F(CliTest, AnEmptyTracePathIsRefusedNotIgnored) {
  const fs::path good = write_pipeline(10);
  const Result r = run({"run", good.string(), "-q", "--trace", ""});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.err.find("--trace: an empty path"), std::string::npos) << r.err;
  EXPECT_FALSE(fs::exists(dir_ / "out.jsonl")) << "nothing ran";
}

TEST_F(CliTest, TraceSizeBoundThinsSamplingWithOneLogLineEach) {
  const fs::path trace = dir_ / "bounded.json";
  const fs::path file = dir_ / "bounded.yaml";
  write_text(file, "pipeline: bounded\n"
                   "trace: { path: " + trace.string() + ", max_mb: 2 }\n"
                   "stages:\n"
                   "  - { name: source, type: synthetic.source, params: { count: 20000 } }\n"
                   "  - { name: work, type: pass }\n"
                   "  - { name: sink, type: pass }\n");
  const Result r = run({"run", file.string(), "-q"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  // 60,000 stage events do not fit in 2 MB: sampling thins, one line each time.
  const auto count = [&](const std::string& text) {
    std::size_t n = 0;
    for (auto at = r.err.find(text); at != std::string::npos; at = r.err.find(text, at + 1)) ++n;
    return n;
  };
  EXPECT_EQ(count("from now on 1 packet in 2 is traced"), 1U) << r.err;
  EXPECT_EQ(count("from now on 1 packet in 4 is traced"), 1U) << r.err;
  EXPECT_EQ(count("from now on 1 packet in 8 is traced"), 1U) << r.err;
  EXPECT_EQ(count("no more packets are traced"), 1U) << r.err;
  EXPECT_LE(fs::file_size(trace), 2'000'000U);
  const std::vector<std::string> stages = {"source", "work", "sink"};
  const auto content = micromodels::testing::read_trace(trace, stages);
  EXPECT_GT(content.packets.size(), 100U);
  EXPECT_LT(content.packets.size(), 20'000U);
  micromodels::testing::expect_path(content, {0, 0}, stages);
}

TEST_F(CliTest, TraceMergeRefusesWhatIsNotATrace) {
  write_text(dir_ / "not.json", "{\"events\": []}");
  const Result r = run({"trace", "merge", (dir_ / "not.json").string(), "-o",
                        (dir_ / "all.json").string()});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.err.find("not.json: not a trace"), std::string::npos) << r.err;
}

TEST_F(CliTest, ProgressLinesWhenStderrIsNotATerminal) {
  // 30 packets at 10 per second: about 3 s, so at least one line at the 2 s mark.
  const fs::path paced = write_pipeline(30, "pass", "", ", rate: 10");
  const Result r = run({"run", paced.string()});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_TRUE(std::regex_search(r.err, std::regex(R"((^|\n)progress: +\d+/30 +\d+%)"))) << r.err;
  EXPECT_EQ(r.err.find('\r'), std::string::npos) << "no in-place redraw in a log";
}

TEST_F(CliTest, FirstSignalDrainsAndStillReports) {
  // Paced so that the run would take minutes; SIGINT stops the source and lets the rest drain.
  const fs::path paced = write_pipeline(100000, "model.sleep", "service_ms: 5", ", rate: 200");
  Cli cli(dir_, "cli", {"run", paced.string(), "--metrics-json", (dir_ / "metrics.json").string()});
  ASSERT_TRUE(wait_until_running());
  std::this_thread::sleep_for(500ms);
  cli.signal(SIGINT);
  const Result r = cli.wait(30s);
  EXPECT_EQ(r.exit_code, 130) << r.err;
  EXPECT_TRUE(std::regex_search(
      r.err, std::regex(R"(stopping: draining \d+ in-flight packets \(Ctrl-C again to abort\))")))
      << r.err;
  EXPECT_NE(r.out.find("bottleneck: "), std::string::npos) << r.out;

  const nlohmann::json m = metrics_json();
  const std::uint64_t in = m["packets_in"];
  EXPECT_GT(in, 0U);
  EXPECT_LT(in, 100000U);
  EXPECT_EQ(m["packets_out"], in) << "every packet produced was retired";
  EXPECT_EQ(stage(m, "sink")["processed"], in);
  EXPECT_EQ(sink_lines(), in);
}

TEST_F(CliTest, SigtermDrainsLikeSigint) {
  const fs::path paced = write_pipeline(100000, "pass", "", ", rate: 200");
  Cli cli(dir_, "cli", {"run", paced.string()});
  ASSERT_TRUE(wait_until_running());
  cli.signal(SIGTERM);
  const Result r = cli.wait(30s);
  EXPECT_EQ(r.exit_code, 130) << r.err;
  EXPECT_NE(r.err.find("stopping: draining"), std::string::npos) << r.err;
}

TEST_F(CliTest, SecondSignalAbortsAtOnce) {
  // A slow model with a full queue: draining would take minutes.
  const fs::path slow = write_pipeline(200, "model.sleep", "service_ms: 2000");
  Cli cli(dir_, "cli", {"run", slow.string(), "--metrics-json", (dir_ / "metrics.json").string()});
  ASSERT_TRUE(wait_until_running());
  cli.signal(SIGINT);
  std::this_thread::sleep_for(500ms);  // the main loop polls at 10 Hz and starts draining
  const auto second = std::chrono::steady_clock::now();
  cli.signal(SIGINT);
  const Result r = cli.wait(30s);
  const double abort_s =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - second).count();
  EXPECT_EQ(r.exit_code, 130) << r.err;
  EXPECT_LT(abort_s, 1.0) << "the second signal does not wait for the drain";
  EXPECT_NE(r.err.find("stopping: draining"), std::string::npos) << r.err;
  std::smatch match;
  ASSERT_TRUE(std::regex_search(
      r.err, match, std::regex(R"(interrupted: aborting with (\d+) packets still in flight)")))
      << r.err;
  EXPECT_GT(std::stoull(match[1]), 0U);
  EXPECT_EQ(read_text(dir_ / "metrics.json"), "") << "no metrics after an abort";
}

}  // namespace
