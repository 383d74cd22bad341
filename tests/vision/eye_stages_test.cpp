// Tests of the eye-contact stages: face.track, face.smooth, gaze.redirect, image.blend, and the
// algorithms under them (One-Euro filter, eye warp). Synthetic data pins each behaviour down
// exactly; real data (astronaut.png, franck.mp4 and the models from scripts/fetch_media.sh)
// checks that it holds on faces. Without the cache the real-data tests skip and print the
// setup command; with MICROMODELS_REQUIRE_MEDIA=1 they fail instead.
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
#include "vision/models/blaze_face.hpp"
#include "vision/models/hog_face_detector.hpp"
#include "vision/models/iris_model.hpp"
#include "vision/models/face_mesh.hpp"
#include "vision/models/landmarks68.hpp"
#include "vision/models/model_files.hpp"
#include "vision/stages/eye_fields.hpp"
#include "vision/stages/eye_warp.hpp"
#include "vision/stages/image_mat.hpp"
#include "vision/stages/iris_schedule.hpp"
#include "vision/stages/one_euro_filter.hpp"
#include "vision/stages/stage_registration.hpp"

namespace mm = micromodels;
namespace mv = micromodels::vision;
namespace fs = std::filesystem;

namespace {

using micromodels::vision::testing::media;
using micromodels::vision::testing::model;
fs::path blaze_model() { return model(mv::BlazeFace::model_file(mv::BlazeFace::Variant::front)); }

// The stages under test, registered the way vision_stages.cpp does.
const mm::Registry& registry() {
  static const mm::Registry kRegistry = [] {
    mm::Registry r;
    mv::register_face_track(r);
    mv::register_face_landmarks(r);
    mv::register_face_mesh68(r);
    mv::register_face_smooth(r);
    mv::register_gaze_redirect(r);
    mv::register_image_blend(r);
    return r;
  }();
  return kRegistry;
}

mm::StageHarness harness(const std::string& type,
                         const std::map<std::string, mm::ParamValue>& params = {}) {
  return mm::StageHarness(type, params, registry());
}

constexpr std::int64_t kFrameNs = 40'000'000;  // 25 fps

mm::Packet frame_packet(const cv::Mat& frame, std::uint64_t seq, std::uint32_t stream = 0) {
  mm::Packet p{.stream = stream, .seq = seq, .time_ns = static_cast<std::int64_t>(seq) * kFrameNs};
  p.set("frame", mv::to_image(frame.clone()));
  return p;
}

mm::Packet single(std::vector<mm::Packet> out) {
  EXPECT_EQ(out.size(), 1u);
  return out.empty() ? mm::Packet{} : std::move(out.front());
}

cv::Mat mat(const mm::Packet& p, const char* field) { return mv::to_mat(p.get<mm::Image>(field)); }

mm::Rect to_rect(const cv::Rect2f& r, float score = 1) {
  return {r.x, r.y, r.width, r.height, score};
}

cv::Rect2f to_cv(const mm::Rect& r) { return {r.x, r.y, r.width, r.height}; }

cv::Point2f centre(const cv::Rect2f& r) { return {r.x + r.width / 2, r.y + r.height / 2}; }

float iou(const cv::Rect2f& a, const cv::Rect2f& b) {
  const float inter = (a & b).area();
  return inter / (a.area() + b.area() - inter);
}

// 255 where any channel of `a` and `b` differs, else 0 (a gray conversion would round a change
// of 1 in one channel away).
cv::Mat any_change(const cv::Mat& a, const cv::Mat& b) {
  cv::Mat diff;
  cv::absdiff(a, b, diff);
  cv::Mat per_channel = diff.reshape(1, static_cast<int>(diff.total()));
  cv::Mat most;
  cv::reduce(per_channel, most, 1, cv::REDUCE_MAX);
  return most.reshape(1, a.rows) > 0;
}

double stddev(const std::vector<double>& v) {
  const double mean = std::accumulate(v.begin(), v.end(), 0.0) / static_cast<double>(v.size());
  double sum = 0;
  for (double x : v) sum += (x - mean) * (x - mean);
  return std::sqrt(sum / static_cast<double>(v.size()));
}

// ---- synthetic eyes and faces ----------------------------------------------------------------

constexpr int kSkin = 170, kSclera = 235, kIris = 70, kPupil = 25;

// dlib's 6 points on an almond of the given size: corners, two on the upper lid, two on the
// lower, in dlib's order for the right eye (outer corner first, image left); `left_eye` gives
// the left eye's order (inner corner first, which is also on the image left).
std::vector<cv::Point2f> almond_points(cv::Point2f c, float width, float height) {
  const float a = width / 2, b = height / 2;
  const float y = b * std::sqrt(1.0f - 1.0f / 9.0f);
  return {{c.x - a, c.y}, {c.x - a / 3, c.y - y}, {c.x + a / 3, c.y - y},
          {c.x + a, c.y}, {c.x + a / 3, c.y + y}, {c.x - a / 3, c.y + y}};
}

// Draws an eye: a white almond (ellipse) with a dark iris and pupil clipped to it.
void draw_eye(cv::Mat& image, cv::Point2f c, float width, float height, cv::Point2f iris,
              float iris_radius) {
  const cv::Size axes(cvRound(width / 2), cvRound(height / 2));
  cv::Mat opening = cv::Mat::zeros(image.size(), CV_8UC1);
  cv::ellipse(opening, cv::Point(cvRound(c.x), cvRound(c.y)), axes, 0, 0, 360, cv::Scalar(255),
              cv::FILLED, cv::LINE_AA);
  cv::Mat eye(image.size(), image.type(), cv::Scalar::all(kSclera));
  constexpr int kShift = 4;
  const cv::Point at(cvRound(iris.x * 16), cvRound(iris.y * 16));
  cv::circle(eye, at, cvRound(iris_radius * 16), cv::Scalar::all(kIris), cv::FILLED, cv::LINE_AA,
             kShift);
  cv::circle(eye, at, cvRound(iris_radius * 0.45f * 16), cv::Scalar::all(kPupil), cv::FILLED,
             cv::LINE_AA, kShift);
  // Alpha-composite the eye into the skin through the anti-aliased opening.
  for (int y = 0; y < image.rows; ++y) {
    for (int x = 0; x < image.cols; ++x) {
      const int a = opening.at<std::uint8_t>(y, x);
      if (a == 0) continue;
      auto& dst = image.at<cv::Vec3b>(y, x);
      const auto& src = eye.at<cv::Vec3b>(y, x);
      for (int k = 0; k < 3; ++k)
        dst[k] = static_cast<std::uint8_t>((dst[k] * (255 - a) + src[k] * a + 127) / 255);
    }
  }
}

// Darkness-weighted centroid of the pixels inside `polygon` (the iris is the dark blob in it).
std::optional<cv::Point2f> dark_centroid(const cv::Mat& bgr,
                                         const std::vector<cv::Point2f>& polygon, int threshold) {
  cv::Mat gray;
  cv::cvtColor(bgr, gray, cv::COLOR_BGR2GRAY);
  double sx = 0, sy = 0, sw = 0;
  const cv::Rect box = cv::boundingRect(polygon) & cv::Rect(0, 0, gray.cols, gray.rows);
  for (int y = box.y; y < box.y + box.height; ++y) {
    for (int x = box.x; x < box.x + box.width; ++x) {
      if (cv::pointPolygonTest(polygon, cv::Point2f(static_cast<float>(x), static_cast<float>(y)),
                               false) < 0) {
        continue;
      }
      const double w = std::max(0, threshold - static_cast<int>(gray.at<std::uint8_t>(y, x)));
      sx += w * x;
      sy += w * y;
      sw += w;
    }
  }
  if (sw <= 0) return std::nullopt;
  return cv::Point2f(static_cast<float>(sx / sw), static_cast<float>(sy / sw));
}

// A plausible frontal 68-point face (dlib order) centred at `c`, eye width `eye_w`. `open`
// scales the eye heights (1: open, EAR 0.3); `nose_dx` moves the nose tip sideways (a head
// turn); the irises sit at the eye centres plus `gaze`.
struct SyntheticFace {
  mm::Points landmarks;
  mm::Points iris;
};

SyntheticFace synthetic_face(cv::Point2f c, float eye_w = 24, float open = 1, float nose_dx = 0,
                             cv::Point2f gaze = {0, 0}) {
  const float s = eye_w / 24;
  mm::Points lm(68);
  const auto set = [&](std::size_t i, float x, float y) { lm[i] = {c.x + x * s, c.y + y * s}; };
  for (std::size_t i = 0; i < 17; ++i) {  // jaw: a U from ear to ear
    const float t = static_cast<float>(i) / 16.0f * 3.14159f;
    set(i, -48 * std::cos(t), -10 + 55 * std::sin(t));
  }
  for (std::size_t i = 0; i < 5; ++i) {  // brows
    set(17 + i, -42 + 8 * static_cast<float>(i), -26);
    set(22 + i, 10 + 8 * static_cast<float>(i), -26);
  }
  for (std::size_t i = 0; i < 4; ++i) set(27 + i, 0, -14 + 7 * static_cast<float>(i));  // ridge
  lm[30].x += nose_dx * s;
  for (std::size_t i = 0; i < 5; ++i) set(31 + i, -8 + 4 * static_cast<float>(i), 12);  // nostrils
  const float h = 0.3f * 24 * open;
  const auto eye = [&](std::size_t first, cv::Point2f at) {
    const auto pts = almond_points(at, 24, h);
    for (std::size_t k = 0; k < 6; ++k) set(first + k, pts[k].x, pts[k].y);
  };
  eye(36, {-22, -10});
  eye(42, {22, -10});
  for (std::size_t i = 0; i < 20; ++i) {  // mouth: a ring
    const float t = static_cast<float>(i) / 20.0f * 6.28318f;
    set(48 + i, 16 * std::cos(t), 28 + 6 * std::sin(t));
  }
  mm::Points iris;
  for (const float ex : {-22.0f, 22.0f}) {
    const float x = ex + gaze.x, y = -10 + gaze.y;
    for (const cv::Point2f d : {cv::Point2f(0, 0), cv::Point2f(5, 0), cv::Point2f(0, -5),
                                cv::Point2f(-5, 0), cv::Point2f(0, 5)}) {
      iris.push_back({c.x + (x + d.x) * s, c.y + (y + d.y) * s});
    }
  }
  return {lm, iris};
}

mm::Packet face_packet(const SyntheticFace& face, std::uint64_t seq, cv::Size size = {320, 240}) {
  mm::Packet p = frame_packet(cv::Mat(size, CV_8UC3, cv::Scalar::all(kSkin)), seq);
  p.set("landmarks", face.landmarks);
  p.set("iris", face.iris);
  return p;
}

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
// Eye warp (pure functions)

namespace {

struct EyeScene {
  cv::Mat image;
  mv::EyeShape eye;
  cv::Point2f centre;
};

EyeScene eye_scene(cv::Point2f iris_offset, float width = 48, float height = 20,
                   float iris_radius = 8) {
  EyeScene s;
  s.centre = {60, 40};
  s.image = cv::Mat(80, 120, CV_8UC3, cv::Scalar::all(kSkin));
  draw_eye(s.image, s.centre, width, height, s.centre + iris_offset, iris_radius);
  s.eye.opening = almond_points(s.centre, width, height);
  s.eye.iris_center = s.centre + iris_offset;
  s.eye.iris_radius = iris_radius;
  return s;
}

int count_dark(const cv::Mat& bgr, int threshold) {
  cv::Mat gray;
  cv::cvtColor(bgr, gray, cv::COLOR_BGR2GRAY);
  return cv::countNonZero(gray < threshold);
}

}  // namespace

TEST(EyeWarp, OpeningPolygonIsOrderFreeAndCentred) {
  const auto pts = almond_points({60, 40}, 48, 20);
  std::vector<cv::Point2f> shuffled{pts[3], pts[0], pts[5], pts[1], pts[4], pts[2]};
  const auto a = mv::eye_opening_polygon(pts);
  const auto b = mv::eye_opening_polygon(shuffled);
  ASSERT_EQ(a.size(), b.size());
  ASSERT_GE(a.size(), 6u);
  const cv::Point2f ca = mv::polygon_centroid(a), cb = mv::polygon_centroid(b);
  EXPECT_NEAR(ca.x, 60, 0.01);
  EXPECT_NEAR(ca.y, 40, 0.01);
  EXPECT_NEAR(cb.x, ca.x, 1e-3);
  EXPECT_NEAR(cb.y, ca.y, 1e-3);
  EXPECT_NEAR(mv::eye_width(pts), 48, 1e-3);
  // Degenerate input: no polygon, no crash.
  EXPECT_TRUE(mv::eye_opening_polygon(std::vector<cv::Point2f>{{1, 1}, {2, 2}}).empty());
  EXPECT_TRUE(mv::eye_opening_polygon(std::vector<cv::Point2f>(6, {5, 5})).empty());
  const std::vector<cv::Point2f> line{{0, 0}, {1, 0}, {2, 0}, {3, 0}};
  EXPECT_TRUE(mv::eye_opening_polygon(line).empty());
}

TEST(EyeWarp, CameraTargetSitsAboveTheCornerMidpoint) {
  mv::EyeShape eye;
  eye.opening = almond_points({60, 40}, 48, 20);
  const cv::Point2f level = mv::camera_gaze_target(eye);
  EXPECT_NEAR(level.x, 60, 1e-3);
  EXPECT_NEAR(level.y, 40 - mv::kDefaultIrisRise * 48, 1e-3);
  EXPECT_NEAR(mv::camera_gaze_target(eye, 0).y, 40, 1e-3);
  // A head rolled by 30 degrees: the rise is perpendicular to the corner line, still upward.
  const float a = 30 * 3.14159265f / 180;
  for (cv::Point2f& p : eye.opening) {
    const cv::Point2f d = p - cv::Point2f(60, 40);
    p = cv::Point2f(60 + d.x * std::cos(a) - d.y * std::sin(a),
                    40 + d.x * std::sin(a) + d.y * std::cos(a));
  }
  const cv::Point2f rolled = mv::camera_gaze_target(eye, 0.1f);
  EXPECT_NEAR(rolled.x, 60 + 4.8f * std::sin(a), 1e-3);
  EXPECT_NEAR(rolled.y, 40 - 4.8f * std::cos(a), 1e-3);
}

TEST(EyeWarp, MovesTheIrisToTheTargetAndLeavesTheRestAlone) {
  const EyeScene s = eye_scene({-8, 0});  // looking to the image left
  const auto polygon = mv::eye_opening_polygon(s.eye.opening);
  const cv::Point2f target = mv::polygon_centroid(polygon);
  const mv::EyeWarpRequest request{.eye = s.eye, .shift = target - s.eye.iris_center};
  const mv::EyePatch out = mv::redirect_eyes(s.image, {&request, 1}, mv::EyeWarpOptions{});
  ASSERT_FALSE(out.empty());
  ASSERT_EQ(out.patch.size(), out.roi.size());
  ASSERT_EQ(out.mask.size(), out.roi.size());
  ASSERT_EQ(out.mask.type(), CV_8UC1);
  EXPECT_NEAR(out.applied[0].x, 8, 1e-3);  // within max_shift (0.25 x 48 = 12)
  EXPECT_NEAR(out.applied[0].y, 0, 1e-3);

  cv::Mat after = s.image.clone();
  out.patch.copyTo(after(out.roi));
  // Measured on the drawing, not on our own geometry: the iris (dark blob) centroid moves
  // from where it was drawn to the eye centre.
  const std::vector<cv::Point2f> wide = mv::eye_opening_polygon(almond_points(s.centre, 50, 22));
  const auto before_c = dark_centroid(s.image, wide, 150);
  const auto after_c = dark_centroid(after, wide, 150);
  ASSERT_TRUE(before_c && after_c);
  EXPECT_NEAR(before_c->x, 52, 0.5);
  EXPECT_GT(after_c->x - before_c->x, 6.5) << *before_c << " -> " << *after_c;
  EXPECT_LT(cv::norm(*after_c - target), 1.5) << *after_c << " target " << target;
  EXPECT_NEAR(after_c->y, before_c->y, 0.5);
  // The iris is moved, not smeared or duplicated: about as many dark pixels as before.
  const int dark_before = count_dark(s.image, 150), dark_after = count_dark(after, 150);
  EXPECT_NEAR(dark_after, dark_before, 0.12 * dark_before);

  // Outside the mask the patch is the frame, bit for bit; so is everything outside the
  // (slightly grown) eye opening.
  const cv::Mat changed = any_change(out.patch, s.image(out.roi));
  EXPECT_EQ(cv::countNonZero(changed & (out.mask == 0)), 0);
  cv::Mat opening = cv::Mat::zeros(out.roi.size(), CV_8UC1);
  std::vector<cv::Point> local;
  local.reserve(polygon.size());
  for (const cv::Point2f& p : polygon) {
    local.emplace_back(cvRound(p.x) - out.roi.x, cvRound(p.y) - out.roi.y);
  }
  cv::fillPoly(opening, std::vector<std::vector<cv::Point>>{local}, cv::Scalar(255));
  // Content slides along the lids up to grow_px (2) beyond the opening.
  cv::dilate(opening, opening, cv::Mat(), cv::Point(-1, -1), mv::EyeWarpOptions{}.grow_px + 1);
  EXPECT_EQ(cv::countNonZero(changed & (opening == 0)), 0);
  EXPECT_GT(cv::countNonZero(changed), 50);  // and it did change something
  // The mask: full inside the opening, zero at the patch border.
  EXPECT_EQ(out.mask.at<std::uint8_t>(cvRound(target.y) - out.roi.y, cvRound(target.x) - out.roi.x),
            255);
  EXPECT_EQ(cv::countNonZero(out.mask.row(0)), 0);
  EXPECT_EQ(cv::countNonZero(out.mask.col(out.mask.cols - 1)), 0);
}

TEST(EyeWarp, ClampsShiftsToTheEyeWidthAndHeight) {
  const EyeScene s = eye_scene({0, 0});
  // Longer than max_shift x width: shortened to 0.25 x 48 = 12 px along its direction.
  const cv::Point2f far = mv::clamp_eye_shift(s.eye, {30, 0}, 0.25f);
  EXPECT_NEAR(far.x, 12, 1e-3);
  EXPECT_NEAR(far.y, 0, 1e-3);
  // Across the eye (toward a lid) the short opening allows much less: 0.45 x height / 1.6.
  const cv::Point2f up = mv::clamp_eye_shift(s.eye, {0, -10}, 0.25f);
  EXPECT_LT(std::abs(up.y), 0.45f * 20 / 1.6f + 0.2f);
  EXPECT_GT(std::abs(up.y), 1.0f);
  EXPECT_NEAR(up.x, 0, 1e-3);
  // A vertical correction still moves the iris up, as far as allowed.
  const mv::EyeWarpRequest request{.eye = s.eye, .shift = {0, -10}};
  const mv::EyePatch out = mv::redirect_eyes(s.image, {&request, 1}, {});
  ASSERT_FALSE(out.empty());
  cv::Mat after = s.image.clone();
  out.patch.copyTo(after(out.roi));
  const auto wide = mv::eye_opening_polygon(almond_points(s.centre, 50, 22));
  const auto before_c = dark_centroid(s.image, wide, 150);
  const auto after_c = dark_centroid(after, wide, 150);
  ASSERT_TRUE(before_c && after_c);
  EXPECT_LT(after_c->y, before_c->y - 0.5f * std::abs(up.y));
  // A closed eye (no height) gets no vertical shift at all beyond a sub-pixel.
  mv::EyeShape closed = s.eye;
  closed.opening = almond_points(s.centre, 48, 0.5f);
  EXPECT_LT(std::abs(mv::clamp_eye_shift(closed, {0, -10}, 0.25f).y), 0.7f);
}

TEST(EyeWarp, NothingToDoGivesAnEmptyPatch) {
  const EyeScene s = eye_scene({0, 0});
  const mv::EyeWarpRequest still{.eye = s.eye, .shift = {0, 0}};
  EXPECT_TRUE(mv::redirect_eyes(s.image, {&still, 1}, {}).empty());
  mv::EyeWarpRequest off_frame{.eye = s.eye, .shift = {3, 0}};
  for (auto& p : off_frame.eye.opening) p += cv::Point2f(1000, 1000);
  off_frame.eye.iris_center += cv::Point2f(1000, 1000);
  EXPECT_TRUE(mv::redirect_eyes(s.image, {&off_frame, 1}, {}).empty());
  mv::EyeWarpRequest nan_eye{.eye = s.eye, .shift = {3, 0}};
  nan_eye.eye.iris_center = {NAN, 1};
  EXPECT_TRUE(mv::redirect_eyes(s.image, {&nan_eye, 1}, {}).empty());
  const mv::EyeWarpRequest ok{.eye = s.eye, .shift = {3, 0}};
  EXPECT_TRUE(mv::redirect_eyes(cv::Mat(), {&ok, 1}, {}).empty());
  EXPECT_TRUE(mv::redirect_eyes(cv::Mat(80, 120, CV_32FC3), {&ok, 1}, {}).empty());
  // 1x1 and tiny frames: the ROI is clipped, nothing breaks.
  for (const cv::Size size : {cv::Size(1, 1), cv::Size(3, 2), cv::Size(61, 41)}) {
    const cv::Mat tiny(size, CV_8UC3, cv::Scalar::all(100));
    const mv::EyePatch out = mv::redirect_eyes(tiny, {&ok, 1}, {});
    if (!out.empty()) {
      EXPECT_TRUE((out.roi & cv::Rect(0, 0, size.width, size.height)) == out.roi);
      EXPECT_EQ(out.patch.size(), out.roi.size());
    }
  }
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

TEST(FaceSmooth, StrengthFadesOutOnABlinkAndBackIn) {
  auto smooth = harness("face.smooth");  // fade_frames 5, blink_ear 0.18
  const cv::Point2f c(160, 120);
  std::uint64_t seq = 0;
  const auto run = [&](const SyntheticFace& face) {
    const mm::Packet out = single(smooth.process(face_packet(face, seq++)));
    return std::make_pair(out.get<double>("gaze_strength"), out.get<std::string>("gaze_reason"));
  };
  const SyntheticFace open = synthetic_face(c);
  const SyntheticFace closed = synthetic_face(c, 24, 0.1f);
  for (int i = 1; i <= 5; ++i) {
    const auto [s, why] = run(open);
    EXPECT_DOUBLE_EQ(s, i / 5.0) << "fading in, frame " << i;
    EXPECT_EQ(why, "ok");
  }
  EXPECT_DOUBLE_EQ(run(open).first, 1.0);  // stays at 1
  for (int i = 4; i >= 0; --i) {
    const auto [s, why] = run(closed);
    EXPECT_DOUBLE_EQ(s, i / 5.0) << "fading out on the blink";
    EXPECT_EQ(why, "blink");
  }
  EXPECT_DOUBLE_EQ(run(closed).first, 0.0);  // exactly 0, so gaze.redirect does nothing
  for (int i = 1; i <= 5; ++i) EXPECT_DOUBLE_EQ(run(open).first, i / 5.0) << "back in";
}

TEST(FaceSmooth, GatesTurnedHeadsLookingAwaySmallEyesAndNoFace) {
  const cv::Point2f c(160, 120);
  const auto reason = [&](const SyntheticFace& face) {
    auto smooth = harness("face.smooth", {{"fade_frames", std::int64_t{1}}});
    const mm::Packet out = single(smooth.process(face_packet(face, 0)));
    return std::make_pair(out.get<std::string>("gaze_reason"), out.get<double>("gaze_strength"));
  };
  EXPECT_EQ(reason(synthetic_face(c)), std::make_pair(std::string("ok"), 1.0));
  // Nose tip 4/34 of the half span off centre: ~9 degrees, fine; 16/34: ~32 degrees, not.
  EXPECT_EQ(reason(synthetic_face(c, 24, 1, 4)).first, "ok");
  EXPECT_EQ(reason(synthetic_face(c, 24, 1, 16)), std::make_pair(std::string("head_turned"), 0.0));
  // Irises 0.4 eye widths off centre: looking away on purpose; 0.2: correctable.
  EXPECT_EQ(reason(synthetic_face(c, 24, 1, 0, {9.6f, 0})).first, "looking_away");
  EXPECT_EQ(reason(synthetic_face(c, 24, 1, 0, {4.8f, 0})).first, "ok");
  EXPECT_EQ(reason(synthetic_face(c, 10)).first, "eyes_small");  // 10 px < min_eye_px 12

  auto smooth = harness("face.smooth", {{"fade_frames", std::int64_t{1}}});
  mm::Packet no_face = frame_packet(cv::Mat(24, 32, CV_8UC3, cv::Scalar::all(0)), 0);
  const mm::Packet out = single(smooth.process(std::move(no_face)));
  EXPECT_EQ(out.get<std::string>("gaze_reason"), "no_face");
  EXPECT_EQ(out.get<double>("gaze_strength"), 0.0);
  EXPECT_FALSE(out.has("landmarks"));
  EXPECT_FALSE(out.has("iris"));
  mm::Packet no_iris = face_packet(synthetic_face(c), 1);
  no_iris.erase("iris");
  EXPECT_EQ(single(smooth.process(std::move(no_iris))).get<std::string>("gaze_reason"), "no_iris");
}

TEST(FaceSmooth, YawEstimateIsNearZeroFrontalAndSignedWhenTurned) {
  const cv::Point2f c(160, 120);
  EXPECT_NEAR(mv::estimate_yaw_degrees(synthetic_face(c).landmarks), 0, 0.5);
  const float right = mv::estimate_yaw_degrees(synthetic_face(c, 24, 1, 10).landmarks);
  const float left = mv::estimate_yaw_degrees(synthetic_face(c, 24, 1, -10).landmarks);
  EXPECT_NEAR(right, -left, 1e-3);
  // r = 10 / 34, yaw = atan(r / 0.75) = 21.4 degrees.
  EXPECT_NEAR(std::abs(right), 21.4, 0.2);
}

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
// gaze.redirect + image.blend on a synthetic face

namespace {

// A frame with two drawn eyes matching synthetic_face(c)'s landmarks, irises at `gaze`.
mm::Packet drawn_face_packet(cv::Point2f c, cv::Point2f gaze, double strength) {
  const SyntheticFace face = synthetic_face(c, 24, 1, 0, gaze);
  cv::Mat frame(240, 320, CV_8UC3, cv::Scalar::all(kSkin));
  draw_eye(frame, c + cv::Point2f(-22, -10), 24, 7.2f, c + cv::Point2f(-22, -10) + gaze, 5);
  draw_eye(frame, c + cv::Point2f(22, -10), 24, 7.2f, c + cv::Point2f(22, -10) + gaze, 5);
  mm::Packet p = frame_packet(frame, 0);
  p.set("landmarks", face.landmarks);
  p.set("iris", face.iris);
  p.set("gaze_strength", strength);
  return p;
}

}  // namespace

TEST(GazeRedirect, WarpedAndBlendedEyesLookAtTheCamera) {
  const cv::Point2f c(160, 120);
  const cv::Point2f gaze(-4, 0);  // both irises 4 px to the image left
  // iris_rise 0: the target is the eye centre, so the move is purely sideways and measurable.
  auto redirect = harness("gaze.redirect", {{"iris_rise", 0.0}});
  auto blend = harness("image.blend");
  mm::Packet in = drawn_face_packet(c, gaze, 1.0);
  const cv::Mat input = mat(in, "frame").clone();
  const mm::Packet warped = single(redirect.process(std::move(in)));
  ASSERT_TRUE(warped.has("generated"));
  const auto& patch = warped.get<mm::Image>("generated");
  const auto& mask = warped.get<mm::Image>("generated_mask");
  const auto& roi = warped.get<mm::Rects>("generated_roi");
  ASSERT_EQ(roi.size(), 1u);
  EXPECT_EQ(patch.channels, 3);
  EXPECT_EQ(mask.channels, 1);
  EXPECT_EQ(mask.width, patch.width);
  EXPECT_EQ(mask.height, patch.height);
  EXPECT_EQ(patch.width, static_cast<int>(roi[0].width));
  // One patch covering both eyes.
  const cv::Rect2f r = to_cv(roi[0]);
  EXPECT_TRUE(r.contains(c + cv::Point2f(-34, -10)));
  EXPECT_TRUE(r.contains(c + cv::Point2f(34, -10)));
  const auto& shift = warped.get<mm::Points>("gaze_shift");
  ASSERT_EQ(shift.size(), 2u);
  EXPECT_NEAR(shift[0].x, 4, 0.05);
  EXPECT_NEAR(shift[0].y, 0, 0.05);

  const mm::Packet out = single(blend.process(warped));
  const cv::Mat result = mat(out, "frame");
  EXPECT_EQ(cv::norm(mat(out, "input_frame"), input, cv::NORM_INF), 0);
  for (const float ex : {-22.0f, 22.0f}) {
    const cv::Point2f eye_c = c + cv::Point2f(ex, -10);
    const auto polygon = mv::eye_opening_polygon(almond_points(eye_c, 26, 9));
    const auto before = dark_centroid(input, polygon, 150);
    const auto after = dark_centroid(result, polygon, 150);
    ASSERT_TRUE(before && after);
    EXPECT_LT(cv::norm(*after - eye_c), 1.3)
        << "eye at " << eye_c << ": " << *before << " -> " << *after;
    EXPECT_GT(after->x - before->x, 2.5);
  }
  // Whole frames: every pixel whose alpha is 0 is the input's, bit for bit.
  cv::Mat alpha = cv::Mat::zeros(input.size(), CV_8UC1);
  mv::to_mat(mask).copyTo(alpha(cv::Rect(r)));
  const cv::Mat changed = any_change(result, input);
  EXPECT_EQ(cv::countNonZero(changed & (alpha == 0)), 0);
  EXPECT_GT(cv::countNonZero(changed), 20);
}

TEST(GazeRedirect, StrengthScalesTheShiftAndZeroPassesThrough) {
  const cv::Point2f c(160, 120);
  auto redirect = harness("gaze.redirect");
  const mm::Packet half = single(redirect.process(drawn_face_packet(c, {-4, 0}, 0.5)));
  ASSERT_TRUE(half.has("gaze_shift"));
  EXPECT_NEAR(half.get<mm::Points>("gaze_shift")[0].x, 2, 0.05);
  // The default target is raised above the corners' line by iris_rise x eye width (24 px).
  EXPECT_NEAR(half.get<mm::Points>("gaze_shift")[0].y, -0.5 * mv::kDefaultIrisRise * 24, 0.05);
  const mm::Packet zero = single(redirect.process(drawn_face_packet(c, {-4, 0}, 0.0)));
  EXPECT_FALSE(zero.has("generated"));
  EXPECT_FALSE(zero.has("generated_roi"));
  EXPECT_FALSE(zero.has("generated_mask"));
  // Offsets move the target: irises already centred, target 2 px right.
  auto offset = harness("gaze.redirect", {{"target_offset_px", std::vector<double>{2, 0}}});
  const mm::Packet moved = single(offset.process(drawn_face_packet(c, {0, 0}, 1.0)));
  ASSERT_TRUE(moved.has("gaze_shift"));
  EXPECT_NEAR(moved.get<mm::Points>("gaze_shift")[1].x, 2, 0.05);
  // Without conjugate each eye goes its own way.
  mm::Packet skew = drawn_face_packet(c, {0, 0}, 1.0);
  mm::Points iris = skew.get<mm::Points>("iris");
  for (std::size_t i = 0; i < 5; ++i) iris[i].x -= 3;  // right eye only
  skew.set("iris", iris);
  auto own = harness("gaze.redirect", {{"conjugate", false}});
  const mm::Packet own_out = single(own.process(skew));
  EXPECT_NEAR(own_out.get<mm::Points>("gaze_shift")[0].x, 3, 0.05);
  EXPECT_NEAR(own_out.get<mm::Points>("gaze_shift")[1].x, 0, 0.05);
  const mm::Packet mean_out = single(redirect.process(skew));
  EXPECT_NEAR(mean_out.get<mm::Points>("gaze_shift")[0].x, 1.5, 0.05);
  EXPECT_NEAR(mean_out.get<mm::Points>("gaze_shift")[1].x, 1.5, 0.05);
  EXPECT_THROW(harness("gaze.redirect", {{"target", std::string("screen")}}),
               std::invalid_argument);
}

// The stage and `micromodels eval eye_contact` aim at one definition of the target: GazeTarget.
TEST(GazeRedirect, AimsAtTheSharedGazeTarget) {
  const cv::Point2f c(160, 120);
  const mv::GazeTarget target{.iris_rise = 0.03f, .offset_px = {1.0f, -0.5f}};
  auto redirect = harness("gaze.redirect", {{"conjugate", false},
                                            {"iris_rise", 0.03},
                                            {"target_offset_px", std::vector<double>{1, -0.5}}});
  const mm::Packet in = drawn_face_packet(c, {-2, 0.5f}, 1.0);
  const mm::Packet out = single(redirect.process(in));
  ASSERT_TRUE(out.has("gaze_shift"));
  const mm::Points& shift = out.get<mm::Points>("gaze_shift");
  ASSERT_EQ(shift.size(), 2u);
  for (const mv::EyeSide side : {mv::EyeSide::right, mv::EyeSide::left}) {
    const std::optional<mv::EyeShape> eye = mv::eye_shape(in, side);
    ASSERT_TRUE(eye);
    const cv::Point2f wanted = target.for_eye(*eye) - eye->iris_center;
    const auto i = static_cast<std::size_t>(side);
    EXPECT_NEAR(shift[i].x, wanted.x, 0.01) << "eye " << i;
    EXPECT_NEAR(shift[i].y, wanted.y, 0.01) << "eye " << i;
  }
  // And the target is not the centre of the opening, which the eval used to measure against.
  const std::optional<mv::EyeShape> right = mv::eye_shape(in, mv::EyeSide::right);
  const cv::Point2f centre = mv::polygon_centroid(mv::eye_opening_polygon(right->opening));
  EXPECT_GT(cv::norm(target.for_eye(*right) - centre), 0.5);
}

// =============================================================================================
// Degenerate inputs: every stage passes tiny frames and missing fields through cleanly

TEST(EyeStages, TinyFramesAndMissingFieldsPassThrough) {
  auto track = harness("face.track", {{"detector", std::string("none")}});
  auto smooth = harness("face.smooth");
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
      EXPECT_EQ(p.get<double>("gaze_strength"), 0.0);
      // Landmarks from nowhere (off the frame) on a tiny frame: redirect must cope.
      const SyntheticFace face = synthetic_face({160, 120});
      p.set("landmarks", face.landmarks);
      p.set("iris", face.iris);
      p.set("gaze_strength", 1.0);
      p = single(redirect.process(std::move(p)));
      EXPECT_FALSE(p.has("generated")) << size;  // nothing of the eyes is on the frame
      p = single(blend.process(std::move(p)));
      EXPECT_EQ(p.get<mm::Image>("frame").width, size.width);
    }
  }
  // NaN and wrongly sized fields.
  mm::Packet weird = face_packet(synthetic_face({160, 120}), 100);
  mm::Points nan_iris(10, mm::Point{NAN, NAN});
  weird.set("iris", nan_iris);
  weird.set("gaze_strength", 1.0);
  const mm::Packet weird_out = single(redirect.process(std::move(weird)));
  EXPECT_FALSE(weird_out.has("generated"));
  mm::Packet short_lm = face_packet(synthetic_face({160, 120}), 101);
  short_lm.set("landmarks", mm::Points(5));
  EXPECT_FALSE(single(redirect.process(short_lm)).has("generated"));
  EXPECT_EQ(single(smooth.process(short_lm)).get<std::string>("gaze_reason"), "no_face");
  // Nothing but a frame.
  const mm::Packet bare = single(redirect.process(frame_packet(cv::Mat(8, 8, CV_8UC3), 0)));
  EXPECT_FALSE(bare.has("generated"));
  // A wrong type in a field is a wiring error, reported as one.
  mm::Packet wrong = face_packet(synthetic_face({160, 120}), 102);
  wrong.set("iris", 3.0);
  EXPECT_THROW(redirect.process(std::move(wrong)), mm::FieldError);
  // face.track cannot do anything without a frame: a clean FieldError, not a crash.
  EXPECT_THROW(track.process(mm::Packet{.stream = 0, .seq = 1000, .time_ns = 0}), mm::FieldError);
}

TEST(EyeStages, BadParamsAreRejectedAtConstruction) {
  EXPECT_THROW(harness("face.track", {{"detector", std::string("yolo")}}), std::invalid_argument);
  EXPECT_THROW(harness("face.track", {{"detector", std::string("none")}, {"search_scale", 0.5}}),
               std::invalid_argument);
  EXPECT_THROW(harness("face.smooth", {{"fade_frames", std::int64_t{0}}}), std::invalid_argument);
  EXPECT_THROW(harness("gaze.redirect", {{"target_offset_px", std::vector<double>{1}}}),
               std::invalid_argument);
  EXPECT_THROW(harness("gaze.redirect", {{"max_shift", 2.0}}), std::invalid_argument);
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

namespace {

struct RealFace {
  cv::Mat image;
  mm::Points landmarks;
  mm::Points iris;
  mm::Points contours;
};

std::optional<RealFace> fit_real_face(const cv::Mat& image) {
  static const mv::Landmarks68 kPredictor(model(mv::Landmarks68::kModelFile));
  static mv::IrisModel iris_model(model(mv::IrisModel::kModelFile));
  mv::HogFaceDetector hog;
  const auto faces = hog.detect(image);
  if (faces.empty()) return std::nullopt;
  RealFace face{.image = image, .landmarks = {}, .iris = {}, .contours = {}};
  const auto pts = kPredictor.fit(image, faces[0].box);
  for (const cv::Point2f& p : pts) face.landmarks.push_back({p.x, p.y});
  const std::vector<mv::EyeCrop> crops{mv::IrisModel::crop_eye(image, pts[36], pts[39], false),
                                       mv::IrisModel::crop_eye(image, pts[42], pts[45], true)};
  for (const auto& r : iris_model.run(crops)) {
    for (const cv::Point3f& p : r.iris) face.iris.push_back({p.x, p.y});
    for (const cv::Point3f& p : r.contour) face.contours.push_back({p.x, p.y});
  }
  return face;
}

mm::Packet real_packet(const RealFace& face, std::uint64_t seq, bool contours) {
  mm::Packet p = frame_packet(face.image, seq);
  p.set("landmarks", face.landmarks);
  p.set("iris", face.iris);
  if (contours) p.set("eye_contours", face.contours);
  return p;
}

}  // namespace

TEST(EyeStagesReal, AstronautIsJudgedCorrectableAndItsIrisesMove) {
  REQUIRE_CACHE_FILE(media("astronaut.png"));
  REQUIRE_CACHE_FILE(model(mv::Landmarks68::kModelFile));
  REQUIRE_CACHE_FILE(model(mv::IrisModel::kModelFile));
  const cv::Mat image = cv::imread(media("astronaut.png").string(), cv::IMREAD_COLOR);
  const std::optional<RealFace> face = fit_real_face(image);
  ASSERT_TRUE(face);
  const float yaw = mv::estimate_yaw_degrees(face->landmarks);
  std::printf("[ astronaut ] yaw estimate %.1f deg\n", yaw);
  EXPECT_LT(std::abs(yaw), 20.0f);  // a near-frontal portrait

  for (const bool contours : {false, true}) {
    SCOPED_TRACE(contours ? "eye opening from the iris model's contour" : "from dlib's landmarks");
    auto smooth = harness("face.smooth");
    mm::Packet p;
    for (std::uint64_t seq = 0; seq < 6; ++seq)
      p = single(smooth.process(real_packet(*face, seq, contours)));
    EXPECT_EQ(p.get<std::string>("gaze_reason"), "ok");
    EXPECT_EQ(p.get<double>("gaze_strength"), 1.0);

    // She already looks at the camera; ask for a gaze 3 px to the image right so that the
    // move is measurable.
    auto redirect = harness("gaze.redirect", {{"target_offset_px", std::vector<double>{3, 0}}});
    auto blend = harness("image.blend");
    const mm::Packet warped = single(redirect.process(p));
    ASSERT_TRUE(warped.has("generated"));
    const auto& shift = warped.get<mm::Points>("gaze_shift");
    EXPECT_GT(shift[0].x, 1.0f);
    const mm::Packet out = single(blend.process(warped));
    const cv::Mat result = mat(out, "frame");

    const auto& mask = warped.get<mm::Image>("generated_mask");
    const cv::Rect2f roi = to_cv(warped.get<mm::Rects>("generated_roi")[0]);
    cv::Mat alpha = cv::Mat::zeros(image.size(), CV_8UC1);
    mv::to_mat(mask).copyTo(alpha(cv::Rect(roi)));
    const cv::Mat changed = any_change(result, image);
    EXPECT_EQ(cv::countNonZero(changed & (alpha == 0)), 0);
    EXPECT_GT(cv::countNonZero(changed), 20);
    // The patch stays around the eyes: far smaller than the face.
    EXPECT_LT(roi.area(), 0.25f * 92 * 100);

    // Measured on the output pixels, two ways: the iris model run again on the blended frame
    // finds the iris moved, and the darkest pixels of each eye opening (iris and pupil; the
    // lashes at the lid edge do not move and dilute this one) move the same way.
    const auto& lm = p.get<mm::Points>("landmarks");
    static mv::IrisModel iris_model(model(mv::IrisModel::kModelFile));
    const auto at = [&](std::size_t i) { return cv::Point2f(lm[i].x, lm[i].y); };
    const auto measure = [&](const cv::Mat& img) {
      return iris_model.run({mv::IrisModel::crop_eye(img, at(36), at(39), false),
                             mv::IrisModel::crop_eye(img, at(42), at(45), true)});
    };
    const auto iris_before = measure(image);
    const auto iris_after = measure(result);
    cv::Mat gray;
    cv::cvtColor(image, gray, cv::COLOR_BGR2GRAY);
    for (const mv::EyeSide side : {mv::EyeSide::right, mv::EyeSide::left}) {
      const auto k = static_cast<std::size_t>(side);
      const cv::Point2f moved = iris_after[k].iris_center() - iris_before[k].iris_center();
      const auto polygon = mv::eye_opening_polygon(mv::eye_landmarks(lm, side));
      double lo = 0, mean = cv::mean(gray(cv::boundingRect(polygon)))[0];
      cv::minMaxLoc(gray(cv::boundingRect(polygon)), &lo);
      const int threshold = static_cast<int>((lo + mean) / 2);
      const auto before = dark_centroid(image, polygon, threshold);
      const auto after = dark_centroid(result, polygon, threshold);
      ASSERT_TRUE(before && after);
      std::printf(
          "[ astronaut ] %s eye: applied %.2f, %.2f px; iris model sees %.2f, %.2f; dark "
          "centroid %.2f, %.2f\n",
          k == 0 ? "right" : "left", shift[k].x, shift[k].y, moved.x, moved.y, after->x - before->x,
          after->y - before->y);
      EXPECT_GT(moved.x, 0.6f * shift[k].x);
      EXPECT_LT(moved.x, 1.4f * shift[k].x);
      EXPECT_LT(std::abs(moved.y - shift[k].y), 1.0f);
      EXPECT_GT(after->x - before->x, 0.4f * shift[k].x);
    }
  }
}

// ---------------------------------------------------------------------------------------------
// eye.iris key-frame schedule (iris_schedule.hpp): when the model must run, and how the points
// of the last run follow the face in between.

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
  mv::IrisKeyFrame key{.seq = seq, .landmarks = synthetic_landmarks(), .iris = {}, .contours = {}};
  for (const float x : {115.0f, 185.0f}) {
    key.iris.push_back({x, 99});
    for (const cv::Point2f d : {cv::Point2f(4, 0), {0, 4}, {-4, 0}, {0, -4}}) {
      key.iris.push_back({x + d.x, 99 + d.y});
    }
  }
  return key;
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

TEST(IrisSchedule, EyeIrisStageRunsOnKeyFramesAndCarriesBetween) {
  REQUIRE_CACHE_FILE(model(mv::IrisModel::kModelFile));
  mm::Registry r;
  mv::register_eye_iris(r);
  mm::StageHarness iris("eye.iris", {{"every", std::int64_t{2}}}, r);
  const cv::Mat frame(288, 360, CV_8UC3, cv::Scalar(120, 120, 120));
  const mm::Points still = synthetic_landmarks();
  std::vector<std::int64_t> measured;
  mm::Points key_iris;
  for (std::uint64_t seq = 0; seq < 6; ++seq) {
    mm::Packet p = frame_packet(frame, seq);
    // Frame 3 moves the face by 4 px: carried points follow it exactly.
    p.set("landmarks", seq == 3 ? apply(still, 0, 1, {4, 0}) : still);
    const mm::Packet out = single(iris.process(std::move(p)));
    ASSERT_TRUE(out.has("iris"));
    ASSERT_TRUE(out.has("eye_contours"));
    measured.push_back(out.get<std::int64_t>("iris_measured"));
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
  // A frame without landmarks drops the key: the face that comes back runs the model.
  (void)iris.process(frame_packet(frame, 6));
  mm::Packet back = frame_packet(frame, 7);
  back.set("landmarks", still);
  EXPECT_EQ(single(iris.process(std::move(back))).get<std::int64_t>("iris_measured"), 1);
}

TEST(IrisSchedule, BadParamsNameTheKeyAndValue) {
  mm::Registry r;
  mv::register_eye_iris(r);
  for (const auto& [key, value] : std::vector<std::pair<std::string, mm::ParamValue>>{
           {"every", std::int64_t{0}}, {"max_motion", -1.0}, {"max_ear_change", -0.5}}) {
    try {
      mm::StageHarness h("eye.iris", {{key, value}}, r);
      ADD_FAILURE() << key << " was accepted";
    } catch (const std::exception& e) {
      EXPECT_NE(std::string(e.what()).find("'" + key + "'"), std::string::npos) << e.what();
    }
  }
}
