// The guarantees that need real processes of the built tool: Ctrl-C stops the sources and drains
// what was produced (every transport), and a worker killed with SIGKILL mid-run loses nothing
// (Redis). The sink's output is checked record by record.
#include <nlohmann/json.hpp>

#include "conformance.hpp"
#include "redis_test_support.hpp"

namespace micromodels::conformance {
namespace {

using namespace std::chrono_literals;
using redis_testing::lines_of;
using redis_testing::Process;
using redis_testing::Result;
namespace fs = std::filesystem;

class ProcessTest : public ConformanceTest {
 protected:
  void SetUp() override {
    ConformanceTest::SetUp();
    if (IsSkipped() || HasFatalFailure()) return;
    dir_ = fs::temp_directory_path() / ("micromodels_" + name_);
    fs::remove_all(dir_);
    fs::create_directories(dir_);
  }
  void TearDown() override {
    if (!HasFailure() && !dir_.empty()) fs::remove_all(dir_);
  }

  // source -> work (model.sleep) -> sink.jsonl writing dir/out.jsonl, on this test's transport.
  fs::path write_pipeline(int count, const std::string& source_params, const std::string& work) {
    const fs::path path = dir_ / "p.yaml";
    redis_testing::write_text(
        path, "pipeline: " + name_ + "\nbroker: " +
                  (GetParam() == Transport::memory ? std::string("memory") : redis_url()) +
                  "\nstages:\n"
                  "  - { name: source, type: synthetic.source, params: { count: " +
                  std::to_string(count) + source_params +
                  " } }\n"
                  "  - { name: work, type: model.sleep, " + work +
                  " }\n"
                  "  - { name: sink, type: sink.jsonl, ordered: true, params: { path: " +
                  (dir_ / "out.jsonl").string() + " } }\n");
    return path;
  }

  std::unique_ptr<Process> start(const std::string& tag, std::vector<std::string> args) {
    args.insert(args.begin(), redis_testing::cli_path());
    return std::make_unique<Process>(dir_, tag, std::move(args));
  }

  // Seqs of stream 0 at the sink: 0..n-1, each once, in order.
  std::size_t expect_prefix_complete() {
    std::vector<Record> records;
    for (const std::string& line : lines_of(dir_ / "out.jsonl")) {
      const auto j = nlohmann::json::parse(line);
      records.push_back({j["stream"].get<std::uint32_t>(), j["seq"].get<std::uint64_t>(), {}});
    }
    expect_every_packet_once_in_order(records, 1, records.size());
    return records.size();
  }

  fs::path dir_;
};

TEST_P(ProcessTest, CtrlCStopsTheSourcesAndDrainsWhatWasProduced) {
  const fs::path file = write_pipeline(1000, ", rate: 100", "params: { service_ms: 1 }");  // 10 s
  auto run = start("run", {"run", file.string(), "-q", "--metrics-json",
                           (dir_ / "metrics.json").string()});
  const auto deadline = std::chrono::steady_clock::now() + 20s;
  while (lines_of(dir_ / "out.jsonl").size() < 20 && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(10ms);
  }
  run->signal(SIGINT);
  const Result r = run->wait(30s);
  EXPECT_EQ(r.exit_code, 130) << r.err;
  EXPECT_NE(r.err.find("stopping: draining"), std::string::npos) << r.err;
  // Everything produced arrived: seq 0..n-1, no gap, far fewer than 1000; and the metrics say so.
  const std::size_t n = expect_prefix_complete();
  EXPECT_GE(n, 20u);
  EXPECT_LT(n, 900u);
  const auto metrics = nlohmann::json::parse(redis_testing::read_text(dir_ / "metrics.json"));
  EXPECT_EQ(metrics["packets_in"], n);
  EXPECT_EQ(metrics["packets_out"], n);
}

INSTANTIATE_TEST_SUITE_P(Transports, ProcessTest, ::testing::ValuesIn(transports()),
                         transport_name);

#ifdef MICROMODELS_HAS_REDIS
class WorkerKillTest : public ProcessTest {};

// Two workers share the stage; one is killed (SIGKILL) while it holds packets it has not
// acknowledged. The survivor reclaims them: the output has every packet once, in order.
TEST_P(WorkerKillTest, AWorkerKilledMidRunLosesNothing) {
  const int count = 400;
  const fs::path file = write_pipeline(count, "", "params: { service_ms: 4 }");
  const std::vector<std::string> worker = {"worker", file.string(), "--stages", "work"};
  auto doomed = start("doomed", {"worker", file.string(), "--stages", "work", "--consumers", "2"});
  auto survivor = start("survivor", worker);
  redis_testing::Redis redis(redis_url());
  const std::string prefix = "mm:{" + name_ + "}:";
  const auto live = [&] {
    auto members = redis.command({"ZRANGE", prefix + "live", "0", "-1"});
    int n = 0;
    for (std::size_t i = 0; members && i < members->elements; ++i) {
      const std::string m(members->element[i]->str, members->element[i]->len);
      if (m.starts_with("work|")) n += std::stoi(m.substr(m.rfind('|') + 1));
    }
    return n;
  };
  auto deadline = std::chrono::steady_clock::now() + 30s;
  while (live() < 3 && std::chrono::steady_clock::now() < deadline) std::this_thread::sleep_for(20ms);
  ASSERT_GE(live(), 3) << "the workers did not come up";
  auto run = start("run", {"run", file.string(), "--serve", "none", "-q", "--reclaim-ms", "300"});
  const std::string doomed_name = ":" + std::to_string(doomed->pid()) + ":";
  const auto doomed_pending = [&] {
    // The stage's stream, hash tag {P:STAGE} (docs/distributed.md, "Keys").
    auto summary = redis.command({"XPENDING", "mm:{" + name_ + ":work}", "work"});
    long long n = 0;
    const redisReply* consumers = summary && summary->elements == 4 ? summary->element[3] : nullptr;
    for (std::size_t i = 0; consumers != nullptr && i < consumers->elements; ++i) {
      const std::string consumer(consumers->element[i]->element[0]->str,
                                 consumers->element[i]->element[0]->len);
      if (consumer.find(doomed_name) != std::string::npos) {
        n += std::atoll(consumers->element[i]->element[1]->str);
      }
    }
    return n;
  };
  // Killed once the sink has some packets but far from all, while it holds unacknowledged ones.
  deadline = std::chrono::steady_clock::now() + 20s;
  while ((lines_of(dir_ / "out.jsonl").size() < 60 || doomed_pending() == 0) &&
         std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(2ms);
  }
  const std::size_t before = lines_of(dir_ / "out.jsonl").size();
  doomed->signal(SIGKILL);
  EXPECT_EQ(doomed->wait(10s).exit_code, 128 + SIGKILL);
  EXPECT_LT(before, static_cast<std::size_t>(count) / 2) << "killed too late to mean anything";
  const Result r = run->wait(60s);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(expect_prefix_complete(), static_cast<std::size_t>(count));
  EXPECT_NE(survivor->err().find("reclaimed"), std::string::npos)
      << "the survivor never took over the dead worker's packets:\n"
      << survivor->err();
  survivor->signal(SIGTERM);
  EXPECT_EQ(survivor->wait(20s).exit_code, 0);
}

INSTANTIATE_TEST_SUITE_P(Transports, WorkerKillTest, ::testing::Values(Transport::redis),
                         transport_name);
#endif

}  // namespace
}  // namespace micromodels::conformance
