// `micromodels run --broker`, `worker` and `status` as separate processes on the test's Redis:
// workers that share a stage, a stage served by the run once its worker died, per_stream
// hand-over, Redis unreachable, stopped or restarted, and corrupt entries. (Ctrl-C and a worker
// killed with SIGKILL are in tests/conformance/processes_test.cpp.)
// About 840 lines: its tests share the fixture that writes the pipeline, starts the processes
// and checks the sink's records.
#include <algorithm>
#include <map>
#include <regex>
#include <set>

#include <nlohmann/json.hpp>

#include "entry.hpp"
#include "redis_test_support.hpp"
#include "../system/trace_checks.hpp"

namespace micromodels {
namespace {

using namespace redis_testing;

class DistributedCliTest : public RedisTest {
 protected:
  // source -> work (model.sleep) -> sink.jsonl, the sink writing dir/out.jsonl.
  fs::path write_pipeline(int count, const std::string& work, const std::string& source = "",
                          const std::string& work_keys = "") {
    const fs::path path = dir_ / "p.yaml";
    write_text(path, "pipeline: " + name_ +
                         "\nstages:\n"
                         "  - { name: source, type: synthetic.source, params: { count: " +
                         std::to_string(count) + source +
                         " } }\n"
                         "  - { name: work, type: model.sleep" + work_keys + ", params: { " + work +
                         " } }\n"
                         "  - { name: sink, type: sink.jsonl, ordered: true, params: { path: " +
                         (dir_ / "out.jsonl").string() + " } }\n");
    return path;
  }

  std::unique_ptr<Process> start(const std::string& tag, std::vector<std::string> args) {
    args.insert(args.begin(), cli_path());
    return std::make_unique<Process>(dir_, tag, std::move(args));
  }

  // The run process of `file` with --serve none (workers serve the stages between), -q and `extra`.
  std::unique_ptr<Process> run_on_workers(const fs::path& file,
                                          std::vector<std::string> extra = {}) {
    std::vector<std::string> args = {"run", file.string(), "--broker", redis_url(), "--serve",
                                     "none", "-q"};
    args.insert(args.end(), extra.begin(), extra.end());
    return start("run", args);
  }

  std::unique_ptr<Process> worker(const std::string& tag, const fs::path& file,
                                  const std::string& stages, std::vector<std::string> extra = {}) {
    std::vector<std::string> args = {"worker", file.string(), "--broker", redis_url(), "--stages",
                                     stages};
    args.insert(args.end(), extra.begin(), extra.end());
    return start(tag, args);
  }

  // `file` with work's type changed (model.spin): another version of the pipeline.
  fs::path another_version_of(const fs::path& file) {
    const fs::path other = dir_ / "other.yaml";
    std::string text = read_text(file);
    text.replace(text.find("model.sleep"), 11, "model.spin");
    write_text(other, text);
    return other;
  }

  void wait_live(const std::string& stage, int n) {
    Redis redis(redis_url());
    RedisTest::wait_live(redis, stage, n);
  }

  // The `processed` column of `stage`'s row in a process's table; -1 without such a row.
  static long long processed_in(const std::string& table, const std::string& stage) {
    const auto row = table.find("\n" + stage + " ");
    if (row == std::string::npos) return -1;
    std::istringstream fields(table.substr(row + 1));
    std::string name;
    int consumers = 0;
    long long processed = -1;
    fields >> name >> consumers >> processed;
    return processed;
  }

  // The report's line for `work` over every process: {processed, dropped}, with none failed or
  // dead-lettered; {-1, -1} without such a line.
  static std::pair<int, int> work_counts(const std::string& report) {
    std::smatch counts;
    if (!std::regex_search(
            report, counts,
            std::regex(
                R"(\n  work +processed +(\d+)  failed +0  dropped +(\d+)  dead-lettered +0\n)"))) {
      return {-1, -1};
    }
    return {std::stoi(counts[1]), std::stoi(counts[2])};
  }

  // The sink's (seq) list for stream 0: every packet once, in order, unless listed missing.
  void expect_complete(int count, const std::set<int>& missing = {}) {
    std::vector<int> seqs;
    for (const std::string& line : lines_of(dir_ / "out.jsonl")) {
      seqs.push_back(nlohmann::json::parse(line)["seq"].get<int>());
    }
    std::vector<int> want;
    for (int i = 0; i < count; ++i) {
      if (!missing.contains(i)) want.push_back(i);
    }
    EXPECT_EQ(seqs, want);
  }
};

TEST_F(DistributedCliTest, TwoWorkersShareAStageAndTheRunServesNothing) {
  const fs::path file = write_pipeline(200, "service_ms: 2");
  auto w1 = worker("w1", file, "work");
  auto w2 = worker("w2", file, "work");
  wait_live("work", 2);
  const Result run = run_on_workers(file)->wait(60s);
  ASSERT_EQ(run.exit_code, 0) << run.err;
  EXPECT_NE(run.err.find("serving here: none"), std::string::npos) << run.err;
  EXPECT_NE(run.out.find("source         -> work"), std::string::npos) << run.out;  // bytes per hop
  // The workers' part is counted too, though they may not have reported it when the last packet
  // came; and the report says which stages its table leaves out.
  EXPECT_TRUE(std::regex_search(run.out, std::regex(R"(work +-> sink +200 packets)"))) << run.out;
  // ... with what they did there, counted over both workers.
  EXPECT_NE(run.out.find("over every process, for the stages other processes served (the "
                         "table and its bottleneck line have this process's part only; "
                         "micromodels status --broker URL shows every stage):\n"),
            std::string::npos)
      << run.out;
  EXPECT_TRUE(std::regex_search(
      run.out,
      std::regex(R"(\n  work +processed +200  failed +0  dropped +0  dead-lettered +0\n)")))
      << run.out;
  expect_complete(200);
  // Both workers took part: each one's table counts packets for `work`.
  for (auto* w : {w1.get(), w2.get()}) {
    w->signal(SIGTERM);
    const Result r = w->wait(20s);
    EXPECT_EQ(r.exit_code, 0) << r.err;
    EXPECT_GT(processed_in(r.out, "work"), 20) << r.out;
  }
}

// A stage the run serves alongside a worker (--serve all): the table has the run's part, and
// the report adds the stage's counts over both processes, as for a stage only workers serve.
TEST_F(DistributedCliTest, AStageTheRunSharesWithAWorkerIsCountedOverBoth) {
  const fs::path file = write_pipeline(200, "service_ms: 2");
  auto w = worker("w", file, "work");
  wait_live("work", 1);
  const Result run =
      start("run", {"run", file.string(), "--broker", redis_url(), "--serve", "all", "-q"})
          ->wait(60s);
  ASSERT_EQ(run.exit_code, 0) << run.err;
  expect_complete(200);
  w->signal(SIGTERM);
  const Result end = w->wait(20s);
  ASSERT_EQ(end.exit_code, 0) << end.err;
  const long long by_worker = processed_in(end.out, "work");
  const long long by_run = processed_in(run.out, "work");
  EXPECT_GT(by_worker, 0) << end.out;
  EXPECT_GT(by_run, 0) << run.out;
  EXPECT_EQ(by_worker + by_run, 200);
  EXPECT_TRUE(std::regex_search(
      run.out,
      std::regex(R"(\n  work +processed +200  failed +0  dropped +0  dead-lettered +0\n)")))
      << run.out;
}

// A join that waits less than a dead worker's packets take to come back would drop the frames
// that worker held, where in one process it would have waited: the run and the worker say so
// when they start, naming the stage and what to raise.
TEST_F(DistributedCliTest, AJoinShorterThanATakeOverIsWarnedAbout) {
  const fs::path path = dir_ / "join.yaml";
  write_text(path, "pipeline: " + name_ +
                       "\nstages:\n"
                       "  - { name: source, type: synthetic.source, params: { count: 10 } }\n"
                       "  - { name: a, type: pass, inputs: [source] }\n"
                       "  - { name: b, type: pass, inputs: [source] }\n"
                       "  - { name: j, type: pass, inputs: [a, b], join: { timeout_ms: 2000 } }\n"
                       "  - { name: sink, type: sink.jsonl, ordered: true, params: { path: " +
                       (dir_ / "out.jsonl").string() + " } }\n");
  const Result run = start("run", {"run", path.string(), "--broker", redis_url(), "-q"})->wait(60s);
  ASSERT_EQ(run.exit_code, 0) << run.err;
  EXPECT_NE(run.err.find("stage 'j': join timeout_ms 2000 is shorter than a dead worker's packets "
                         "may take to come back on Redis (up to about 8000 ms"),
            std::string::npos)
      << run.err;
  EXPECT_NE(run.err.find("raise timeout_ms"), std::string::npos) << run.err;
  EXPECT_EQ(lines_of(dir_ / "out.jsonl").size(), 10u);
  std::string longer = read_text(path);
  longer.replace(longer.find("timeout_ms: 2000"), 16, "timeout_ms: 9000");
  write_text(path, longer);
  const Result quiet =
      start("run", {"run", path.string(), "--broker", redis_url(), "-q"})->wait(60s);
  ASSERT_EQ(quiet.exit_code, 0) << quiet.err;
  EXPECT_EQ(quiet.err.find("join timeout_ms"), std::string::npos) << quiet.err;
}

// A stage that fails every packet it takes is a broken part, as in one process: the run ends
// (the packets are dead-lettered) and exits 1 naming it, judging the stages its workers serve
// by the counts they add to Redis; the worker, told to stop, says so too and exits 1.
TEST_F(DistributedCliTest, AStageThatFailedEveryPacketOnAWorkerFailsTheRunAndTheWorker) {
  const fs::path file = write_pipeline(20, "service_ms: 1, fail_every: 1");
  auto w = worker("w", file, "work");
  wait_live("work", 1);
  const Result run = run_on_workers(file)->wait(60s);
  EXPECT_EQ(run.exit_code, 1) << run.err;
  EXPECT_NE(run.err.find("error: stage 'work' (20 of 20) failed every packet it took, so nothing "
                         "came out of it; its first errors are in the log of the workers that "
                         "serve it"),
            std::string::npos)
      << run.err;
  EXPECT_NE(run.out.find(":dead: 20 entries (all processes)"), std::string::npos) << run.out;
  EXPECT_TRUE(std::regex_search(
      run.out,
      std::regex(R"(\n  work +processed +0  failed +20  dropped +0  dead-lettered +20\n)")))
      << run.out;
  expect_complete(20, {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19});
  w->signal(SIGTERM);
  const Result end = w->wait(20s);
  EXPECT_EQ(end.exit_code, 1) << end.err;
  EXPECT_NE(end.err.find("error: stage 'work' (20 of 20) failed every packet it took"),
            std::string::npos)
      << end.err;
}

// Packets that failed on a worker are counted in the run's warning, as in one process, and the
// run exits 0: failures are the pipeline's business unless a stage failed every packet.
TEST_F(DistributedCliTest, PacketsThatFailedOnAWorkerAreCountedInTheRunsWarning) {
  const fs::path file = write_pipeline(20, "service_ms: 1, fail_every: 4");
  auto w = worker("w", file, "work");
  wait_live("work", 1);
  const Result run = run_on_workers(file)->wait(60s);
  EXPECT_EQ(run.exit_code, 0) << run.err;
  EXPECT_NE(run.err.find("warning: packets failed at 'work' 5 of 20 (handed to the dead letter)"),
            std::string::npos)
      << run.err;
  expect_complete(20, {3, 7, 11, 15, 19});
  w->signal(SIGTERM);
  const Result worker_result = w->wait(20s);
  EXPECT_EQ(worker_result.exit_code, 0);
  // The worker logs each failure once, as an embedded run does (not again as its dead letter).
  const auto occurrences = [&](const std::string& text) {
    std::size_t n = 0;
    for (auto at = worker_result.err.find(text); at != std::string::npos;
         at = worker_result.err.find(text, at + 1)) {
      ++n;
    }
    return n;
  };
  EXPECT_EQ(occurrences("failed on purpose"), 5u) << worker_result.err;
  EXPECT_EQ(occurrences("dead-lettered to"), 0u) << worker_result.err;
}

// Live mode across processes means what it means in one: the paced source never waits for the
// worker's slow stage, whose queue keeps each stream's newest; every packet is processed or
// dropped once, and the run's report has the worker's counts.
TEST_F(DistributedCliTest, LiveModeOnAWorkerDropsWhatItCannotTakeAndCountsItOnce) {
  const fs::path path = dir_ / "live.yaml";
  write_text(path, "pipeline: " + name_ +
                       "\nlive: { max_age_ms: 500, policy: newest }\n"
                       "stages:\n"
                       "  - { name: source, type: synthetic.source, params: { count: 100, "
                       "streams: 2, rate: 200 } }\n"
                       "  - { name: work, type: model.sleep, params: { service_ms: 10 } }\n"
                       "  - { name: sink, type: sink.jsonl, ordered: true, live: { max_age_ms: 0 "
                       "}, params: { path: " +
                       (dir_ / "out.jsonl").string() + " } }\n");
  auto w = worker("w", path, "work");
  wait_live("work", 1);
  const Result run = run_on_workers(path)->wait(60s);
  ASSERT_EQ(run.exit_code, 0) << run.err;
  const auto [processed, dropped] = work_counts(run.out);
  ASSERT_GE(processed, 0) << run.out;
  EXPECT_GT(dropped, 0) << "the source waited for the worker";
  EXPECT_EQ(processed + dropped, 200);
  std::map<int, int> last;
  int written = 0;
  for (const std::string& line : lines_of(dir_ / "out.jsonl")) {
    const nlohmann::json record = nlohmann::json::parse(line);
    const int stream = record["stream"].get<int>();
    const int seq = record["seq"].get<int>();
    if (last.contains(stream)) {
      EXPECT_LT(last[stream], seq) << "each stream in order, once";
    }
    last[stream] = seq;
    ++written;
  }
  EXPECT_EQ(written, processed);
  w->signal(SIGTERM);
  const Result end = w->wait(20s);
  EXPECT_EQ(end.exit_code, 0) << end.err;
  EXPECT_EQ(processed_in(end.out, "work"), processed) << end.out;
}

// Live mode, with nobody reading the stage after the source (no worker yet, --serve none): the
// source still never waits, and its stream in Redis holds about the stage's queue capacity of
// packets; past it each frame goes as a small `unserved` entry, which the stage counts as its drop
// once a worker reads it. Every packet is processed or dropped, counted once. (A stage that
// reads, however far behind, loses nothing this way: the conformance suite's live-mode test.)
TEST_F(DistributedCliTest, ALiveSourceNobodyReadsSendsNoMoreThanTheQueueHoldsAndCountsTheRest) {
  const fs::path path = dir_ / "live.yaml";
  write_text(path, "pipeline: " + name_ +
                       "\nlive: {}\n"
                       "stages:\n"
                       "  - { name: source, type: synthetic.source, params: { count: 300, "
                       "rate: 100 } }\n"
                       "  - { name: work, type: model.sleep, queue: { capacity: 8 }, params: { "
                       "service_ms: 1 } }\n"
                       "  - { name: sink, type: sink.jsonl, ordered: true, params: { path: " +
                       (dir_ / "out.jsonl").string() + " } }\n");
  Redis redis(redis_url());
  redis.command({"DEL", stream_key("work")});  // an earlier repetition's
  const fs::path run_metrics = dir_ / "run.json";
  auto run = run_on_workers(path, {"--metrics-json", run_metrics.string()});
  const auto deadline = std::chrono::steady_clock::now() + 30s;
  long long entries = 0;
  while (entries < 300 && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(50ms);
    auto len = redis.command({"XLEN", stream_key("work")});
    entries = len ? len->integer : 0;
  }
  ASSERT_EQ(entries, 300) << "the source waited, or its entries did not all come";
  std::map<char, int> kinds;  // by the entry's kind byte: 'p' packet, 'u' unserved
  auto all = redis.command({"XRANGE", stream_key("work"), "-", "+"});
  for (std::size_t i = 0; all && i < all->elements; ++i) {
    const redisReply* fields = all->element[i]->element[1];
    const std::string value = field_text(fields, "m");
    ASSERT_GT(value.size(), 3u);
    ++kinds[value[3]];
  }
  // The queue's capacity, and what came in the half second the outlet takes to see that nobody
  // reads (about 50 frames at 100 per second; a loaded machine's late probes add a few).
  EXPECT_GE(kinds['p'], 8);
  EXPECT_LE(kinds['p'], 8 + 50 + 20) << "the stream holds about what the stage's queue holds";
  EXPECT_EQ(kinds['p'] + kinds['u'], 300);
  const fs::path metrics = dir_ / "worker.json";
  auto w = worker("w", path, "work", {"--metrics-json", metrics.string()});
  const Result done = run->wait(60s);
  ASSERT_EQ(done.exit_code, 0) << done.err;
  const auto [processed, dropped] = work_counts(done.out);
  ASSERT_GE(processed, 1) << done.out;
  EXPECT_LE(processed, kinds['p']);
  EXPECT_EQ(processed + dropped, 300);
  EXPECT_EQ(static_cast<int>(lines_of(dir_ / "out.jsonl").size()), processed);
  w->signal(SIGTERM);
  EXPECT_EQ(w->wait(20s).exit_code, 0);
  // The worker gives each drop its reason: the `unserved` entries are counted so.
  const nlohmann::json report = nlohmann::json::parse(read_text(metrics));
  EXPECT_EQ(report["packets_in"].get<int>(), 300) << "an unserved packet came in, as a marker";
  EXPECT_EQ(report["packets_out"].get<int>(), 300) << "and is done with once";
  const nlohmann::json stages = report["stages"];
  const auto work = std::find_if(stages.begin(), stages.end(),
                                 [](const nlohmann::json& s) { return s["name"] == "work"; });
  ASSERT_NE(work, stages.end());
  EXPECT_EQ((*work)["dropped_unserved"].get<int>(), kinds['u']);
  EXPECT_EQ((*work)["dropped"].get<int>(), dropped);
  // The run's JSON has the stage its worker served, counted over every process.
  const nlohmann::json elsewhere =
      nlohmann::json::parse(read_text(run_metrics))["served_elsewhere"];
  ASSERT_EQ(elsewhere.size(), 1u) << elsewhere.dump();
  EXPECT_EQ(elsewhere[0]["name"], "work");
  EXPECT_EQ(elsewhere[0]["processed"].get<int>(), processed);
  EXPECT_EQ(elsewhere[0]["dropped"].get<int>(), dropped);
  EXPECT_EQ(elsewhere[0]["dropped_unserved"].get<int>(), kinds['u']);
}

// A run that ends trims its streams before it leaves: a run shorter than the keeper's second
// once left every entry it made in Redis (with their packets) until the next run.
TEST_F(DistributedCliTest, ARunLeavesNoAcknowledgedEntriesBehind) {
  const fs::path file = write_pipeline(100, "service_ms: 0", ", payload_bytes: 10000");
  const Result run = start("run", {"run", file.string(), "--broker", redis_url(), "-q"})->wait(60s);
  ASSERT_EQ(run.exit_code, 0) << run.err;
  expect_complete(100);
  Redis redis(redis_url());
  for (const std::string stage : {"work", "sink"}) {
    auto length = redis.command({"XLEN", stream_key(stage)});
    ASSERT_TRUE(length);
    EXPECT_LE(length->integer, 1) << stage << ": the last delivered entry stays, no more";
  }
}

// A worker renews its member of the live set every second. A run (and `status`) reading the set
// in between must always find it: the renewal once removed the old member before adding the new
// one, and a run warned now and then that nobody served a stage a live worker served.
TEST_F(DistributedCliTest, ALiveWorkerIsNeverMissingFromTheLiveSet) {
  const fs::path file = write_pipeline(10, "service_ms: 1");
  auto w = worker("w", file, "work");
  wait_live("work", 1);
  Redis redis(redis_url());
  int reads = 0;
  int missing = 0;
  std::string first_miss;
  const auto until = std::chrono::steady_clock::now() + 4s;  // four renewals
  while (std::chrono::steady_clock::now() < until) {
    const auto now_ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                            std::chrono::system_clock::now().time_since_epoch())
                            .count();
    auto members = redis.command(
        {"ZRANGEBYSCORE", key("live"), std::to_string(now_ms), "+inf"});  // as the run reads it
    bool found = false;
    for (std::size_t i = 0; members && i < members->elements; ++i) {
      found = found || std::string(members->element[i]->str, members->element[i]->len)
                           .starts_with("work|");
    }
    ++reads;
    if (!found && missing++ == 0) {  // what the set held then, with its scores (expiries)
      auto all = redis.command({"ZRANGE", key("live"), "0", "-1", "WITHSCORES"});
      first_miss = "at " + std::to_string(now_ms) + ":";
      for (std::size_t i = 0; all && i < all->elements; ++i) {
        first_miss += " " + std::string(all->element[i]->str, all->element[i]->len);
      }
    }
  }
  EXPECT_EQ(missing, 0) << "the worker was missing from " << missing << " of " << reads
                        << " reads of the live set; the first time, the set " << first_miss;
  EXPECT_GT(reads, 1000);
  w->signal(SIGTERM);
  EXPECT_EQ(w->wait(20s).exit_code, 0);
}

TEST_F(DistributedCliTest, AStoppedWorkerSaysHowManyPacketsItStillDrains) {
  // A worker stopped mid-run says what its engine still holds (MetricsSnapshot::in_flight) and
  // drains it without a false stall message.
  const int count = 40;
  const fs::path file = write_pipeline(count, "service_ms: 100");
  auto w = worker("w", file, "work");
  wait_live("work", 1);
  auto run = run_on_workers(file);
  // Stopped while it works: a few packets written on to the sink, most still to come.
  Redis redis(redis_url());
  const auto written = [&] {
    auto n = redis.command({"XLEN", stream_key("sink")});
    return n ? n->integer : 0;
  };
  const auto deadline = std::chrono::steady_clock::now() + 20s;
  while (written() < 3 && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(20ms);
  }
  ASSERT_LT(written(), count - 5);
  w->signal(SIGTERM);
  const Result stopped = w->wait(30s);
  EXPECT_EQ(stopped.exit_code, 0) << stopped.err;
  std::smatch said;
  ASSERT_TRUE(std::regex_search(stopped.err, said, std::regex(R"(stopping: draining (\d+) in-flight)")))
      << stopped.err;
  EXPECT_GE(std::stoi(said[1].str()), 1) << stopped.err;
  EXPECT_EQ(stopped.err.find("none has finished"), std::string::npos) << stopped.err;
  // Whatever it had not taken, another worker finishes.
  auto heir = worker("heir", file, "work");
  wait_live("work", 1);
  const Result r = run->wait(60s);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  expect_complete(count);
  heir->signal(SIGTERM);
  EXPECT_EQ(heir->wait(20s).exit_code, 0);
}

TEST_F(DistributedCliTest, TracePartsOfTheRunAndAWorkerMergeOntoOneTimeline) {
  const fs::path file = write_pipeline(100, "service_ms: 1");
  const fs::path worker_part = dir_ / "worker.json";
  const fs::path run_part = dir_ / "run.json";
  const fs::path merged = dir_ / "all.json";
  auto w = worker("w", file, "work", {"--trace", worker_part.string()});
  wait_live("work", 1);
  const Result run = run_on_workers(file, {"--trace", run_part.string()})->wait(60s);
  ASSERT_EQ(run.exit_code, 0) << run.err;
  expect_complete(100);
  w->signal(SIGTERM);
  const Result stopped = w->wait(20s);
  ASSERT_EQ(stopped.exit_code, 0) << stopped.err;

  const Result merge = start("merge", {"trace", "merge", run_part.string(), worker_part.string(),
                                       "-o", merged.string()})
                           ->wait(20s);
  ASSERT_EQ(merge.exit_code, 0) << merge.err;
  EXPECT_NE(merge.err.find("300 stage events of 2 processes, 100 packets (100 seen in more than "
                           "one process)"),
            std::string::npos)
      << merge.err;
  const std::vector<std::string> stages = {"source", "work", "sink"};
  const auto content = testing::read_trace(merged, stages);
  EXPECT_EQ(content.pids.size(), 2U);
  EXPECT_EQ(content.flow_steps, 300U);  // one flow per packet, across the processes
  for (std::uint64_t seq = 0; seq < 100; ++seq) {
    testing::expect_path(content, {0, seq}, stages);
    const auto& slices = content.packets.at({0, seq});
    EXPECT_EQ(slices[0].pid, slices[2].pid);  // source and sink: the run process
    EXPECT_NE(slices[1].pid, slices[0].pid);  // work: the worker
  }
}

#ifdef MICROMODELS_PLUGIN_DIR
TEST_F(DistributedCliTest, AWorkerServesAStageTypeFromAPlugin) {
  // example.label (tests/plugins/, from examples/plugin/) exists only in processes that load it.
  const std::string plugin = std::string(MICROMODELS_PLUGIN_DIR) + "/libexample_label.so";
  const fs::path file = dir_ / "labels.yaml";
  write_text(file, "pipeline: " + name_ +
                       "\nstages:\n"
                       "  - { name: source, type: synthetic.source, params: { count: 50 } }\n"
                       "  - { name: label, type: example.label, params: { prefix: w- } }\n"
                       "  - { name: sink, type: sink.jsonl, ordered: true, params: { path: " +
                       (dir_ / "out.jsonl").string() + " } }\n");
  auto w = worker("w", file, "label", {"--plugin", plugin});
  wait_live("label", 1);
  const Result run = start("run", {"run", file.string(), "--broker", redis_url(), "--serve",
                                   "none", "--plugin", plugin, "-q"})
                         ->wait(60s);
  ASSERT_EQ(run.exit_code, 0) << run.err;
  std::vector<std::string> labels;
  for (const std::string& line : lines_of(dir_ / "out.jsonl")) {
    labels.push_back(nlohmann::json::parse(line)["fields"]["label"].get<std::string>());
  }
  std::vector<std::string> want;
  for (int seq = 0; seq < 50; ++seq) want.push_back("w-" + std::to_string(seq));
  EXPECT_EQ(labels, want);
  w->signal(SIGTERM);
  const Result r = w->wait(20s);
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("\nlabel "), std::string::npos) << r.out;

  // Without the plugin a worker cannot serve the stage: exit 2 naming the type.
  const Result bare = worker("bare", file, "label")->wait(30s);
  EXPECT_EQ(bare.exit_code, 2);
  EXPECT_NE(bare.err.find("unknown stage type 'example.label'"), std::string::npos) << bare.err;
}
#endif

TEST_F(DistributedCliTest, AWorkerShowsItsMetricsOnTheControlEndpoint) {
  const fs::path file = write_pipeline(300, "service_ms: 2", ", rate: 100");
  auto w = worker("w", file, "work", {"--listen", "127.0.0.1:0"});
  wait_live("work", 1);
  std::string url;
  for (int i = 0; i < 200 && url.empty(); ++i) {
    const std::string err = read_text(dir_ / "w.err");
    const auto at = err.find("control: http://");
    if (at != std::string::npos) url = err.substr(at + 9, err.find('\n', at) - at - 9);
    std::this_thread::sleep_for(50ms);
  }
  ASSERT_FALSE(url.empty()) << read_text(dir_ / "w.err");
  auto run = run_on_workers(file);
  std::this_thread::sleep_for(1s);
  const Result status = start("status", {"ctl", url, "status", "--json"})->wait(20s);
  ASSERT_EQ(status.exit_code, 0) << status.err;
  const nlohmann::json doc = nlohmann::json::parse(status.out);
  bool found = false;
  for (const auto& stage : doc["stages"]) {
    if (stage["name"] == "work") found = stage["processed"].get<std::uint64_t>() > 0;
  }
  EXPECT_TRUE(found) << status.out;
  // The worker runs its stages on the same engine as an embedded run: scale acts on the
  // consumers of this process, as in one process.
  const Result scale = start("scale", {"ctl", url, "scale", "work", "2"})->wait(20s);
  EXPECT_EQ(scale.exit_code, 0) << scale.err;
  EXPECT_NE(scale.out.find("scaled work: 1 -> 2 consumers"), std::string::npos) << scale.out;
  const Result after = start("after", {"ctl", url, "status", "--json"})->wait(20s);
  ASSERT_EQ(after.exit_code, 0) << after.err;
  for (const auto& stage : nlohmann::json::parse(after.out)["stages"]) {
    if (stage["name"] == "work") {
      EXPECT_EQ(stage["consumers"], 2) << after.out;
    }
  }
  // A stage this worker does not serve is not here to change.
  const Result elsewhere = start("elsewhere", {"ctl", url, "scale", "sink", "2"})->wait(20s);
  EXPECT_NE(elsewhere.exit_code, 0);
  EXPECT_NE(elsewhere.err.find("no stage 'sink' runs in this process"), std::string::npos)
      << elsewhere.err;
  const Result done = run->wait(60s);
  ASSERT_EQ(done.exit_code, 0) << done.err;
  expect_complete(300);
  w->signal(SIGTERM);
  EXPECT_EQ(w->wait(20s).exit_code, 0);
}

TEST_F(DistributedCliTest, TheRunsEndpointShowsEveryStageAsTheBrokerSeesIt) {
  const fs::path file = write_pipeline(400, "service_ms: 5", ", rate: 100");
  auto w = worker("w", file, "work", {"--consumers", "2"});
  wait_live("work", 2);
  auto run = run_on_workers(file, {"--listen", "127.0.0.1:0"});
  std::string url;
  for (int i = 0; i < 200 && url.empty(); ++i) {
    const std::string err = read_text(dir_ / "run.err");
    const auto at = err.find("control: http://");
    if (at != std::string::npos) url = err.substr(at + 9, err.find('\n', at) - at - 9);
    std::this_thread::sleep_for(50ms);
  }
  ASSERT_FALSE(url.empty()) << read_text(dir_ / "run.err");
  // The run process does not run `work`; its /status has it from the broker: the worker's two
  // consumers, and its inputs for the dashboard's graph.
  nlohmann::json work;
  nlohmann::json doc;
  for (int i = 0; i < 40 && work.is_null(); ++i) {
    const Result status = start("status", {"ctl", url, "status", "--json"})->wait(20s);
    ASSERT_EQ(status.exit_code, 0) << status.err;
    doc = nlohmann::json::parse(status.out);
    for (const auto& stage : doc["broker"].is_array() ? doc["broker"] : nlohmann::json::array()) {
      if (stage["stage"] == "work" && stage["consumers"] == 2) work = stage;
    }
    if (work.is_null()) std::this_thread::sleep_for(250ms);
  }
  ASSERT_FALSE(work.is_null()) << doc.dump(2);
  EXPECT_EQ(work["inputs"], nlohmann::json::array({"source"}));
  EXPECT_TRUE(work["backlog"].is_number_unsigned());
  EXPECT_TRUE(doc["broker_error"].is_null()) << doc.dump(2);
  for (const auto& stage : doc["stages"]) EXPECT_NE(stage["name"], "work") << "runs in the worker";
  // `ctl status` (and `top`) show it too, below this process's stages.
  const Result table = start("table", {"ctl", url, "status"})->wait(20s);
  ASSERT_EQ(table.exit_code, 0) << table.err;
  EXPECT_NE(table.out.find("served by other processes (Redis's view):\n  work "), std::string::npos)
      << table.out;
  EXPECT_TRUE(std::regex_search(table.out, std::regex(R"(\n  work +consumers 2  backlog \d+)")))
      << table.out;
  const Result done = run->wait(60s);
  ASSERT_EQ(done.exit_code, 0) << done.err;
  expect_complete(400);
  w->signal(SIGTERM);
  EXPECT_EQ(w->wait(20s).exit_code, 0);
}

TEST_F(DistributedCliTest, TheRunServesAStageItselfOnceItsOnlyWorkerIsGone) {
  const int count = 300;
  const fs::path file = write_pipeline(count, "service_ms: 5");
  auto only = worker("only", file, "work");
  wait_live("work", 1);
  auto run = start("run", {"run", file.string(), "--broker", redis_url(), "-q", "--reclaim-ms", "300"});
  const auto deadline = std::chrono::steady_clock::now() + 20s;
  while (lines_of(dir_ / "out.jsonl").size() < 30 && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(10ms);
  }
  only->signal(SIGKILL);
  const Result r = run->wait(60s);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.err.find("serving here: none"), std::string::npos) << r.err;  // the worker had it
  EXPECT_NE(r.err.find("no worker serves stage 'work': serving it here"), std::string::npos) << r.err;
  expect_complete(count);
}

TEST_F(DistributedCliTest, ARunThatServesNothingNamesTheStagesNoWorkerServes) {
  const int count = 50;
  const fs::path file = write_pipeline(count, "service_ms: 1");
  auto run = start("run", {"run", file.string(), "--broker", redis_url(), "-q", "--serve", "none"});
  const std::string said = "no live worker serves stage 'work'";
  const auto deadline = std::chrono::steady_clock::now() + 20s;
  while (run->err().find(said) == std::string::npos && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(100ms);
  }
  const std::string waiting = run->err();
  EXPECT_NE(waiting.find(said), std::string::npos) << waiting;
  EXPECT_NE(waiting.find("--stages work"), std::string::npos) << waiting;  // what to start
  EXPECT_TRUE(lines_of(dir_ / "out.jsonl").empty());
  // A worker for it, and the run goes on to the end, with every packet.
  auto w = worker("w", file, "work");
  const Result r = run->wait(60s);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  expect_complete(count);
  w->signal(SIGTERM);
  EXPECT_EQ(w->wait(20s).exit_code, 0);
}

TEST_F(DistributedCliTest, ACtrlCOnARunThatServesNothingSaysTheDrainIsStuckAndASecondAbandons) {
  const fs::path file = write_pipeline(50, "service_ms: 1");
  auto run = start("run", {"run", file.string(), "--broker", redis_url(), "-q", "--serve", "none"});
  std::this_thread::sleep_for(1s);  // the packets wait in Redis for a worker of 'work'
  run->signal(SIGINT);
  const std::string said = "none has finished for 5 s";
  const auto deadline = std::chrono::steady_clock::now() + 20s;
  while (run->err().find(said) == std::string::npos && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(100ms);
  }
  // The counts are the run's, across processes: the 50 packets its source made wait in Redis.
  const std::string stuck = run->err();
  EXPECT_NE(stuck.find("stopping: draining 50 in-flight packets"), std::string::npos) << stuck;
  EXPECT_NE(stuck.find("stopping: 50 packets still in flight, and " + said), std::string::npos)
      << stuck;
  EXPECT_NE(stuck.find("Ctrl-C again abandons them"), std::string::npos) << stuck;
  run->signal(SIGINT);
  const Result r = run->wait(20s);
  EXPECT_EQ(r.exit_code, 130) << r.err;
  EXPECT_NE(r.err.find("interrupted: aborting with 50 packets still in flight"), std::string::npos)
      << r.err;
}

TEST_F(DistributedCliTest, PerStreamStageIsHandedOverWhenItsWorkerDies) {
  const int count = 150;
  const fs::path file =
      write_pipeline(count, "service_ms: 4", ", streams: 2", ", state: per_stream, consumers: 2");
  auto doomed = worker("doomed", file, "work", {"--consumers", "2"});
  wait_live("work", 2);
  auto heir = worker("heir", file, "work");
  wait_live("work", 3);
  auto run = run_on_workers(file);
  const auto deadline = std::chrono::steady_clock::now() + 20s;
  while (lines_of(dir_ / "out.jsonl").size() < 40 && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(10ms);
  }
  doomed->signal(SIGKILL);
  const Result r = run->wait(60s);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  std::map<int, std::vector<int>> seqs;
  for (const std::string& line : lines_of(dir_ / "out.jsonl")) {
    const auto j = nlohmann::json::parse(line);
    seqs[j["stream"].get<int>()].push_back(j["seq"].get<int>());
  }
  std::vector<int> want(count);
  for (int i = 0; i < count; ++i) want[static_cast<std::size_t>(i)] = i;
  EXPECT_EQ(seqs[0], want);
  EXPECT_EQ(seqs[1], want);
  EXPECT_NE(heir->err().find("took over"), std::string::npos) << heir->err();
}

// A worker stopped (SIGSTOP, as a CPU quota or a swapped-out machine would) for longer than its
// leases, while it holds the per_stream partitions that carry the streams: another worker takes
// them over; when the first one wakes, the entries it read meanwhile are taken back, and the run
// completes with every packet once, in order.
TEST_F(DistributedCliTest, APerStreamWorkerPausedPastItsLeasesIsTakenOverAndTheRunCompletes) {
  const int count = 300;
  const fs::path file = write_pipeline(count, "service_ms: 2", ", streams: 2, rate: 50",
                                       ", state: per_stream, consumers: 2");
  const fs::path sleeper_metrics = dir_ / "sleeper.json";
  auto sleeper = worker("sleeper", file, "work", {"--metrics-json", sleeper_metrics.string()});
  wait_live("work", 2);
  auto heir = worker("heir", file, "work");
  wait_live("work", 4);
  auto run = run_on_workers(file);
  const auto deadline = std::chrono::steady_clock::now() + 20s;
  while (lines_of(dir_ / "out.jsonl").size() < 60 && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(10ms);
  }
  sleeper->signal(SIGSTOP);
  std::this_thread::sleep_for(5s);  // the leases last 3 s
  sleeper->signal(SIGCONT);
  const Result r = run->wait(60s);
  ASSERT_EQ(r.exit_code, 0) << r.err << "\nsleeper:\n" << sleeper->err() << "\nheir:\n" << heir->err();
  std::map<int, std::vector<int>> seqs;
  for (const std::string& line : lines_of(dir_ / "out.jsonl")) {
    const auto j = nlohmann::json::parse(line);
    seqs[j["stream"].get<int>()].push_back(j["seq"].get<int>());
  }
  std::vector<int> want(count);
  for (int i = 0; i < count; ++i) want[static_cast<std::size_t>(i)] = i;
  EXPECT_EQ(seqs[0], want);
  EXPECT_EQ(seqs[1], want);
  EXPECT_NE(heir->err().find("took over"), std::string::npos) << heir->err();
  std::this_thread::sleep_for(1500ms);  // the sleeper's next look at its leases
  heir->signal(SIGTERM);
  EXPECT_EQ(heir->wait(20s).exit_code, 0);
  sleeper->signal(SIGTERM);
  const Result slept = sleeper->wait(20s);
  EXPECT_EQ(slept.exit_code, 0);
  EXPECT_NE(slept.err.find("lost the lease"), std::string::npos) << slept.err;
  EXPECT_GE(
      nlohmann::json::parse(read_text(sleeper_metrics))["transport"]["leases_lost"].get<int>(), 1);
}

// A worker that was up before the run took the per_stream stage's leases while idle; the run's
// start deletes them. A stage whose first entry comes long after the run began (here behind a
// 150 ms stage) must not read the new run under the old leases, which the keeper would then find
// gone: "lost the lease", and the entries read meanwhile run twice.
TEST_F(DistributedCliTest, AWorkerUpBeforeTheRunKeepsItsPerStreamStageThroughTheRunsStart) {
  const int count = 30;
  const fs::path path = dir_ / "p.yaml";
  write_text(path, "pipeline: " + name_ +
                       "\nstages:\n"
                       "  - { name: source, type: synthetic.source, params: { count: 30 } }\n"
                       "  - { name: slow, type: model.sleep, params: { service_ms: 150 } }\n"
                       "  - { name: work, type: model.sleep, state: per_stream, params: { "
                       "service_ms: 20 } }\n"
                       "  - { name: sink, type: sink.jsonl, ordered: true, params: { path: " +
                       (dir_ / "out.jsonl").string() + " } }\n");
  auto w = worker("w", path, "slow,work");
  wait_live("work", 1);
  std::this_thread::sleep_for(1500ms);  // its leases taken while no run exists
  const Result run = start("run", {"run", path.string(), "--broker", redis_url(), "--serve",
                                   "none", "-q"})
                         ->wait(60s);
  ASSERT_EQ(run.exit_code, 0) << run.err;
  expect_complete(count);
  std::this_thread::sleep_for(1500ms);  // a keeper round after the last packet
  w->signal(SIGTERM);
  const Result r = w->wait(20s);
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.err.find("lost the lease"), std::string::npos) << r.err;
  EXPECT_EQ(processed_in(r.out, "work"), count) << "each packet once\n" << r.out;
}

// A worker started with another version of the pipeline file (here `work` has another type)
// meets an entry of the run: it refuses it, says which version it runs and which wrote the entry,
// and hands it back untouched; a worker with the run's file then processes everything.
TEST_F(DistributedCliTest, AWorkerOfAnotherPipelineVersionRefusesEntriesAndLosesNone) {
  const int count = 100;
  const fs::path file = write_pipeline(count, "service_ms: 1", ", rate: 100");
  const fs::path other = another_version_of(file);
  auto stranger = worker("stranger", other, "work");
  wait_live("work", 1);
  auto run = run_on_workers(file, {"--reclaim-ms", "300"});
  const auto deadline = std::chrono::steady_clock::now() + 20s;
  while (stranger->err().find("refused entry") == std::string::npos &&
         std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(20ms);
  }
  const std::string said = stranger->err();
  ASSERT_NE(said.find("refused entry"), std::string::npos) << said;
  Redis redis(redis_url());
  const std::string record = redis.text({"GET", key("run")});  // "RUN VERSION"
  ASSERT_EQ(record.size(), 33u) << record;
  EXPECT_NE(said.find("written by pipeline version " + record.substr(17)), std::string::npos) << said;
  EXPECT_NE(said.find("this process runs version"), std::string::npos) << said;
  EXPECT_NE(said.find("start this process with the run's pipeline file"), std::string::npos) << said;
  auto heir = worker("heir", file, "work");
  wait_live("work", 1);
  const Result r = run->wait(60s);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  expect_complete(count);
  // The stranger, paused on the other version's entries, reads no entry: it still sees the next
  // run of its own file begin (from the run record) and serves it, alone (--serve none).
  const Result own = run_on_workers(other)->wait(60s);
  ASSERT_EQ(own.exit_code, 0) << own.err;
  expect_complete(count);
  stranger->signal(SIGTERM);
  const Result left = stranger->wait(20s);
  EXPECT_EQ(left.exit_code, 0) << left.err;
  EXPECT_NE(left.out.find("\nwork "), std::string::npos) << left.out;
  heir->signal(SIGTERM);
  EXPECT_EQ(heir->wait(20s).exit_code, 0);
}

// A worker whose file differs from the run's only in what decides drops (here `live:`, which
// would drop most frames of a batch run) runs another version: it takes nothing of the run, and
// the run, waiting for workers, says that one of another version is there and what to do.
// A worker of another pipeline version that serves a per_stream stage takes the partitions'
// leases, meets the run's entries in them and refuses them: it gives every lease back and takes
// no more, so that the run, serving the stage itself (--serve missing), reads every partition.
TEST_F(DistributedCliTest, AWorkerOfAnotherVersionGivesBackEveryPartitionOfAPerStreamStage) {
  const int count = 200;
  const fs::path file =
      write_pipeline(count, "service_ms: 1", ", streams: 3, rate: 200", ", state: per_stream");
  const fs::path other = another_version_of(file);
  auto stranger = worker("stranger", other, "work");
  wait_live("work", 1);
  auto run = start("run", {"run", file.string(), "--broker", redis_url(), "-q"});
  const Result r = run->wait(60s);
  ASSERT_EQ(r.exit_code, 0) << r.err << stranger->err();
  // (Whether the stranger took a partition before the run did is up to timing; when it did, it
  // said "refused entry".)
  Redis redis(redis_url());
  for (int k = 0; k < 8; ++k) {
    const std::string lease = "mm:{" + name_ + ":work}:p" + std::to_string(k) + ":lease";
    EXPECT_EQ(redis.text({"GET", lease}).find(":work"), std::string::npos)
        << lease << " is still held: " << redis.text({"GET", lease});
  }
  stranger->signal(SIGTERM);
  EXPECT_EQ(stranger->wait(20s).exit_code, 0);
}

TEST_F(DistributedCliTest, AWorkerWhoseFileWouldDropOtherPacketsIsNamedAndTakesNothing) {
  const int count = 50;
  const fs::path file = write_pipeline(count, "service_ms: 1");
  const fs::path live = dir_ / "live.yaml";
  std::string text = read_text(file);
  text.replace(text.find("stages:"), 7, "live: { max_age_ms: 50 }\nstages:");
  write_text(live, text);
  auto stranger = worker("stranger", live, "work");
  wait_live("work", 1);
  auto run = run_on_workers(file);
  const std::string said = "Workers of another version of the pipeline are live: ";
  const auto deadline = std::chrono::steady_clock::now() + 20s;
  while (run->err().find(said) == std::string::npos &&
         std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(100ms);
  }
  const std::string waiting = run->err();
  EXPECT_NE(waiting.find(said), std::string::npos) << waiting;
  EXPECT_NE(waiting.find("('work'); their file differs from this run's"), std::string::npos)
      << waiting;
  EXPECT_NE(waiting.find("start them with the run's file"), std::string::npos) << waiting;
  // `status` counts no consumers for the stage: the stranger serves another version.
  const Result status = start("status", {"status", "--broker", redis_url(), "--pipeline", name_,
                                         "--interval", "0", "--json"})
                            ->wait(20s);
  ASSERT_EQ(status.exit_code, 0) << status.err;
  for (const auto& s : nlohmann::json::parse(status.out)["stages"]) {
    if (s["stage"] == "work") {
      EXPECT_EQ(s["consumers"].get<int>(), 0) << s;
    }
  }
  auto heir = worker("heir", file, "work");
  const Result r = run->wait(60s);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  expect_complete(count);
  EXPECT_TRUE(std::regex_search(
      r.out, std::regex(R"(\n  work +processed +50  failed +0  dropped +0  dead-lettered +0\n)")))
      << r.out;
  for (auto* w : {stranger.get(), heir.get()}) {
    w->signal(SIGTERM);
    EXPECT_EQ(w->wait(20s).exit_code, 0);
  }
}

TEST_F(DistributedCliTest, AWorkerForAStageItCannotServeSaysWhichItCan) {
  const fs::path file = write_pipeline(10, "service_ms: 0");
  const Result unknown = worker("unknown", file, "nosuch")->wait(20s);
  EXPECT_EQ(unknown.exit_code, 2);
  EXPECT_NE(unknown.err.find("error: pipeline '" + name_ +
                             "' has no stage 'nosuch' to serve; a worker can serve: work"),
            std::string::npos)
      << unknown.err;
  const Result sink = worker("sink", file, "sink")->wait(20s);
  EXPECT_EQ(sink.exit_code, 2);
  EXPECT_NE(sink.err.find("error: stage 'sink' is a sink, which the run serves"), std::string::npos)
      << sink.err;
}

TEST_F(DistributedCliTest, UnreachableRedisIsAClearErrorWithItsOwnExitCode) {
  const fs::path file = write_pipeline(10, "service_ms: 0");
  for (const std::string command : {"run", "worker"}) {
    std::vector<std::string> args = {command, file.string(), "--broker", "redis://127.0.0.1:1"};
    if (command == "worker") args.insert(args.end(), {"--stages", "work"});
    const Result r = start(command, args)->wait(20s);
    EXPECT_EQ(r.exit_code, 3) << command << ": " << r.err;
    EXPECT_NE(r.err.find("error: cannot connect to Redis at 127.0.0.1:1"), std::string::npos)
        << r.err;
    EXPECT_NE(
        r.err.find("start redis-server there, or give the address of one that runs: --broker"),
        std::string::npos)
        << r.err;
  }
  // A host that cannot be reached (here: no such name) is not told to start a server.
  const Result nowhere =
      start("nowhere", {"run", file.string(), "--broker", "redis://nosuchhost.invalid:6379"})
          ->wait(30s);
  EXPECT_EQ(nowhere.exit_code, 3) << nowhere.err;
  EXPECT_NE(nowhere.err.find("check the address, and the network from this machine to it"),
            std::string::npos)
      << nowhere.err;
  const Result bad = start("bad", {"run", file.string(), "--broker", "redis://localhost:port"})->wait(20s);
  EXPECT_EQ(bad.exit_code, 2) << bad.err;
  EXPECT_NE(bad.err.find("port 'port'"), std::string::npos) << bad.err;
}

TEST_F(DistributedCliTest, CorruptEntriesAreDeadLetteredWithAClearError) {
  // A paced source (2 s), so that there is a run to inject into.
  const fs::path file = write_pipeline(100, "service_ms: 0", ", rate: 50");
  auto run = start("run", {"run", file.string(), "--broker", redis_url(), "-q"});
  Redis redis(redis_url());
  std::string run_record;  // "RUN VERSION", 16 hex digits each
  const auto deadline = std::chrono::steady_clock::now() + 20s;
  while (run_record.empty() && std::chrono::steady_clock::now() < deadline) {
    run_record = redis.text({"GET", key("run")});
    std::this_thread::sleep_for(10ms);
  }
  ASSERT_EQ(run_record.size(), 33u) << run_record;
  const detail::Entry header{.kind = detail::Entry::Kind::packet,
                             .version = std::stoull(run_record.substr(17), nullptr, 16),
                             .run = std::stoull(run_record.substr(0, 16), nullptr, 16),
                             .stream = 0,
                             .seq = 100000};
  // Garbage where a packet should be, an entry that is not ours at all, and one of the first
  // entry format (five fields).
  redis.command({"XADD", stream_key("work"), "*", "m", detail::encode_entry(header, "\x01not a packet")});
  redis.command({"XADD", stream_key("work"), "*", "hello", "world"});
  redis.command({"XADD", stream_key("work"), "*", "r", "x", "s", "0", "q", "7", "k", "p", "p", "?"});
  const Result r = run->wait(60s);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  expect_complete(100);
  EXPECT_NE(r.out.find(":dead: 3 entries (all processes)"), std::string::npos) << r.out;
  auto dead = redis.command({"XRANGE", key("dead"), "-", "+"});
  ASSERT_TRUE(dead && dead->elements == 3);
  const auto error_of = [&](std::size_t i) { return field_text(dead->element[i]->element[1], "error"); };
  EXPECT_NE(error_of(0).find("corrupt packet"), std::string::npos) << error_of(0);
  EXPECT_EQ(field_text(dead->element[0]->element[1], "q"), "100000");
  EXPECT_NE(error_of(1).find("is not a micromodels entry (no field 'm')"), std::string::npos)
      << error_of(1);
  EXPECT_NE(error_of(2).find("written by an older micromodels (entry format 1)"), std::string::npos)
      << error_of(2);
  EXPECT_NE(r.err.find("corrupt packet"), std::string::npos) << r.err;  // and said so
  // The last line says where packets went to the dead letter without a stage running them: the
  // corrupt packet (the other two entries are no packet, of no (stream, seq)).
  EXPECT_NE(r.err.find("warning: packets handed to the dead letter before their stage ran them, "
                       "so no sink has them: at 'work' 1 "),
            std::string::npos)
      << r.err;
}

// A stage that emits two packets for one input (a Python stage returning a list): run embedded,
// both reach the ordered sink; run by a worker, the second of each cannot cross (a (stream, seq)
// is one packet between processes): it fails in the worker, counted and dead-lettered with the
// reason, and the first reaches the sink. Nothing is lost silently.
TEST_F(DistributedCliTest, SeveralPacketsForOneInputFailClearlyAcrossProcesses) {
  if (start("types", {"types"})->wait(30s).out.find("\npython ") == std::string::npos) {
    GTEST_SKIP() << "built without Python";
  }
  write_text(dir_ / "twice.py",
             "class Twice:\n"
             "    writes = {'copy': 'int'}\n"
             "    def process(self, packet):\n"
             "        copy = packet.copy()\n"
             "        copy['copy'] = 1\n"
             "        return [packet, copy]\n");
  const fs::path file = dir_ / "p.yaml";
  write_text(file, "pipeline: " + name_ +
                       "\nstages:\n"
                       "  - { name: source, type: synthetic.source, params: { count: 20 } }\n"
                       "  - { name: work, type: python, params: { module: twice, class: Twice, "
                       "path: " + dir_.string() + " } }\n"
                       "  - { name: sink, type: sink.jsonl, ordered: true, params: { path: " +
                       (dir_ / "out.jsonl").string() + " } }\n");
  const auto sink_rows = [&] {
    std::vector<std::pair<int, bool>> rows;  // seq, is the copy
    for (const std::string& line : lines_of(dir_ / "out.jsonl")) {
      const nlohmann::json row = nlohmann::json::parse(line);
      rows.emplace_back(row["seq"].get<int>(), row["fields"].contains("copy"));
    }
    return rows;
  };
  const Result embedded = start("embedded", {"run", file.string(), "-q"})->wait(60s);
  ASSERT_EQ(embedded.exit_code, 0) << embedded.err;
  std::vector<std::pair<int, bool>> rows = sink_rows();
  ASSERT_EQ(rows.size(), 40u);
  for (std::size_t i = 0; i < rows.size(); ++i) EXPECT_EQ(rows[i].first, static_cast<int>(i / 2));

  auto w = worker("w", file, "work");
  wait_live("work", 1);
  const Result run = run_on_workers(file)->wait(60s);
  ASSERT_EQ(run.exit_code, 0) << run.err;
  rows = sink_rows();
  ASSERT_EQ(rows.size(), 20u);
  for (std::size_t i = 0; i < rows.size(); ++i) {
    EXPECT_EQ(rows[i], std::pair(static_cast<int>(i), false)) << "the first of each goes on";
  }
  EXPECT_NE(run.out.find(":dead: 20 entries (all processes)"), std::string::npos) << run.out;
  Redis redis(redis_url());
  auto dead = redis.command({"XRANGE", key("dead"), "-", "+"});
  ASSERT_TRUE(dead && dead->elements == 20) << (dead ? dead->elements : 0);
  for (std::size_t i = 0; i < dead->elements; ++i) {
    const redisReply* fields = dead->element[i]->element[1];
    EXPECT_EQ(field_text(fields, "stage"), "work");
    EXPECT_NE(field_text(fields, "error").find("emitted another packet of stream 0 seq " +
                                               field_text(fields, "q") + " for one input"),
              std::string::npos)
        << field_text(fields, "error");
  }
  w->signal(SIGTERM);
  const Result worker_end = w->wait(20s);
  EXPECT_EQ(worker_end.exit_code, 0) << worker_end.err;
  EXPECT_NE(worker_end.err.find("a (stream, seq) is one packet"), std::string::npos) << worker_end.err;
}

TEST_F(DistributedCliTest, StatusShowsEachStageAsTableAndJson) {
  const fs::path file = write_pipeline(50, "service_ms: 0");
  ASSERT_EQ(start("run", {"run", file.string(), "--broker", redis_url(), "-q"})->wait(60s).exit_code, 0);
  const Result table = start("status", {"status", "--broker", redis_url(), "--pipeline", name_,
                                        "--interval", "0"})
                           ->wait(20s);
  ASSERT_EQ(table.exit_code, 0) << table.err;
  EXPECT_NE(table.out.find("backlog"), std::string::npos) << table.out;
  EXPECT_NE(table.out.find("processed"), std::string::npos) << table.out;
  EXPECT_NE(table.out.find(name_), std::string::npos) << table.out;
  const Result json = start("json", {"status", "--broker", redis_url(), "--pipeline", name_,
                                     "--interval", "0", "--json"})
                          ->wait(20s);
  ASSERT_EQ(json.exit_code, 0) << json.err;
  const auto parsed = nlohmann::json::parse(json.out);
  std::set<std::string> stages;
  for (const auto& s : parsed["stages"]) {
    stages.insert(s["stage"].get<std::string>());
    EXPECT_EQ(s["backlog"].get<int>(), 0);
    EXPECT_EQ(s["pending"].get<int>(), 0);
    // What the run counted of each stage it served, added to Redis as it left.
    EXPECT_EQ(s["processed"].get<int>(), 50) << s;
    EXPECT_EQ(s["failed"].get<int>(), 0) << s;
    EXPECT_EQ(s["dropped"].get<int>(), 0) << s;
    EXPECT_TRUE(s["rate_per_s"].is_null()) << "--interval 0: no rate, not a rate of 0";
  }
  EXPECT_EQ(stages, (std::set<std::string>{"work", "sink"}));
  // And with an interval: a rate (none delivered in it: 0).
  const Result rated = start("rated", {"status", "--broker", redis_url(), "--pipeline", name_,
                                       "--interval", "0.1", "--json"})
                           ->wait(20s);
  ASSERT_EQ(rated.exit_code, 0) << rated.err;
  for (const auto& s : nlohmann::json::parse(rated.out)["stages"]) {
    EXPECT_EQ(s["rate_per_s"].get<double>(), 0.0) << s;
  }

  // A pipeline that is not there is named, with those that are (the test Redis is shared, so
  // there may be others).
  const Result unknown = start("unknown", {"status", "--broker", redis_url(), "--pipeline",
                                           name_ + "_nosuch", "--interval", "0"})
                             ->wait(20s);
  EXPECT_EQ(unknown.exit_code, 2) << unknown.out;
  const std::string said = "error: no pipeline '" + name_ + "_nosuch' on this Redis; pipelines here: ";
  const auto at = unknown.err.find(said);
  ASSERT_NE(at, std::string::npos) << unknown.err;
  EXPECT_NE(unknown.err.find(name_, at + said.size()), std::string::npos) << unknown.err;
}

// A run still waiting (here for a worker of 'work') when the next run of the pipeline starts:
// the new run resets the queues, so the old one can never finish. It stops with exit code 4 and
// says why, and takes nothing of the new run, whose sink gets every packet back from it.
TEST_F(DistributedCliTest, ARunThatANewerRunOfThePipelineResetStopsAndTakesNothingOfIt) {
  const int count = 150;
  const fs::path old_file = write_pipeline(count, "service_ms: 1", ", rate: 100");
  std::string text = read_text(old_file);
  text.replace(text.find("out.jsonl"), 9, "newer.jsonl");
  const fs::path new_file = dir_ / "newer.yaml";
  write_text(new_file, text);
  auto older = start("older", {"run", old_file.string(), "--broker", redis_url(), "-q", "--serve", "none"});
  Redis redis(redis_url());
  for (int i = 0; i < 500 && redis.text({"GET", key("run")}).empty(); ++i) std::this_thread::sleep_for(20ms);
  std::this_thread::sleep_for(500ms);  // its sink is waiting for entries
  auto newer = start("newer", {"run", new_file.string(), "--broker", redis_url(), "-q"});
  const Result stopped = older->wait(30s);
  EXPECT_EQ(stopped.exit_code, 4) << stopped.err;
  EXPECT_NE(stopped.err.find("another run of pipeline '" + name_ + "' started on Redis at"), std::string::npos)
      << stopped.err;
  EXPECT_NE(stopped.err.find("reset this run's queues"), std::string::npos) << stopped.err;
  EXPECT_TRUE(lines_of(dir_ / "out.jsonl").empty());
  const Result done = newer->wait(60s);
  ASSERT_EQ(done.exit_code, 0) << done.err;
  std::vector<int> seqs;
  for (const std::string& line : lines_of(dir_ / "newer.jsonl")) {
    seqs.push_back(nlohmann::json::parse(line)["seq"].get<int>());
  }
  std::vector<int> want(count);
  for (int i = 0; i < count; ++i) want[static_cast<std::size_t>(i)] = i;
  EXPECT_EQ(seqs, want);
}

// The same when the run's keys are deleted under it (a FLUSHALL, a clean-up script).
TEST_F(DistributedCliTest, ARunWhoseKeysWereDeletedStopsWithExitCode4) {
  const fs::path file = write_pipeline(50, "service_ms: 1");
  auto run = start("run", {"run", file.string(), "--broker", redis_url(), "-q", "--serve", "none"});
  Redis redis(redis_url());
  for (int i = 0; i < 500 && redis.text({"GET", key("run")}).empty(); ++i) std::this_thread::sleep_for(20ms);
  redis.command({"DEL", key("run")});
  const Result stopped = run->wait(30s);
  EXPECT_EQ(stopped.exit_code, 4) << stopped.err;
  EXPECT_NE(stopped.err.find("no longer holds this run (its keys were deleted)"), std::string::npos)
      << stopped.err;
}

// What a run that failed did up to then: its table on stdout and its --metrics-json file, whose
// sink count is the sink file's lines.
void expect_metrics_of_failed_run(const Result& r, const fs::path& metrics, std::size_t written) {
  EXPECT_NE(r.out.find("sink"), std::string::npos) << "no table: " << r.out;
  const nlohmann::json report = nlohmann::json::parse(read_text(metrics));
  const nlohmann::json stages = report["stages"];
  const auto sink = std::find_if(stages.begin(), stages.end(),
                                 [](const nlohmann::json& s) { return s["name"] == "sink"; });
  ASSERT_NE(sink, stages.end()) << report.dump();
  EXPECT_EQ((*sink)["processed"].get<std::size_t>(), written);
  EXPECT_EQ(report["packets_out"].get<std::size_t>(), written);
}

TEST_F(DistributedCliTest, RedisRestartedWithoutItsDataStopsTheRunWithExitCode4) {
  OwnRedis redis(dir_);
  const fs::path file = write_pipeline(200, "service_ms: 0", ", rate: 50");
  const fs::path metrics = dir_ / "metrics.json";
  auto run = start("run", {"run", file.string(), "--broker", redis.url(), "-q", "--metrics-json",
                           metrics.string()});
  redis.wait_for_run(name_);
  redis.kill();
  std::this_thread::sleep_for(300ms);
  redis.start();
  const Result r = run->wait(30s);
  EXPECT_EQ(r.exit_code, 4) << r.err;
  EXPECT_NE(r.err.find("came back without this run's queues"), std::string::npos) << r.err;
  const std::size_t written = lines_of(dir_ / "out.jsonl").size();
  EXPECT_LT(written, 200u);
  expect_metrics_of_failed_run(r, metrics, written);
}

TEST_F(DistributedCliTest, RedisRestartedWithItsDataLetsTheRunResumeAndFinish) {
  OwnRedis redis(dir_, /*persistent=*/true);
  const fs::path file = write_pipeline(150, "service_ms: 1", ", rate: 50");  // 3 s
  auto worker_process =
      start("w", {"worker", file.string(), "--broker", redis.url(), "--stages", "work"});
  {
    // Up before Redis goes away: a worker that cannot reach Redis when it starts gives up (exit
    // 3), and on a busy machine it can start in the half second Redis is down.
    Redis live(redis.url());
    RedisTest::wait_live(live, "work", 1);
  }
  const fs::path metrics = dir_ / "metrics.json";
  auto run = start("run", {"run", file.string(), "--broker", redis.url(), "-q", "--serve", "none",
                           "--reclaim-ms", "300", "--metrics-json", metrics.string()});
  redis.wait_for_run(name_);
  redis.kill();
  std::this_thread::sleep_for(500ms);
  redis.start();
  const Result r = run->wait(60s);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.err.find("reconnected"), std::string::npos) << r.err;
  expect_complete(150);
  // Counted for the metrics, where an alert can see it.
  EXPECT_GE(nlohmann::json::parse(read_text(metrics))["transport"]["reconnects"].get<int>(), 1);
}

TEST_F(DistributedCliTest, RedisGoneForLongerThanTheReconnectWindowIsExitCode3) {
  OwnRedis redis(dir_);
  const fs::path file = write_pipeline(200, "service_ms: 0", ", rate: 50");
  const fs::path metrics = dir_ / "metrics.json";
  auto run = start("run", {"run", file.string(), "--broker", redis.url(), "-q", "--reconnect-s",
                           "1", "--metrics-json", metrics.string()});
  redis.wait_for_run(name_);
  redis.kill();
  const Result r = run->wait(30s);
  EXPECT_EQ(r.exit_code, 3) << r.err;
  EXPECT_NE(r.err.find("for more than 1 s"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("packets reached the sinks"), std::string::npos) << r.err;
  expect_metrics_of_failed_run(r, metrics, lines_of(dir_ / "out.jsonl").size());
}

}  // namespace
}  // namespace micromodels
