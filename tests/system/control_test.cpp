// The control endpoint of `micromodels run --listen`, `micromodels ctl` and `micromodels top`,
// as an operator uses them: real processes, real HTTP over loopback.
// About 700 lines: the terminal, the ports and the processes these tests share sit at the top.
#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <memory>
#include <mutex>
#include <regex>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>
#include <httplib.h>
#include <netinet/in.h>
#include <nlohmann/json.hpp>
#include <pty.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include "tool_process.hpp"

namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;
using micromodels::testing::read_text;
using micromodels::testing::ToolProcess;
using micromodels::testing::ToolResult;
using Json = nlohmann::json;

std::string find_on_path(const std::string& program) {
  const char* path = std::getenv("PATH");
  std::istringstream dirs(path == nullptr ? "" : path);
  for (std::string dir; std::getline(dirs, dir, ':');) {
    const fs::path candidate = fs::path(dir) / program;
    if (::access(candidate.c_str(), X_OK) == 0) return candidate.string();
  }
  return {};
}

// A pseudo-terminal for `top`'s live view: 120 x 40, everything written to it collected.
class PseudoTerminal {
 public:
  PseudoTerminal() {
    winsize size{};
    size.ws_col = 120;
    size.ws_row = 40;
    if (::openpty(&master_, &slave_, nullptr, nullptr, &size) != 0) {
      throw std::runtime_error("openpty failed");
    }
    reader_ = std::thread([this] {
      char buffer[4096];
      for (;;) {
        const ssize_t n = ::read(master_, buffer, sizeof buffer);
        if (n <= 0) return;  // EIO once the slave side is closed everywhere
        const std::lock_guard lock(mutex_);
        screen_.append(buffer, static_cast<std::size_t>(n));
      }
    });
  }
  ~PseudoTerminal() {
    if (slave_ >= 0) ::close(slave_);
    ::shutdown(master_, SHUT_RDWR);
    ::close(master_);  // ends the reader's read()
    reader_.join();
  }
  PseudoTerminal(const PseudoTerminal&) = delete;
  PseudoTerminal& operator=(const PseudoTerminal&) = delete;

  [[nodiscard]] int slave() const { return slave_; }
  void type(const std::string& keys) const {
    EXPECT_EQ(::write(master_, keys.data(), keys.size()), static_cast<ssize_t>(keys.size()));
  }
  [[nodiscard]] std::string screen() const {
    const std::lock_guard lock(mutex_);
    return screen_;
  }
  [[nodiscard]] bool wait_for(const std::string& text, std::chrono::milliseconds timeout) const {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    while (std::chrono::steady_clock::now() < deadline) {
      if (screen().find(text) != std::string::npos) return true;
      std::this_thread::sleep_for(20ms);
    }
    return false;
  }
  // The terminal is back in its ordinary (cooked, echoing) mode.
  [[nodiscard]] bool cooked() const {
    termios modes{};
    ::tcgetattr(slave_, &modes);
    return (modes.c_lflag & ICANON) != 0 && (modes.c_lflag & ECHO) != 0;
  }

 private:
  int master_ = -1;
  int slave_ = -1;
  mutable std::mutex mutex_;
  std::string screen_;
  std::thread reader_;
};

// A socket bound to a free loopback port (stored in `port`); -1 when the socket or the bind
// failed.
int bind_loopback(int& port) {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) return -1;
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t length = sizeof address;
  if (::bind(fd, reinterpret_cast<sockaddr*>(&address), length) != 0 ||
      ::getsockname(fd, reinterpret_cast<sockaddr*>(&address), &length) != 0) {
    ::close(fd);
    return -1;
  }
  port = ntohs(address.sin_port);
  return fd;
}

// Sends `request` as it is to the HTTP server at `url` ("http://127.0.0.1:PORT") and returns
// what it answered until it closed the connection ("" when it could not connect).
std::string raw_http(const std::string& url, const std::string& request) {
  const int port = std::stoi(url.substr(url.rfind(':') + 1));
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) return "";
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  address.sin_port = htons(static_cast<std::uint16_t>(port));
  std::string answer;
  if (::connect(fd, reinterpret_cast<sockaddr*>(&address), sizeof address) == 0 &&
      ::send(fd, request.data(), request.size(), MSG_NOSIGNAL) ==
          static_cast<ssize_t>(request.size())) {
    char buffer[4096];
    for (ssize_t n; (n = ::recv(fd, buffer, sizeof buffer, 0)) > 0;) answer.append(buffer, n);
  }
  ::close(fd);
  return answer;
}

class ControlTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = micromodels::testing::fresh_test_dir("micromodels_control");
  }

  void TearDown() override {
    if (!HasFailure() && !dir_.empty()) fs::remove_all(dir_);
  }

  // source (paced) -> work (model.sleep) -> sink (ordered, dir/out.jsonl).
  fs::path write_pipeline(int count, double rate, double service_ms, int consumers = 1) {
    const fs::path path = dir_ / "live.yaml";
    std::ofstream(path) << "pipeline: live\n"
                           "stages:\n"
                           "  - name: source\n"
                           "    type: synthetic.source\n"
                           "    params: { count: "
                        << count << ", rate: " << rate
                        << " }\n"
                           "  - name: work\n"
                           "    type: model.sleep\n"
                           "    consumers: "
                        << consumers << "\n    params: { service_ms: " << service_ms
                        << " }\n"
                           "  - name: sink\n"
                           "    type: sink.jsonl\n"
                           "    ordered: true\n"
                           "    params: { path: "
                        << (dir_ / "out.jsonl").string() << " }\n";
    return path;
  }

  // `micromodels run` with the endpoint on a free loopback port; sets url_.
  std::unique_ptr<ToolProcess> start_run(
      const fs::path& pipeline, std::vector<std::string> extra = {},
      const std::map<std::string, std::optional<std::string>>& env = {
          {"MICROMODELS_TOKEN", std::nullopt}}) {
    std::vector<std::string> args = {
        "run",         pipeline.string(), "--listen",
        "127.0.0.1:0", "--metrics-json",  (dir_ / "metrics.json").string()};
    args.insert(args.end(), extra.begin(), extra.end());
    auto run = std::make_unique<ToolProcess>(dir_, "run", args, env);
    url_ = run->wait_for_stderr(std::regex(R"(control: (http://127\.0\.0\.1:\d+)\n)"), 15s);
    EXPECT_FALSE(url_.empty()) << "no 'control: URL' line; stderr:\n" << run->err_so_far();
    return run;
  }

  httplib::Client client(const std::string& token = {}) const {
    httplib::Client c(url_);
    c.set_connection_timeout(2);
    c.set_read_timeout(10);
    if (!token.empty()) c.set_bearer_token_auth(token);
    return c;
  }

  Json status() {
    auto c = client();
    const auto reply = c.Get("/status");
    if (!reply || reply->status != 200) {
      ADD_FAILURE() << "GET /status failed";
      return Json::object();
    }
    return Json::parse(reply->body);
  }

  static const Json& stage(const Json& document, const std::string& name) {
    static const Json kNone = Json::object();
    if (!document.contains("stages")) {
      ADD_FAILURE() << "no stages in " << document.dump();
      return kNone;
    }
    for (const Json& s : document.at("stages")) {
      if (s.at("name") == name) return s;
    }
    ADD_FAILURE() << "no stage " << name << " in " << document.dump();
    return kNone;
  }

  // Polls /status until `ok` holds for it; false after `timeout`.
  template <class Predicate>
  bool status_until(Predicate ok, std::chrono::milliseconds timeout, Json* last = nullptr) {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    while (std::chrono::steady_clock::now() < deadline) {
      const Json document = status();
      if (last != nullptr) *last = document;
      if (ok(document)) return true;
      std::this_thread::sleep_for(100ms);
    }
    return false;
  }

  ToolResult tool(const std::string& name, std::vector<std::string> args,
                  const std::map<std::string, std::optional<std::string>>& env = {
                      {"MICROMODELS_TOKEN", std::nullopt}}) {
    return ToolProcess(dir_, name, std::move(args), env).wait(15s);
  }

  // Every packet the source produced is in the sink's file exactly once, in order.
  void expect_complete_output(std::uint64_t packets) const {
    std::ifstream in(dir_ / "out.jsonl");
    std::uint64_t expected = 0;
    for (std::string line; std::getline(in, line); ++expected) {
      const Json packet = Json::parse(line);
      ASSERT_EQ(packet.at("seq").get<std::uint64_t>(), expected) << "line " << expected + 1;
    }
    EXPECT_EQ(expected, packets);
  }

  std::uint64_t packets_in() const {
    return Json::parse(read_text(dir_ / "metrics.json")).at("packets_in").get<std::uint64_t>();
  }

  fs::path dir_;
  std::string url_;
};

TEST_F(ControlTest, StatusAndMetricsOfARunningPipeline) {
  // The work stage (10 ms, one consumer: 100/s) holds back an unpaced source.
  auto run = start_run(write_pipeline(100000, 0, 10));
  ASSERT_FALSE(url_.empty());

  Json document;
  ASSERT_TRUE(status_until([](const Json& d) { return d["window_s"].is_number(); }, 5s, &document));
  ASSERT_TRUE(
      status_until([](const Json& d) { return d["bottleneck"] == "work" && d["packets_out"] > 20; },
                   10s, &document))
      << document.dump(2);
  EXPECT_EQ(document["pipeline"], "live");
  for (const char* key :
       {"elapsed_s", "packets_in", "packets_out", "in_flight", "window_s", "throughput_per_s"}) {
    EXPECT_TRUE(document[key].is_number()) << key << " in " << document.dump(2);
  }
  ASSERT_EQ(document["stages"].size(), 3U);
  std::vector<std::string> names;
  for (const Json& s : document["stages"]) names.push_back(s["name"]);
  EXPECT_EQ(names, (std::vector<std::string>{"source", "work", "sink"}));
  const Json work = stage(document, "work");
  EXPECT_EQ(work["type"], "model.sleep");
  EXPECT_EQ(work["consumers"], 1);
  for (const char* key : {"queue_depth", "queue_max", "queue_capacity", "processed", "failed",
                          "dropped", "rate_per_s", "busy_share", "recent_busy_share"}) {
    EXPECT_TRUE(work[key].is_number()) << key << " in " << work.dump(2);
  }
  EXPECT_TRUE(work["service_us"]["p50"].is_number());
  EXPECT_TRUE(work["service_us"]["p99"].is_number());
  EXPECT_GT(work["service_us"]["p50"].get<double>(), 5000);
  // About 100/s: measured over the last second, not since the start.
  EXPECT_GT(work["rate_per_s"].get<double>(), 50) << work.dump(2);
  EXPECT_LT(work["rate_per_s"].get<double>(), 150) << work.dump(2);
  EXPECT_GT(work["recent_busy_share"].get<double>(), 0.8) << work.dump(2);

  auto c = client();
  const auto metrics = c.Get("/metrics");
  ASSERT_TRUE(metrics);
  EXPECT_EQ(metrics->status, 200);
  EXPECT_EQ(metrics->get_header_value("Content-Type"), "text/plain; version=0.0.4; charset=utf-8");
  EXPECT_NE(metrics->body.find("stage=\"work\""), std::string::npos) << metrics->body;

  const std::string promtool = find_on_path("promtool");
  if (promtool.empty()) {
    if (std::getenv("MICROMODELS_REQUIRE_TOOLS") != nullptr) {
      ADD_FAILURE() << "promtool is missing and MICROMODELS_REQUIRE_TOOLS is set";
    } else {
      std::cerr << "promtool not installed (Debian package prometheus): format not checked\n";
    }
  } else {
    std::ofstream(dir_ / "metrics.txt") << metrics->body;
    const std::string command = "'" + promtool + "' check metrics < '" +
                                (dir_ / "metrics.txt").string() + "' > '" +
                                (dir_ / "promtool.out").string() + "' 2>&1";
    EXPECT_EQ(std::system(command.c_str()), 0) << read_text(dir_ / "promtool.out");
    EXPECT_EQ(read_text(dir_ / "promtool.out"), "") << "promtool lint findings";
  }

  run->signal(SIGINT);
  const ToolResult r = run->wait(20s);
  EXPECT_EQ(r.exit_code, 130) << r.err;
  expect_complete_output(packets_in());
}

TEST_F(ControlTest, ScaleUnderLoadThroughTheEndpointAndCtl) {
  // 1200 packets at 200/s: 6 s of source; one 10 ms consumer alone would need 12 s.
  auto run = start_run(write_pipeline(1200, 200, 10));
  ASSERT_FALSE(url_.empty());
  Json before;
  ASSERT_TRUE(
      status_until([](const Json& d) { return d["window_s"].is_number() && d["packets_out"] > 50; },
                   10s, &before));
  const double rate_before = stage(before, "work")["rate_per_s"];

  auto c = client();
  const auto scaled = c.Post("/stages/work/scale", R"({"consumers": 3})", "application/json");
  ASSERT_TRUE(scaled);
  ASSERT_EQ(scaled->status, 200) << scaled->body;
  const Json answer = Json::parse(scaled->body);
  EXPECT_EQ(answer["stage"], "work");
  EXPECT_EQ(answer["consumers_before"], 1);
  EXPECT_EQ(answer["consumers"], 3);
  EXPECT_EQ(answer["status"]["consumers"], 3);
  EXPECT_EQ(stage(status(), "work")["consumers"], 3);

  // Three consumers drain the queue at up to 300/s; the recent rate shows it within a second
  // or two, though the rate since the start would hardly move.
  Json after;
  EXPECT_TRUE(status_until(
      [&](const Json& d) {
        const Json& r = stage(d, "work")["rate_per_s"];
        return r.is_number() && r.get<double>() > rate_before * 1.4;
      },
      4s, &after))
      << "before " << rate_before << "/s, after " << after.dump(2);

  const ToolResult ctl = tool("ctl", {"ctl", url_, "scale", "work", "4"});
  EXPECT_EQ(ctl.exit_code, 0) << ctl.err;
  EXPECT_EQ(ctl.out, "scaled work: 3 -> 4 consumers\n");
  EXPECT_EQ(stage(status(), "work")["consumers"], 4);

  const ToolResult shown = tool("status", {"ctl", url_, "status"});
  EXPECT_EQ(shown.exit_code, 0) << shown.err;
  EXPECT_TRUE(std::regex_search(shown.out, std::regex(R"(\nwork +model\.sleep +4 )"))) << shown.out;
  const ToolResult json = tool("status_json", {"ctl", url_, "status", "--json"});
  EXPECT_EQ(json.exit_code, 0) << json.err;
  EXPECT_EQ(stage(Json::parse(json.out), "work")["consumers"], 4);

  const ToolResult r = run->wait(20s);
  EXPECT_EQ(r.exit_code, 0) << r.err;
  expect_complete_output(1200);
  EXPECT_TRUE(std::regex_search(r.out, std::regex(R"(packets in 1200 \([0-9.]+/s\), out 1200 )")))
      << r.out;
}

TEST_F(ControlTest, SwapReplacesTheModelWhileItRuns) {
  // 20 ms per packet, two consumers (100/s) behind a 100/s source: the queue stays short.
  auto run = start_run(write_pipeline(100000, 100, 20, 2));
  ASSERT_FALSE(url_.empty());
  ASSERT_TRUE(status_until(
      [](const Json& d) { return stage(d, "work")["recent_service_mean_us"].is_number(); }, 10s));

  auto c = client();
  const auto swapped =
      c.Post("/stages/work/swap", R"({"params": {"service_ms": 2}})", "application/json");
  ASSERT_TRUE(swapped);
  ASSERT_EQ(swapped->status, 200) << swapped->body;
  const Json answer = Json::parse(swapped->body);
  EXPECT_EQ(answer["stage"], "work");
  EXPECT_EQ(answer["params"]["service_ms"], "2");
  EXPECT_EQ(answer["status"]["type"], "model.sleep");

  Json last;
  EXPECT_TRUE(status_until(
      [](const Json& d) {
        const Json& mean = stage(d, "work")["recent_service_mean_us"];
        return mean.is_number() && mean.get<double>() < 8000;
      },
      5s, &last))
      << "the 2 ms model did not take over: " << last.dump(2);

  // Through ctl, values as text, as --set takes them.
  const ToolResult ctl = tool("ctl", {"ctl", url_, "swap", "work", "service_ms=3", "jitter=0.1"});
  EXPECT_EQ(ctl.exit_code, 0) << ctl.err;
  EXPECT_EQ(ctl.out, "swapped work: model.sleep jitter=0.1 service_ms=3\n");

  run->signal(SIGINT);
  const ToolResult r = run->wait(20s);
  EXPECT_EQ(r.exit_code, 130) << r.err;
  expect_complete_output(packets_in());
  // The engine's note of each swap is a log line, on stderr; stdout keeps only the table.
  EXPECT_NE(r.err.find("swapped in"), std::string::npos) << r.err;
  EXPECT_EQ(r.out.find("swapped in"), std::string::npos) << r.out;
}

TEST_F(ControlTest, BadRequestsAreRefusedWithAMessageAndChangeNothing) {
  auto run = start_run(write_pipeline(100000, 100, 5, 2));
  ASSERT_FALSE(url_.empty());
  auto c = client();
  const auto expect_refused = [&](const httplib::Result& reply, int code, const std::string& text,
                                  const std::string& what) {
    ASSERT_TRUE(reply) << what;
    EXPECT_EQ(reply->status, code) << what << ": " << reply->body;
    const Json body = Json::parse(reply->body, nullptr, false);
    ASSERT_TRUE(body.is_object() && body["error"].is_string()) << what << ": " << reply->body;
    EXPECT_NE(body["error"].get<std::string>().find(text), std::string::npos)
        << what << ": " << body["error"];
  };
  const auto post = [&](const std::string& path, const std::string& body) {
    return c.Post(path, body, "application/json");
  };

  expect_refused(post("/stages/nosuch/scale", R"({"consumers": 2})"), 404, "no stage 'nosuch'",
                 "unknown stage");
  expect_refused(post("/stages/nosuch/swap", R"({"params": {}})"), 404, "no stage", "swap unknown");
  expect_refused(post("/stages/work/scale", R"({"consumers": 0})"), 400, "at least 1", "zero");
  expect_refused(post("/stages/work/scale", R"({"consumers": -3})"), 400, "at least 1", "negative");
  expect_refused(post("/stages/work/scale", R"({"consumers": 5000})"), 400, "1..1024", "absurd");
  expect_refused(post("/stages/work/scale", R"({"consumers": 1e30})"), 400, "whole number",
                 "not an integer");
  expect_refused(post("/stages/work/scale", R"({"consumers": "3"})"), 400, "whole number",
                 "a string");
  expect_refused(post("/stages/work/scale", R"({"consumer": 3})"), 400, "unknown key 'consumer'",
                 "a typo");
  expect_refused(post("/stages/work/scale", R"({"consumers": 3)"), 400, "malformed JSON",
                 "malformed");
  expect_refused(post("/stages/work/scale", ""), 400, "empty request body", "empty");
  expect_refused(post("/stages/work/scale", std::string(2 << 20, ' ')), 413, "over 1 MiB",
                 "a body over the limit");
  // A POST without Content-Length, which the HTTP library refuses before any route sees it.
  const std::string unread =
      raw_http(url_, "POST /stages/work/scale HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
  EXPECT_TRUE(unread.starts_with("HTTP/1.1 400")) << unread;
  EXPECT_NE(unread.find("Content-Type: application/json"), std::string::npos) << unread;
  EXPECT_NE(unread.find("send a JSON body with a Content-Length header"), std::string::npos)
      << unread;
  expect_refused(post("/stages/work/swap", R"({"type": "model.nosuch"})"), 422, "model.nosuch",
                 "unknown type");
  // A model that cannot be built (here: a sink whose folder cannot exist) leaves the old one.
  expect_refused(post("/stages/sink/swap", R"({"params": {"path": "/dev/null/no/out.jsonl"}})"),
                 422, "could not be built", "unbuildable");
  expect_refused(post("/stages/work/swap", R"({"params": {"service_ms": -1}})"), 422, "service_ms",
                 "invalid value");
  expect_refused(post("/stages/work/swap", R"({"params": {"service_ms": null}})"), 400,
                 "param 'service_ms'", "null value");
  // model.spin does not block: it cannot take over model.sleep's threads.
  expect_refused(post("/stages/work/swap", R"({"type": "model.spin"})"), 422, "block",
                 "blocking differs");
  expect_refused(post("/stages/source/swap", R"({"params": {"rate": 5}})"), 400, "source",
                 "swap a source");

  const auto get_scale = c.Get("/stages/work/scale");
  expect_refused(get_scale, 405, "use POST", "GET on scale");
  EXPECT_EQ(get_scale->get_header_value("Allow"), "POST");
  expect_refused(post("/status", "{}"), 405, "use GET", "POST on status");
  expect_refused(c.Delete("/metrics"), 405, "use GET", "DELETE on metrics");
  expect_refused(c.Get("/nothing/here"), 404, "/stages/NAME/scale", "unknown route");

  // ctl: the server's message on stderr, exit 2 (refused, nothing changed).
  const ToolResult ctl = tool("ctl", {"ctl", url_, "scale", "work", "0"});
  EXPECT_EQ(ctl.exit_code, 2);
  EXPECT_NE(ctl.err.find("at least 1"), std::string::npos) << ctl.err;
  EXPECT_EQ(ctl.out, "");
  const ToolResult ctl_swap = tool("ctl_swap", {"ctl", url_, "swap", "nosuch", "a=1"});
  EXPECT_EQ(ctl_swap.exit_code, 2);
  EXPECT_NE(ctl_swap.err.find("no stage 'nosuch'"), std::string::npos) << ctl_swap.err;

  // Nothing changed.
  const Json document = status();
  EXPECT_EQ(stage(document, "work")["consumers"], 2);
  EXPECT_EQ(stage(document, "work")["type"], "model.sleep");
  EXPECT_EQ(stage(document, "sink")["type"], "sink.jsonl");

  run->signal(SIGINT);
  const ToolResult r = run->wait(20s);
  EXPECT_EQ(r.exit_code, 130) << r.err;
  expect_complete_output(packets_in());
}

TEST_F(ControlTest, ListeningBeyondLoopbackNeedsAToken) {
  const fs::path pipeline = write_pipeline(10, 0, 1);
  const ToolResult r = tool("run", {"run", pipeline.string(), "--listen", "0.0.0.0:0"});
  EXPECT_EQ(r.exit_code, 2) << r.err;
  EXPECT_NE(r.err.find("needs a token"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("--token"), std::string::npos) << r.err;
  EXPECT_FALSE(fs::exists(dir_ / "out.jsonl")) << "nothing ran";

  const ToolResult bad = tool("bad", {"run", pipeline.string(), "--listen", "127.0.0.1:99999"});
  EXPECT_EQ(bad.exit_code, 2) << bad.err;
  EXPECT_NE(bad.err.find("0 to 65535"), std::string::npos) << bad.err;

  // A port in use is found before the stages are built: the sink has not truncated anything.
  int bound = 0;
  const int busy = bind_loopback(bound);
  ASSERT_GE(busy, 0);
  ASSERT_EQ(::listen(busy, 1), 0);
  const std::string port = std::to_string(bound);
  const ToolResult in_use =
      tool("in_use", {"run", pipeline.string(), "--listen", "127.0.0.1:" + port});
  ::close(busy);
  EXPECT_EQ(in_use.exit_code, 2) << in_use.err;
  EXPECT_NE(in_use.err.find("cannot listen on 127.0.0.1:" + port + ": Address already in use"),
            std::string::npos)
      << in_use.err;
  EXPECT_NE(in_use.err.find("another process listens on that port"), std::string::npos)
      << in_use.err;
  // The command line is well formed: no usage hint.
  EXPECT_EQ(in_use.err.find("--help"), std::string::npos) << in_use.err;
  EXPECT_FALSE(fs::exists(dir_ / "out.jsonl")) << "nothing ran";

  // An address that is not this machine's is said to be that, not a port in use.
  const ToolResult elsewhere =
      tool("elsewhere", {"run", pipeline.string(), "--listen", "192.0.2.1:0", "--token", "t0ken"});
  EXPECT_EQ(elsewhere.exit_code, 2) << elsewhere.err;
  EXPECT_NE(elsewhere.err.find("not one of this machine's"), std::string::npos) << elsewhere.err;
  EXPECT_EQ(elsewhere.err.find("in use"), std::string::npos) << elsewhere.err;
  EXPECT_FALSE(fs::exists(dir_ / "out.jsonl")) << "nothing ran";
}

TEST_F(ControlTest, TokenProtectsEveryRoute) {
  const std::string token = "s3cret-token";
  auto run = start_run(write_pipeline(100000, 100, 1), {"--token", token});
  ASSERT_FALSE(url_.empty());

  for (const char* path : {"/status", "/status/stream", "/metrics", "/nothing", "/preview/frame"}) {
    auto anonymous = client();
    const auto without = anonymous.Get(path);
    ASSERT_TRUE(without);
    EXPECT_EQ(without->status, 401) << path;
    EXPECT_NE(without->body.find("needs a token"), std::string::npos) << without->body;
    auto wrong_client = client("not-the-token");
    const auto wrong = wrong_client.Get(path);
    ASSERT_TRUE(wrong);
    EXPECT_EQ(wrong->status, 401) << path;
    EXPECT_NE(wrong->body.find("wrong token"), std::string::npos) << wrong->body;
  }
  auto anonymous = client();
  const auto scale =
      anonymous.Post("/stages/work/scale", R"({"consumers": 5})", "application/json");
  ASSERT_TRUE(scale);
  EXPECT_EQ(scale->status, 401);

  auto authorised = client(token);
  const auto good = authorised.Get("/status");
  ASSERT_TRUE(good);
  EXPECT_EQ(good->status, 200);
  EXPECT_EQ(stage(Json::parse(good->body), "work")["consumers"], 1)
      << "the refused scale did nothing";

  const ToolResult refused = tool("ctl_none", {"ctl", url_, "status"});
  EXPECT_EQ(refused.exit_code, 2);
  EXPECT_NE(refused.err.find("needs a token"), std::string::npos) << refused.err;
  const ToolResult flag = tool("ctl_flag", {"ctl", url_, "--token", token, "scale", "work", "2"});
  EXPECT_EQ(flag.exit_code, 0) << flag.err;
  const ToolResult env =
      tool("ctl_env", {"ctl", url_, "status", "--json"}, {{"MICROMODELS_TOKEN", token}});
  EXPECT_EQ(env.exit_code, 0) << env.err;
  const ToolResult top = tool("top", {"top", url_, "--once"}, {{"MICROMODELS_TOKEN", token}});
  EXPECT_EQ(top.exit_code, 0) << top.err;

  run->signal(SIGINT);
  EXPECT_EQ(run->wait(20s).exit_code, 130);
}

TEST_F(ControlTest, TopPrintsTheStagesAndTheBottleneck) {
  auto run = start_run(write_pipeline(100000, 0, 10));
  ASSERT_FALSE(url_.empty());
  ASSERT_TRUE(status_until([](const Json& d) { return d["bottleneck"] == "work"; }, 10s));

  // stdout is a file here, not a terminal: one snapshot, plain text, with or without --once.
  for (const bool once : {true, false}) {
    std::vector<std::string> args = {"top", url_};
    if (once) args.emplace_back("--once");
    const ToolResult top = tool(once ? "top_once" : "top", args);
    EXPECT_EQ(top.exit_code, 0) << top.err;
    for (const char* text : {"live", "source", "work", "sink", "model.sleep", "rate/s", "p99",
                             "busy", "bottleneck: work", "\nage: sink p50 "}) {
      EXPECT_NE(top.out.find(text), std::string::npos) << text << " missing from\n" << top.out;
    }
    EXPECT_TRUE(std::regex_search(top.out, std::regex(R"(\nwork [^\n]*\[#+ *\]  ◀ bottleneck\n)")))
        << top.out;
    EXPECT_EQ(top.out.find('\x1b'), std::string::npos) << "no escapes when not on a terminal";
  }

  run->signal(SIGINT);
  EXPECT_EQ(run->wait(20s).exit_code, 130);
}

TEST_F(ControlTest, CtlAndTopSayWhenNothingListens) {
  // A port that was free a moment ago: bind, note it, close.
  std::string url;
  {
    int port = 0;
    const int probe = bind_loopback(port);
    ASSERT_GE(probe, 0);
    url = "http://127.0.0.1:" + std::to_string(port);
    ::close(probe);
  }
  const ToolResult ctl = tool("ctl", {"ctl", url, "status"});
  EXPECT_EQ(ctl.exit_code, 3);
  EXPECT_NE(ctl.err.find("no control endpoint answered at " + url), std::string::npos) << ctl.err;
  EXPECT_NE(ctl.err.find("--listen"), std::string::npos) << ctl.err;
  const ToolResult top = tool("top", {"top", url, "--once"});
  EXPECT_EQ(top.exit_code, 3);
  EXPECT_NE(top.err.find(url), std::string::npos) << top.err;

  // A name that does not resolve (RFC 6761 reserves .invalid) is not "connection refused".
  const ToolResult unknown = tool("unknown", {"ctl", "http://no-such-host.invalid:8080", "status"});
  EXPECT_EQ(unknown.exit_code, 3);
  EXPECT_NE(unknown.err.find("no address found for host 'no-such-host.invalid'"), std::string::npos)
      << unknown.err;
  EXPECT_EQ(unknown.err.find("connection refused"), std::string::npos) << unknown.err;

  const ToolResult bad = tool("bad", {"ctl", "not a url", "status"});
  EXPECT_EQ(bad.exit_code, 2);
  EXPECT_NE(bad.err.find("http://HOST:PORT"), std::string::npos) << bad.err;
}

TEST_F(ControlTest, CtlSaysSoWhenAnotherServerAnswers) {
  // A web server that is not a control endpoint: its page is not printed, its first line is.
  httplib::Server other;
  other.Get("/status", [](const httplib::Request&, httplib::Response& response) {
    response.status = 404;
    response.set_content(
        "<!DOCTYPE HTML>\n<html><body>" + std::string(2000, 'x') + "</body></html>", "text/html");
  });
  const int port = other.bind_to_any_port("127.0.0.1");
  std::thread serving([&] { other.listen_after_bind(); });
  const ToolResult ctl =
      tool("other", {"ctl", "http://127.0.0.1:" + std::to_string(port), "status"});
  other.stop();
  serving.join();
  EXPECT_EQ(ctl.exit_code, 2);
  EXPECT_NE(ctl.err.find("not a micromodels control endpoint (it answered '<!DOCTYPE HTML>')"),
            std::string::npos)
      << ctl.err;
  EXPECT_EQ(ctl.err.find("xxxx"), std::string::npos) << "the page was printed";
}

TEST_F(ControlTest, TopOnATerminalQuitsWithQAndRestoresTheTerminal) {
  auto run = start_run(write_pipeline(100000, 0, 10));
  ASSERT_FALSE(url_.empty());
  PseudoTerminal terminal;
  ASSERT_TRUE(terminal.cooked());
  ToolProcess top(dir_, "top", {"top", url_, "--interval", "0.2"},
                  {{"MICROMODELS_TOKEN", std::nullopt}}, terminal.slave());
  ASSERT_TRUE(terminal.wait_for("◀ bottleneck", 10s)) << terminal.screen();
  EXPECT_NE(terminal.screen().find("\x1b[?1049h"), std::string::npos) << "alternate screen";
  EXPECT_FALSE(terminal.cooked()) << "raw mode while the view runs";
  EXPECT_TRUE(terminal.wait_for("q: quit", 2s));

  terminal.type("q");
  const ToolResult r = top.wait(5s);
  EXPECT_EQ(r.exit_code, 0);
  EXPECT_TRUE(terminal.cooked()) << "the terminal's modes are restored";
  EXPECT_TRUE(terminal.wait_for("\x1b[?1049l", 2s)) << "back to the main screen";

  // A signal ends the view the same way.
  ToolProcess again(dir_, "top2", {"top", url_}, {{"MICROMODELS_TOKEN", std::nullopt}},
                    terminal.slave());
  std::this_thread::sleep_for(1s);
  again.signal(SIGTERM);
  EXPECT_EQ(again.wait(5s).exit_code, 0);
  EXPECT_TRUE(terminal.cooked());

  run->signal(SIGINT);
  EXPECT_EQ(run->wait(20s).exit_code, 130);
}

TEST_F(ControlTest, TopSaysSoWhenTheRunEnds) {
  auto run = start_run(write_pipeline(150, 0, 10));  // about 1.5 s
  ASSERT_FALSE(url_.empty());
  PseudoTerminal terminal;
  ToolProcess top(dir_, "top", {"top", url_, "--interval", "0.2"},
                  {{"MICROMODELS_TOKEN", std::nullopt}}, terminal.slave());
  EXPECT_EQ(run->wait(20s).exit_code, 0);
  const ToolResult r = top.wait(10s);
  EXPECT_EQ(r.exit_code, 0);
  EXPECT_TRUE(terminal.wait_for("has ended", 2s)) << terminal.screen();
  EXPECT_TRUE(terminal.cooked());
}

// The status stream read to the run's end: its last event has the run's final counts, the same
// as the end-of-run figures (--metrics-json), marked `ended`; every event before is not.
TEST_F(ControlTest, TheStatusStreamEndsWithTheRunsFinalCounts) {
  constexpr int kPackets = 300;
  auto run = start_run(write_pipeline(kPackets, 200, 1));  // about 1.5 s
  ASSERT_FALSE(url_.empty());
  std::string body;
  bool closed = false;
  std::thread reader([&] {
    auto c = client();
    c.set_read_timeout(20);
    const auto reply = c.Get("/status/stream", [&](const char* data, std::size_t size) {
      body.append(data, size);
      return true;
    });
    closed = static_cast<bool>(reply);
  });
  EXPECT_EQ(run->wait(20s).exit_code, 0);
  reader.join();
  EXPECT_TRUE(closed) << "the stream did not end with the run";
  std::vector<Json> events;
  std::size_t at = 0;
  for (std::size_t end; (end = body.find("\n\n", at)) != std::string::npos; at = end + 2) {
    ASSERT_EQ(body.compare(at, 6, "data: "), 0) << body.substr(at, 80);
    events.push_back(Json::parse(body.substr(at + 6, end - at - 6)));
  }
  ASSERT_GE(events.size(), 2u) << body.substr(0, 300);
  for (std::size_t i = 0; i + 1 < events.size(); ++i) EXPECT_EQ(events[i]["ended"], false);
  const Json& last = events.back();
  EXPECT_EQ(last["ended"], true);
  EXPECT_EQ(last["packets_in"], kPackets);
  EXPECT_EQ(last["packets_out"], kPackets);
  EXPECT_EQ(last["in_flight"], 0);
  EXPECT_EQ(stage(last, "sink")["processed"], kPackets);
  const Json final_metrics = Json::parse(read_text(dir_ / "metrics.json"));
  EXPECT_EQ(last["packets_out"], final_metrics["packets_out"]);
  for (const Json& s : final_metrics["stages"]) {
    EXPECT_EQ(stage(last, s["name"])["processed"], s["processed"]) << s["name"];
  }
  // Its rates are the whole run's: about the source's pace, not a last second's.
  EXPECT_NEAR(last["throughput_per_s"].get<double>(), 200, 60) << last.dump();
  EXPECT_EQ(last["window_s"], last["elapsed_s"]);
}

#ifdef MICROMODELS_HAS_VISION
// The preview as players read it: ffprobe and ffmpeg open the MJPEG stream of a video run's
// frames, and the stream ends when the run does.
TEST_F(ControlTest, FfmpegPlaysThePreviewOfAVideoRun) {
  const char* cache = std::getenv("MICROMODELS_CACHE");
  const fs::path media = (cache != nullptr && *cache != '\0'
                              ? fs::path(cache)
                              : fs::path(MICROMODELS_SOURCE_DIR) / ".cache" / "micromodels") /
                         "media" / "franck.mp4";
  const std::string ffmpeg = find_on_path("ffmpeg");
  const std::string ffprobe = find_on_path("ffprobe");
  if (!fs::exists(media) || ffmpeg.empty() || ffprobe.empty()) {
    const std::string missing = "needs " + media.string() + " (scripts/fetch_media.sh), ffmpeg "
                                "and ffprobe (scripts/deps.sh)";
    if (std::getenv("MICROMODELS_REQUIRE_MEDIA") != nullptr) FAIL() << missing;
    GTEST_SKIP() << missing;
  }
  // 360x288 frames, 20 ms each in `work`: about 8 s of run.
  const fs::path pipeline = dir_ / "video.yaml";
  std::ofstream(pipeline) << "pipeline: video_preview\n"
                             "stages:\n"
                             "  - name: source\n"
                             "    type: video.source\n"
                             "    params: { path: " << media.string() << ", max_frames: 400 }\n"
                             "  - name: work\n"
                             "    type: model.sleep\n"
                             "    params: { service_ms: 20 }\n"
                             "  - name: sink\n"
                             "    type: video.sink\n"
                             "    ordered: true\n"
                             "    params: { path: " << (dir_ / "out.mp4").string() << " }\n";
  auto run = start_run(pipeline, {"-q"});
  ASSERT_FALSE(url_.empty());
  const auto shell = [&](const std::string& name, const std::string& command) {
    const std::string out = (dir_ / (name + ".out")).string();
    const int code = std::system(("timeout 60 " + command + " > " + out + " 2>&1").c_str());
    return std::make_pair(WIFEXITED(code) ? WEXITSTATUS(code) : -1, read_text(out));
  };
  // The default: field `frame` of the last stage, the sink.
  const std::string stream = url_ + "/preview/frame";
  const auto [probed, probe] = shell(
      "ffprobe", ffprobe + " -v error -f mpjpeg -show_entries stream=codec_name,width,height "
                           "-of default=noprint_wrappers=1 '" + stream + "'");
  EXPECT_EQ(probed, 0) << probe;
  EXPECT_NE(probe.find("codec_name=mjpeg"), std::string::npos) << probe;
  EXPECT_NE(probe.find("width=360"), std::string::npos) << probe;
  EXPECT_NE(probe.find("height=288"), std::string::npos) << probe;

  // Five frames of another stage, as files; they show the video moving.
  const auto [read, log] = shell(
      "ffmpeg", ffmpeg + " -v error -f mpjpeg -i '" + url_ + "/preview/frame?stage=work&fps=5' " +
                    "-frames:v 5 -c copy '" + (dir_ / "frame_%d.jpg").string() + "'");
  ASSERT_EQ(read, 0) << log;
  std::vector<std::string> frames;
  for (int i = 1; i <= 5; ++i) {
    frames.push_back(read_text(dir_ / ("frame_" + std::to_string(i) + ".jpg")));
    EXPECT_EQ(frames.back().compare(0, 2, "\xFF\xD8"), 0) << "frame " << i << " is no JPEG";
  }
  EXPECT_NE(frames.front(), frames.back()) << "the preview shows the same picture";

  // Played to the end: the stream closes when the run ends, and the player stops by itself.
  const auto [played, play_log] = shell(
      "ffmpeg_all", ffmpeg + " -v error -f mpjpeg -i '" + stream + "' -f null -");
  EXPECT_EQ(played, 0) << "ffmpeg did not end with the run: " << play_log;
  EXPECT_EQ(run->wait(30s).exit_code, 0) << run->err_so_far();
}
#endif

}  // namespace
