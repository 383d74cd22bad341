// The flagship pipeline across processes: pipelines/eye_contact.yaml on a slice of the sample
// video, run embedded and then on Redis by three worker processes (the run serving no stage),
// gives the same decoded frames. Needs the vision stages and the fetched media; without them it
// skips (fails with MICROMODELS_REQUIRE_MEDIA set, as the test script does).
#include "redis_test_support.hpp"

#ifdef MICROMODELS_HAS_VISION

#include <opencv2/core.hpp>
#include <opencv2/imgcodecs.hpp>
#include <opencv2/videoio.hpp>

#include "bench/eye_contact_support.hpp"

namespace micromodels {
namespace {

using namespace redis_testing;

constexpr int kFrames = 24;

std::vector<cv::Mat> decode(const fs::path& video) {
  std::vector<cv::Mat> frames;
  cv::VideoCapture capture(video.string());
  for (cv::Mat frame; capture.read(frame);) frames.push_back(frame.clone());
  return frames;
}

class EyeContactRedisTest : public RedisTest {};

TEST_F(EyeContactRedisTest, ThreeWorkerProcessesGiveTheSameFramesAsTheEmbeddedRun) {
  fs::path video;
  try {
    video = bench::media_file("franck.mp4");
  } catch (const std::exception& missing) {
    if (std::getenv("MICROMODELS_REQUIRE_MEDIA") != nullptr) FAIL() << missing.what();
    GTEST_SKIP() << missing.what();
  }
  // The repository's pipeline under a name of this test's own.
  std::string yaml = read_text(fs::path(MICROMODELS_SOURCE_DIR) / "pipelines/eye_contact.yaml");
  const std::string from = "pipeline: eye_contact\n";
  ASSERT_NE(yaml.find(from), std::string::npos);
  yaml.replace(yaml.find(from), from.size(), "pipeline: " + name_ + "\n");
  const fs::path file = dir_ / "eye_contact.yaml";
  write_text(file, yaml);
  const auto sets = [&](const std::string& tag) {
    return std::vector<std::string>{
        "--set", "source.path=" + video.string(), "--set", "source.max_frames=" + std::to_string(kFrames),
        "--set", "sink.path=" + (dir_ / (tag + ".mp4")).string(),
        "--set", "side_by_side.path=" + (dir_ / (tag + "_sbs.mp4")).string(),
        "--set", "side_by_side.contact_sheet=" + (dir_ / (tag + ".png")).string()};
  };
  const auto with = [](std::vector<std::string> a, const std::vector<std::string>& b) {
    a.insert(a.end(), b.begin(), b.end());
    return a;
  };

  const Result embedded =
      Process(dir_, "embedded", with({cli_path(), "run", file.string(), "-q"}, sets("embedded")))
          .wait(120s);
  ASSERT_EQ(embedded.exit_code, 0) << embedded.err;

  // Three workers, each serving part of the chain; the run only feeds and collects.
  std::vector<std::unique_ptr<Process>> workers;
  const std::vector<std::string> parts = {"identify,track,landmarks",
                                          "iris_schedule,iris,iris_carry,refine,smooth,gaze",
                                          "generate,substitute"};
  for (std::size_t i = 0; i < parts.size(); ++i) {
    workers.push_back(std::make_unique<Process>(
        dir_, "worker" + std::to_string(i),
        with({cli_path(), "worker", file.string(), "--broker", redis_url(), "--stages", parts[i]},
             sets("worker"))));
  }
  {
    Redis redis(redis_url());
    const auto deadline = std::chrono::steady_clock::now() + 60s;
    for (;;) {
      auto members = redis.command({"ZRANGE", key("live"), "0", "-1"});
      if (members && members->elements >= 11) break;  // one per served stage
      ASSERT_LT(std::chrono::steady_clock::now(), deadline) << "workers did not come up";
      std::this_thread::sleep_for(50ms);
    }
  }
  const Result distributed =
      Process(dir_, "distributed",
              with({cli_path(), "run", file.string(), "--broker", redis_url(), "--serve", "none", "-q"},
                   sets("redis")))
          .wait(120s);
  ASSERT_EQ(distributed.exit_code, 0) << distributed.err;
  EXPECT_NE(distributed.err.find("serving here: none"), std::string::npos) << distributed.err;

  for (const std::string& output : {std::string(""), std::string("_sbs")}) {
    // The same frame rate too: `fps` travels to the sinks, which declare it an optional read.
    EXPECT_EQ(cv::VideoCapture((dir_ / ("embedded" + output + ".mp4")).string()).get(cv::CAP_PROP_FPS),
              cv::VideoCapture((dir_ / ("redis" + output + ".mp4")).string()).get(cv::CAP_PROP_FPS))
        << output;
    const auto a = decode(dir_ / ("embedded" + output + ".mp4"));
    const auto b = decode(dir_ / ("redis" + output + ".mp4"));
    ASSERT_EQ(a.size(), static_cast<std::size_t>(kFrames)) << output;
    ASSERT_EQ(b.size(), a.size()) << output;
    for (std::size_t i = 0; i < a.size(); ++i) {
      ASSERT_EQ(a[i].size(), b[i].size());
      EXPECT_EQ(cv::norm(a[i], b[i], cv::NORM_INF), 0.0) << output << " frame " << i;
    }
  }
  // The contact sheet draws the landmarks and irises, which reach the side-by-side sink only
  // because it declares them (optional reads): the same sheet, pixel for pixel.
  const cv::Mat sheet_embedded = cv::imread((dir_ / "embedded.png").string());
  const cv::Mat sheet_redis = cv::imread((dir_ / "redis.png").string());
  ASSERT_FALSE(sheet_embedded.empty());
  ASSERT_EQ(sheet_embedded.size(), sheet_redis.size());
  EXPECT_EQ(cv::norm(sheet_embedded, sheet_redis, cv::NORM_INF), 0.0);
}

}  // namespace
}  // namespace micromodels

#else

TEST(EyeContactRedisTest, NeedsVision) { GTEST_SKIP() << "built without the vision stages"; }

#endif
