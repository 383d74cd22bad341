// Tests of the eye-contact stages: face.track, face.smooth, image.blend, the iris schedule, the
// One-Euro filter, and how every eye stage copes with degenerate input. The eye model, the lid
// measurement, the rendering and the gaze stages have their own files. Synthetic data pins each
// behaviour down exactly; real data (astronaut.png, franck.mp4 and the models from
// scripts/fetch_media.sh) checks that it holds on faces. Without the cache the real-data tests
// skip and print the setup command; with MICROMODELS_REQUIRE_MEDIA=1 they fail instead.
// About 890 lines: one test per behaviour of the stages listed, each with its inputs.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <functional>
#include <numeric>
#include <optional>
#include <random>
#include <string>
#include <vector>

#include <gtest/gtest.h>
#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>
#include <opencv2/videoio.hpp>

#include "micromodels/packet.hpp"
#include "micromodels/registry.hpp"
#include "micromodels/stage_harness.hpp"

#include "cache_files.hpp"
#include "eye_test_support.hpp"
#include "vision/models/blaze_face.hpp"
#include "vision/models/hog_face_detector.hpp"
#include "vision/models/iris_model.hpp"
#include "vision/models/face_mesh.hpp"
#include "vision/models/landmarks68.hpp"
#include "vision/models/model_files.hpp"
#include "vision/stages/eye_fields.hpp"
#include "vision/stages/image_mat.hpp"
#include "vision/stages/iris_schedule.hpp"
#include "vision/stages/one_euro_filter.hpp"
#include "vision/stages/stage_registration.hpp"

namespace mm = micromodels;
namespace mv = micromodels::vision;
namespace fs = std::filesystem;

namespace {

using namespace eye_test;
fs::path blaze_model() { return model(mv::BlazeFace::model_file(mv::BlazeFace::Variant::front)); }

}  // namespace

// =============================================================================================
// One-Euro filter

TEST(OneEuroFilter, ReducesJitterOfANoisyConstant) {
  mv::OneEuroFilter filter({.min_cutoff = 1.0, .beta = 0.0, .d_cutoff = 1.0});
  std::mt19937 random(7);
  std::normal_distribution<double> noise(0.0, 1.0);
  std::vector<double> in, out;
  for (int i = 0; i < 400; ++i) {
    const double x = 10.0 + noise(random);
    const double y = filter.filter(x, i * kFrameNs);
    if (i >= 50) {  // past the start-up transient
      in.push_back(x);
      out.push_back(y);
    }
  }
  const double mean =
      std::accumulate(out.begin(), out.end(), 0.0) / static_cast<double>(out.size());
  EXPECT_NEAR(mean, 10.0, 0.15);
  // An exponential low-pass with alpha ~0.2 keeps sqrt(alpha / (2 - alpha)) ~ 1/3 of white noise.
  EXPECT_LT(stddev(out), 0.45 * stddev(in)) << stddev(out) << " vs " << stddev(in);
}

TEST(OneEuroFilter, FollowsAStepAndBetaCutsTheLag) {
  mv::OneEuroFilter slow({.min_cutoff = 1.0, .beta = 0.0});
  mv::OneEuroFilter fast({.min_cutoff = 1.0, .beta = 0.5});
  double prev_fast = 0;
  for (int i = 0; i < 100; ++i) {
    const double x = i < 20 ? 0.0 : 10.0;
    const double s = slow.filter(x, i * kFrameNs);
    const double f = fast.filter(x, i * kFrameNs);
    EXPECT_LE(f, 10.0 + 1e-9);       // no overshoot
    EXPECT_GE(f, prev_fast - 1e-9);  // monotone on a monotone input
    prev_fast = f;
    if (i == 22) {
      EXPECT_GT(f, s + 2.0) << "the speed term should open the cutoff on a step";
    }
    if (i == 30) {
      EXPECT_GT(f, 9.5);  // 0.4 s after the step
    }
    if (i == 99) {
      EXPECT_NEAR(f, 10.0, 1e-3);
      EXPECT_NEAR(s, 10.0, 0.01);
    }
  }
}

TEST(OneEuroFilter, SurvivesTimestampsThatDoNotAdvance) {
  mv::OneEuroFilter filter({.min_cutoff = 1.0, .beta = 0.1});
  double y = 0;
  for (int i = 0; i < 50; ++i) y = filter.filter(5.0, 0);  // a source without times
  EXPECT_TRUE(std::isfinite(y));
  EXPECT_NEAR(y, 5.0, 1e-9);
  y = filter.filter(6.0, -100);  // time going backwards: the fallback step, not a NaN
  EXPECT_TRUE(std::isfinite(y));
  EXPECT_GT(y, 5.0);
  EXPECT_LT(y, 6.0);
  filter.reset();
  EXPECT_EQ(filter.filter(42.0, 0), 42.0);  // first value after reset passes through
}

TEST(OneEuroFilter, TwoDimensionalFilterSmoothsBothAxesAlike) {
  mv::OneEuroFilter2D filter({.min_cutoff = 1.0, .beta = 0.0});
  std::mt19937 random(11);
  std::normal_distribution<float> noise(0.0f, 1.0f);
  std::vector<double> xs, ys;
  for (int i = 0; i < 300; ++i) {
    const mm::Point p = filter.filter({50 + noise(random), 80 + noise(random)}, i * kFrameNs);
    if (i >= 50) {
      xs.push_back(p.x);
      ys.push_back(p.y);
    }
  }
  EXPECT_LT(stddev(xs), 0.45);
  EXPECT_LT(stddev(ys), 0.45);
}

// =============================================================================================
// image.blend

namespace {

mm::Packet blend_packet(const cv::Mat& frame, const cv::Mat& patch, const cv::Mat& mask,
                        cv::Rect2f roi) {
  mm::Packet p = frame_packet(frame, 0);
  p.set("generated", mv::to_image(patch));
  p.set("generated_mask", mv::to_image(mask));
  p.set("generated_roi", mm::Rects{to_rect(roi)});
  return p;
}

cv::Mat noise_image(cv::Size size, int type, unsigned seed) {
  cv::Mat m(size, type);
  cv::theRNG().state = seed;
  cv::randu(m, cv::Scalar::all(0), cv::Scalar::all(256));
  return m;
}

}  // namespace

TEST(ImageBlend, PixelsOutsideTheMaskAreBitIdentical) {
  const cv::Mat frame = noise_image({360, 288}, CV_8UC3, 1);
  const cv::Mat patch = noise_image({60, 30}, CV_8UC3, 2);
  cv::Mat mask = cv::Mat::zeros(30, 60, CV_8UC1);
  cv::ellipse(mask, {30, 15}, {20, 8}, 0, 0, 360, cv::Scalar(255), cv::FILLED);
  cv::GaussianBlur(mask, mask, {7, 7}, 0);
  const cv::Rect roi(100, 120, 60, 30);
  auto blend = harness("image.blend");
  const mm::Packet out = single(blend.process(blend_packet(frame, patch, mask, roi)));
  const cv::Mat result = mat(out, "frame");
  const cv::Mat input = mat(out, "input_frame");
  // input_frame is the untouched original.
  EXPECT_EQ(cv::norm(input, frame, cv::NORM_INF), 0);
  // Expected: the frame everywhere, the exact rounded blend inside the ROI where alpha > 0.
  cv::Mat expected = frame.clone();
  int blended = 0;
  for (int y = 0; y < roi.height; ++y) {
    for (int x = 0; x < roi.width; ++x) {
      const int a = mask.at<std::uint8_t>(y, x);
      if (a == 0) continue;
      ++blended;
      auto& e = expected.at<cv::Vec3b>(y + roi.y, x + roi.x);
      const auto& g = patch.at<cv::Vec3b>(y, x);
      for (int k = 0; k < 3; ++k)
        e[k] = static_cast<std::uint8_t>((e[k] * (255 - a) + g[k] * a + 127) / 255);
    }
  }
  ASSERT_GT(blended, 100);
  EXPECT_EQ(cv::norm(result, expected, cv::NORM_INF), 0);
  // Where alpha is 0 (inside or outside the ROI): bit-identical to the input frame.
  cv::Mat alpha_full = cv::Mat::zeros(frame.size(), CV_8UC1);
  mask.copyTo(alpha_full(roi));
  const cv::Mat changed = any_change(result, frame);
  EXPECT_EQ(cv::countNonZero(changed & (alpha_full == 0)), 0);
  // Where alpha is 255: the patch exactly.
  cv::Mat full = (mask == 255);
  const cv::Mat patch_changed = any_change(result(roi), patch);
  EXPECT_EQ(cv::countNonZero(patch_changed & full), 0);
  // The input buffer was not written to (buffers are shared and immutable).
  EXPECT_EQ(cv::norm(mat(out, "input_frame"), frame, cv::NORM_INF), 0);
  EXPECT_NE(out.get<mm::Image>("frame").pixels.data(),
            out.get<mm::Image>("input_frame").pixels.data());
}

TEST(ImageBlend, ClipsARoiPartlyOutsideTheFrame) {
  const cv::Mat frame = noise_image({40, 30}, CV_8UC3, 3);
  const cv::Mat patch(20, 20, CV_8UC3, cv::Scalar(1, 2, 3));
  const cv::Mat mask(20, 20, CV_8UC1, cv::Scalar(255));
  auto blend = harness("image.blend");
  for (const cv::Rect roi : {cv::Rect(-10, -5, 20, 20), cv::Rect(30, 20, 20, 20)}) {
    const mm::Packet out = single(blend.process(blend_packet(frame, patch, mask, roi)));
    const cv::Mat result = mat(out, "frame");
    const cv::Rect inside = roi & cv::Rect(0, 0, 40, 30);
    cv::Mat expected = frame.clone();
    expected(inside).setTo(cv::Scalar(1, 2, 3));
    EXPECT_EQ(cv::norm(result, expected, cv::NORM_INF), 0) << roi;
  }
  // Entirely outside: the frame is passed on as is.
  const mm::Packet out =
      single(blend.process(blend_packet(frame, patch, mask, cv::Rect2f(100, 100, 20, 20))));
  EXPECT_EQ(out.get<mm::Image>("frame").pixels.data(),
            out.get<mm::Image>("input_frame").pixels.data());
}

TEST(ImageBlend, WithoutGeneratedTheFramePassesWithoutACopy) {
  auto blend = harness("image.blend");
  mm::Packet in = frame_packet(noise_image({360, 288}, CV_8UC3, 4), 3);
  const std::byte* pixels = in.get<mm::Image>("frame").pixels.data();
  const mm::Packet out = single(blend.process(std::move(in)));
  EXPECT_EQ(out.get<mm::Image>("frame").pixels.data(), pixels);
  EXPECT_EQ(out.get<mm::Image>("input_frame").pixels.data(), pixels);
  EXPECT_EQ(out.seq, 3u);
  // Half the generated fields: still a pass-through.
  mm::Packet half = frame_packet(noise_image({32, 32}, CV_8UC3, 5), 0);
  half.set("generated", mv::to_image(cv::Mat(4, 4, CV_8UC3, cv::Scalar::all(0))));
  const mm::Packet out2 = single(blend.process(std::move(half)));
  EXPECT_EQ(out2.get<mm::Image>("frame").pixels.data(),
            out2.get<mm::Image>("input_frame").pixels.data());
  // No frame at all: passed on untouched.
  const mm::Packet bare = single(blend.process(mm::Packet{.stream = 0, .seq = 9, .time_ns = 0}));
  EXPECT_FALSE(bare.has("frame"));
  // A mask that does not fit the patch is a wiring error, reported as such.
  mm::Packet bad = blend_packet(noise_image({32, 32}, CV_8UC3, 6), cv::Mat(4, 4, CV_8UC3),
                                cv::Mat(5, 4, CV_8UC1), cv::Rect2f(0, 0, 4, 4));
  EXPECT_THROW(blend.process(std::move(bad)), std::invalid_argument);
}

// =============================================================================================
// face.smooth

TEST(FaceSmooth, SmoothsLandmarkJitterPerStream) {
  auto smooth = harness("face.smooth");
  std::mt19937 random(3);
  std::normal_distribution<float> noise(0.0f, 1.0f);
  const SyntheticFace face = synthetic_face({160, 120});
  std::vector<double> raw_x, smooth_x, other_stream_x;
  // Long enough for the standard deviation of a low-passed signal to be a stable estimate.
  for (std::uint64_t i = 0; i < 400; ++i) {
    SyntheticFace noisy = face;
    for (auto& p : noisy.landmarks) p = {p.x + noise(random), p.y + noise(random)};
    const mm::Packet out = single(smooth.process(face_packet(noisy, i)));
    // A second stream interleaved, 100 px away: its filters must not mix with the first's.
    mm::Packet other = face_packet(synthetic_face({260, 120}), i);
    other.stream = 1;
    const mm::Packet out_other = single(smooth.process(std::move(other)));
    if (i >= 30) {
      raw_x.push_back(noisy.landmarks[30].x);
      smooth_x.push_back(out.get<mm::Points>("landmarks")[30].x);
      other_stream_x.push_back(out_other.get<mm::Points>("landmarks")[30].x);
    }
    ASSERT_EQ(out.get<mm::Points>("landmarks").size(), 68u);
    ASSERT_EQ(out.get<mm::Points>("iris").size(), 10u);
  }
  EXPECT_LT(stddev(smooth_x), 0.5 * stddev(raw_x)) << stddev(smooth_x) << " vs " << stddev(raw_x);
  for (double x : other_stream_x) EXPECT_NEAR(x, 260, 1e-3);
}

TEST(FaceSmooth, FollowsAMovingHeadWithoutLag) {
  // 100 px/s to the right at 25 fps: smoothing the points directly would trail by pixels.
  auto smooth = harness("face.smooth");
  double worst_late = 0;
  for (std::uint64_t i = 0; i < 40; ++i) {
    const SyntheticFace face = synthetic_face({60.0f + 4.0f * static_cast<float>(i), 120});
    const mm::Packet out = single(smooth.process(face_packet(face, i)));
    const auto& lm = out.get<mm::Points>("landmarks");
    const auto& iris = out.get<mm::Points>("iris");
    for (std::size_t k = 0; k < 68; ++k) {
      const double error = std::hypot(lm[k].x - face.landmarks[k].x, lm[k].y - face.landmarks[k].y);
      if (i >= 15) worst_late = std::max(worst_late, error);
    }
    if (i >= 15) {
      // The iris keeps its place in the eye: what the warp's displacement depends on.
      EXPECT_NEAR(iris[0].x - lm[36].x, face.iris[0].x - face.landmarks[36].x, 1e-3);
    }
  }
  std::printf(
      "[ smooth    ] moving head, 4 px/frame: largest landmark lag after 15 frames %.3f px\n",
      worst_late);
  EXPECT_LT(worst_late, 0.5);
}

// =============================================================================================
// Degenerate inputs: every stage passes tiny frames and missing fields through cleanly

TEST(EyeStages, TinyFramesAndMissingFieldsPassThrough) {
  auto track = harness("face.track", {{"detector", std::string("none")}});
  auto refine = harness("eye.refine");
  auto smooth = harness("face.smooth");
  auto estimate = harness("gaze.estimate");
  auto redirect = harness("gaze.redirect");
  auto blend = harness("image.blend");
  std::uint64_t seq = 0;
  for (const cv::Size size : {cv::Size(1, 1), cv::Size(2, 3), cv::Size(7, 5), cv::Size(16, 16)}) {
    for (const int channels : {1, 3}) {
      const cv::Mat frame(size, CV_8UC(channels), cv::Scalar::all(90));
      mm::Packet p = frame_packet(frame, seq);
      if (seq % 2 == 0) {  // a key frame whose "face" is the whole frame
        p.set("faces", mm::Rects{{0, 0, static_cast<float>(size.width),
                                  static_cast<float>(size.height), 1}});
      }
      ++seq;
      p = single(track.process(std::move(p)));
      ASSERT_TRUE(p.has("face"));
      EXPECT_LE(p.get<mm::Rects>("face").size(), 1u);
      p = single(smooth.process(std::move(p)));
      p = single(estimate.process(std::move(p)));
      EXPECT_EQ(p.get<double>("gaze_strength"), 0.0);
      EXPECT_EQ(p.get<std::string>("gaze_reason"), "no_face");
      // Landmarks from nowhere (off the frame) on a tiny frame: every stage must cope.
      const SyntheticFace face = synthetic_face({160, 120});
      p.set("landmarks", face.landmarks);
      p.set("iris", face.iris);
      p = single(refine.process(std::move(p)));
      p = single(estimate.process(std::move(p)));
      p.set("gaze_strength", 1.0);
      p = single(redirect.process(std::move(p)));
      EXPECT_FALSE(p.has("generated")) << size;  // nothing of the eyes is on the frame
      p = single(blend.process(std::move(p)));
      EXPECT_EQ(p.get<mm::Image>("frame").width, size.width);
    }
  }
  // NaN and wrongly sized fields.
  mm::Packet weird = face_packet(synthetic_face({160, 120}), 100);
  weird.set("iris", mm::Points(10, mm::Point{NAN, NAN}));
  weird = single(refine.process(std::move(weird)));
  weird = single(estimate.process(std::move(weird)));
  weird.set("gaze_strength", 1.0);
  EXPECT_FALSE(single(redirect.process(std::move(weird))).has("generated"));
  mm::Packet short_lm = face_packet(synthetic_face({160, 120}), 101);
  short_lm.set("landmarks", mm::Points(5));
  EXPECT_FALSE(single(redirect.process(short_lm)).has("generated"));
  EXPECT_EQ(single(estimate.process(short_lm)).get<std::string>("gaze_reason"), "no_face");
  // Nothing but a frame.
  EXPECT_FALSE(single(redirect.process(frame_packet(cv::Mat(8, 8, CV_8UC3), 0))).has("generated"));
  EXPECT_FALSE(single(refine.process(frame_packet(cv::Mat(8, 8, CV_8UC3), 0))).has("eye_contrast"));
  // A wrong type in a field is a wiring error, reported as one.
  mm::Packet wrong = face_packet(synthetic_face({160, 120}), 102);
  wrong.set("iris", 3.0);
  EXPECT_THROW(refine.process(wrong), mm::FieldError);
  EXPECT_THROW(estimate.process(wrong), mm::FieldError);
  mm::Packet wrong_gaze = face_packet(synthetic_face({160, 120}), 103);
  wrong_gaze.set("gaze", std::string("up"));
  wrong_gaze.set("eyeballs", mm::Scalars(6, 1.0));
  EXPECT_THROW(redirect.process(std::move(wrong_gaze)), mm::FieldError);
  // face.track cannot do anything without a frame: a clean FieldError, not a crash.
  EXPECT_THROW(track.process(mm::Packet{.stream = 0, .seq = 1000, .time_ns = 0}), mm::FieldError);
}

TEST(EyeStages, BadParamsAreRejectedAtConstruction) {
  // The stages check their params when they describe themselves too, so that a pipeline file
  // reports the param's own line (stage_params_test); here they surface as ParamError naming
  // the key.
  EXPECT_THROW(harness("face.track", {{"detector", std::string("yolo")}}), mm::ParamError);
  EXPECT_THROW(harness("face.track", {{"detector", std::string("none")}, {"search_scale", 0.5}}),
               mm::ParamError);
  EXPECT_THROW(harness("gaze.estimate", {{"fade_frames", std::int64_t{0}}}), mm::ParamError);
  EXPECT_THROW(harness("gaze.estimate", {{"gaze_fade_deg", std::vector<double>{30, 20}}}),
               mm::ParamError);
  EXPECT_THROW(harness("eye.refine", {{"lid_to_iris", 0.9}}), mm::ParamError);
  EXPECT_THROW(harness("gaze.redirect", {{"max_shift", 2.0}}), mm::ParamError);
  EXPECT_THROW(harness("gaze.redirect", {{"target", std::string("screen")}}), mm::ParamError);
  EXPECT_THROW(harness("gaze.redirect", {{"camera_offset_deg", 45.0}}), mm::ParamError);
  // The declared fields, which the pipeline checks before running.
  EXPECT_EQ(harness("face.track", {{"detector", std::string("none")}}).info().reads,
            std::vector<std::string>{"frame"});
  EXPECT_EQ(harness("image.blend").info().writes,
            (std::vector<std::string>{"frame", "input_frame"}));
}

// =============================================================================================
// face.track

namespace {

// A textured background and a textured "face" (smoothed noise) to paste on it.
cv::Mat smooth_noise(cv::Size size, unsigned seed, int blur) {
  cv::Mat m = noise_image(size, CV_8UC3, seed);
  cv::GaussianBlur(m, m, cv::Size(blur, blur), 0);
  cv::normalize(m, m, 20, 235, cv::NORM_MINMAX);
  return m;
}

cv::Mat compose(const cv::Mat& background, const cv::Mat& face, cv::Point at) {
  cv::Mat frame = background.clone();
  const cv::Rect where = cv::Rect(at, face.size()) & cv::Rect(0, 0, frame.cols, frame.rows);
  face(cv::Rect(where.tl() - at, where.size())).copyTo(frame(where));
  return frame;
}

}  // namespace

TEST(FaceTrack, FollowsATranslatedPatchBetweenKeyFrames) {
  const cv::Mat background = smooth_noise({360, 288}, 21, 9);
  const cv::Mat face = smooth_noise({80, 96}, 22, 5);
  auto track = harness("face.track", {{"detector", std::string("none")}});
  cv::Point at(40, 50);
  double worst = 0;
  for (std::uint64_t seq = 0; seq < 40; ++seq) {
    mm::Packet p = frame_packet(compose(background, face, at), seq);
    const cv::Rect2f truth(cv::Point2f(at), cv::Size2f(face.size()));
    if (seq == 0) p.set("faces", mm::Rects{to_rect(truth)});
    const mm::Packet out = single(track.process(std::move(p)));
    const auto& found = out.get<mm::Rects>("face");
    ASSERT_EQ(found.size(), 1u) << "seq " << seq;
    const double error = cv::norm(centre(to_cv(found[0])) - centre(truth));
    worst = std::max(worst, error);
    EXPECT_LT(error, 0.5) << "seq " << seq;
    EXPECT_GT(out.get<double>("track_confidence"), 0.9) << "seq " << seq;
    EXPECT_EQ(out.get<std::int64_t>("track_redetections"), 0);
    at += cv::Point(5, 2);  // 5 px right, 2 down per frame
  }
  std::printf("[ track     ] synthetic patch, 39 tracked frames: largest centre error %.2f px\n",
              worst);
  // A jump far outside the search window: the match collapses; without a detector the track
  // is dropped (face empty, confidence 0) until the next key frame.
  at = cv::Point(40, 40);
  mm::Packet jumped = frame_packet(compose(background, face, at), 40);
  const mm::Packet lost = single(track.process(std::move(jumped)));
  EXPECT_TRUE(lost.get<mm::Rects>("face").empty());
  EXPECT_EQ(lost.get<double>("track_confidence"), 0.0);
  mm::Packet key = frame_packet(compose(background, face, at), 41);
  key.set("faces", mm::Rects{to_rect(cv::Rect2f(cv::Point2f(at), cv::Size2f(face.size())))});
  EXPECT_EQ(single(track.process(std::move(key))).get<mm::Rects>("face").size(), 1u);
}

TEST(FaceTrack, KeyFramesPickTheTrackedFaceElseTheLargest) {
  const cv::Mat background = smooth_noise({360, 288}, 31, 9);
  auto track = harness("face.track", {{"detector", std::string("none")}});
  const cv::Rect2f small(20, 20, 60, 60), large(200, 100, 120, 120), near_small(24, 22, 60, 60);
  mm::Packet first = frame_packet(background, 0);
  first.set("faces", mm::Rects{to_rect(small), to_rect(large)});
  EXPECT_EQ(to_cv(single(track.process(std::move(first))).get<mm::Rects>("face")[0]), large);
  // Next key frame: the overlapping detection wins over a larger new one.
  const cv::Rect2f larger(10, 150, 130, 130), near_large(204, 104, 120, 120);
  mm::Packet second = frame_packet(background, 1);
  second.set("faces", mm::Rects{to_rect(larger), to_rect(near_large)});
  EXPECT_EQ(to_cv(single(track.process(std::move(second))).get<mm::Rects>("face")[0]), near_large);
  // A key frame without faces drops the track.
  mm::Packet none = frame_packet(background, 2);
  none.set("faces", mm::Rects{});
  const mm::Packet out = single(track.process(std::move(none)));
  EXPECT_TRUE(out.get<mm::Rects>("face").empty());
  EXPECT_EQ(out.get<double>("track_confidence"), 0.0);
  (void)small;
  (void)near_small;
}

TEST(FaceTrack, StreamsAreTrackedSeparately) {
  const cv::Mat background = smooth_noise({200, 160}, 41, 9);
  const cv::Mat face = smooth_noise({50, 60}, 42, 5);
  auto track = harness("face.track", {{"detector", std::string("none")}});
  for (std::uint64_t seq = 0; seq < 10; ++seq) {
    for (std::uint32_t stream = 0; stream < 2; ++stream) {
      // Stream 0 moves right, stream 1 moves down.
      const cv::Point at = stream == 0 ? cv::Point(20 + 3 * static_cast<int>(seq), 40)
                                       : cv::Point(100, 10 + 3 * static_cast<int>(seq));
      mm::Packet p = frame_packet(compose(background, face, at), seq, stream);
      if (seq == 0)
        p.set("faces", mm::Rects{to_rect(cv::Rect2f(cv::Point2f(at), cv::Size2f(face.size())))});
      const mm::Packet out = single(track.process(std::move(p)));
      ASSERT_EQ(out.get<mm::Rects>("face").size(), 1u);
      EXPECT_LT(cv::norm(to_cv(out.get<mm::Rects>("face")[0]).tl() - cv::Point2f(at)), 1.0)
          << "stream " << stream << " seq " << seq;
    }
  }
}

namespace {

cv::Mat astronaut_face_crop() {
  const cv::Mat image = cv::imread(media("astronaut.png").string(), cv::IMREAD_COLOR);
  return image(cv::Rect(150, 45, 150, 165)).clone();  // the face (180,80,92,100) with a margin
}

}  // namespace

TEST(FaceTrack, ReDetectsWithBlazeFaceWhenTheFaceJumps) {
  REQUIRE_CACHE_FILE(media("astronaut.png"));
  REQUIRE_CACHE_FILE(blaze_model());
  const cv::Mat background = smooth_noise({360, 288}, 51, 15);
  const cv::Mat face = astronaut_face_crop();
  auto track = harness("face.track");  // blazeface, min_confidence 0.5
  // Frame 0, no key frame: no track yet, so the stage runs its own detector.
  cv::Point at(20, 60);
  mm::Packet first = frame_packet(compose(background, face, at), 0);
  const mm::Packet out0 = single(track.process(std::move(first)));
  ASSERT_EQ(out0.get<mm::Rects>("face").size(), 1u);
  EXPECT_EQ(out0.get<std::int64_t>("track_redetections"), 1);
  const cv::Rect2f detected = to_cv(out0.get<mm::Rects>("face")[0]);
  // The face (180,80,92,100 in the photo) is at (30+at.x, 35+at.y) in the frame.
  EXPECT_TRUE(detected.contains(cv::Point2f(at) + cv::Point2f(54, 57)));  // right eye
  EXPECT_TRUE(detected.contains(cv::Point2f(at) + cv::Point2f(96, 59)));  // left eye
  for (std::uint64_t seq = 1; seq <= 12; ++seq) {
    at += cv::Point(4, 1);
    const mm::Packet out = single(track.process(frame_packet(compose(background, face, at), seq)));
    ASSERT_EQ(out.get<mm::Rects>("face").size(), 1u);
    const cv::Point2f moved = cv::Point2f(at) - cv::Point2f(20, 60);
    EXPECT_LT(cv::norm(centre(to_cv(out.get<mm::Rects>("face")[0])) - (centre(detected) + moved)),
              2.0)
        << "seq " << seq;
    EXPECT_EQ(out.get<std::int64_t>("track_redetections"), 1) << "no re-detection while tracking";
    EXPECT_GT(out.get<double>("track_confidence"), 0.8);
  }
  // The face jumps 150 px right: the template match fails, the stage re-detects on this frame.
  at += cv::Point(150, 0);
  const mm::Packet jumped = single(track.process(frame_packet(compose(background, face, at), 13)));
  EXPECT_EQ(jumped.get<std::int64_t>("track_redetections"), 2);
  ASSERT_EQ(jumped.get<mm::Rects>("face").size(), 1u);
  const cv::Point2f moved = cv::Point2f(at) - cv::Point2f(20, 60);
  EXPECT_LT(cv::norm(centre(to_cv(jumped.get<mm::Rects>("face")[0])) - (centre(detected) + moved)),
            6.0);
  EXPECT_EQ(jumped.get<double>("track_confidence"), 1.0);
  // The face leaves: re-detection finds nothing, the face is reported absent.
  const mm::Packet gone = single(track.process(frame_packet(background, 14)));
  EXPECT_TRUE(gone.get<mm::Rects>("face").empty());
  EXPECT_EQ(gone.get<std::int64_t>("track_redetections"), 3);
}

// The second landmark model: FaceMesh's points mapped to the 68-point layout land where dlib's
// do on the eyes (what the eye-contact stages read), so either model can serve the pipeline.
TEST(FaceMesh68, EyePointsAgreeWithDlibOnARealVideo) {
  REQUIRE_CACHE_FILE(media("franck.mp4"));
  REQUIRE_CACHE_FILE(blaze_model());
  REQUIRE_CACHE_FILE(model(mv::FaceMesh::kModelFile));
  REQUIRE_CACHE_FILE(model(mv::Landmarks68::kModelFile));
  cv::VideoCapture video(media("franck.mp4").string());
  ASSERT_TRUE(video.isOpened());
  mv::BlazeFace detector(blaze_model(), mv::BlazeFace::Variant::front);
  auto dlib = harness("face.landmarks68");
  auto mesh = harness("face.mesh68");
  double eye_error = 0;   // mean over eye points, in eye widths
  double worst = 0;       // worst frame's mean
  int frames = 0;
  for (std::uint64_t seq = 0; seq < 200; ++seq) {
    cv::Mat frame;
    ASSERT_TRUE(video.read(frame));
    if (seq % 10 != 0) continue;
    const auto detections = detector.detect(frame);
    ASSERT_FALSE(detections.empty()) << "seq " << seq;
    mm::Packet p = frame_packet(frame, seq);
    p.set("face", mm::Rects{to_rect(detections[0].box, detections[0].score)});
    const mm::Packet a = single(dlib.process(p));
    const mm::Packet b = single(mesh.process(p));
    const auto& reference = a.get<mm::Points>("landmarks");
    const auto& mapped = b.get<mm::Points>("landmarks");
    ASSERT_EQ(mapped.size(), 68u);
    const auto at = [](const mm::Points& points, std::size_t k) {
      return cv::Point2f(points[k].x, points[k].y);
    };
    const double width = cv::norm(at(reference, 36) - at(reference, 39));
    double sum = 0;
    for (std::size_t k = 36; k < 48; ++k) sum += cv::norm(at(reference, k) - at(mapped, k));
    const double frame_error = sum / 12 / width;
    eye_error += frame_error;
    worst = std::max(worst, frame_error);
    ++frames;
  }
  eye_error /= frames;
  std::printf("[ franck    ] face.mesh68 vs dlib, eye points: mean %.3f, worst frame %.3f eye "
              "widths over %d frames\n", eye_error, worst, frames);
  EXPECT_LT(eye_error, 0.12);
  EXPECT_LT(worst, 0.25);

  // A crop with no face in it: no landmarks, as with no face at all.
  cv::Mat frame;
  ASSERT_TRUE(video.read(frame));
  mm::Packet empty = frame_packet(frame, 500);
  empty.set("face", mm::Rects{{2, 2, 30, 30, 1}});
  EXPECT_FALSE(single(mesh.process(std::move(empty))).has("landmarks"));
  EXPECT_THROW(harness("face.mesh68", {{"crop_scale", 0.5}}), std::exception);
}

TEST(FaceTrack, StaysOnTheFaceInARealVideo) {
  REQUIRE_CACHE_FILE(media("franck.mp4"));
  REQUIRE_CACHE_FILE(blaze_model());
  cv::VideoCapture video(media("franck.mp4").string());
  ASSERT_TRUE(video.isOpened());
  mv::BlazeFace detector(blaze_model(), mv::BlazeFace::Variant::front);
  auto track = harness("face.track");
  constexpr int kEvery = 10;
  int compared = 0;
  double iou_sum = 0, iou_min = 1;
  std::int64_t redetections = 0;
  for (std::uint64_t seq = 0; seq < 150; ++seq) {
    cv::Mat frame;
    ASSERT_TRUE(video.read(frame));
    const auto detections = detector.detect(frame);
    mm::Packet p = frame_packet(frame, seq);
    if (seq % kEvery == 0) {
      mm::Rects faces;
      for (const auto& d : detections) faces.push_back(to_rect(d.box, d.score));
      p.set("faces", faces);
    }
    const mm::Packet out = single(track.process(std::move(p)));
    redetections = out.get<std::int64_t>("track_redetections");
    if (seq % kEvery != 0 && !detections.empty()) {
      ASSERT_EQ(out.get<mm::Rects>("face").size(), 1u) << "seq " << seq;
      const float o = iou(to_cv(out.get<mm::Rects>("face")[0]), detections[0].box);
      iou_sum += o;
      iou_min = std::min<double>(iou_min, o);
      ++compared;
    }
  }
  ASSERT_GT(compared, 100);
  std::printf(
      "[ franck    ] tracker vs BlazeFace on %d non-key frames: mean IoU %.3f, min %.3f, "
      "re-detections %lld\n",
      compared, iou_sum / compared, iou_min, static_cast<long long>(redetections));
  EXPECT_GT(iou_sum / compared, 0.8);
  EXPECT_GT(iou_min, 0.6);
  EXPECT_LE(redetections, 5);
}

// =============================================================================================
// Real face: landmarks and iris from the models, then smooth -> redirect -> blend

// ---------------------------------------------------------------------------------------------
// The iris key-frame schedule (iris_schedule.hpp; eye.iris_schedule, eye.iris, eye.iris_carry):
// when the model must run, and how the points of the last run follow the face in between.

namespace {

// 68 landmarks of an open-eyed frontal face: eyes 30 px wide, EAR 1/3, nose bridge between them.
mm::Points synthetic_landmarks() {
  mm::Points lm(68, mm::Point{150, 180});
  const auto eye = [&](std::size_t first, float x0) {
    // dlib order: corner, two upper lid points, corner, two lower lid points.
    const float xs[6] = {x0, x0 + 10, x0 + 20, x0 + 30, x0 + 20, x0 + 10};
    const float ys[6] = {100, 95, 95, 100, 105, 105};
    for (std::size_t k = 0; k < 6; ++k) lm[first + k] = {xs[k], ys[k]};
  };
  eye(36, 100);
  eye(42, 170);
  for (std::size_t k = 0; k < 4; ++k) lm[27 + k] = {150, 105 + 12 * static_cast<float>(k)};
  return lm;
}

mm::Points apply(const mm::Points& points, float angle_deg, float scale, cv::Point2f shift) {
  const float a = angle_deg * static_cast<float>(CV_PI) / 180;
  const float c = std::cos(a) * scale, s = std::sin(a) * scale;
  mm::Points out;
  for (const mm::Point& p : points) {
    out.push_back({c * p.x - s * p.y + shift.x, s * p.x + c * p.y + shift.y});
  }
  return out;
}

mv::IrisKeyFrame synthetic_key(std::uint64_t seq) {
  return {.seq = seq, .landmarks = synthetic_landmarks()};
}

}  // namespace

TEST(IrisSchedule, FaceMotionRecoversAShiftRotationAndScale) {
  const mm::Points from = synthetic_landmarks();
  const mm::Points to = apply(from, 4, 1.05f, {3.5f, -2});
  const cv::Matx23f motion = mv::face_motion(from, to);
  const mm::Points moved = mv::move_points(from, motion);
  ASSERT_EQ(moved.size(), to.size());
  for (std::size_t i = 0; i < to.size(); ++i) {
    EXPECT_NEAR(moved[i].x, to[i].x, 1e-3) << i;
    EXPECT_NEAR(moved[i].y, to[i].y, 1e-3) << i;
  }
  // Lid and mouth points do not steer the fit: only the rigid ones do.
  mm::Points blinking = from;
  for (const std::size_t i : {37u, 38u, 43u, 44u, 60u, 66u}) blinking[i].y += 4;
  const cv::Matx23f still = mv::face_motion(from, blinking);
  EXPECT_NEAR(still(0, 0), 1, 1e-5);
  EXPECT_NEAR(still(0, 2), 0, 1e-3);
  EXPECT_NEAR(still(1, 2), 0, 1e-3);
}

TEST(IrisSchedule, CarriesOnlyBetweenKeyFramesOfAStillOpenEye) {
  const mv::IrisKeyFrame key = synthetic_key(10);
  const mm::Points still = synthetic_landmarks();
  mv::IrisScheduleOptions every2{.every = 2};
  mv::IrisScheduleOptions every3{.every = 3};
  EXPECT_TRUE(mv::can_carry_iris(key, 11, still, every2));
  EXPECT_FALSE(mv::can_carry_iris(key, 12, still, every2)) << "the next key frame runs";
  EXPECT_TRUE(mv::can_carry_iris(key, 12, still, every3));
  EXPECT_FALSE(mv::can_carry_iris(key, 10, still, every2)) << "same seq: a restarted stream";
  EXPECT_FALSE(mv::can_carry_iris(key, 9, still, every2)) << "older seq: a restarted stream";
  EXPECT_FALSE(mv::can_carry_iris(std::nullopt, 11, still, every2)) << "no key yet";
  EXPECT_FALSE(mv::can_carry_iris(key, 11, still, mv::IrisScheduleOptions{.every = 1}));

  // Motion: 0.2 eye widths (6 px) is the default limit.
  EXPECT_TRUE(mv::can_carry_iris(key, 11, apply(still, 0, 1, {5, 0}), every2));
  EXPECT_FALSE(mv::can_carry_iris(key, 11, apply(still, 0, 1, {7, 0}), every2));
  // Lids: an eye closing by 2 px changes its aspect ratio by 0.067 > 0.04.
  mm::Points closing = still;
  for (const std::size_t i : {43u, 44u}) closing[i].y += 2;
  EXPECT_FALSE(mv::can_carry_iris(key, 11, closing, every2));
  mm::Points twitch = still;
  for (const std::size_t i : {43u, 44u}) twitch[i].y += 0.5f;  // EAR change 0.017
  EXPECT_TRUE(mv::can_carry_iris(key, 11, twitch, every2));
}

// The three stages one after the other, as the pipeline runs them.
struct IrisChain {
  mm::StageHarness schedule = harness("eye.iris_schedule", {{"every", std::int64_t{2}}});
  mm::StageHarness iris = harness("eye.iris");
  mm::StageHarness carry = harness("eye.iris_carry");

  mm::Packet process(mm::Packet p) {
    p = single(schedule.process(std::move(p)));
    p = single(iris.process(std::move(p)));
    return single(carry.process(std::move(p)));
  }
};

TEST(IrisSchedule, TheModelRunsOnKeyFramesAndTheOthersAreCarried) {
  REQUIRE_CACHE_FILE(model(mv::IrisModel::kModelFile));
  IrisChain chain;
  const cv::Mat frame(288, 360, CV_8UC3, cv::Scalar(120, 120, 120));
  const mm::Points still = synthetic_landmarks();
  std::vector<std::int64_t> measured;
  std::vector<std::int64_t> keys;
  mm::Points key_iris;
  for (std::uint64_t seq = 0; seq < 6; ++seq) {
    mm::Packet p = frame_packet(frame, seq);
    // Frame 3 moves the face by 4 px: carried points follow it exactly.
    p.set("landmarks", seq == 3 ? apply(still, 0, 1, {4, 0}) : still);
    const mm::Packet out = chain.process(std::move(p));
    ASSERT_TRUE(out.has("iris"));
    ASSERT_TRUE(out.has("eye_contours"));
    measured.push_back(out.get<std::int64_t>("iris_measured"));
    keys.push_back(out.get<std::int64_t>("iris_key"));
    if (seq == 2) key_iris = out.get<mm::Points>("iris");
    if (seq == 3) {
      const mm::Points& carried = out.get<mm::Points>("iris");
      ASSERT_EQ(carried.size(), key_iris.size());
      for (std::size_t i = 0; i < carried.size(); ++i) {
        EXPECT_NEAR(carried[i].x, key_iris[i].x + 4, 1e-3);
        EXPECT_NEAR(carried[i].y, key_iris[i].y, 1e-3);
      }
    }
  }
  EXPECT_EQ(measured, (std::vector<std::int64_t>{1, 0, 1, 0, 1, 0}));
  EXPECT_EQ(keys, (std::vector<std::int64_t>{0, 0, 2, 2, 4, 4}));
  // A frame without landmarks drops the key: the face that comes back runs the model.
  const mm::Packet gone = chain.process(frame_packet(frame, 6));
  EXPECT_FALSE(gone.has("iris_key"));
  EXPECT_FALSE(gone.has("iris"));
  mm::Packet back = frame_packet(frame, 7);
  back.set("landmarks", still);
  EXPECT_EQ(chain.process(std::move(back)).get<std::int64_t>("iris_measured"), 1);
}

TEST(IrisSchedule, EyeIrisAloneRunsOnEveryFrameElseOnlyOnKeyFrames) {
  REQUIRE_CACHE_FILE(model(mv::IrisModel::kModelFile));
  auto iris = harness("eye.iris");
  EXPECT_EQ(iris.info().optional_reads, std::vector<std::string>{"iris_key"});
  const cv::Mat frame(288, 360, CV_8UC3, cv::Scalar(120, 120, 120));
  // No schedule upstream: the model runs on every frame with a face, and nowhere else.
  for (std::uint64_t seq = 0; seq < 3; ++seq) {
    mm::Packet p = frame_packet(frame, seq);
    p.set("landmarks", synthetic_landmarks());
    const mm::Packet out = single(iris.process(std::move(p)));
    EXPECT_EQ(out.get<mm::Points>("iris").size(), 10u);
    EXPECT_EQ(out.get<mm::Points>("eye_contours").size(), 142u);
    EXPECT_EQ(out.get<std::int64_t>("iris_measured"), 1);
  }
  EXPECT_FALSE(single(iris.process(frame_packet(frame, 3))).has("iris"));
  // A batch that mixes key frames and carried ones: only the key frames get the model, each its
  // own result, in the batch's order.
  std::vector<mm::Packet> batch;
  for (std::uint64_t seq = 10; seq < 14; ++seq) {
    mm::Packet p = frame_packet(frame, seq);
    p.set("landmarks", apply(synthetic_landmarks(), 0, 1, {2.0f * static_cast<float>(seq - 10), 0}));
    p.set("iris_key", static_cast<std::int64_t>(seq % 2 == 0 ? seq : seq - 1));
    batch.push_back(std::move(p));
  }
  const std::vector<mm::Packet> out = iris.process_batch(std::move(batch));
  ASSERT_EQ(out.size(), 4u);
  for (const mm::Packet& p : out) {
    EXPECT_EQ(p.has("iris"), p.seq % 2 == 0) << p.seq;
    EXPECT_EQ(p.has("iris_measured"), p.seq % 2 == 0) << p.seq;
  }
  // Key frames 10 and 12 differ by a 4 px shift of the face, and so do their irises.
  EXPECT_NEAR(out[2].get<mm::Points>("iris")[0].x - out[0].get<mm::Points>("iris")[0].x, 4, 0.5);
}

TEST(IrisSchedule, CarryWithoutItsKeyFrameLeavesTheFrameWithoutIris) {
  auto carry = harness("eye.iris_carry");
  const cv::Mat frame(288, 360, CV_8UC3, cv::Scalar(120, 120, 120));
  mm::Packet key = frame_packet(frame, 4);
  key.set("landmarks", synthetic_landmarks());
  key.set("iris_key", std::int64_t{4});
  key.set("iris", mm::Points(10, mm::Point{120, 100}));
  key.set("iris_measured", std::int64_t{1});
  (void)carry.process(std::move(key));
  // Frame 7 belongs to key frame 6, which never came (it failed upstream): not carried from 4.
  mm::Packet orphan = frame_packet(frame, 7);
  orphan.set("landmarks", synthetic_landmarks());
  orphan.set("iris_key", std::int64_t{6});
  const mm::Packet out = single(carry.process(std::move(orphan)));
  EXPECT_FALSE(out.has("iris"));
  EXPECT_FALSE(out.has("iris_measured"));
  // Frame 5 of key frame 4 is carried, without contours since the key frame had none.
  mm::Packet next = frame_packet(frame, 5);
  next.set("landmarks", synthetic_landmarks());
  next.set("iris_key", std::int64_t{4});
  const mm::Packet carried = single(carry.process(std::move(next)));
  EXPECT_EQ(carried.get<std::int64_t>("iris_measured"), 0);
  EXPECT_FALSE(carried.has("eye_contours"));
  EXPECT_NEAR(carried.get<mm::Points>("iris")[0].x, 120, 1e-3);
}

// The three stages against their definition on a real face: the key frames are those
// can_carry_iris refuses, counted from the last key frame; a key frame's iris is the model's on
// that frame (eye.iris alone, run on every frame); any other frame's is its key frame's, moved by
// face_motion from the key frame's landmarks to its own. Exactly, not nearly.
TEST(IrisSchedule, TheSplitStagesMatchTheirDefinitionOnARealVideo) {
  REQUIRE_CACHE_FILE(media("franck.mp4"));
  REQUIRE_CACHE_FILE(blaze_model());
  REQUIRE_CACHE_FILE(model(mv::Landmarks68::kModelFile));
  REQUIRE_CACHE_FILE(model(mv::IrisModel::kModelFile));
  cv::VideoCapture video(media("franck.mp4").string());
  ASSERT_TRUE(video.isOpened());
  auto detect = harness("face.detect", {{"every", std::int64_t{10}}});
  auto track = harness("face.track");
  auto landmarks = harness("face.landmarks68");
  auto every_frame = harness("eye.iris");
  IrisChain chain;
  const mv::IrisScheduleOptions options{.every = 2};
  std::optional<mv::IrisKeyFrame> key;
  mm::Points key_iris, key_contours;
  int key_frames = 0, carried = 0;
  constexpr int kFrames = 150;
  for (std::uint64_t seq = 0; seq < kFrames; ++seq) {
    cv::Mat frame;
    ASSERT_TRUE(video.read(frame));
    mm::Packet p = single(detect.process(frame_packet(frame, seq)));
    p = single(track.process(std::move(p)));
    p = single(landmarks.process(std::move(p)));
    ASSERT_TRUE(p.has("landmarks")) << "seq " << seq;
    const mm::Points lm = p.get<mm::Points>("landmarks");
    const mm::Packet reference = single(every_frame.process(p));
    const mm::Packet out = chain.process(std::move(p));
    if (!mv::can_carry_iris(key, seq, lm, options)) {
      key = mv::IrisKeyFrame{.seq = seq, .landmarks = lm};
      key_iris = reference.get<mm::Points>("iris");
      key_contours = reference.get<mm::Points>("eye_contours");
      ASSERT_EQ(out.get<std::int64_t>("iris_measured"), 1) << "seq " << seq;
      EXPECT_EQ(out.get<mm::Points>("iris"), key_iris) << "seq " << seq;
      EXPECT_EQ(out.get<mm::Points>("eye_contours"), key_contours) << "seq " << seq;
      ++key_frames;
    } else {
      const cv::Matx23f motion = mv::face_motion(key->landmarks, lm);
      ASSERT_EQ(out.get<std::int64_t>("iris_measured"), 0) << "seq " << seq;
      EXPECT_EQ(out.get<std::int64_t>("iris_key"), static_cast<std::int64_t>(key->seq));
      EXPECT_EQ(out.get<mm::Points>("iris"), mv::move_points(key_iris, motion)) << "seq " << seq;
      EXPECT_EQ(out.get<mm::Points>("eye_contours"), mv::move_points(key_contours, motion))
          << "seq " << seq;
      ++carried;
    }
  }
  std::printf("[ franck    ] iris model on %d of %d frames, carried on %d\n", key_frames, kFrames,
              carried);
  // Both paths were taken often: the schedule saves runs and still runs on half the frames.
  EXPECT_GE(key_frames, kFrames / 2);
  EXPECT_GE(carried, kFrames / 5);
}

TEST(IrisSchedule, BadParamsNameTheKeyAndValue) {
  for (const auto& [key, value] : std::vector<std::pair<std::string, mm::ParamValue>>{
           {"every", std::int64_t{0}}, {"max_motion", -1.0}, {"max_ear_change", -0.5}}) {
    try {
      auto h = harness("eye.iris_schedule", {{key, value}});
      ADD_FAILURE() << key << " was accepted";
    } catch (const std::exception& e) {
      EXPECT_NE(std::string(e.what()).find("'" + key + "'"), std::string::npos) << e.what();
    }
  }
  // The schedule is a stage of its own now: eye.iris refuses it, naming the param.
  try {
    auto h = harness("eye.iris", {{"every", std::int64_t{2}}});
    ADD_FAILURE() << "eye.iris accepted 'every'";
  } catch (const std::exception& e) {
    EXPECT_NE(std::string(e.what()).find("every"), std::string::npos) << e.what();
  }
}
