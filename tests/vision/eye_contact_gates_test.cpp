// The eye-contact pipeline on clips made for its gates and for bad input: a real blink, a real
// head turn of more than 25 degrees and a face that leaves the picture (the output must be the
// input once the correction has faded, within fade_frames), and a grayscale video, a face too
// small to correct and one eye hidden (every frame comes through; what cannot be corrected
// passes unchanged, its reason counted). The clips are cut from the sample videos and written
// losslessly, so that "unchanged" is bit for bit.
#include <cstdio>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include <gtest/gtest.h>
#include <opencv2/imgproc.hpp>
#include <opencv2/videoio.hpp>

#include "micromodels/micromodels.hpp"

#include "bench/eye_contact_support.hpp"
#include "cache_files.hpp"
#include "vision/stages/image_mat.hpp"

namespace {

namespace fs = std::filesystem;
namespace mm = micromodels;
namespace mb = micromodels::bench;
namespace mv = micromodels::vision;

constexpr int kFadeFrames = 6;  // gaze.estimate's default

// What came out of the pipeline, frame by frame.
struct Seen {
  std::string reason;
  double head_yaw = 0;
  double strength = 0;
  bool patched = false;
  double max_change = 0;  // largest pixel change against the input frame
};

class Recorder final : public mm::Stage {
 public:
  explicit Recorder(std::shared_ptr<std::map<std::uint64_t, Seen>> seen) : seen_(std::move(seen)) {}
  void process(mm::Packet p, std::vector<mm::Packet>& /*out*/) override {
    Seen s;
    if (const auto* r = p.find("gaze_reason")) s.reason = std::get<std::string>(*r);
    if (const auto* g = p.find("gaze_strength")) s.strength = std::get<double>(*g);
    if (const auto* h = p.find("head_pose")) s.head_yaw = std::get<mm::Scalars>(*h)[1];
    s.patched = p.has("generated");
    const cv::Mat out = mv::to_mat(p.get<mm::Image>("frame"));
    const cv::Mat in = mv::to_mat(p.get<mm::Image>("input_frame"));
    s.max_change = cv::norm(out, in, cv::NORM_INF);
    std::lock_guard lock(mutex_);
    (*seen_)[p.seq] = s;
  }

 private:
  std::shared_ptr<std::map<std::uint64_t, Seen>> seen_;
  std::mutex mutex_;
};

class EyeContactGates : public ::testing::Test {
 protected:
  // Frames [first, first + count) of a sample video, each passed through `edit`.
  std::vector<cv::Mat> cut(const char* video, int first, int count,
                           const std::function<void(cv::Mat&, int)>& edit = {}) {
    const fs::path path = mv::media_dir() / video;
    if (!fs::exists(path)) return {};
    cv::VideoCapture capture(path.string(), cv::CAP_FFMPEG);
    std::vector<cv::Mat> frames;
    cv::Mat frame;
    for (int i = 0; capture.read(frame) && i < first + count; ++i) {
      if (i < first) continue;
      cv::Mat kept = frame.clone();
      if (edit) edit(kept, i - first);
      frames.push_back(kept);
    }
    return frames;
  }

  // Writes the frames losslessly and runs pipelines/eye_contact.yaml on them.
  std::map<std::uint64_t, Seen> run(const std::vector<cv::Mat>& frames, const std::string& name) {
    const fs::path clip = scratch_.path() / (name + ".mkv");
    cv::VideoWriter writer(clip.string(), cv::CAP_FFMPEG, cv::VideoWriter::fourcc('F', 'F', 'V', '1'), 25,
                           frames.front().size(), true);
    EXPECT_TRUE(writer.isOpened());
    for (const cv::Mat& f : frames) writer.write(f);
    writer.release();
    mb::ensure_vision_stages();
    mm::Pipeline pipeline = mm::Pipeline::from_yaml_file(mb::find_repo_file("pipelines/eye_contact.yaml"));
    fs::create_directories(scratch_.path() / name);
    (void)mb::retarget_pipeline(pipeline, clip, 0, scratch_.path() / name);
    auto seen = std::make_shared<std::map<std::uint64_t, Seen>>();
    mm::Registry registry = mm::Registry::global();
    mm::StageType recorder;
    recorder.name = "test.recorder";
    recorder.info = [](const mm::Params&) {
      return mm::StageInfo{.reads = {"frame", "input_frame"},
                           .optional_reads = {"gaze_reason", "gaze_strength", "generated", "head_pose"}};
    };
    recorder.make = [seen](const mm::Params&) -> std::unique_ptr<mm::Stage> {
      return std::make_unique<Recorder>(seen);
    };
    registry.add(std::move(recorder));
    mm::StageConfig stage;
    stage.name = "recorder";
    stage.type = "test.recorder";
    stage.inputs = {"substitute"};
    pipeline.add(stage);
    mm::Runner runner(pipeline, registry);
    runner.start();
    runner.wait();
    const mm::MetricsSnapshot metrics = runner.metrics();
    for (const mm::StageMetrics& s : metrics.stages) EXPECT_EQ(s.failed, 0u) << s.name;
    EXPECT_EQ(seen->size(), frames.size()) << "every frame comes out";
    return *seen;
  }

  // For every run of frames that `gated` says must get no correction: once fade_frames have
  // passed, output = input. Returns how many frames were gated.
  static int check_gated(const std::map<std::uint64_t, Seen>& seen, const std::string& reason,
                         const std::function<bool(const Seen&)>& gated_if = {}) {
    const auto gated = [&](const Seen& s) { return gated_if ? gated_if(s) : s.reason == reason; };
    int run_length = 0, count = 0;
    for (const auto& [seq, s] : seen) {
      run_length = gated(s) ? run_length + 1 : 0;
      if (!gated(s)) continue;
      ++count;
      if (run_length > kFadeFrames) {
        EXPECT_EQ(s.strength, 0.0) << reason << " frame " << seq;
        EXPECT_FALSE(s.patched) << reason << " frame " << seq;
        EXPECT_EQ(s.max_change, 0.0) << reason << " frame " << seq;
      }
    }
    return count;
  }

  static int count(const std::map<std::uint64_t, Seen>& seen, const std::string& reason) {
    int n = 0;
    for (const auto& [seq, s] : seen) n += s.reason == reason ? 1 : 0;
    return n;
  }

  static std::string reasons(const std::map<std::uint64_t, Seen>& seen) {
    std::map<std::string, int> count;
    for (const auto& [seq, s] : seen) {
      ++count[s.reason];
      if (std::getenv("MICROMODELS_TEST_VERBOSE")) std::printf("%llu %s %.2f %d %.0f\n", static_cast<unsigned long long>(seq), s.reason.c_str(), s.strength, s.patched, s.max_change);
    }
    std::string text;
    for (const auto& [r, n] : count) text += r + " " + std::to_string(n) + ", ";
    return text;
  }

  const mb::ScratchDir scratch_{"micromodels-eye-gates-test"};
};

#define REQUIRE_FRAMES(frames)                                                         \
  if ((frames).empty()) {                                                              \
    if (std::getenv("MICROMODELS_REQUIRE_MEDIA") != nullptr) FAIL() << "no media";     \
    GTEST_SKIP() << "sample media missing; run: scripts/fetch_media.sh";                \
  }

}  // namespace

// franck.mp4 from frame 180: the eyes open, a long blink (squint), open again.
TEST_F(EyeContactGates, ABlinkFadesTheCorrectionOutAndLeavesTheEyesAlone) {
  const std::vector<cv::Mat> frames = cut("franck.mp4", 180, 120);
  REQUIRE_FRAMES(frames);
  const auto seen = run(frames, "blink");
  std::printf("[ gates     ] blink clip: %s\n", reasons(seen).c_str());
  EXPECT_GE(check_gated(seen, "blink"), 2 * kFadeFrames);
  EXPECT_GE(count(seen, "ok"), 20);  // and corrected around it
}

// franck.mp4's first 120 frames: he smiles broadly from about frame 25 to 95 (blinking at 60-73),
// which the lids alone read as a look 10-35 degrees down. Gated as a smile, the smiling eyes are
// left as they are once the fade is over (32-90: output = input), and the frames before and
// after it are corrected. Frames taken from a run of this test.
TEST_F(EyeContactGates, ASmileFadesTheCorrectionOut) {
  const std::vector<cv::Mat> frames = cut("franck.mp4", 0, 120);
  REQUIRE_FRAMES(frames);
  const auto seen = run(frames, "smile");
  std::printf("[ gates     ] smile clip: %s\n", reasons(seen).c_str());
  EXPECT_GE(count(seen, "smiling"), 40);
  for (std::uint64_t seq = 32; seq <= 90; ++seq) {
    const Seen& s = seen.at(seq);
    EXPECT_TRUE(s.reason == "smiling" || s.reason == "blink") << seq << " " << s.reason;
    EXPECT_LT(s.strength, 1e-3) << seq;  // the smile's fade is smooth: 0 to within rounding
    EXPECT_FALSE(s.patched) << seq;
    EXPECT_EQ(s.max_change, 0.0) << seq;
  }
  for (const std::uint64_t seq : {10u, 20u, 100u, 110u}) {  // corrected before and after
    EXPECT_EQ(seen.at(seq).reason, "ok") << seq;
    EXPECT_EQ(seen.at(seq).strength, 1.0) << seq;
  }
}

// franck.mp4 from frame 4270: the head turns more than 25 degrees for about two seconds.
TEST_F(EyeContactGates, AHeadTurnedFarFadesTheCorrectionOut) {
  const std::vector<cv::Mat> frames = cut("franck.mp4", 4270, 120);
  REQUIRE_FRAMES(frames);
  const auto seen = run(frames, "turn");
  std::printf("[ gates     ] head turn clip: %s\n", reasons(seen).c_str());
  // Beyond 25 degrees of yaw the correction is gone (from 20 it fades, reason head_turned too).
  EXPECT_GE(check_gated(seen, "head_turned", [](const Seen& s) { return std::abs(s.head_yaw) > 25; }),
            2 * kFadeFrames);
}

// franck.mp4's first 90 frames with frames 30..69 moved 300 px to the left: the face leaves.
TEST_F(EyeContactGates, NoFaceMeansNoChange) {
  const std::vector<cv::Mat> frames = cut("franck.mp4", 0, 90, [](cv::Mat& f, int i) {
    if (i < 30 || i >= 70) return;
    const cv::Mat moved = (cv::Mat_<double>(2, 3) << 1, 0, -300, 0, 1, 0);
    cv::warpAffine(f, f, moved, f.size(), cv::INTER_NEAREST, cv::BORDER_REPLICATE);
  });
  REQUIRE_FRAMES(frames);
  const auto seen = run(frames, "gone");
  std::printf("[ gates     ] face leaves: %s\n", reasons(seen).c_str());
  EXPECT_GE(check_gated(seen, "no_face"), 30);
}

// Bad input: none of these may crash, hang or lose a frame.
TEST_F(EyeContactGates, AGrayscaleVideoIsCorrectedLikeAColourOne) {
  // Frames 100-159 of franck.mp4: no smile or blink in them (his first smile is at 27-93).
  const std::vector<cv::Mat> frames = cut("franck.mp4", 100, 60, [](cv::Mat& f, int) {
    cv::cvtColor(f, f, cv::COLOR_BGR2GRAY);
    cv::cvtColor(f, f, cv::COLOR_GRAY2BGR);
  });
  REQUIRE_FRAMES(frames);
  const auto seen = run(frames, "gray");
  std::printf("[ gates     ] grayscale: %s\n", reasons(seen).c_str());
  EXPECT_GE(count(seen, "ok"), 30);
}

TEST_F(EyeContactGates, AFaceTooSmallPassesUnchanged) {
  // A quarter of the size: the eyes are 5 px wide, below min_eye_px (12).
  const std::vector<cv::Mat> frames = cut("franck.mp4", 0, 40, [](cv::Mat& f, int) {
    cv::Mat small;
    cv::resize(f, small, cv::Size(), 0.25, 0.25, cv::INTER_AREA);
    f = cv::Mat(f.size(), f.type(), cv::Scalar::all(128));
    small.copyTo(f(cv::Rect(0, 0, small.cols, small.rows)));
  });
  REQUIRE_FRAMES(frames);
  const auto seen = run(frames, "small");
  std::printf("[ gates     ] small face: %s\n", reasons(seen).c_str());
  for (const auto& [seq, s] : seen) {
    EXPECT_TRUE(s.reason == "eyes_small" || s.reason == "no_face") << seq << ": " << s.reason;
    EXPECT_EQ(s.max_change, 0.0) << seq;
  }
}

TEST_F(EyeContactGates, OneEyeHiddenPassesUnchanged) {
  // A skin-coloured patch over the subject's right eye (the left of the picture) of franck.mp4,
  // whose face keeps still enough in its first 60 frames for one fixed patch.
  const std::vector<cv::Mat> frames = cut("franck.mp4", 0, 60, [](cv::Mat& f, int) {
    const cv::Scalar skin = cv::mean(f(cv::Rect(150, 160, 16, 12)));
    cv::ellipse(f, cv::Point(171, 133), cv::Size(24, 12), 0, 0, 360, skin, cv::FILLED);
  });
  REQUIRE_FRAMES(frames);
  const auto seen = run(frames, "hidden");
  std::printf("[ gates     ] one eye hidden: %s\n", reasons(seen).c_str());
  EXPECT_GE(check_gated(seen, "eye_hidden") + check_gated(seen, "no_face"), 40);
}
