// ControlServer in this process: its routes, its errors, a Runner and a Run that is not one,
// and rates measured over the last window.
#include "micromodels/control/control_server.hpp"

#include <atomic>
#include <functional>
#include <chrono>
#include <mutex>
#include <stdexcept>
#include <thread>

#include <gtest/gtest.h>
#include <httplib.h>
#include <nlohmann/json.hpp>

#include "micromodels/pipeline.hpp"
#include "micromodels/runner.hpp"

namespace micromodels {
namespace {

using namespace std::chrono_literals;
using Json = nlohmann::json;

httplib::Client client_for(const ControlServer& server) {
  httplib::Client client(server.url());
  client.set_connection_timeout(2);
  client.set_read_timeout(10);
  return client;
}

Json get_json(const ControlServer& server, const std::string& path, int expected_status = 200) {
  auto client = client_for(server);
  const auto reply = client.Get(path);
  if (!reply) throw std::runtime_error("GET " + path + " failed");
  EXPECT_EQ(reply->status, expected_status) << path << ": " << reply->body;
  return Json::parse(reply->body);
}

std::pair<int, Json> post_json(const ControlServer& server, const std::string& path,
                               const std::string& body) {
  auto client = client_for(server);
  const auto reply = client.Post(path, body, "application/json");
  if (!reply) throw std::runtime_error("POST " + path + " failed");
  return {reply->status, Json::parse(reply->body)};
}

const Json& stage_of(const Json& status, const std::string& name) {
  for (const Json& s : status.at("stages")) {
    if (s.at("name") == name) return s;
  }
  throw std::runtime_error("no stage " + name);
}

// A Run whose metrics a test sets by hand, as a process that is not a Runner would report them.
class FakeRun final : public Run {
 public:
  FakeRun() {
    for (const char* name : {"a", "b"}) {
      StageMetrics s;
      s.name = name;
      s.type = "model.fake";
      s.consumers = 1;
      snapshot_.stages.push_back(s);
    }
    snapshot_.pipeline = "fake";
  }
  template <class Change>
  void change(Change change) {
    std::lock_guard lock(mutex_);
    change(snapshot_);
  }
  std::function<void(std::string_view, int)> on_scale = [](std::string_view, int) {
    throw std::invalid_argument("this run cannot scale");
  };

  void start() override {}
  bool wait_for(double /*timeout_ms*/) override { return true; }
  void stop() override {}
  void scale(std::string_view stage, int consumers) override { on_scale(stage, consumers); }
  void swap(std::string_view /*stage*/, const std::map<std::string, std::string>& /*params*/,
            std::string_view /*type*/) override {
    throw std::invalid_argument("this run cannot swap stages");
  }
  [[nodiscard]] MetricsSnapshot metrics() const override {
    std::lock_guard lock(mutex_);
    return snapshot_;
  }
  [[nodiscard]] Progress progress() const override { return {}; }

 private:
  mutable std::mutex mutex_;
  MetricsSnapshot snapshot_;
};

TEST(ControlOptions, ListenAddressesAndTheTokenRule) {
  EXPECT_NO_THROW(check_control_options({.listen = "127.0.0.1:0"}));
  EXPECT_NO_THROW(check_control_options({.listen = "[::1]:9464"}));
  EXPECT_NO_THROW(check_control_options({.listen = "localhost:0"}));
  EXPECT_NO_THROW(check_control_options({.listen = "9464"}));
  EXPECT_NO_THROW(check_control_options({.listen = "0.0.0.0:0", .token = "t"}));
  for (const char* bad : {"", "127.0.0.1", "127.0.0.1:", "127.0.0.1:x", "127.0.0.1:70000", "::1:80",
                          "[::1]80", ":80"}) {
    EXPECT_THROW(check_control_options({.listen = bad}), std::invalid_argument) << bad;
  }
  try {
    check_control_options({.listen = "0.0.0.0:9464"});
    ADD_FAILURE() << "a non-loopback address without a token was accepted";
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("needs a token"), std::string::npos) << e.what();
  }
  EXPECT_THROW(check_control_options({.listen = "10.1.2.3:0"}), std::invalid_argument);
  EXPECT_THROW(check_control_options({.listen = "example.org:0"}), std::invalid_argument);
}

TEST(ControlServer, ServesARunnerInThisProcess) {
  Pipeline pipeline;
  pipeline.add(StageConfig{.name = "source", .type = "synthetic.source"});
  pipeline.set_param("source.count=1000000");
  pipeline.set_param("source.rate=500");
  pipeline.add(StageConfig{.name = "work", .type = "model.sleep", .inputs = {"source"}});
  pipeline.set_param("work.service_ms=1");
  Runner runner(pipeline);
  {
    ControlServer server(runner, {});
    EXPECT_TRUE(server.url().starts_with("http://127.0.0.1:")) << server.url();
    EXPECT_EQ(server.url(), "http://127.0.0.1:" + std::to_string(server.port()));
    runner.start();

    const Json status = get_json(server, "/status");
    EXPECT_EQ(status["pipeline"], runner.metrics().pipeline);
    EXPECT_EQ(stage_of(status, "work")["type"], "model.sleep");

    const auto [code, answer] = post_json(server, "/stages/work/scale", R"({"consumers": 3})");
    EXPECT_EQ(code, 200) << answer.dump();
    EXPECT_EQ(runner.metrics().stage("work")->consumers, 3);

    const auto [swap_code, swapped] =
        post_json(server, "/stages/work/swap", R"({"params": {"service_ms": 0.5, "writes": "t"}})");
    EXPECT_EQ(swap_code, 200) << swapped.dump();
    EXPECT_EQ(swapped["params"]["service_ms"], "0.5");

    auto client = client_for(server);
    const auto metrics = client.Get("/metrics");
    ASSERT_TRUE(metrics);
    EXPECT_EQ(metrics->status, 200);
    EXPECT_NE(metrics->body.find("# TYPE "), std::string::npos);
  }
  runner.stop();
  runner.wait();
}

TEST(ControlServer, ServesARunThatIsNotARunner) {
  FakeRun fake;
  std::atomic<int> scaled{0};
  fake.on_scale = [&](std::string_view stage, int consumers) {
    if (consumers == 7) throw std::invalid_argument("seven is right out");
    if (consumers == 8) throw ConfigError({}, "x", "eight is invalid");
    if (consumers == 9) throw std::runtime_error("broke");
    fake.change([&](MetricsSnapshot& m) {
      for (auto& s : m.stages) {
        if (s.name == stage) s.consumers = consumers;
      }
    });
    ++scaled;
  };
  ControlServer server(fake, {});

  EXPECT_EQ(post_json(server, "/stages/b/scale", R"({"consumers": 4})").first, 200);
  EXPECT_EQ(stage_of(get_json(server, "/status"), "b")["consumers"], 4);
  EXPECT_EQ(scaled.load(), 1);

  const auto expect = [&](const std::string& body, int code, const std::string& text) {
    const auto [status, answer] = post_json(server, "/stages/b/scale", body);
    EXPECT_EQ(status, code) << body;
    EXPECT_EQ(answer["status"], code);
    EXPECT_NE(answer["error"].get<std::string>().find(text), std::string::npos) << answer.dump();
  };
  expect(R"({"consumers": 7})", 400, "seven is right out");
  expect(R"({"consumers": 8})", 422, "eight is invalid");
  expect(R"({"consumers": 9})", 500, "broke");
  expect(R"([1, 2])", 400, "expected a JSON object");
  EXPECT_EQ(scaled.load(), 1) << "refused requests change nothing";

  const auto [code, answer] = post_json(server, "/stages/b/swap", R"({"params": {}})");
  EXPECT_EQ(code, 400) << answer.dump();
  EXPECT_EQ(answer["error"], "this run cannot swap stages");
  const auto [missing, why] = post_json(server, "/stages/nosuch/scale", R"({"consumers": 2})");
  EXPECT_EQ(missing, 404) << why.dump();
  EXPECT_EQ(why["error"], "no stage 'nosuch' runs in this process");
}

TEST(ControlServer, StatusGivesEachStagesInputsWhenTold) {
  FakeRun fake;
  {
    ControlServer server(fake, {.inputs = {{"a", {}}, {"b", {"a"}}}});
    const Json status = get_json(server, "/status");
    EXPECT_EQ(stage_of(status, "a")["inputs"], Json::array());
    EXPECT_EQ(stage_of(status, "b")["inputs"], Json::array({"a"}));
  }
  ControlServer untold(fake, {});
  EXPECT_TRUE(stage_of(get_json(untold, "/status"), "b")["inputs"].is_null());
}

TEST(ControlServer, StatusGivesTheBrokersViewAndWhyItCannotBeRead) {
  FakeRun fake;
  std::atomic<bool> reachable{true};
  ControlServer server(fake, {.inputs = {{"a", {}}, {"b", {"a"}}, {"far", {"b"}}},
                              .broker = [&reachable] {
                                if (!reachable) throw std::runtime_error("broker unreachable");
                                return std::vector<BrokerStage>{
                                    {.stage = "b", .backlog = 5, .pending = 2, .consumers = 3},
                                    {.stage = "far", .backlog = 7, .pending = 0, .consumers = 4}};
                              }});
  const auto status_until = [&](const std::function<bool(const Json&)>& done) {
    Json status;
    for (int i = 0; i < 100; ++i) {
      status = get_json(server, "/status");
      if (done(status)) break;
      std::this_thread::sleep_for(50ms);
    }
    return status;
  };
  const Json read = status_until([](const Json& s) { return s["broker"].is_array(); });
  ASSERT_TRUE(read["broker"].is_array()) << read.dump(2);
  ASSERT_EQ(read["broker"].size(), 2u);
  // A stage of another process, with its inputs for the graph.
  EXPECT_EQ(read["broker"][1], Json::parse(R"({"stage": "far", "backlog": 7, "pending": 0,
                                               "consumers": 4, "inputs": ["b"]})"));
  EXPECT_EQ(read["broker"][0]["consumers"], 3);
  EXPECT_TRUE(read["broker_error"].is_null());

  reachable = false;
  const Json failed = status_until([](const Json& s) { return !s["broker_error"].is_null(); });
  EXPECT_EQ(failed["broker_error"], "broker unreachable") << failed.dump(2);
  EXPECT_TRUE(failed["broker"].is_null());

  ControlServer alone(fake, {});
  const Json untold = get_json(alone, "/status");
  EXPECT_TRUE(untold["broker"].is_null());
  EXPECT_TRUE(untold["broker_error"].is_null());
}

TEST(ControlServer, RatesComeFromTheLastWindowNotFromTheStart) {
  FakeRun fake;
  // 100000 packets long ago: stage a took 0.95 ms each (a high busy share since the start),
  // stage b 0.1 ms. Then stage a stops, and b alone works, slowly.
  fake.change([](MetricsSnapshot& m) {
    m.elapsed_s = 100;
    m.packets_in = 100000;
    for (StageMetrics& s : m.stages) {
      s.processed = 100000;
      s.emitted = 100000;
      s.service.count = 100000;
    }
    m.stages[0].busy_share = 0.95;
    m.stages[0].service.sum_us = 95e6;
    m.stages[1].busy_share = 0.1;
    m.stages[1].service.sum_us = 10e6;
  });
  ControlServer server(fake, {.sample_period_s = 0.02, .rate_window_s = 0.3});

  // Stage b now works flat out: 50 packets of 10 ms every 0.5 s on one consumer.
  const auto start = std::chrono::steady_clock::now();
  Json status;
  while (std::chrono::steady_clock::now() - start < 1500ms) {
    fake.change([](MetricsSnapshot& m) {
      m.packets_in += 5;
      m.stages[1].processed += 5;
      m.stages[1].service.count += 5;
      m.stages[1].service.sum_us += 5 * 10e3;
    });
    std::this_thread::sleep_for(50ms);
  }
  status = get_json(server, "/status");
  const Json& a = stage_of(status, "a");
  const Json& b = stage_of(status, "b");
  EXPECT_EQ(a["rate_per_s"], 0.0) << "nothing moved in the window";
  EXPECT_EQ(a["busy_share"], 0.95) << "the share since the start is reported as it is";
  EXPECT_EQ(a["recent_busy_share"], 0.0);
  EXPECT_NEAR(b["rate_per_s"].get<double>(), 100, 40) << b.dump();
  EXPECT_GT(b["recent_busy_share"].get<double>(), 0.6) << b.dump();
  EXPECT_NEAR(b["recent_service_mean_us"].get<double>(), 10e3, 1) << b.dump();
  // What limits throughput now: b's 10 ms per packet of the window, not a's 0.95 ms from long ago.
  EXPECT_EQ(status["bottleneck"], "b") << status.dump();
  EXPECT_EQ(fake.metrics().bottleneck()->name, "a") << "since the start, a was the slower";
  EXPECT_NEAR(status["window_s"].get<double>(), 0.3, 0.15);
}

TEST(ControlServer, StopsPromptlyWithAClientConnected) {
  FakeRun fake;
  auto server = std::make_unique<ControlServer>(fake, ControlOptions{});
  httplib::Client client(server->url());
  client.set_keep_alive(true);
  ASSERT_TRUE(client.Get("/status"));
  const auto start = std::chrono::steady_clock::now();
  server.reset();
  EXPECT_LT(std::chrono::steady_clock::now() - start, 3s);
  EXPECT_FALSE(client.Get("/status")) << "nothing answers after the server stopped";
}

TEST(ControlServer, APortInUseIsReported) {
  FakeRun fake;
  ControlServer first(fake, {});
  try {
    ControlServer second(fake, {.listen = "127.0.0.1:" + std::to_string(first.port())});
    ADD_FAILURE() << "two servers on one port";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("cannot listen on 127.0.0.1:"), std::string::npos)
        << e.what();
  }
}

}  // namespace
}  // namespace micromodels
