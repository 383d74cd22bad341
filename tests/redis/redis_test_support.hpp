// What the Redis tests share: the server the test script started, processes of the built tool,
// servers of a test's own (redis-server, stunnel) on free ports, and a raw hiredis connection to
// look at what the broker left in Redis.
//
// The test script starts `redis-server` on a free loopback port and exports
// MICROMODELS_REDIS_URL; without it the tests skip, unless MICROMODELS_REQUIRE_REDIS is set
// (the script sets it), then they fail.
#pragma once

#include <algorithm>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <memory>
#include <random>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <gtest/gtest.h>
#include <hiredis/hiredis.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

extern char** environ;

namespace micromodels::redis_testing {

namespace fs = std::filesystem;
using namespace std::chrono_literals;

inline std::string redis_url() {
  const char* url = std::getenv("MICROMODELS_REDIS_URL");
  return url != nullptr ? url : "";
}

#define REQUIRE_REDIS()                                                                       \
  do {                                                                                        \
    if (::micromodels::redis_testing::redis_url().empty()) {                                  \
      if (std::getenv("MICROMODELS_REQUIRE_REDIS") != nullptr) {                              \
        FAIL() << "MICROMODELS_REDIS_URL is not set (MICROMODELS_REQUIRE_REDIS is)";           \
      }                                                                                       \
      GTEST_SKIP() << "no Redis: scripts/test.sh starts one and sets MICROMODELS_REDIS_URL";  \
    }                                                                                         \
  } while (0)

inline std::string read_text(const fs::path& path) {
  std::ifstream in(path);
  std::ostringstream text;
  text << in.rdbuf();
  return text.str();
}

inline void write_text(const fs::path& path, const std::string& text) { std::ofstream(path) << text; }

inline std::vector<std::string> lines_of(const fs::path& path) {
  std::vector<std::string> lines;
  std::ifstream in(path);
  for (std::string line; std::getline(in, line);) lines.push_back(line);
  return lines;
}

struct Result {
  int exit_code = -1;  // 128 + signal when killed by a signal
  std::string out;
  std::string err;
};

/// A process in the background, stdout and stderr captured in files named after `tag`.
class Process {
 public:
  Process(const fs::path& dir, const std::string& tag, std::vector<std::string> args)
      : out_(dir / (tag + ".out")), err_(dir / (tag + ".err")) {
    std::vector<char*> argv;
    for (std::string& arg : args) argv.push_back(arg.data());
    argv.push_back(nullptr);
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_addopen(&actions, STDIN_FILENO, "/dev/null", O_RDONLY, 0);
    posix_spawn_file_actions_addopen(&actions, STDOUT_FILENO, out_.c_str(),
                                     O_WRONLY | O_CREAT | O_TRUNC, 0644);
    posix_spawn_file_actions_addopen(&actions, STDERR_FILENO, err_.c_str(),
                                     O_WRONLY | O_CREAT | O_TRUNC, 0644);
    const int error = posix_spawnp(&pid_, argv[0], &actions, nullptr, argv.data(), environ);
    posix_spawn_file_actions_destroy(&actions);
    if (error != 0) throw std::runtime_error(std::string("cannot start ") + argv[0]);
  }
  ~Process() {
    if (pid_ > 0) {
      ::kill(pid_, SIGKILL);
      ::waitpid(pid_, nullptr, 0);
    }
  }
  Process(const Process&) = delete;
  Process& operator=(const Process&) = delete;

  void signal(int number) const { ::kill(pid_, number); }
  [[nodiscard]] pid_t pid() const { return pid_; }
  [[nodiscard]] std::string err() const { return read_text(err_); }

  /// Waits for the exit; kills the process and fails the test after `timeout`.
  Result wait(std::chrono::seconds timeout = 60s) {
    Result result;
    int status = 0;
    const auto start = std::chrono::steady_clock::now();
    while (::waitpid(pid_, &status, WNOHANG) == 0) {
      if (std::chrono::steady_clock::now() - start > timeout) {
        ADD_FAILURE() << "process did not exit within " << timeout.count() << " s: " << out_;
        ::kill(pid_, SIGKILL);
        ::waitpid(pid_, &status, 0);
        break;
      }
      std::this_thread::sleep_for(10ms);
    }
    pid_ = -1;
    result.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    result.out = read_text(out_);
    result.err = read_text(err_);
    return result;
  }

 private:
  fs::path out_;
  fs::path err_;
  pid_t pid_ = -1;
};

/// A free loopback port, probed by binding, below the ephemeral range (32768-) so that no client
/// connection takes it between the probe and the server's bind. With `bus`, one whose port +
/// 10000 (a cluster node's bus port, which redis-server opens too) is free and below that range
/// as well: above it, a client connection could hold it (the cluster test failed so, 2 in 70).
inline int free_loopback_port(bool bus = false) {
  const auto free = [](int port) {
    const int s = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(static_cast<std::uint16_t>(port));
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    const bool bound = ::bind(s, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0;
    ::close(s);
    return bound;
  };
  // A random start: tests run side by side, and two that started from near places (their pids,
  // once) took each other's ports between choosing one and binding it.
  const int last = bus ? 22767 : 31999;
  const auto span = static_cast<unsigned>(last - 19999);
  const int start = 20000 + static_cast<int>(std::random_device{}() % span);
  for (int port = start;; port = port < last ? port + 1 : 20000) {
    if (free(port) && (!bus || free(port + 10000))) return port;
  }
}

/// Whether process `pid` listens on 127.0.0.1:`port`: the socket /proc/net/tcp lists there is
/// one of its open files. A server of a test's own is used only once this holds, so that a test
/// never talks to another test's server that took the port first.
inline bool listens_on(pid_t pid, int port) {
  char local[32];
  std::snprintf(local, sizeof local, "0100007F:%04X", port);
  std::ifstream table("/proc/net/tcp");
  std::string line;
  std::getline(table, line);  // the header
  while (std::getline(table, line)) {
    std::istringstream fields(line);
    std::string slot, address, remote, state, queues, timer, retransmits, uid, timeout, inode;
    fields >> slot >> address >> remote >> state >> queues >> timer >> retransmits >> uid >> timeout >>
        inode;
    if (address != local || state != "0A") continue;  // 0A: LISTEN
    const std::string socket = "socket:[" + inode + "]";
    std::error_code error;
    for (const auto& fd : fs::directory_iterator("/proc/" + std::to_string(pid) + "/fd", error)) {
      if (fs::read_symlink(fd.path(), error) == socket) return true;
    }
  }
  return false;
}

/// A daemon of the test's own (redis-server, stunnel), up once it listens on its port;
/// killed by the destructor.
class Daemon {
 public:
  Daemon(const fs::path& dir, const std::string& tag, std::vector<std::string> args, int port)
      : process_(dir, tag, std::move(args)), port_(port) {
    for (int i = 0; i < 500; ++i) {
      if (listens_on(process_.pid(), port_)) return;
      std::this_thread::sleep_for(20ms);
    }
    throw std::runtime_error(tag + " did not listen on port " + std::to_string(port_) + ": " +
                             process_.err() + read_text(dir / (tag + ".out")));
  }
  [[nodiscard]] int port() const { return port_; }

 private:
  Process process_;
  int port_;
};

/// A plain hiredis connection, to look into Redis from a test.
class Redis {
 public:
  explicit Redis(const std::string& url) {
    const std::string rest = url.substr(std::string("redis://").size());
    const auto colon = rest.rfind(':');
    const std::string host = rest.substr(0, colon);
    const int port = std::atoi(rest.c_str() + colon + 1);
    context_.reset(redisConnect(host.c_str(), port));
    if (!context_ || context_->err != 0) throw std::runtime_error("cannot connect to " + url);
  }
  struct Free {
    void operator()(redisReply* r) const { freeReplyObject(r); }
  };
  using Reply = std::unique_ptr<redisReply, Free>;
  Reply command(const std::vector<std::string>& args) {
    std::vector<const char*> argv;
    std::vector<std::size_t> lengths;
    for (const std::string& a : args) {
      argv.push_back(a.data());
      lengths.push_back(a.size());
    }
    return Reply(static_cast<redisReply*>(
        redisCommandArgv(context_.get(), static_cast<int>(argv.size()), argv.data(), lengths.data())));
  }
  std::string text(const std::vector<std::string>& args) {
    Reply r = command(args);
    return r && r->str != nullptr ? std::string(r->str, r->len) : std::string();
  }
  /// The next reply that comes on this connection unasked (after MONITOR or SUBSCRIBE); null
  /// once the connection fails.
  Reply next() {
    void* reply = nullptr;
    if (redisGetReply(context_.get(), &reply) != REDIS_OK) return nullptr;
    return Reply(static_cast<redisReply*>(reply));
  }

 private:
  struct FreeContext {
    void operator()(redisContext* c) const { redisFree(c); }
  };
  std::unique_ptr<redisContext, FreeContext> context_;
};

/// In a flat [k, v, k, v...] reply: the value after `key` as text.
inline std::string field_text(const redisReply* reply, const std::string& key) {
  for (std::size_t i = 0; reply != nullptr && i + 1 < reply->elements; i += 2) {
    const redisReply* k = reply->element[i];
    const redisReply* v = reply->element[i + 1];
    if (k->str != nullptr && key == std::string(k->str, k->len)) {
      if (v->type == REDIS_REPLY_INTEGER) return std::to_string(v->integer);
      return v->str != nullptr ? std::string(v->str, v->len) : std::string();
    }
  }
  return {};
}

/// A per-test folder and a pipeline name no other test (or parallel run) uses.
class RedisTest : public ::testing::Test {
 protected:
  void SetUp() override {
    REQUIRE_REDIS();
    const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
    name_ = "t" + std::to_string(::getpid()) + "_" + info->name();
    for (char& c : name_) {
      c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
      if (!std::isalnum(static_cast<unsigned char>(c))) c = '_';
    }
    dir_ = fs::temp_directory_path() / ("micromodels_redis_" + name_);
    fs::remove_all(dir_);
    fs::create_directories(dir_);
  }
  void TearDown() override {
    if (!HasFailure() && !dir_.empty()) fs::remove_all(dir_);
  }
  /// The test pipeline's own keys (`run`, `live`, `dead`, ...), hash tag {P}; and a stage's
  /// stream (partition k of n), hash tag {P:STAGE} (docs/distributed.md, "Keys").
  [[nodiscard]] std::string key(const std::string& what) const {
    return "mm:{" + name_ + "}:" + what;
  }
  [[nodiscard]] std::string stream_key(const std::string& stage, int k = 0, int partitions = 1) const {
    return "mm:{" + name_ + ":" + stage + "}" + (partitions > 1 ? ":p" + std::to_string(k) : "");
  }

  // Waits until `n` consumers of `stage` announced themselves on `redis` (workers load models
  // first).
  void wait_live(Redis& redis, const std::string& stage, int n) const {
    const auto deadline = std::chrono::steady_clock::now() + 30s;
    while (std::chrono::steady_clock::now() < deadline) {
      auto members = redis.command({"ZRANGE", key("live"), "0", "-1"});
      int live = 0;
      for (std::size_t i = 0; members && i < members->elements; ++i) {
        const std::string m(members->element[i]->str, members->element[i]->len);
        if (m.starts_with(stage + "|")) live += std::stoi(m.substr(m.rfind('|') + 1));
      }
      if (live >= n) return;
      std::this_thread::sleep_for(50ms);
    }
    FAIL() << "fewer than " << n << " consumers of '" << stage << "' came up within 30 s";
  }

  std::string name_;
  fs::path dir_;
};

// A Redis of the test's own, to stop and restart: the run must not report success.
class OwnRedis {
 public:
  /// `persistent`: an append-only file synced on every write, so that a restart keeps the data.
  /// `extra`: more options for redis-server (e.g. --maxmemory).
  explicit OwnRedis(const fs::path& dir, bool persistent = false, std::vector<std::string> extra = {})
      : dir_(dir),
        persistent_(persistent),
        extra_(std::move(extra)),
        port_(free_loopback_port(std::ranges::find(extra_, "--cluster-enabled") != extra_.end())) {
    start();
  }
  void start() {
    std::vector<std::string> args =
        persistent_
            ? std::vector<std::string>{"redis-server", "--port", std::to_string(port_), "--bind",
                                       "127.0.0.1", "--save", "", "--appendonly", "yes",
                                       "--appendfsync", "always", "--dir", dir_.string()}
            : std::vector<std::string>{"redis-server", "--port", std::to_string(port_), "--bind",
                                       "127.0.0.1", "--save", "", "--appendonly", "no"};
    args.insert(args.end(), extra_.begin(), extra_.end());
    server_ = std::make_unique<Process>(dir_, "redis" + std::to_string(starts_++), std::move(args));
    for (int i = 0; i < 200; ++i) {
      try {
        if (listens_on(server_->pid(), port_) && Redis(url()).text({"PING"}) == "PONG") return;
      } catch (const std::exception&) {
      }
      std::this_thread::sleep_for(20ms);
    }
    throw std::runtime_error("redis-server did not start on port " + std::to_string(port_));
  }
  void kill() { server_.reset(); }
  // Waits until a run of `pipeline` has started on this Redis (its run id is set).
  void wait_for_run(const std::string& pipeline) {
    Redis r(url());
    for (int i = 0; i < 1000 && r.text({"GET", "mm:{" + pipeline + "}:run"}).empty(); ++i) {
      std::this_thread::sleep_for(20ms);
    }
    std::this_thread::sleep_for(300ms);  // and has sent some packets
  }
  [[nodiscard]] std::string url() const { return "redis://127.0.0.1:" + std::to_string(port_); }

 private:
  fs::path dir_;
  bool persistent_ = false;
  std::vector<std::string> extra_;
  int port_ = 0;
  int starts_ = 0;
  std::unique_ptr<Process> server_;
};

#ifdef MICROMODELS_CLI_PATH
/// The built tool (tests that start it are built only with it: tests/CMakeLists.txt).
inline std::string cli_path() { return MICROMODELS_CLI_PATH; }
#endif

}  // namespace micromodels::redis_testing
