// Redis that lets only the pipeline in: a password (from MICROMODELS_REDIS_PASSWORD or the file
// MICROMODELS_REDIS_PASSWORD_FILE names), the least-privilege ACL of deploy/redis/users.acl, and
// TLS through a local stunnel, as docs/distributed.md shows them. Each test starts its own
// redis-server (and stunnel) on free loopback ports, runs `micromodels run --broker`, `worker`
// and `status` against it, and checks that the password appears in nothing they print or write.
#include <cstdio>
#include <map>
#include <optional>
#include <regex>

#include <nlohmann/json.hpp>

#include "../system/tool_process.hpp"
#include "redis_test_support.hpp"

namespace micromodels {
namespace {

using namespace redis_testing;
using Env = std::map<std::string, std::optional<std::string>>;

class RedisAuthTest : public RedisTest {
 protected:
  void SetUp() override {
    RedisTest::SetUp();
    password_ = "pw-" + std::to_string(::getpid()) + "-Zq8xK3";
  }

  // source -> work (shared) -> keep (per_stream: leases and scripts) -> sink.jsonl
  fs::path write_pipeline(int count, const std::string& source = "") {
    const fs::path path = dir_ / "p.yaml";
    write_text(path, "pipeline: " + name_ +
                         "\nstages:\n"
                         "  - { name: source, type: synthetic.source, params: { count: " +
                         std::to_string(count) + source +
                         ", streams: 2 } }\n"
                         "  - { name: work, type: model.sleep, params: { service_ms: 1 } }\n"
                         "  - { name: keep, type: model.sleep, state: per_stream, partitions: 2, "
                         "params: { service_ms: 1 } }\n"
                         "  - { name: sink, type: sink.jsonl, ordered: true, params: { path: " +
                         (dir_ / "out.jsonl").string() + " } }\n");
    return path;
  }

  // Every packet of both streams once, in order.
  void expect_complete(int count) {
    std::map<int, std::vector<int>> seqs;
    for (const std::string& line : lines_of(dir_ / "out.jsonl")) {
      const auto j = nlohmann::json::parse(line);
      seqs[j["stream"].get<int>()].push_back(j["seq"].get<int>());
    }
    std::vector<int> want(static_cast<std::size_t>(count));
    for (int i = 0; i < count; ++i) want[static_cast<std::size_t>(i)] = i;
    EXPECT_EQ(seqs[0], want);
    EXPECT_EQ(seqs[1], want);
  }

  // The password in the environment, as MICROMODELS_REDIS_PASSWORD or in a file.
  [[nodiscard]] Env password_env(const std::string& password) const {
    return {{"MICROMODELS_REDIS_PASSWORD", password}, {"MICROMODELS_REDIS_PASSWORD_FILE", std::nullopt}};
  }
  [[nodiscard]] Env password_file_env(const std::string& password) const {
    write_text(dir_ / "password", password + "\n");  // as `kubectl create secret --from-file` may
    return {{"MICROMODELS_REDIS_PASSWORD", std::nullopt},
            {"MICROMODELS_REDIS_PASSWORD_FILE", (dir_ / "password").string()}};
  }

  std::unique_ptr<testing::ToolProcess> tool(const std::string& tag, std::vector<std::string> args,
                                             const Env& env) {
    return std::make_unique<testing::ToolProcess>(dir_, tag, std::move(args), env);
  }

  // redis-server on a free port with `extra` arguments (TLS: the port is the TLS port).
  std::unique_ptr<Daemon> redis_server(std::vector<std::string> extra, bool tls = false) {
    const int port = free_loopback_port();
    std::vector<std::string> args = {"redis-server", "--bind", "127.0.0.1", "--save", "",
                                     "--appendonly", "no"};
    for (const std::string& a :
         tls ? std::vector<std::string>{"--port", "0", "--tls-port", std::to_string(port)}
             : std::vector<std::string>{"--port", std::to_string(port)}) {
      args.push_back(a);
    }
    args.insert(args.end(), extra.begin(), extra.end());
    return std::make_unique<Daemon>(dir_, "redis", std::move(args), port);
  }

  // deploy/redis/users.acl for this test's pipeline and password.
  std::string example_acl() {
    std::string acl = read_text(fs::path(MICROMODELS_SOURCE_DIR) / "deploy/redis/users.acl");
    for (auto at = acl.find("{eye_contact"); at != std::string::npos; at = acl.find("{eye_contact", at)) {
      acl.replace(at, 12, "{" + name_);
    }
    acl.replace(acl.find("#PASSWORD_SHA256"), 16, "#" + sha256(password_));
    return acl;
  }
  fs::path write_acl(const std::string& acl) {
    const fs::path path = dir_ / "users.acl";
    write_text(path, acl);
    return path;
  }

  static std::string sha256(const std::string& text) {
    FILE* pipe = ::popen(("printf '%s' '" + text + "' | sha256sum").c_str(), "r");
    char hex[65] = {};
    const std::size_t n = std::fread(hex, 1, 64, pipe);
    ::pclose(pipe);
    EXPECT_EQ(n, 64u);
    return std::string(hex, n);
  }

  // Waits until `n` consumers of `stage` announced themselves on the Redis at `url`.
  void wait_live(const std::string& url, const std::string& user, const std::string& stage, int n) {
    Redis redis(url);
    if (user.empty()) {
      redis.command({"AUTH", password_});
    } else {
      redis.command({"AUTH", user, password_});
    }
    RedisTest::wait_live(redis, stage, n);
  }

  // `text` (named `what`) holds neither the password nor a wrong one tried.
  void expect_no_secret(const std::string& what, const std::string& text) {
    EXPECT_EQ(text.find(password_), std::string::npos) << what << " shows the password:\n" << text;
    EXPECT_EQ(text.find("wrong-Zq8"), std::string::npos) << what << " shows a password:\n" << text;
  }

  void expect_no_secret(const std::string& what, const testing::ToolResult& r) {
    expect_no_secret(what + " stdout", r.out);
    expect_no_secret(what + " stderr", r.err);
  }

  std::string password_;
};

TEST_F(RedisAuthTest, PasswordFromTheEnvironmentServesRunWorkerAndStatusAndShowsNowhere) {
  const auto server = redis_server({"--requirepass", password_});
  const std::string url = "redis://127.0.0.1:" + std::to_string(server->port());
  const fs::path file = write_pipeline(60, ", rate: 20");  // 3 s: long enough for progress lines
  const Env env = password_env(password_);
  auto w = tool("w", {"worker", file.string(), "--broker", url, "--stages", "work,keep", "--listen",
                      "127.0.0.1:0"},
                env);
  const std::string control = w->wait_for_stderr(std::regex("control: (http://\\S+)"), 30s);
  ASSERT_FALSE(control.empty()) << w->err_so_far();
  wait_live(url, "", "work", 1);
  const fs::path metrics = dir_ / "metrics.json";
  const auto run = tool("run", {"run", file.string(), "--broker", url, "--serve", "none",
                                "--metrics-json", metrics.string()},
                        env)
                       ->wait(60s);
  ASSERT_EQ(run.exit_code, 0) << run.err;
  expect_complete(60);
  EXPECT_NE(run.err.find("progress: "), std::string::npos) << run.err;  // checked below too
  expect_no_secret("run", run);
  expect_no_secret("--metrics-json", read_text(metrics));

  const auto status = tool("status", {"status", "--broker", url, "--pipeline", name_, "--json"}, env)
                          ->wait(30s);
  ASSERT_EQ(status.exit_code, 0) << status.err;
  EXPECT_NE(status.out.find("\"keep\""), std::string::npos) << status.out;
  expect_no_secret("status", status);
  const auto worker_status = tool("ctl", {"ctl", control, "status", "--json"}, {})->wait(30s);
  ASSERT_EQ(worker_status.exit_code, 0) << worker_status.err;
  expect_no_secret("the worker's /status", worker_status);
  const Result metrics_page =
      Process(dir_, "curl", {"curl", "-sf", control + "/metrics"}).wait(30s);
  ASSERT_EQ(metrics_page.exit_code, 0) << metrics_page.err;
  EXPECT_NE(metrics_page.out.find("keep"), std::string::npos) << metrics_page.out;
  expect_no_secret("the worker's /metrics", metrics_page.out);

  w->signal(SIGTERM);
  const auto worker = w->wait(20s);
  EXPECT_EQ(worker.exit_code, 0) << worker.err;
  expect_no_secret("worker", worker);
}

TEST_F(RedisAuthTest, TheExampleAclUserWithAPasswordFileRunsThePipeline) {
  const auto server = redis_server({"--aclfile", write_acl(example_acl()).string()});
  const std::string url = "redis://micromodels@127.0.0.1:" + std::to_string(server->port());
  const fs::path file = write_pipeline(60);
  const Env env = password_file_env(password_);
  auto w = tool("w", {"worker", file.string(), "--broker", url, "--stages", "work,keep"}, env);
  wait_live("redis://127.0.0.1:" + std::to_string(server->port()), "micromodels", "keep", 1);
  const auto run = tool("run", {"run", file.string(), "--broker", url, "--serve", "none"}, env)
                       ->wait(60s);
  ASSERT_EQ(run.exit_code, 0) << run.err;
  expect_complete(60);
  EXPECT_EQ(run.err.find("refused"), std::string::npos) << run.err;  // nothing the ACL forbids
  expect_no_secret("run", run);
  const auto status = tool("status", {"status", "--broker", url, "--json"}, env)->wait(30s);
  ASSERT_EQ(status.exit_code, 0) << status.err;
  EXPECT_NE(status.out.find("\"" + name_ + "\""), std::string::npos) << status.out;
  w->signal(SIGTERM);
  const auto worker = w->wait(20s);
  EXPECT_EQ(worker.exit_code, 0) << worker.err;
  EXPECT_EQ(worker.err.find("refused"), std::string::npos) << worker.err;
  expect_no_secret("worker", worker);
}

TEST_F(RedisAuthTest, AWrongOrMissingPasswordExits3SayingWhatToSetAndShowsNoPassword) {
  const auto server = redis_server({"--requirepass", password_});
  const std::string url = "redis://127.0.0.1:" + std::to_string(server->port());
  const fs::path file = write_pipeline(10);
  const std::string wrong = "wrong-Zq8-" + std::to_string(::getpid());

  const auto run = tool("run", {"run", file.string(), "--broker", url}, password_env(wrong))->wait(30s);
  EXPECT_EQ(run.exit_code, 3) << run.err;
  EXPECT_NE(run.err.find("Redis at 127.0.0.1:" + std::to_string(server->port()) +
                         " refused the password of the default user (WRONGPASS"),
            std::string::npos)
      << run.err;
  EXPECT_NE(run.err.find("check MICROMODELS_REDIS_PASSWORD"), std::string::npos) << run.err;
  expect_no_secret("run with a wrong password", run);

  const auto worker = tool("worker", {"worker", file.string(), "--broker", url, "--stages", "work"},
                           password_file_env(wrong))
                          ->wait(30s);
  EXPECT_EQ(worker.exit_code, 3) << worker.err;
  EXPECT_NE(worker.err.find("refused the password"), std::string::npos) << worker.err;
  expect_no_secret("worker with a wrong password", worker);

  const auto none = tool("none", {"status", "--broker", url},
                         {{"MICROMODELS_REDIS_PASSWORD", std::nullopt},
                          {"MICROMODELS_REDIS_PASSWORD_FILE", std::nullopt}})
                        ->wait(30s);
  EXPECT_EQ(none.exit_code, 3) << none.err;
  EXPECT_NE(none.err.find("requires a password (NOAUTH"), std::string::npos) << none.err;
  EXPECT_NE(none.err.find("set MICROMODELS_REDIS_PASSWORD, or MICROMODELS_REDIS_PASSWORD_FILE"),
            std::string::npos)
      << none.err;

  // A password in the URL is refused before anything connects, and not repeated.
  const auto in_url = tool("in-url", {"run", file.string(), "--broker",
                                      "redis://default:" + password_ + "@127.0.0.1:" +
                                          std::to_string(server->port())},
                           {})
                          ->wait(30s);
  EXPECT_EQ(in_url.exit_code, 2) << in_url.err;
  EXPECT_NE(in_url.err.find("redis://default:***@127.0.0.1"), std::string::npos) << in_url.err;
  expect_no_secret("run with a password in the URL", in_url);
}

TEST_F(RedisAuthTest, AWorkerTheAclDeniesACommandFailsNamingItAndLosesNothing) {
  // A second user with the example's rights but XREADGROUP, which a worker needs to read.
  const std::string example = example_acl();
  std::string limited = example.substr(example.find("user micromodels"));
  limited.replace(0, 16, "user limited");
  limited.replace(limited.find(" +xreadgroup"), 12, "");
  const auto server = redis_server({"--aclfile", write_acl(example + limited).string()});
  const std::string at = "127.0.0.1:" + std::to_string(server->port());
  const fs::path file = write_pipeline(40);
  const Env env = password_env(password_);
  auto run = tool("run", {"run", file.string(), "--broker", "redis://micromodels@" + at, "--serve",
                          "none", "-q"},
                  env);
  const auto denied = tool("denied", {"worker", file.string(), "--broker", "redis://limited@" + at,
                                      "--stages", "work,keep"},
                           env)
                          ->wait(30s);
  EXPECT_EQ(denied.exit_code, 3) << denied.err;
  EXPECT_NE(denied.err.find("refused a command of user 'limited' (NOPERM this user has no "
                            "permissions to run the 'xreadgroup' command"),
            std::string::npos)
      << denied.err;
  EXPECT_NE(denied.err.find("deploy/redis/users.acl"), std::string::npos) << denied.err;
  expect_no_secret("the denied worker", denied);
  // The packets waited in Redis: a worker with the rights serves them, and the run completes.
  auto rightful = tool("rightful", {"worker", file.string(), "--broker", "redis://micromodels@" + at,
                                    "--stages", "work,keep"},
                       env);
  const auto done = run->wait(60s);
  ASSERT_EQ(done.exit_code, 0) << done.err;
  expect_complete(40);
  rightful->signal(SIGTERM);
  EXPECT_EQ(rightful->wait(20s).exit_code, 0);
}

// TLS: a redis-server that listens with TLS only, reached through stunnel in client mode, with
// a CA and server certificate made here, as docs/distributed.md#tls shows.
TEST_F(RedisAuthTest, TlsOnlyRedisThroughAStunnelTunnelRunsThePipeline) {
  const std::string make_certs =
      "cd '" + dir_.string() + "' && "
      "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 1 "
      "-subj /CN=micromodels-test-ca -keyout ca.key -out ca.crt && "
      "openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -subj /CN=localhost "
      "-keyout redis.key -out redis.csr && "
      "printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\\n' > san.ext && "
      "openssl x509 -req -in redis.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 1 "
      "-extfile san.ext -out redis.crt";
  ASSERT_EQ(Process(dir_, "openssl", {"sh", "-c", make_certs}).wait(60s).exit_code, 0)
      << read_text(dir_ / "openssl.err");
  const auto server = redis_server(
      {"--tls-cert-file", (dir_ / "redis.crt").string(), "--tls-key-file", (dir_ / "redis.key").string(),
       "--tls-ca-cert-file", (dir_ / "ca.crt").string(), "--tls-auth-clients", "no",
       "--requirepass", password_},
      true);
  const int local = free_loopback_port();
  write_text(dir_ / "stunnel.conf",
             "foreground = yes\n"
             "pid =\n"
             "[redis]\n"
             "client = yes\n"
             "accept = 127.0.0.1:" + std::to_string(local) + "\n"
             "connect = 127.0.0.1:" + std::to_string(server->port()) + "\n"
             "verifyChain = yes\n"
             "CAfile = " + (dir_ / "ca.crt").string() + "\n"
             "checkHost = localhost\n");
  const Daemon tunnel(dir_, "stunnel", {"stunnel4", (dir_ / "stunnel.conf").string()}, local);
  const std::string url = "redis://127.0.0.1:" + std::to_string(local);
  const fs::path file = write_pipeline(40);
  const Env env = password_env(password_);
  auto w = tool("w", {"worker", file.string(), "--broker", url, "--stages", "work,keep"}, env);
  const auto run = tool("run", {"run", file.string(), "--broker", url, "-q"}, env)->wait(60s);
  ASSERT_EQ(run.exit_code, 0) << run.err;
  expect_complete(40);
  w->signal(SIGTERM);
  EXPECT_EQ(w->wait(20s).exit_code, 0);

  // Without the tunnel, plain Redis to the TLS port: a clear error, not a hang.
  const std::string direct = "redis://127.0.0.1:" + std::to_string(server->port());
  const auto plain = tool("plain", {"run", file.string(), "--broker", direct, "-q"}, env)->wait(30s);
  EXPECT_EQ(plain.exit_code, 3) << plain.err;
  EXPECT_NE(plain.err.find("If that server speaks TLS only, reach it through a local stunnel"),
            std::string::npos)
      << plain.err;
  EXPECT_NE(plain.err.find("docs/distributed.md#tls"), std::string::npos) << plain.err;
  expect_no_secret("run to the TLS port", plain);
  // rediss:// says the same before connecting.
  const auto rediss = tool("rediss", {"run", file.string(), "--broker", "rediss://127.0.0.1:" +
                                          std::to_string(server->port())},
                           env)
                          ->wait(30s);
  EXPECT_EQ(rediss.exit_code, 2) << rediss.err;
  EXPECT_NE(rediss.err.find("docs/distributed.md#tls"), std::string::npos) << rediss.err;
}

}  // namespace
}  // namespace micromodels
