// MetricsSnapshot: lookup, bottleneck choice, and the table, JSON and Prometheus outputs.
// About 630 lines: the table, JSON and Prometheus outputs are checked on the same snapshots.
#include "micromodels/metrics.hpp"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <optional>
#include <regex>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>
#include <sys/wait.h>
#include <unistd.h>

namespace micromodels {
namespace {

StageMetrics make_stage(std::string name, std::string type, std::uint64_t processed, int consumers,
                        double busy_share) {
  StageMetrics s;
  s.name = std::move(name);
  s.type = std::move(type);
  s.processed = processed;
  s.emitted = processed;
  s.consumers = consumers;
  s.busy_share = busy_share;
  return s;
}

Latency make_latency(double p50, double p95, double p99, double mean, std::uint64_t count,
                     std::vector<std::pair<double, std::uint64_t>> buckets = {}) {
  Latency l;
  l.p50_us = p50;
  l.p95_us = p95;
  l.p99_us = p99;
  l.mean_us = mean;
  l.count = count;
  l.sum_us = mean * static_cast<double>(count);
  l.buckets = std::move(buckets);
  return l;
}

// source -> work (the slow model) -> sink, 2 s after start, 10 packets still in flight.
MetricsSnapshot demo_snapshot() {
  MetricsSnapshot m;
  m.pipeline = "demo";
  m.elapsed_s = 2.0;
  m.packets_in = 1000;
  m.packets_out = 990;

  StageMetrics source = make_stage("source", "synthetic.source", 1000, 1, 0.05);
  source.service = make_latency(3.2, 5, 8, 3.5, 1000, {{10, 990}, {100, 1000}});

  StageMetrics work = make_stage("work", "model.spin", 990, 4, 0.97);
  work.failed = 2;
  work.dropped = 1;
  work.dropped_age = 1;
  work.emitted = 988;
  work.queue_depth = 7;
  work.queue_max = 40;
  work.queue_capacity = 64;
  work.queue_wait =
      make_latency(1200, 3000, 4500, 1500, 990, {{100, 5}, {1000, 300}, {10000, 990}});
  work.service = make_latency(1500, 4000, 12000, 1800, 990,
                              {{100, 10}, {1000, 400}, {10000, 980}, {100000, 990}});

  StageMetrics sink = make_stage("sink", "sink.jsonl", 988, 1, 0.10);
  sink.queue_capacity = 64;
  sink.queue_wait = make_latency(40, 90, 150, 50, 988, {{100, 900}, {1000, 988}});
  sink.service = make_latency(2'500'000, 2'600'000, 2'700'000, 2'500'000, 988);
  sink.age = make_latency(30'000, 50'000, 80'000, 35'000, 988, {{10'000, 100}, {100'000, 988}});

  m.stages = {source, work, sink};
  return m;
}

std::vector<std::string> lines_of(const std::string& text) {
  std::vector<std::string> lines;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) lines.push_back(line);
  return lines;
}

// Terminal columns of UTF-8 text: bytes that start a code point.
std::size_t display_width(const std::string& text) {
  std::size_t n = 0;
  for (const char c : text) n += (static_cast<unsigned char>(c) & 0xC0U) != 0x80U ? 1 : 0;
  return n;
}

// Blank-separated tokens of a line with the display column where each one ends.
std::vector<std::pair<std::string, std::size_t>> tokens_with_end(const std::string& line) {
  std::vector<std::pair<std::string, std::size_t>> tokens;
  std::istringstream in(line);
  std::size_t byte = 0;
  for (std::string token; in >> token;) {
    byte = line.find(token, byte) + token.size();
    tokens.emplace_back(token, display_width(line.substr(0, byte)));
  }
  return tokens;
}

TEST(MetricsSnapshot, StageFindsByNameOrReturnsNull) {
  const MetricsSnapshot m = demo_snapshot();
  ASSERT_NE(m.stage("work"), nullptr);
  EXPECT_EQ(m.stage("work")->type, "model.spin");
  EXPECT_EQ(m.stage("sink"), &m.stages[2]);
  EXPECT_EQ(m.stage("nope"), nullptr);
}

TEST(MetricsSnapshot, NoBottleneckWhenNothingWasProcessed) {
  MetricsSnapshot m;
  EXPECT_FALSE(m.bottleneck());
  m.stages = {make_stage("idle", "pass", 0, 1, 0.5)};
  EXPECT_FALSE(m.bottleneck());
  EXPECT_NE(m.to_table().find("bottleneck: none"), std::string::npos);
  EXPECT_TRUE(nlohmann::json::parse(m.to_json())["bottleneck"].is_null());
}

// source -> a (1 ms) -> b (4 ms) -> c (1 ms), 1000 packets through each, on dedicated threads
// unless `pool`.
MetricsSnapshot three_stages(int b_consumers, bool pool = false, bool per_stream = false) {
  MetricsSnapshot m;
  m.packets_in = 1000;
  m.packets_out = 1000;
  m.elapsed_s = 4.0;
  m.workers = 2;
  m.streams = 1;
  StageMetrics source = make_stage("source", "synthetic.source", 1000, 1, 0.01);
  source.source = true;
  source.blocking = true;
  source.service = make_latency(1, 1, 1, 1, 1000);
  m.stages.push_back(source);
  const std::vector<std::pair<std::string, double>> work = {{"a", 1000}, {"b", 4000}, {"c", 1000}};
  for (const auto& [name, service_us] : work) {
    StageMetrics s = make_stage(name, "model.sleep", 1000, name == "b" ? b_consumers : 1, 0.5);
    s.blocking = !pool;
    s.per_stream = per_stream && name == "b";
    s.service = make_latency(service_us, service_us, service_us, service_us, 1000);
    m.stages.push_back(s);
  }
  return m;
}

TEST(MetricsSnapshot, BottleneckIsWhatLimitsThroughputAsTheReportSaysIt) {
  // One meaning for the word: the stage (or the pool) the capacity model finds, not the busiest.
  const std::optional<Bottleneck> b = three_stages(1).bottleneck();
  ASSERT_TRUE(b);
  EXPECT_EQ(b->name, "b");
  EXPECT_FALSE(b->pool);
  EXPECT_DOUBLE_EQ(b->rate_per_s, 250);
  EXPECT_EQ(three_stages(1).bottleneck_report().rfind("bottleneck: b:", 0), 0u);
  EXPECT_EQ(three_stages(4).bottleneck()->name, "a");
  const std::optional<Bottleneck> pool = three_stages(4, true).bottleneck();
  ASSERT_TRUE(pool);
  EXPECT_TRUE(pool->pool);
  EXPECT_EQ(pool->name, "worker pool");
  EXPECT_EQ(nlohmann::json::parse(three_stages(4, true).to_json())["bottleneck"], "worker pool");
  // A stage still loading its model (nothing processed) changes nothing.
  MetricsSnapshot loading = three_stages(1);
  loading.stages.push_back(make_stage("loading", "model.sleep", 0, 1, 1.0));
  EXPECT_EQ(loading.bottleneck()->name, "b");
  // Since an earlier snapshot: the service times of the interval decide.
  MetricsSnapshot later = three_stages(1);
  later.packets_in = 2000;
  for (StageMetrics& s : later.stages) {
    s.processed = 2000;
    s.emitted = 2000;
    s.service.count = 2000;
  }
  later.stages[1].service.sum_us += 1000 * 9000.0;  // a: 9 ms a packet lately
  later.stages[2].service.sum_us += 1000 * 1000.0;  // b: 1 ms
  later.stages[3].service.sum_us += 1000 * 1000.0;
  const MetricsSnapshot before = three_stages(1);
  EXPECT_EQ(later.bottleneck(&before)->name, "a");
}

TEST(MetricsSnapshot, InLiveModeWhatAStageDroppedIsLoadItDidNotKeepUpWith) {
  // A paced source of 400 packets at 1 ms each; `work` (4 ms) served 65 and dropped the rest
  // for age or as replaced by newer ones: work limits, at 250/s, not the source at 1000/s.
  MetricsSnapshot m;
  m.packets_in = 400;
  m.packets_out = 400;
  m.elapsed_s = 0.4;
  m.workers = 2;
  StageMetrics source = make_stage("source", "synthetic.source", 400, 1, 0.9);
  source.source = true;
  source.blocking = true;
  source.service = make_latency(1000, 1000, 1000, 1000, 400);
  StageMetrics work = make_stage("work", "model.sleep", 65, 1, 0.9);
  work.blocking = true;
  work.dropped = 335;
  work.dropped_newest = 300;
  work.dropped_age = 35;
  work.service = make_latency(4000, 4000, 4000, 4000, 65);
  m.stages = {source, work};
  const std::optional<Bottleneck> b = m.bottleneck();
  ASSERT_TRUE(b);
  EXPECT_EQ(b->name, "work");
  EXPECT_DOUBLE_EQ(b->rate_per_s, 250);
}

TEST(MetricsSnapshot, WhatAStageDroppedUnderItsOverflowPolicyIsLoadItDidNotKeepUpWithToo) {
  // 200 packets/s into `slow` (10 ms) behind a drop_oldest queue: it served 95 and dropped 105
  // of each 200; slow limits at 100/s, not at the 190/s its served share alone would say.
  MetricsSnapshot m;
  m.packets_in = 2000;
  m.packets_out = 2000;
  m.elapsed_s = 10;
  StageMetrics source = make_stage("source", "synthetic.source", 2000, 1, 0.1);
  source.source = true;
  source.blocking = true;
  source.service = make_latency(10, 10, 10, 10, 2000);
  StageMetrics slow = make_stage("slow", "model.sleep", 950, 1, 1.0);
  slow.blocking = true;
  slow.dropped = 1050;
  slow.service = make_latency(10000, 10000, 10000, 10000, 950);
  m.stages = {source, slow};
  const std::optional<Bottleneck> b = m.bottleneck();
  ASSERT_TRUE(b);
  EXPECT_EQ(b->name, "slow");
  EXPECT_DOUBLE_EQ(b->rate_per_s, 100);
}

TEST(MetricsSnapshot, BottleneckReportNamesTheLimitAndWhatOneMoreConsumerGives) {
  EXPECT_EQ(three_stages(1).bottleneck_report(),
            "bottleneck: b: 1 consumer x 4.00ms per packet = at most 250.0 packets/s (measured "
            "250.0/s in)\n  one more consumer on b: at most 500.0 packets/s (then b limits)\n");
  EXPECT_EQ(three_stages(4).bottleneck_report(),
            "bottleneck: a: 1 consumer x 1.00ms per packet = at most 1000 packets/s (measured "
            "250.0/s in)\n  one more consumer on a: at most 1000 packets/s, no gain (then b "
            "limits)\n");
}

// A stage whose queue drops what does not fit (overflow drop_oldest) never holds back the
// stages before it: it limits its own packets, not the pipeline's rate, and is not named. Its
// share of the pool is the work it did on the packets it kept.
TEST(MetricsSnapshot, AStageThatShedsIsNotTheBottleneck) {
  MetricsSnapshot m = three_stages(1);
  StageMetrics& b = m.stages[2];
  b.sheds = true;
  b.processed = 250;
  b.dropped = 750;
  b.service = make_latency(4000, 4000, 4000, 4000, 250);
  const std::string report = m.bottleneck_report();
  EXPECT_EQ(report.rfind("bottleneck: a: 1 consumer x 1.00ms per packet = at most 1000", 0), 0u)
      << report;
  // Left out of the bound, it is named beside it with what it dropped: more consumers there
  // would keep more packets.
  EXPECT_NE(report.find("\n  b dropped 750 packets its queue had no room for"), std::string::npos)
      << report;
  for (StageMetrics& s : m.stages) s.blocking = s.source;  // on the pool: 1 + 1 + 1 ms per packet
  EXPECT_EQ(m.bottleneck_report().rfind(
                "bottleneck: the worker pool: 2 threads for 3.00ms of CPU-bound work", 0),
            0u)
      << m.bottleneck_report();
  EXPECT_NE(m.bottleneck_report().find("b dropped 750"), std::string::npos);
  // Drops of live mode (age, newest, unserved) are the budget's, not a queue without room.
  b.dropped_age = 700;
  b.dropped_newest = 50;
  EXPECT_EQ(m.bottleneck_report().find("dropped"), std::string::npos) << m.bottleneck_report();
}

TEST(MetricsSnapshot, BottleneckReportKnowsThePoolStreamsAndSources) {
  // 6 ms of CPU-bound work per packet on 2 workers: 333/s whatever the consumers.
  EXPECT_EQ(three_stages(4, true).bottleneck_report(),
            "bottleneck: the worker pool: 2 threads for 6.00ms of CPU-bound work per packet = at "
            "most 333.3 packets/s (measured 250.0/s in)\n  one more consumer adds nothing; more "
            "cores (3 workers: at most 500.0 packets/s) or cheaper CPU-bound stages would\n");
  // More cores help only up to the stages' own limits: with 3 workers, b's 2 consumers limit.
  EXPECT_NE(three_stages(2, true).bottleneck_report().find(
                "more cores (3 workers: at most 500.0 packets/s, then b limits)"),
            std::string::npos)
      << three_stages(2, true).bottleneck_report();
  EXPECT_NE(three_stages(2, false, true).bottleneck_report().find(
                "it is per_stream with 1 stream: one more consumer adds nothing"),
            std::string::npos);
  MetricsSnapshot paced = three_stages(4);
  paced.stages[0].service = make_latency(20000, 20000, 20000, 20000, 1000);
  const std::string report = paced.bottleneck_report();
  EXPECT_EQ(report.rfind("bottleneck: source: 1 consumer x 20.0ms per packet", 0), 0u) << report;
  EXPECT_NE(report.find("a source has one consumer"), std::string::npos) << report;
  EXPECT_EQ(MetricsSnapshot{}.bottleneck_report(), "bottleneck: none (no packet was measured)\n");
}

TEST(MetricsTable, HasOneAlignedRowPerStage) {
  const std::vector<std::string> lines = lines_of(demo_snapshot().to_table());
  // group labels, column headers, 3 stages, summary, bottleneck report (2 lines)
  ASSERT_EQ(lines.size(), 8U) << demo_snapshot().to_table();
  EXPECT_NE(lines[0].find("dropped"), std::string::npos);
  EXPECT_NE(lines[0].find("queue wait"), std::string::npos);
  EXPECT_NE(lines[0].find("service time"), std::string::npos);
  EXPECT_NE(lines[0].find("age"), std::string::npos);

  const auto header = tokens_with_end(lines[1]);
  const std::vector<std::string> expected_header = {
      "stage",  "consumers", "processed",     "rate/s",      "failed", "all", "age",
      "newest", "unserved",  "dead-lettered", "now/max/cap", "p50",    "p99", "p50",
      "p95",    "p99",       "p50",           "p99",         "busy"};
  ASSERT_EQ(header.size(), expected_header.size()) << lines[1];
  for (std::size_t i = 0; i < header.size(); ++i) EXPECT_EQ(header[i].first, expected_header[i]);

  for (std::size_t row = 2; row < 5; ++row) {
    const auto cells = tokens_with_end(lines[row]);
    ASSERT_EQ(cells.size(), header.size()) << lines[row];
    EXPECT_EQ(lines[row].rfind(cells[0].first, 0), 0U) << "stage names start the line";
    // Numbers are right-aligned under their headers.
    for (std::size_t i = 1; i < cells.size(); ++i) {
      EXPECT_EQ(cells[i].second, header[i].second) << "column " << expected_header[i] << " in\n"
                                                   << lines[row];
    }
    EXPECT_NE(lines[row].back(), ' ');
  }

  const auto work = tokens_with_end(lines[3]);
  const std::vector<std::string> work_cells = {
      "work",    "4",      "990",    "495.0",  "2",      "1",      "1", "0", "0",  "0",
      "7/40/64", "1.20ms", "4.50ms", "1.50ms", "4.00ms", "12.0ms", "-", "-", "97%"};
  for (std::size_t i = 0; i < work_cells.size(); ++i) EXPECT_EQ(work[i].first, work_cells[i]);

  const auto source = tokens_with_end(lines[2]);
  EXPECT_EQ(source[3].first, "500.0") << "a source's rate is the frames it made per second";
  EXPECT_EQ(source[11].first, "-") << "no queue wait measured for a source";
  EXPECT_EQ(source[13].first, "3.2µs");
  EXPECT_EQ(source[15].first, "8.0µs");
  EXPECT_EQ(source[16].first, "-") << "no age measured but at the last stages";
  EXPECT_EQ(source[18].first, "5%");

  const auto sink = tokens_with_end(lines[4]);
  EXPECT_EQ(sink[3].first, "494.0");
  EXPECT_EQ(sink[11].first, "40µs");
  EXPECT_EQ(sink[13].first, "2.50s");
  EXPECT_EQ(sink[16].first, "30.0ms");
  EXPECT_EQ(sink[17].first, "80.0ms");

  // The run's rates: frames in from the sources, packets out once each (never a sum over sinks).
  EXPECT_EQ(lines[5], "elapsed 2.00 s, packets in 1000 (500.0/s), out 990 (495.0/s)");
  EXPECT_EQ(lines[6] + "\n" + lines[7] + "\n", demo_snapshot().bottleneck_report());
}

TEST(MetricsJson, ParsesAndCarriesEveryValue) {
  const nlohmann::json j = nlohmann::json::parse(demo_snapshot().to_json());
  EXPECT_EQ(j["pipeline"], "demo");
  EXPECT_DOUBLE_EQ(j["elapsed_s"].get<double>(), 2.0);
  EXPECT_EQ(j["packets_in"], 1000);
  EXPECT_EQ(j["packets_out"], 990);
  EXPECT_DOUBLE_EQ(j["in_per_s"].get<double>(), 500.0);
  EXPECT_DOUBLE_EQ(j["throughput_per_s"].get<double>(), 495.0);
  EXPECT_EQ(j["bottleneck"], "sink") << "2.5 s a packet on one consumer limits throughput";
  ASSERT_EQ(j["stages"].size(), 3U);
  EXPECT_DOUBLE_EQ(j["stages"][0]["rate_per_s"].get<double>(), 500.0);
  const nlohmann::json& sink_age = j["stages"][2]["age_us"];
  EXPECT_DOUBLE_EQ(sink_age["p50"].get<double>(), 30'000);
  EXPECT_DOUBLE_EQ(sink_age["p99"].get<double>(), 80'000);
  EXPECT_EQ(sink_age["count"], 988);

  const nlohmann::json& work = j["stages"][1];
  EXPECT_EQ(work["name"], "work");
  EXPECT_EQ(work["type"], "model.spin");
  EXPECT_EQ(work["processed"], 990);
  EXPECT_EQ(work["failed"], 2);
  EXPECT_EQ(work["dropped"], 1);
  EXPECT_EQ(work["dropped_age"], 1);
  EXPECT_EQ(work["dropped_newest"], 0);
  EXPECT_EQ(work["dropped_unserved"], 0);
  EXPECT_TRUE(work["age_us"].is_null()) << "no age measured but at the last stages";
  EXPECT_DOUBLE_EQ(work["rate_per_s"].get<double>(), 495.0);
  EXPECT_EQ(work["dead_lettered"], 0);
  EXPECT_EQ(work["emitted"], 988);
  EXPECT_EQ(work["queue_depth"], 7);
  EXPECT_EQ(work["queue_max"], 40);
  EXPECT_EQ(work["queue_capacity"], 64);
  EXPECT_EQ(work["consumers"], 4);
  EXPECT_DOUBLE_EQ(work["busy_share"].get<double>(), 0.97);
  EXPECT_DOUBLE_EQ(work["queue_wait_us"]["p50"].get<double>(), 1200);
  EXPECT_DOUBLE_EQ(work["queue_wait_us"]["p95"].get<double>(), 3000);
  EXPECT_DOUBLE_EQ(work["queue_wait_us"]["p99"].get<double>(), 4500);
  EXPECT_DOUBLE_EQ(work["queue_wait_us"]["mean"].get<double>(), 1500);
  EXPECT_DOUBLE_EQ(work["service_us"]["p50"].get<double>(), 1500);
  EXPECT_DOUBLE_EQ(work["service_us"]["p95"].get<double>(), 4000);
  EXPECT_DOUBLE_EQ(work["service_us"]["p99"].get<double>(), 12000);
  EXPECT_DOUBLE_EQ(work["service_us"]["mean"].get<double>(), 1800);
}

TEST(MetricsJson, EscapesNames) {
  MetricsSnapshot m;
  m.pipeline = "say \"hi\"\n";
  m.stages = {make_stage("a\\b", "pass", 1, 1, 0.5)};
  const nlohmann::json j = nlohmann::json::parse(m.to_json());
  EXPECT_EQ(j["pipeline"], "say \"hi\"\n");
  EXPECT_EQ(j["stages"][0]["name"], "a\\b");
}

// ---------------------------------------------------------------------------------------------
// Prometheus

bool has_line(const std::string& text, const std::string& line) {
  const auto lines = lines_of(text);
  return std::find(lines.begin(), lines.end(), line) != lines.end();
}

// Checks text against the exposition format 0.0.4 without promtool: the line grammar, HELP and
// TYPE before a family's samples, families contiguous, counters named *_total, histograms with
// cumulative buckets ending in +Inf equal to _count. Returns the problems found.
std::vector<std::string> exposition_problems(const std::string& text) {
  static const std::regex kHelp("# HELP ([a-zA-Z_:][a-zA-Z0-9_:]*) (.*)");
  static const std::regex kType("# TYPE ([a-zA-Z_:][a-zA-Z0-9_:]*) (counter|gauge|histogram)");
  static const std::regex kLabel(R"(([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\\n]|\\[\\"n])*)\")");
  static const std::regex kSample(
      R"(([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{((?:[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\\n]|\\[\\"n])*",?)*)\})? )"
      R"((\S+)( -?[0-9]+)?)");
  static const std::regex kFloat(
      R"([+-]?(Inf|NaN|[0-9]+(\.[0-9]*)?([eE][+-]?[0-9]+)?|\.[0-9]+([eE][+-]?[0-9]+)?))");

  std::vector<std::string> problems;
  if (text.empty() || text.back() != '\n') problems.push_back("must end with a newline");

  std::map<std::string, std::string> type_of;
  std::set<std::string> helped;
  std::set<std::string> finished;  // families whose samples have ended
  std::string current;             // family of the previous line
  // Per histogram series (labels without le): last bucket count, +Inf count, _count.
  struct Series {
    double last_le = -1;
    double last_count = -1;
    double inf = -1;
    double count = -1;
  };
  std::map<std::string, Series> series;

  auto family_of = [&](const std::string& name) {
    for (const char* suffix : {"_bucket", "_sum", "_count"}) {
      const std::string s(suffix);
      if (name.size() > s.size() && name.compare(name.size() - s.size(), s.size(), s) == 0) {
        const std::string base = name.substr(0, name.size() - s.size());
        if (type_of.count(base) != 0 && type_of[base] == "histogram") return base;
      }
    }
    return name;
  };
  auto enter = [&](const std::string& family, const std::string& line) {
    if (family != current) {
      if (!current.empty()) finished.insert(current);
      if (finished.count(family) != 0) problems.push_back("family not contiguous: " + line);
      current = family;
    }
  };

  for (const std::string& line : lines_of(text)) {
    std::smatch m;
    if (std::regex_match(line, m, kHelp)) {
      enter(m[1], line);
      if (!helped.insert(m[1]).second) problems.push_back("second HELP: " + line);
      continue;
    }
    if (std::regex_match(line, m, kType)) {
      enter(m[1], line);
      if (type_of.count(m[1]) != 0) problems.push_back("second TYPE: " + line);
      type_of[m[1]] = m[2];
      const std::string name = m[1];
      if ((m[2] == "counter") != (name.size() > 6 && name.ends_with("_total"))) {
        problems.push_back("only counters end in _total: " + line);
      }
      if (!name.starts_with("micromodels_")) problems.push_back("unprefixed: " + line);
      continue;
    }
    if (!line.empty() && line[0] == '#') {
      problems.push_back("unknown comment: " + line);
      continue;
    }
    if (!std::regex_match(line, m, kSample)) {
      problems.push_back("not a sample line: " + line);
      continue;
    }
    const std::string name = m[1];
    const std::string labels = m[2];
    const std::string value = m[3];
    if (!std::regex_match(value, kFloat)) problems.push_back("bad value: " + line);
    const std::string family = family_of(name);
    enter(family, line);
    if (type_of.count(family) == 0 || helped.count(family) == 0) {
      problems.push_back("sample before its HELP and TYPE: " + line);
      continue;
    }
    if (type_of[family] != "histogram") continue;

    std::string key;
    std::string le;
    for (auto it = std::sregex_iterator(labels.begin(), labels.end(), kLabel);
         it != std::sregex_iterator(); ++it) {
      if ((*it)[1] == "le") {
        le = (*it)[2];
      } else {
        key += (*it)[0].str() + ",";
      }
    }
    Series& s = series[family + "{" + key];
    const double v = std::stod(value);
    if (name.ends_with("_bucket")) {
      if (le.empty()) {
        problems.push_back("bucket without le: " + line);
        continue;
      }
      const double bound = le == "+Inf" ? HUGE_VAL : std::stod(le);
      if (bound <= s.last_le) problems.push_back("le not increasing: " + line);
      if (v < s.last_count) problems.push_back("bucket not cumulative: " + line);
      s.last_le = bound;
      s.last_count = v;
      if (le == "+Inf") s.inf = v;
    } else if (name.ends_with("_count")) {
      s.count = v;
    }
  }
  for (const auto& [key, s] : series) {
    if (s.inf < 0) problems.push_back("histogram without +Inf bucket: " + key);
    if (s.inf != s.count) problems.push_back("+Inf bucket differs from _count: " + key);
  }
  return problems;
}

TEST(MetricsPrometheus, WritesCountersGaugesAndHistograms) {
  const std::string text = demo_snapshot().to_prometheus();
  const std::string work = R"({pipeline="demo",stage="work")";

  EXPECT_TRUE(has_line(text, "# TYPE micromodels_stage_processed_total counter"));
  EXPECT_TRUE(has_line(text, "micromodels_stage_processed_total" + work + "} 990")) << text;
  EXPECT_TRUE(has_line(text, "micromodels_stage_failed_total" + work + "} 2"));
  EXPECT_TRUE(has_line(text, "micromodels_stage_dropped_total" + work + "} 1"));
  EXPECT_TRUE(has_line(text, "micromodels_stage_dropped_age_total" + work + "} 1"));
  EXPECT_TRUE(has_line(text, "micromodels_stage_dropped_newest_total" + work + "} 0"));
  EXPECT_TRUE(has_line(text, "micromodels_stage_dropped_unserved_total" + work + "} 0"));
  EXPECT_TRUE(has_line(text, "# TYPE micromodels_stage_queue_depth gauge"));
  EXPECT_TRUE(has_line(text, "micromodels_stage_queue_depth" + work + "} 7"));
  EXPECT_TRUE(has_line(text, "micromodels_stage_consumers" + work + "} 4"));
  EXPECT_TRUE(has_line(text, "# TYPE micromodels_stage_busy_ratio gauge"));
  EXPECT_TRUE(has_line(text, "micromodels_stage_busy_ratio" + work + "} 0.97"));
  EXPECT_TRUE(has_line(text, R"(micromodels_pipeline_packets_in_total{pipeline="demo"} 1000)"));

  // Buckets: microsecond bounds become seconds, counts stay cumulative, +Inf closes the series.
  const std::string bucket = "micromodels_stage_service_seconds_bucket" + work;
  EXPECT_TRUE(has_line(text, "# TYPE micromodels_stage_service_seconds histogram"));
  EXPECT_TRUE(has_line(text, bucket + R"(,le="0.0001"} 10)")) << text;
  EXPECT_TRUE(has_line(text, bucket + R"(,le="0.001"} 400)"));
  EXPECT_TRUE(has_line(text, bucket + R"(,le="0.01"} 980)"));
  EXPECT_TRUE(has_line(text, bucket + R"(,le="0.1"} 990)"));
  EXPECT_TRUE(has_line(text, bucket + R"(,le="+Inf"} 990)"));
  EXPECT_TRUE(has_line(text, "micromodels_stage_service_seconds_sum" + work + "} 1.782"));
  EXPECT_TRUE(has_line(text, "micromodels_stage_service_seconds_count" + work + "} 990"));
  EXPECT_TRUE(
      has_line(text, "micromodels_stage_queue_wait_seconds_bucket" + work + R"(,le="0.01"} 990)"));

  // Bounds are written the way Go's clients write them, so that `le` values match theirs.
  EXPECT_TRUE(has_line(
      text,
      R"(micromodels_stage_service_seconds_bucket{pipeline="demo",stage="source",le="1e-05"} 990)"));

  // Ages: a histogram for the last stages only.
  const std::string age = R"(micromodels_stage_age_seconds_bucket{pipeline="demo",stage="sink")";
  EXPECT_TRUE(has_line(text, "# TYPE micromodels_stage_age_seconds histogram"));
  EXPECT_TRUE(has_line(text, age + R"(,le="0.01"} 100)")) << text;
  EXPECT_TRUE(has_line(text, age + R"(,le="0.1"} 988)"));
  EXPECT_TRUE(has_line(text, age + R"(,le="+Inf"} 988)"));
  EXPECT_EQ(text.find("micromodels_stage_age_seconds_count" + work), std::string::npos);

  // A stage without buckets still has a complete histogram.
  const std::string sink = R"({pipeline="demo",stage="sink")";
  EXPECT_TRUE(
      has_line(text, "micromodels_stage_service_seconds_bucket" + sink + R"(,le="+Inf"} 988)"));

  const auto problems = exposition_problems(text);
  EXPECT_TRUE(problems.empty()) << ::testing::PrintToString(problems) << "\n" << text;
}

TEST(MetricsPrometheus, EscapesLabelValues) {
  MetricsSnapshot m;
  m.pipeline = "say \"hi\"";
  m.stages = {make_stage("a\\b\nc", "pass", 3, 1, 0.5)};
  const std::string text = m.to_prometheus();
  EXPECT_TRUE(has_line(
      text, R"(micromodels_stage_processed_total{pipeline="say \"hi\"",stage="a\\b\nc"} 3)"))
      << text;
  const auto problems = exposition_problems(text);
  EXPECT_TRUE(problems.empty()) << ::testing::PrintToString(problems) << "\n" << text;
}

// Events a stage counted (Stage::count): a line under the table, an object in the JSON, a
// counter with an `event` label; stages that counted none add nothing.
TEST(MetricsEvents, AreShownPerStageInTheTableJsonAndPrometheus) {
  MetricsSnapshot m = demo_snapshot();
  m.stages[0].events = {{"reconnects", 3}, {"frozen", 1}};
  m.stages[1].events = {{"say \"hi\"", 2}};

  const std::vector<std::string> lines = lines_of(m.to_table());
  ASSERT_EQ(lines.size(), 9U) << m.to_table();
  EXPECT_EQ(lines[5], "events: source frozen 1 reconnects 3; work say \"hi\" 2");

  const nlohmann::json j = nlohmann::json::parse(m.to_json());
  EXPECT_EQ(j["stages"][0]["events"], (nlohmann::json{{"frozen", 1}, {"reconnects", 3}}));
  EXPECT_EQ(j["stages"][1]["events"]["say \"hi\""], 2);
  EXPECT_EQ(j["stages"][2]["events"], nlohmann::json::object());

  const std::string text = m.to_prometheus();
  EXPECT_TRUE(has_line(text, "# TYPE micromodels_stage_events_total counter"));
  EXPECT_TRUE(has_line(
      text, R"(micromodels_stage_events_total{pipeline="demo",stage="source",event="reconnects"} 3)"))
      << text;
  EXPECT_TRUE(has_line(
      text, R"(micromodels_stage_events_total{pipeline="demo",stage="work",event="say \"hi\""} 2)"));
  EXPECT_EQ(text.find(R"(micromodels_stage_events_total{pipeline="demo",stage="sink")"),
            std::string::npos);
  const auto problems = exposition_problems(text);
  EXPECT_TRUE(problems.empty()) << ::testing::PrintToString(problems) << "\n" << text;

  // Without events, no line under the table and no family.
  EXPECT_EQ(lines_of(demo_snapshot().to_table()).size(), 8U);
  EXPECT_EQ(demo_snapshot().to_prometheus().find("micromodels_stage_events_total"),
            std::string::npos);
}

TEST(MetricsPrometheus, KeepsBucketsCumulativeWhenTheSnapshotRaced) {
  MetricsSnapshot m;
  m.pipeline = "p";
  StageMetrics s = make_stage("s", "pass", 5, 1, 0.5);
  // A later bucket read before the earlier one caught up, and _count read first of all.
  s.service = make_latency(10, 10, 10, 10, 4, {{10, 5}, {100, 4}});
  m.stages = {s};
  const std::string text = m.to_prometheus();
  const std::string bucket = R"(micromodels_stage_service_seconds_bucket{pipeline="p",stage="s")";
  EXPECT_TRUE(has_line(text, bucket + R"(,le="0.0001"} 5)")) << text;
  EXPECT_TRUE(has_line(text, bucket + R"(,le="+Inf"} 5)"));
  EXPECT_TRUE(exposition_problems(text).empty()) << text;
}

TEST(MetricsPrometheus, TheFormatCheckerRejectsBrokenText) {
  // The checker above is what guards the format where promtool is absent; make sure it bites.
  EXPECT_FALSE(exposition_problems("micromodels_x_total{a=\"b\"} 1\n").empty());  // no TYPE
  EXPECT_FALSE(exposition_problems("# HELP micromodels_x x\n# TYPE micromodels_x gauge\n"
                                   "micromodels_x{a=\"b\"} one\n")
                   .empty());
  EXPECT_FALSE(exposition_problems("# HELP micromodels_h h\n# TYPE micromodels_h histogram\n"
                                   "micromodels_h_bucket{le=\"1\"} 3\n"
                                   "micromodels_h_bucket{le=\"+Inf\"} 2\n"
                                   "micromodels_h_count{} 2\n")
                   .empty());
}

std::filesystem::path find_on_path(const std::string& program) {
  const char* path = std::getenv("PATH");
  std::istringstream dirs(path == nullptr ? "" : path);
  for (std::string dir; std::getline(dirs, dir, ':');) {
    const std::filesystem::path candidate = std::filesystem::path(dir) / program;
    if (::access(candidate.c_str(), X_OK) == 0) return candidate;
  }
  return {};
}

TEST(MetricsPrometheus, PromtoolAcceptsTheOutput) {
  const std::filesystem::path promtool = find_on_path("promtool");
  if (promtool.empty()) GTEST_SKIP() << "promtool not installed (Debian package prometheus)";

  MetricsSnapshot m = demo_snapshot();
  m.stages.push_back(make_stage("we\"ird\\stage", "pass", 1, 1, 0.25));
  const auto dir =
      std::filesystem::temp_directory_path() / ("metrics_test_" + std::to_string(::getpid()));
  std::filesystem::create_directories(dir);
  std::ofstream(dir / "metrics.prom") << m.to_prometheus();
  const std::string command = "'" + promtool.string() + "' check metrics < '" +
                              (dir / "metrics.prom").string() + "' > '" +
                              (dir / "promtool.out").string() + "' 2>&1";
  const int status = std::system(command.c_str());
  std::ifstream out(dir / "promtool.out");
  const std::string report((std::istreambuf_iterator<char>(out)), std::istreambuf_iterator<char>());
  std::filesystem::remove_all(dir);

  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 0) << report;
  EXPECT_EQ(report, "") << "promtool lint findings";
}

}  // namespace
}  // namespace micromodels
