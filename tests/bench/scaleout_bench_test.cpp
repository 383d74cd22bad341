// `micromodels bench scaleout --quick`: its set-up and tear-down on this machine. It makes network
// namespaces and cgroups, so it needs root and a kernel that allows namespaces; elsewhere it
// skips, saying why. Short (a --quick run of about 15 s, one that fails as its workers start, and
// one cut short by Ctrl-C); it checks that the figures are sane, never how fast.
#include <cstdio>
#include <functional>
#include <optional>
#include <set>

#include <nlohmann/json.hpp>

#include "bench/eye_contact_support.hpp"
#include "redis_test_support.hpp"

namespace micromodels {
namespace {

using namespace redis_testing;

// What a shell command printed (stdout), and whether it succeeded.
std::pair<bool, std::string> shell(const std::string& command) {
  std::string out;
  FILE* pipe = ::popen((command + " 2>&1").c_str(), "r");
  if (pipe == nullptr) return {false, ""};
  char buffer[512];
  while (std::fgets(buffer, sizeof buffer, pipe) != nullptr) out += buffer;
  return {::pclose(pipe) == 0, out};
}

// The network namespaces whose names start with `prefix`.
std::set<std::string> namespaces(const std::string& prefix) {
  std::istringstream lines(shell("ip netns list").second);
  std::set<std::string> found;
  for (std::string line; std::getline(lines, line);) {
    const std::string name = line.substr(0, line.find(' '));
    if (name.starts_with(prefix)) found.insert(name);
  }
  return found;
}

// The cgroup the bench of process `pid` makes (v2's unified hierarchy, or v1's cpu one).
std::vector<fs::path> cgroups_of(pid_t pid) {
  std::vector<fs::path> found;
  for (const char* root : {"/sys/fs/cgroup", "/sys/fs/cgroup/cpu", "/sys/fs/cgroup/cpu,cpuacct"}) {
    const fs::path path = fs::path(root) / ("micromodels-scaleout-" + std::to_string(pid));
    if (fs::exists(path)) found.push_back(path);
  }
  return found;
}

// Processes whose command line names a folder under `dir` (the bench's run and workers name
// their outputs in its scratch folder, which is under TMPDIR).
int processes_naming(const fs::path& dir) {
  int count = 0;
  for (const auto& entry : fs::directory_iterator("/proc")) {
    std::ifstream file(entry.path() / "cmdline");
    std::string cmdline((std::istreambuf_iterator<char>(file)), std::istreambuf_iterator<char>());
    if (cmdline.find(dir.string()) != std::string::npos) ++count;
  }
  return count;
}

class ScaleoutBenchTest : public ::testing::Test {
 protected:
  void SetUp() override {
    try {
      (void)bench::media_file("franck.mp4");
    } catch (const std::exception& missing) {
      if (std::getenv("MICROMODELS_REQUIRE_MEDIA") != nullptr) FAIL() << missing.what();
      GTEST_SKIP() << missing.what();
    }
    if (::geteuid() != 0) {
      GTEST_SKIP() << "needs root, for network namespaces and cgroups (runs as uid " << ::geteuid()
                   << ")";
    }
    const std::string probe = "mmscaletest" + std::to_string(::getpid());
    const auto [made, why] = shell("ip netns add " + probe);
    if (!made) GTEST_SKIP() << "network namespaces are not allowed here: ip netns add: " << why;
    shell("ip netns delete " + probe);
    dir_ = fs::temp_directory_path() / ("scaleout_test_" + std::to_string(::getpid()));
    fs::create_directories(dir_);
    // The bench's scratch folder (its outputs, named on its children's command lines) in ours.
    const char* tmpdir = std::getenv("TMPDIR");
    if (tmpdir != nullptr) tmpdir_ = tmpdir;
    ::setenv("TMPDIR", dir_.c_str(), 1);
  }
  void TearDown() override {
    if (dir_.empty()) return;
    if (tmpdir_) {
      ::setenv("TMPDIR", tmpdir_->c_str(), 1);
    } else {
      ::unsetenv("TMPDIR");
    }
    fs::remove_all(dir_);
  }

  // Starts the bench, and records the namespaces and cgroups it makes until it exits or
  // `until(seen)` is true.
  struct Watch {
    std::set<std::string> seen;
    bool cgroup_seen = false;
  };
  static Watch watch(const Process& bench, const std::function<bool(const Watch&)>& until) {
    Watch w;
    const std::string prefix = "mmscale" + std::to_string(bench.pid()) + "-";
    const auto deadline = std::chrono::steady_clock::now() + 60s;
    while (std::chrono::steady_clock::now() < deadline && !until(w)) {
      for (const std::string& name : namespaces(prefix)) w.seen.insert(name.substr(prefix.size()));
      w.cgroup_seen = w.cgroup_seen || !cgroups_of(bench.pid()).empty();
      siginfo_t info{};  // exited? (left to be reaped by wait())
      if (::waitid(P_PID, static_cast<id_t>(bench.pid()), &info, WEXITED | WNOHANG | WNOWAIT) !=
              0 ||
          info.si_pid != 0) {
        break;
      }
      std::this_thread::sleep_for(50ms);
    }
    return w;
  }

  fs::path dir_;
  std::optional<std::string> tmpdir_;
};

TEST_F(ScaleoutBenchTest, QuickRunMakesItsHostsMeasuresAndRemovesEverything) {
  // A leftover of a bench that was killed (SIGKILL, no tear-down): removed at the next start.
  pid_t dead = 0;
  {
    Process gone(dir_, "gone", {"true"});
    dead = gone.pid();
    EXPECT_EQ(gone.wait(10s).exit_code, 0);
  }
  const std::string leftover = "mmscale" + std::to_string(dead) + "-sw";
  ASSERT_TRUE(shell("ip netns add " + leftover).first);

  const fs::path json = dir_ / "scaleout.json";
  Process bench(dir_, "bench",
                {cli_path(), "bench", "scaleout", "--quick", "--json", json.string()});
  const pid_t pid = bench.pid();  // wait() forgets it
  const Watch w = watch(bench, [](const Watch&) { return false; });
  const Result result = bench.wait(90s);
  ASSERT_EQ(result.exit_code, 0) << result.out << result.err;

  EXPECT_EQ(w.seen, (std::set<std::string>{"sw", "redis", "run", "w1", "w2"}));
  EXPECT_TRUE(w.cgroup_seen);
  EXPECT_TRUE(namespaces("mmscale" + std::to_string(pid) + "-").empty());
  EXPECT_TRUE(namespaces(leftover).empty()) << "the dead bench's namespace is still there";
  EXPECT_TRUE(cgroups_of(pid).empty());
  EXPECT_EQ(processes_naming(dir_), 0);

  const auto figures = nlohmann::json::parse(read_text(json));
  EXPECT_EQ(figures["mode"], "netns");
  EXPECT_NE(result.out.find("mode netns"), std::string::npos) << result.out;
  ASSERT_FALSE(figures["cpu_quota"].is_null()) << figures.dump(2);
  const double quota = figures["cpu_quota"]["cores_per_worker"].get<double>();
  ASSERT_EQ(figures["cases"].size(), 2u) << figures.dump(2);
  const double frame = 360.0 * 288 * 3;  // franck.mp4's raw frame
  for (const auto& c : figures["cases"]) {
    SCOPED_TRACE(c.dump());
    EXPECT_GT(c["frames"].get<double>(), 0);
    EXPECT_GT(c["fps"].get<double>(), 0);
    // Entries carry fields and references, not frames; the frame is stored about twice (the
    // input, and the blended result) whatever the worker count.
    EXPECT_GT(c["bytes_per_frame_per_hop"].get<double>(), 50);
    EXPECT_LT(c["bytes_per_frame_per_hop"].get<double>(), 10000);
    EXPECT_GT(c["image_bytes_per_frame"].get<double>(), frame);
    EXPECT_LT(c["image_bytes_per_frame"].get<double>(), 4 * frame);
    EXPECT_GT(c["redis_bytes_in_per_frame"].get<double>(), frame);
    EXPECT_GT(c["redis_cpu_ms_per_frame"].get<double>(), 0);
    EXPECT_GT(c["redis_commands_per_frame"].get<double>(), 10);
    // The cap holds: no worker used more than its quota (CPU seconds over the run's wall time).
    for (const auto& used : c["worker_cores_used"]) {
      EXPECT_GT(used.get<double>(), 0);
      EXPECT_LE(used.get<double>(), quota * 1.2);
    }
    EXPECT_GE(c["worker_cores_idle"].get<double>(), 0);
    EXPECT_LE(c["worker_cores_idle"].get<double>(), quota * 1.2);
  }
  // The model on paper for two workers: between one worker's rate (everything per_stream) and
  // twice it (nothing per_stream, no fetch cost), from figures the run measured.
  EXPECT_GT(figures["calibration_360p"]["client_us_per_image_get"].get<double>(), 0);
  const double model = figures["model_speedup_360p_2"].get<double>();
  EXPECT_GT(model, 1.0);
  EXPECT_LT(model, 2.0);
  EXPECT_NE(result.out.find("the model"), std::string::npos) << result.out;
}

TEST_F(ScaleoutBenchTest, AFailedRunRemovesEverythingAndSaysWhy) {
  // The bench reads pipelines/eye_contact.yaml from the current folder first: here one whose
  // landmarks stage has a parameter no such stage takes, so that every worker stops at start.
  std::string yaml = read_text(fs::path(MICROMODELS_SOURCE_DIR) / "pipelines/eye_contact.yaml");
  const std::string stage = "type: face.landmarks68\n";
  ASSERT_NE(yaml.find(stage), std::string::npos);
  yaml.replace(yaml.find(stage), stage.size(), stage + "    params: { no_such_param: 1 }\n");
  fs::create_directories(dir_ / "pipelines");
  write_text(dir_ / "pipelines/eye_contact.yaml", yaml);
  const fs::path cwd = fs::current_path();
  fs::current_path(dir_);
  Process bench(dir_, "bench", {cli_path(), "bench", "scaleout", "--quick"});
  fs::current_path(cwd);
  const pid_t pid = bench.pid();  // wait() forgets it
  const Watch w = watch(bench, [](const Watch&) { return false; });
  const Result result = bench.wait(90s);
  EXPECT_EQ(w.seen.count("w1"), 1u);
  EXPECT_EQ(result.exit_code, 1) << result.out << result.err;
  EXPECT_NE(result.err.find("no_such_param"), std::string::npos) << result.err;
  EXPECT_TRUE(namespaces("mmscale" + std::to_string(pid) + "-").empty());
  EXPECT_TRUE(cgroups_of(pid).empty());
  EXPECT_EQ(processes_naming(dir_), 0);
}

TEST_F(ScaleoutBenchTest, CtrlCRemovesItsNamespacesCgroupsAndProcesses) {
  Process bench(dir_, "bench", {cli_path(), "bench", "scaleout", "--quick"});
  const pid_t pid = bench.pid();  // wait() forgets it
  // Interrupted once the workers' hosts exist: Redis runs, the workers may be loading.
  const Watch w = watch(bench, [](const Watch& seen) { return seen.seen.count("w2") > 0; });
  ASSERT_EQ(w.seen.count("w2"), 1u) << bench.err();
  std::this_thread::sleep_for(1s);
  bench.signal(SIGINT);
  const Result result = bench.wait(30s);
  EXPECT_EQ(result.exit_code, 130) << result.out << result.err;
  EXPECT_NE(result.err.find("interrupted"), std::string::npos) << result.err;
  EXPECT_TRUE(namespaces("mmscale" + std::to_string(pid) + "-").empty());
  EXPECT_TRUE(cgroups_of(pid).empty());
  EXPECT_EQ(processes_naming(dir_), 0);
}

}  // namespace
}  // namespace micromodels
