// ControlServer in this process: its routes, its errors, a Runner and a Run that is not one,
// and rates measured over the last window.
// About 700 lines: one test per route and per error, on the client helpers and the Run at the top.
#include "micromodels/control/control_server.hpp"

#include <atomic>
#include <cstring>
#include <functional>
#include <chrono>
#include <mutex>
#include <stdexcept>
#include <thread>
#include <vector>

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
  template <class Edit>
  void change(Edit edit) {
    std::lock_guard lock(mutex_);
    edit(snapshot_);
  }
  std::function<void(std::string_view, int)> on_scale = [](std::string_view, int) {
    throw std::invalid_argument("this run cannot scale");
  };

  void start() override {}
  bool wait_for(double /*timeout_ms*/) override { return finished.load(); }
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
  // A test passes packets into these by hand, as the engine would.
  [[nodiscard]] PacketTap& tap(std::string_view stage) override {
    if (stage == "a") return tap_a;
    if (stage == "b") return tap_b;
    throw std::invalid_argument("no stage named '" + std::string(stage) + "'; the stages are a, b");
  }
  PacketTap tap_a;
  PacketTap tap_b;
  std::atomic<bool> finished{true};  // what wait_for says

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
    EXPECT_EQ(stage_of(status, "work")["source"], false);
    EXPECT_EQ(stage_of(status, "source")["source"], true);

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
                                return BrokerView{
                                    .stages = {{.stage = "b", .backlog = 5, .pending = 2, .consumers = 3},
                                               {.stage = "far",
                                                .backlog = 7,
                                                .pending = 0,
                                                .consumers = 4,
                                                .processed = 90,
                                                .failed = 3,
                                                .dropped = 1}},
                                    .processes = {{.id = "hostA:12",
                                                 .consumers = {{"b", 1}, {"far", 4}},
                                                 .heartbeat_age_s = 0.4},
                                                {.id = "hostB:7",
                                                 .consumers = {{"b", 2}},
                                                 .heartbeat_age_s = 1.5}}};
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
                                               "consumers": 4, "processed": 90, "failed": 3,
                                               "dropped": 1, "inputs": ["b"]})"));
  EXPECT_EQ(read["broker"][0]["consumers"], 3);
  // Each live process: what it serves, with its consumers, and how fresh its heartbeat is.
  EXPECT_EQ(read["processes"], Json::parse(R"([
      {"id": "hostA:12", "consumers": {"b": 1, "far": 4}, "heartbeat_age_s": 0.4},
      {"id": "hostB:7", "consumers": {"b": 2}, "heartbeat_age_s": 1.5}])")) << read.dump(2);
  EXPECT_TRUE(read["broker_error"].is_null());

  reachable = false;
  const Json failed = status_until([](const Json& s) { return !s["broker_error"].is_null(); });
  EXPECT_EQ(failed["broker_error"], "broker unreachable") << failed.dump(2);
  EXPECT_TRUE(failed["broker"].is_null());
  EXPECT_TRUE(failed["processes"].is_null());

  ControlServer alone(fake, {});
  const Json untold = get_json(alone, "/status");
  EXPECT_TRUE(untold["broker"].is_null());
  EXPECT_TRUE(untold["processes"].is_null());
  EXPECT_TRUE(untold["broker_error"].is_null());
}

// 100000 packets long ago through both stages: a took 0.95 ms each (a high busy share since the
// start), b 0.1 ms; a limited the run.
void ran_a_while(MetricsSnapshot& m) {
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
}

TEST(ControlServer, RatesComeFromTheLastWindowNotFromTheStart) {
  FakeRun fake;
  // Then stage a stops, and b alone works, slowly.
  fake.change(ran_a_while);
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
      m.stages[1].age.count += 5;  // b is a last stage: its packets are 40 ms old when done
      m.stages[1].age.sum_us += 5 * 40e3;
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
  EXPECT_NEAR(b["recent_age_mean_us"].get<double>(), 40e3, 1) << b.dump();
  EXPECT_TRUE(a["recent_age_mean_us"].is_null()) << "no age recorded in the window";
  // What limits throughput now: b's 10 ms per packet of the window, not a's 0.95 ms from long ago.
  EXPECT_EQ(status["bottleneck"], "b") << status.dump();
  EXPECT_EQ(fake.metrics().bottleneck()->name, "a") << "since the start, a was the slower";
  EXPECT_NEAR(status["window_s"].get<double>(), 0.3, 0.15);
}

TEST(ControlServer, AnIdleRunHasNoBottleneck) {
  FakeRun fake;
  // Then nothing moves (a worker whose run is over): nothing limits anything now.
  fake.change(ran_a_while);
  ControlServer server(fake, {.sample_period_s = 0.02, .rate_window_s = 0.2});
  ASSERT_TRUE(fake.metrics().bottleneck());
  EXPECT_EQ(fake.metrics().bottleneck()->name, "a");
  std::this_thread::sleep_for(400ms);
  Json status = get_json(server, "/status");
  EXPECT_TRUE(status["bottleneck"].is_null()) << status.dump();
  EXPECT_EQ(status["throughput_per_s"], 0.0);
  // A packet held at a stage for longer than the window is not idleness: the figures since the
  // start say what limits.
  fake.change([](MetricsSnapshot& m) { m.in_flight = 1; });
  status = get_json(server, "/status");
  EXPECT_EQ(status["bottleneck"], "a") << status.dump();
  // Packets moving again: a bottleneck again.
  fake.change([](MetricsSnapshot& m) {
    m.in_flight = 0;
    m.stages[1].processed += 10;
    m.stages[1].service.count += 10;
    m.stages[1].service.sum_us += 10 * 10e3;
  });
  status = get_json(server, "/status");
  EXPECT_FALSE(status["bottleneck"].is_null()) << status.dump();
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

// --- the preview (GET /preview/FIELD) --------------------------------------------------------

// Passes a packet into a tap every 5 ms, as the engine does for the packets leaving a stage:
// `frame` (a BGR image whose gray level follows the seq), `depth` (a float image) and `faces`.
class TapFeeder {
 public:
  explicit TapFeeder(PacketTap& tap)
      : thread_([this, &tap] {
          for (std::uint64_t seq = 0; !done_; ++seq) {
            Packet p{.stream = 0, .seq = seq};
            Image frame = Image::allocate(64, 48, 3);
            std::memset(frame.pixels.mutable_data(), static_cast<int>(seq * 7 % 256),
                        frame.byte_size());
            p.set("frame", std::move(frame));
            p.set("depth", Image::allocate(8, 8, 1, Depth::f32));
            p.set("faces", Rects{{1, 2, 3, 4, 0.9f}});
            tap.pass(p);
            std::this_thread::sleep_for(5ms);
          }
        }) {}
  ~TapFeeder() {
    done_ = true;
    thread_.join();
  }
  TapFeeder(const TapFeeder&) = delete;
  TapFeeder& operator=(const TapFeeder&) = delete;

 private:
  std::atomic<bool> done_{false};
  std::thread thread_;
};

// A client reading GET `path` as a stream on a thread of its own, as a browser's <img> does.
class StreamClient {
 public:
  StreamClient(const std::string& url, const std::string& path, const std::string& token = {})
      : thread_([this, url, path, token] {
          httplib::Client client(url);
          client.set_read_timeout(10);
          if (!token.empty()) client.set_bearer_token_auth(token);
          client.Get(
              path,
              [this](const httplib::Response& response) {
                std::lock_guard lock(mutex_);
                status_ = response.status;
                content_type_ = response.get_header_value("Content-Type");
                return true;
              },
              [this](const char* data, std::size_t size) {
                std::lock_guard lock(mutex_);
                body_.append(data, size);
                return !leave_;
              });
          std::lock_guard lock(mutex_);
          ended_ = true;
        }) {}
  ~StreamClient() {
    leave();
    thread_.join();
  }
  StreamClient(const StreamClient&) = delete;
  StreamClient& operator=(const StreamClient&) = delete;

  // Stops reading: the connection closes at the next bytes that arrive.
  void leave() {
    std::lock_guard lock(mutex_);
    leave_ = true;
  }
  [[nodiscard]] int status() const {
    std::lock_guard lock(mutex_);
    return status_;
  }
  [[nodiscard]] std::string content_type() const {
    std::lock_guard lock(mutex_);
    return content_type_;
  }
  [[nodiscard]] std::string body() const {
    std::lock_guard lock(mutex_);
    return body_;
  }
  [[nodiscard]] bool ended() const {
    std::lock_guard lock(mutex_);
    return ended_;
  }
  // The JPEGs of the complete parts received so far.
  [[nodiscard]] std::vector<std::string> jpegs() const {
    const std::string all = body();
    std::vector<std::string> found;
    const std::string head = "--micromodels\r\nContent-Type: image/jpeg\r\nContent-Length: ";
    std::size_t at = 0;
    while (all.compare(at, head.size(), head) == 0) {
      const std::size_t length_end = all.find("\r\n\r\n", at);
      if (length_end == std::string::npos) break;
      const std::size_t size = std::stoul(all.substr(at + head.size(), length_end - at - head.size()));
      const std::size_t start = length_end + 4;
      if (all.size() < start + size + 2) break;
      found.push_back(all.substr(start, size));
      EXPECT_EQ(all.substr(start + size, 2), "\r\n");
      at = start + size + 2;
    }
    return found;
  }
  template <class Predicate>
  bool wait_until(Predicate ok, std::chrono::milliseconds timeout) const {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    while (std::chrono::steady_clock::now() < deadline) {
      if (ok()) return true;
      std::this_thread::sleep_for(10ms);
    }
    return ok();
  }

 private:
  mutable std::mutex mutex_;
  int status_ = 0;
  std::string content_type_;
  std::string body_;
  bool leave_ = false;
  bool ended_ = false;
  std::thread thread_;
};

// The streams need the JPEG encoder, which comes with OpenCV; a build without it answers 501
// (checked below).
#ifdef MICROMODELS_WIRE_HAS_OPENCV
#define REQUIRE_JPEG_ENCODER() \
  do {                         \
  } while (false)
#else
#define REQUIRE_JPEG_ENCODER() \
  GTEST_SKIP() << "this build has no JPEG encoder (no OpenCV): the preview answers 501"
#endif

bool is_jpeg(const std::string& bytes) {
  return bytes.size() > 4 && bytes.compare(0, 2, "\xFF\xD8") == 0 &&
         bytes.compare(bytes.size() - 2, 2, "\xFF\xD9") == 0;
}

TEST(ControlPreview, StreamsAnImageFieldAsJpegParts) {
  REQUIRE_JPEG_ENCODER();
  FakeRun fake;
  ControlServer server(fake, {});
  TapFeeder feeder(fake.tap_b);
  StreamClient stream(server.url(), "/preview/frame?stage=b&fps=50");
  ASSERT_TRUE(stream.wait_until([&] { return stream.jpegs().size() >= 4; }, 10s))
      << "status " << stream.status() << ": " << stream.body().substr(0, 300);
  EXPECT_EQ(stream.status(), 200);
  EXPECT_EQ(stream.content_type(), "multipart/x-mixed-replace; boundary=micromodels");
  const std::vector<std::string> jpegs = stream.jpegs();
  for (const std::string& jpeg : jpegs) EXPECT_TRUE(is_jpeg(jpeg));
  EXPECT_NE(jpegs.front(), jpegs.back()) << "the frames change as the packets do";
  EXPECT_FALSE(stream.ended());
}

TEST(ControlPreview, TheRateCapHoldsBackTheParts) {
  REQUIRE_JPEG_ENCODER();
  FakeRun fake;
  ControlServer server(fake, {});
  TapFeeder feeder(fake.tap_b);  // 200 packets a second
  StreamClient stream(server.url(), "/preview/frame?stage=b&fps=4");
  ASSERT_TRUE(stream.wait_until([&] { return !stream.jpegs().empty(); }, 10s));
  const auto start = std::chrono::steady_clock::now();
  const std::size_t first = stream.jpegs().size();
  std::this_thread::sleep_for(1500ms);
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  const double parts = static_cast<double>(stream.jpegs().size() - first);
  EXPECT_LE(parts, 4 * seconds + 1) << "more parts than fps=4 allows";
  EXPECT_GE(parts, 2) << "the stream stalled";
}

TEST(ControlPreview, RefusesWhatItCannotShowWithAMessage) {
  FakeRun fake;
  ControlServer server(fake, {});
  TapFeeder feeder_a(fake.tap_a);
  TapFeeder feeder_b(fake.tap_b);
  const auto refused = [&](const std::string& path, int status, const std::string& says) {
    auto client = client_for(server);
    const auto reply = client.Get(path);
    ASSERT_TRUE(reply) << path;
    EXPECT_EQ(reply->status, status) << path << ": " << reply->body;
    const Json body = Json::parse(reply->body);
    EXPECT_NE(body["error"].get<std::string>().find(says), std::string::npos)
        << path << ": " << body.dump();
  };
  refused("/preview/nope?stage=b", 404, "have no field 'nope'; its image fields: frame, depth; "
                                        "its other fields: faces");
  {  // The refusal also lists the image fields, for the dashboard to offer.
    const auto reply = client_for(server).Get("/preview/nope?stage=b");
    ASSERT_TRUE(reply);
    EXPECT_EQ(Json::parse(reply->body)["image_fields"], Json::parse(R"(["frame", "depth"])"));
  }
  refused("/preview/faces?stage=b", 400, "holds rects, not an image");
  refused("/preview/depth?stage=a", 400, "32-bit float image of 1 channel(s)");
  refused("/preview/frame?stage=zzz", 404, "the stages are a, b");
  refused("/preview/frame?stage=b&fps=0", 400, "fps must be a number above 0");
  refused("/preview/frame?stage=b&fps=61", 400, "got '61'");
  refused("/preview/frame?stage=b&fps=fast", 400, "got 'fast'");
  refused("/preview/frame?stage=b&size=2", 400, "unknown query parameter 'size'");
  refused("/preview/a/b", 404, "the preview is GET /preview/FIELD");
  auto client = client_for(server);
  const auto post = client.Post("/preview/frame", "", "text/plain");
  ASSERT_TRUE(post);
  EXPECT_EQ(post->status, 405);
  EXPECT_EQ(post->get_header_value("Allow"), "GET");
}

#ifndef MICROMODELS_WIRE_HAS_OPENCV
TEST(ControlPreview, WithoutAJpegEncoderItSaysSo) {
  FakeRun fake;
  ControlServer server(fake, {});
  TapFeeder feeder(fake.tap_b);
  auto client = client_for(server);
  const auto reply = client.Get("/preview/frame?stage=b");
  ASSERT_TRUE(reply);
  EXPECT_EQ(reply->status, 501) << reply->body;
  EXPECT_NE(reply->body.find("no JPEG encoder"), std::string::npos) << reply->body;
}
#endif

TEST(ControlPreview, BoundsItsClientsAndKeepsTheOtherRoutesAnswering) {
  REQUIRE_JPEG_ENCODER();
  FakeRun fake;
  ControlServer server(fake, {});
  TapFeeder feeder(fake.tap_b);
  std::vector<std::unique_ptr<StreamClient>> streams;
  for (int i = 0; i < 4; ++i) {
    streams.push_back(std::make_unique<StreamClient>(server.url(), "/preview/frame?stage=b"));
    ASSERT_TRUE(streams.back()->wait_until([&] { return !streams.back()->jpegs().empty(); }, 10s))
        << "stream " << i;
  }
  // Four streams play; /status still answers at once.
  const auto start = std::chrono::steady_clock::now();
  get_json(server, "/status");
  EXPECT_LT(std::chrono::steady_clock::now() - start, 2s);
  {
    auto client = client_for(server);
    const auto fifth = client.Get("/preview/frame?stage=b");
    ASSERT_TRUE(fifth);
    EXPECT_EQ(fifth->status, 503) << fifth->body;
    EXPECT_NE(fifth->body.find("4 preview streams are open"), std::string::npos) << fifth->body;
  }
  // A client that goes away gives its place back.
  streams.front()->leave();
  ASSERT_TRUE(streams.front()->wait_until([&] { return streams.front()->ended(); }, 5s));
  bool played = false;
  for (int attempt = 0; attempt < 50 && !played; ++attempt) {
    StreamClient again(server.url(), "/preview/frame?stage=b");
    played = again.wait_until([&] { return !again.jpegs().empty() || again.ended(); }, 10s) &&
             !again.jpegs().empty();
    if (!played) std::this_thread::sleep_for(100ms);
  }
  EXPECT_TRUE(played) << "the place of the client that left was not given back";
}

TEST(ControlPreview, TheRunsEndEndsTheStream) {
  REQUIRE_JPEG_ENCODER();
  FakeRun fake;
  ControlServer server(fake, {});
  TapFeeder feeder(fake.tap_b);
  StreamClient stream(server.url(), "/preview/frame?stage=b");
  ASSERT_TRUE(stream.wait_until([&] { return !stream.jpegs().empty(); }, 10s));
  fake.tap_b.close();  // what the engine does when the run ends
  EXPECT_TRUE(stream.wait_until([&] { return stream.ended(); }, 3s));
  auto client = client_for(server);
  const auto after = client.Get("/preview/frame?stage=b");
  ASSERT_TRUE(after);
  EXPECT_EQ(after->status, 503);
  EXPECT_NE(after->body.find("the run has ended"), std::string::npos) << after->body;
}

TEST(ControlPreview, StopsPromptlyWithAStreamPlaying) {
  REQUIRE_JPEG_ENCODER();
  FakeRun fake;
  auto server = std::make_unique<ControlServer>(fake, ControlOptions{});
  TapFeeder feeder(fake.tap_b);
  StreamClient stream(server->url(), "/preview/frame?stage=b");
  ASSERT_TRUE(stream.wait_until([&] { return !stream.jpegs().empty(); }, 10s));
  const auto start = std::chrono::steady_clock::now();
  server.reset();
  EXPECT_LT(std::chrono::steady_clock::now() - start, 3s);
  EXPECT_TRUE(stream.wait_until([&] { return stream.ended(); }, 3s));
}

TEST(ControlPreview, NeedsTheTokenLikeEveryRoute) {
  REQUIRE_JPEG_ENCODER();
  FakeRun fake;
  ControlServer server(fake, {.token = "s3cret"});
  TapFeeder feeder(fake.tap_b);
  auto anonymous = client_for(server);
  const auto refused = anonymous.Get("/preview/frame?stage=b");
  ASSERT_TRUE(refused);
  EXPECT_EQ(refused->status, 401);
  EXPECT_EQ(refused->body.find("\xFF\xD8"), std::string::npos) << "no pixels without the token";
  StreamClient stream(server.url(), "/preview/frame?stage=b", "s3cret");
  EXPECT_TRUE(stream.wait_until([&] { return !stream.jpegs().empty(); }, 10s))
      << stream.status() << " " << stream.body().substr(0, 200);
}

// --- GET /status/stream ------------------------------------------------------------------------

// The data of each complete event ("data: ...\n\n") received so far.
std::vector<std::string> events_in(const std::string& body) {
  std::vector<std::string> events;
  std::size_t at = 0;
  for (std::size_t end; (end = body.find("\n\n", at)) != std::string::npos; at = end + 2) {
    const std::string event = body.substr(at, end - at);
    EXPECT_EQ(event.rfind("data: ", 0), 0u) << event;
    events.push_back(event.substr(6));
  }
  return events;
}

TEST(ControlServer, StatusStreamSendsTheStatusEvery750Ms) {
  FakeRun fake;
  auto server = std::make_unique<ControlServer>(fake, ControlOptions{});
  const auto start = std::chrono::steady_clock::now();
  StreamClient stream(server->url(), "/status/stream");
  ASSERT_TRUE(stream.wait_until([&] { return events_in(stream.body()).size() >= 4; }, 10s))
      << stream.status() << " " << stream.body().substr(0, 300);
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  EXPECT_EQ(stream.status(), 200);
  EXPECT_EQ(stream.content_type(), "text/event-stream");
  // The first at once, then one every 750 ms: the fourth after about 2.25 s.
  EXPECT_GE(seconds, 2.0);
  for (const std::string& data : events_in(stream.body())) {
    const Json status = Json::parse(data);
    EXPECT_EQ(status["pipeline"], "fake");
    EXPECT_EQ(stage_of(status, "b")["type"], "model.fake");
  }
  // Figures that change arrive in the next events.
  fake.change([](MetricsSnapshot& m) { m.stages[1].consumers = 7; });
  EXPECT_TRUE(stream.wait_until(
      [&] { return stage_of(Json::parse(events_in(stream.body()).back()), "b")["consumers"] == 7; }, 3s));
  // A ninth stream beside eight is refused with a message; stopping ends the streams at once.
  std::vector<std::unique_ptr<StreamClient>> more;
  for (int i = 0; i < 7; ++i) {
    more.push_back(std::make_unique<StreamClient>(server->url(), "/status/stream"));
    ASSERT_TRUE(more.back()->wait_until([&] { return !events_in(more.back()->body()).empty(); }, 10s));
  }
  {
    auto client = client_for(*server);
    const auto ninth = client.Get("/status/stream");
    ASSERT_TRUE(ninth);
    EXPECT_EQ(ninth->status, 503);
    EXPECT_NE(ninth->body.find("ask GET /status instead"), std::string::npos) << ninth->body;
  }
  const auto stopping = std::chrono::steady_clock::now();
  server.reset();
  EXPECT_LT(std::chrono::steady_clock::now() - stopping, 3s);
  EXPECT_TRUE(stream.wait_until([&] { return stream.ended(); }, 3s));
}

// The run's end: the stream's last event has its final figures, marked `ended`, with the rates
// over the whole run, at once rather than up to 750 ms late; then the stream closes.
TEST(ControlServer, StatusStreamEndsWithTheRunsFinalFigures) {
  FakeRun fake;
  fake.finished = false;
  fake.change([](MetricsSnapshot& m) {
    m.elapsed_s = 7;
    m.packets_in = 700;
    m.packets_out = 690;
    m.in_flight = 10;
    for (StageMetrics& s : m.stages) s.processed = 690;
  });
  auto server = std::make_unique<ControlServer>(fake, ControlOptions{});
  StreamClient stream(server->url(), "/status/stream");
  ASSERT_TRUE(stream.wait_until([&] { return !events_in(stream.body()).empty(); }, 10s));
  // The last packets retire, the run ends, and the endpoint stops before the next event is due.
  fake.change([](MetricsSnapshot& m) {
    m.elapsed_s = 8;
    m.packets_out = 800;
    m.packets_in = 800;
    m.in_flight = 0;
    for (StageMetrics& s : m.stages) {
      s.processed = 800;
      s.service.count = 800;
      s.service.sum_us = 800 * 500.0;
      s.service.mean_us = 500;
      s.busy_share = 0.05;
    }
    m.stages[1].failed = 5;
  });
  fake.finished = true;
  const auto stopping = std::chrono::steady_clock::now();
  server.reset();
  EXPECT_LT(std::chrono::steady_clock::now() - stopping, 3s);
  ASSERT_TRUE(stream.wait_until([&] { return stream.ended(); }, 3s));
  const std::vector<std::string> events = events_in(stream.body());
  ASSERT_GE(events.size(), 2u);
  for (std::size_t i = 0; i + 1 < events.size(); ++i) {
    EXPECT_EQ(Json::parse(events[i])["ended"], false) << events[i];
  }
  const Json last = Json::parse(events.back());
  EXPECT_EQ(last["ended"], true) << last.dump();
  EXPECT_EQ(last["packets_out"], 800);
  EXPECT_EQ(last["in_flight"], 0);
  EXPECT_EQ(stage_of(last, "a")["processed"], 800);
  EXPECT_EQ(stage_of(last, "b")["failed"], 5);
  // Rates over the whole run (8 s), not over its last second.
  EXPECT_EQ(last["window_s"], 8.0);
  EXPECT_DOUBLE_EQ(last["throughput_per_s"].get<double>(), 100.0);
  EXPECT_DOUBLE_EQ(stage_of(last, "a")["rate_per_s"].get<double>(), 100.0);
  EXPECT_DOUBLE_EQ(stage_of(last, "b")["rate_per_s"].get<double>(), 805.0 / 8);
  EXPECT_EQ(stage_of(last, "a")["recent_busy_share"], 0.05);
  EXPECT_DOUBLE_EQ(stage_of(last, "a")["recent_service_mean_us"].get<double>(), 500.0);
}

// An endpoint stopped while its run goes on (a program that embeds it) has no final figures to
// give: the stream just ends.
TEST(ControlServer, StatusStreamOfARunNotEndedJustCloses) {
  FakeRun fake;
  fake.finished = false;
  auto server = std::make_unique<ControlServer>(fake, ControlOptions{});
  StreamClient stream(server->url(), "/status/stream");
  ASSERT_TRUE(stream.wait_until([&] { return !events_in(stream.body()).empty(); }, 10s));
  server.reset();
  ASSERT_TRUE(stream.wait_until([&] { return stream.ended(); }, 3s));
  for (const std::string& data : events_in(stream.body())) {
    EXPECT_EQ(Json::parse(data)["ended"], false) << data;
  }
}

}  // namespace
}  // namespace micromodels
