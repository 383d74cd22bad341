// A run and a worker that reach Redis over a link with a 40 ms round trip (delay_proxy.py: this
// machine has no netem): every packet once and in order, no lease counted lost when the run
// starts, the round trip in the reports, and a --reclaim-ms too short for the link said.
#include <regex>

#include <nlohmann/json.hpp>

#include "redis_test_support.hpp"

namespace micromodels {
namespace {

using namespace redis_testing;

class SlowLinkTest : public RedisTest {};

TEST_F(SlowLinkTest, ARunAndAWorkerFortyMillisecondsAwayLoseNothingAndSayWhatTheLinkCosts) {
  const std::string url = redis_url();
  const std::string host_port = url.substr(url.find("://") + 3);
  const std::string host = host_port.substr(0, host_port.find(':'));
  const std::string port = host_port.substr(host_port.find(':') + 1);
  const int link = free_loopback_port();
  const Daemon proxy(dir_, "proxy",
                     {"python3", std::string(MICROMODELS_SOURCE_DIR) + "/tests/redis/delay_proxy.py",
                      std::to_string(link), host, port, "40"},
                     link);
  const std::string far = "redis://127.0.0.1:" + std::to_string(link);

  // 4 streams through a per_stream stage: its 8 partitions are leased, and a run's start
  // deletes the leases of the run before.
  const fs::path file = dir_ / "p.yaml";
  write_text(file, "pipeline: " + name_ +
                       "\nstages:\n"
                       "  - { name: source, type: synthetic.source, params: { count: 40, "
                       "streams: 4 } }\n"
                       "  - { name: work, type: model.sleep, consumers: 4, state: per_stream, "
                       "params: { service_ms: 5 } }\n"
                       "  - { name: sink, type: sink.jsonl, ordered: true, params: { path: " +
                       (dir_ / "out.jsonl").string() + " } }\n");
  const fs::path metrics = dir_ / "worker.json";
  Process worker(dir_, "worker",
                 {cli_path(), "worker", file.string(), "--broker", far, "--stages", "work",
                  "--reclaim-ms", "300", "--metrics-json", metrics.string()});
  {
    Redis redis(url);
    wait_live(redis, "work", 1);
  }
  // Each run's start deletes the leases the worker holds (it takes them when it starts, about
  // 4 round trips each, and keeps them between runs); the keeper renews them once a second.
  for (int run = 0; run < 3; ++run) {
    std::this_thread::sleep_for(1500ms);
    Process process(dir_, "run" + std::to_string(run),
                    {cli_path(), "run", file.string(), "--broker", far, "--serve", "none", "-q"});
    const Result r = process.wait(120s);
    ASSERT_EQ(r.exit_code, 0) << r.err;
    // Every packet once, each stream in order.
    std::map<int, std::vector<int>> seqs;
    for (const std::string& line : lines_of(dir_ / "out.jsonl")) {
      const auto record = nlohmann::json::parse(line);
      seqs[record["stream"].get<int>()].push_back(record["seq"].get<int>());
    }
    std::vector<int> want(40);
    for (int i = 0; i < 40; ++i) want[static_cast<std::size_t>(i)] = i;
    ASSERT_EQ(seqs.size(), 4u);
    for (const auto& [stream, got] : seqs) EXPECT_EQ(got, want) << "stream " << stream;
    std::smatch trip;
    ASSERT_TRUE(std::regex_search(
        r.out, trip, std::regex(R"(round trip to Redis from this process: ([0-9.]+) ms)")))
        << r.out;
    EXPECT_GE(std::stod(trip[1]), 35.0) << r.out;
  }
  worker.signal(SIGTERM);
  const Result w = worker.wait(30s);
  ASSERT_EQ(w.exit_code, 0) << w.err;
  EXPECT_EQ(w.err.find("lost the lease"), std::string::npos) << w.err;
  EXPECT_EQ(nlohmann::json::parse(read_text(metrics))["transport"]["leases_lost"], 0) << w.err;
  EXPECT_NE(w.out.find("round trip to Redis from this process: "), std::string::npos) << w.out;
  // Its entries look idle for a round (250 ms) and its length (some round trips): 300 ms is
  // too short, and the worker says what to use.
  EXPECT_TRUE(std::regex_search(
      w.err, std::regex(R"(--reclaim-ms 300, so that they may be taken over while they run .*: )"
                        R"(raise --reclaim-ms to [0-9]+ or more)")))
      << w.err;
}

}  // namespace
}  // namespace micromodels
