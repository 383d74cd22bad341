// The dashboard's files as the control endpoint serves them: built in, only at their own paths
// (no path reaches outside them), and on a listener with a token nothing else without it.
// tests/browser/dashboard_test.mjs runs the page itself in a browser.
#include <string>
#include <vector>

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include "micromodels/control/control_server.hpp"

namespace micromodels {
namespace {

// A run with one stage that does nothing: what is served here does not depend on the run.
class IdleRun final : public Run {
 public:
  void start() override {}
  bool wait_for(double /*timeout_ms*/) override { return true; }
  void stop() override {}
  void scale(std::string_view /*stage*/, int /*consumers*/) override {}
  void swap(std::string_view /*stage*/, const std::map<std::string, std::string>& /*params*/,
            std::string_view /*type*/) override {}
  [[nodiscard]] MetricsSnapshot metrics() const override {
    MetricsSnapshot m;
    m.pipeline = "idle_pipeline";
    m.stages.push_back(StageMetrics{.name = "work", .type = "model.fake", .consumers = 1});
    return m;
  }
  [[nodiscard]] Progress progress() const override { return {}; }
  [[nodiscard]] PacketTap& tap(std::string_view /*stage*/) override { return tap_; }

 private:
  PacketTap tap_;  // nothing passes
};

struct Answer {
  int status = 0;
  std::string head;  // status line and headers
  std::string body;
};

// One request written byte for byte as given: a client library could tidy the path first.
Answer request(int port, const std::string& method, const std::string& path,
               const std::string& token = "", const std::string& scheme = "Bearer") {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_port = htons(static_cast<std::uint16_t>(port));
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (fd < 0 || ::connect(fd, reinterpret_cast<sockaddr*>(&address), sizeof address) != 0) {
    if (fd >= 0) ::close(fd);
    throw std::runtime_error("cannot connect to the endpoint");
  }
  std::string text = method + " " + path + " HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n";
  if (!token.empty()) text += "Authorization: " + scheme + " " + token + "\r\n";
  text += "Content-Length: 0\r\n\r\n";
  ::send(fd, text.data(), text.size(), MSG_NOSIGNAL);
  std::string reply;
  char buffer[4096];
  for (ssize_t n; (n = ::recv(fd, buffer, sizeof buffer, 0)) > 0;) {
    reply.append(buffer, static_cast<std::size_t>(n));
  }
  ::close(fd);
  Answer answer;
  const auto end = reply.find("\r\n\r\n");
  answer.head = reply.substr(0, end);
  answer.body = end == std::string::npos ? "" : reply.substr(end + 4);
  if (reply.starts_with("HTTP/1.1 ")) answer.status = std::stoi(reply.substr(9, 3));
  return answer;
}

// Paths that try to reach outside the embedded files, plainly and encoded.
const std::vector<std::string> kOutside = {
    "/../etc/passwd",
    "/..",
    "/%2e%2e/%2e%2e/etc/passwd",
    "/%2E%2E/CMakeLists.txt",
    "/..%2f..%2fetc%2fpasswd",
    "/%2e%2e%2fCMakeLists.txt",
    "/dashboard.js/../index.html",
    "/./index.html",
    "//index.html",
    "/index.html/",
    "/index.html%00",
    "/index.html%2f",
    "/dashboard/index.html",
    "/src/control/dashboard/index.html",
    "/%2fetc%2fpasswd",
    "/..\\..\\etc\\passwd",
    "/dashboard.hpp",
    "/control_routes.cpp",
};

TEST(Dashboard, ThePageAndItsFilesAreServedFromTheBinary) {
  IdleRun run;
  ControlServer server(run, {});
  const Answer page = request(server.port(), "GET", "/");
  EXPECT_EQ(page.status, 200);
  EXPECT_NE(page.head.find("Content-Type: text/html; charset=utf-8"), std::string::npos)
      << page.head;
  EXPECT_NE(page.head.find("Content-Security-Policy: default-src 'self'"), std::string::npos);
  EXPECT_NE(page.body.find("<script src=\"/dashboard.js\""), std::string::npos);
  EXPECT_EQ(request(server.port(), "GET", "/index.html").body, page.body);

  const Answer script = request(server.port(), "GET", "/dashboard.js");
  EXPECT_EQ(script.status, 200);
  EXPECT_NE(script.head.find("Content-Type: text/javascript"), std::string::npos);
  EXPECT_NE(script.body.find("/status"), std::string::npos);
  const Answer style = request(server.port(), "GET", "/dashboard.css");
  EXPECT_EQ(style.status, 200);
  EXPECT_NE(style.head.find("Content-Type: text/css"), std::string::npos);

  const Answer post = request(server.port(), "POST", "/");
  EXPECT_EQ(post.status, 405);
  EXPECT_NE(post.head.find("Allow: GET"), std::string::npos);
}

TEST(Dashboard, NoPathReachesOutsideItsFiles) {
  IdleRun run;
  ControlServer server(run, {});
  for (const std::string& path : kOutside) {
    const Answer answer = request(server.port(), "GET", path);
    EXPECT_EQ(answer.status, 404) << path << ": " << answer.head;
    EXPECT_TRUE(answer.body.starts_with("{")) << path << ": " << answer.body;
    EXPECT_EQ(answer.body.find("root:"), std::string::npos) << path;
    EXPECT_EQ(answer.body.find("<html"), std::string::npos) << path;
  }
}

TEST(Dashboard, WithATokenOnlyThePagesOwnFilesAnswerWithoutIt) {
  IdleRun run;
  const std::string token = "t0ken";
  ControlServer server(run, {.listen = "127.0.0.1:0", .token = token});
  // The page's files are the same for every run and carry nothing of it: the page needs them
  // to ask for the token.
  for (const char* path : {"/", "/index.html", "/dashboard.js", "/dashboard.css"}) {
    const Answer answer = request(server.port(), "GET", path);
    EXPECT_EQ(answer.status, 200) << path;
    EXPECT_EQ(answer.body.find("idle_pipeline"), std::string::npos) << path;
    EXPECT_EQ(answer.head.find("Set-Cookie"), std::string::npos) << path;
  }
  // Everything else: 401 and nothing more, whatever the path or method.
  std::vector<std::pair<std::string, std::string>> others = {
      {"GET", "/status"}, {"GET", "/metrics"}, {"POST", "/"}, {"POST", "/stages/work/scale"},
      {"PUT", "/dashboard.js"}};
  for (const std::string& path : kOutside) others.emplace_back("GET", path);
  for (const auto& [method, path] : others) {
    const Answer answer = request(server.port(), method, path);
    EXPECT_EQ(answer.status, 401) << method << " " << path;
    EXPECT_EQ(answer.body.find("idle_pipeline"), std::string::npos) << path;
    const Answer wrong = request(server.port(), method, path, "not-it");
    EXPECT_EQ(wrong.status, 401) << method << " " << path;
  }
  const Answer status = request(server.port(), "GET", "/status", token);
  EXPECT_EQ(status.status, 200);
  EXPECT_NE(status.body.find("idle_pipeline"), std::string::npos);
  // The scheme's name is case-insensitive (RFC 9110); the token is not.
  EXPECT_EQ(request(server.port(), "GET", "/status", token, "bearer").status, 200);
  EXPECT_EQ(request(server.port(), "GET", "/status", "T0KEN").status, 401);
}

}  // namespace
}  // namespace micromodels
