// The eyeball model (eye_model.hpp) and the head pose (head_pose.hpp): pure geometry, checked
// against answers worked out by hand.
#include <cmath>
#include <numbers>

#include <gtest/gtest.h>

#include "eye_test_support.hpp"
#include "vision/stages/eye_model.hpp"
#include "vision/stages/head_pose.hpp"

namespace {

using namespace eye_test;

constexpr float kDeg = std::numbers::pi_v<float> / 180;

mm::Points rotated(const mm::Points& points, cv::Point2f about, float degrees) {
  const float c = std::cos(degrees * kDeg), s = std::sin(degrees * kDeg);
  mm::Points out;
  for (const mm::Point& p : points) {
    const float x = p.x - about.x, y = p.y - about.y;
    out.push_back({about.x + c * x - s * y, about.y + s * x + c * y});
  }
  return out;
}

}  // namespace

TEST(EyeModel, AxesRunAlongTheEyeAndUpTowardTheBrow) {
  const mv::EyeAxes level = mv::eye_axes({10, 20}, {30, 20});
  EXPECT_EQ(level.origin, cv::Point2f(20, 20));
  EXPECT_FLOAT_EQ(level.width, 20);
  EXPECT_EQ(level.along, cv::Point2f(1, 0));
  EXPECT_EQ(level.up, cv::Point2f(0, -1));  // image y grows downward
  const mv::EyeAxes swapped = mv::eye_axes({30, 20}, {10, 20});
  EXPECT_EQ(swapped.along, level.along);
  EXPECT_EQ(swapped.up, level.up);
  // Round trip, and a point above the eye has a positive `up`.
  const cv::Point2f q = level.to_eye({25, 17});
  EXPECT_FLOAT_EQ(q.x, 5);
  EXPECT_FLOAT_EQ(q.y, 3);
  EXPECT_EQ(level.to_frame(q), cv::Point2f(25, 17));
  // A head rolled 30 degrees clockwise in the image: `up` stays perpendicular, toward the top.
  const mv::EyeAxes rolled = mv::eye_axes({0, 0}, {std::cos(30 * kDeg) * 20, std::sin(30 * kDeg) * 20});
  EXPECT_NEAR(rolled.along.dot(rolled.up), 0, 1e-6);
  EXPECT_LT(rolled.up.y, 0);
  EXPECT_NEAR(rolled.up.x, std::sin(30 * kDeg), 1e-6);
  EXPECT_FLOAT_EQ(mv::eye_axes({5, 5}, {5, 5}).width, 0);
}

TEST(EyeModel, GazeAndIrisPositionAreInverses) {
  mv::Eyeball ball;
  ball.axes = mv::eye_axes({100, 50}, {124, 50});
  ball.center = {112, 47};
  ball.radius = 8.88f;  // 0.37 x 24
  EXPECT_EQ(ball.iris_for({}), ball.center);  // looking into the camera
  for (const mv::Gaze g : {mv::Gaze{10, 0}, mv::Gaze{-15, 5}, mv::Gaze{0, -20}, mv::Gaze{25, 25}}) {
    const cv::Point2f iris = ball.iris_for(g);
    const mv::Gaze back = ball.gaze_of(iris);
    EXPECT_NEAR(back.pitch_deg, g.pitch_deg, 1e-3);
    EXPECT_NEAR(back.yaw_deg, g.yaw_deg, 1e-3);
  }
  // 10 degrees up moves the iris R sin(10 deg) toward the brow: up in the image.
  const cv::Point2f up10 = ball.iris_for({10, 0});
  EXPECT_NEAR(up10.y, 47 - 8.88f * std::sin(10 * kDeg), 1e-4);
  EXPECT_NEAR(up10.x, 112, 1e-4);
  // Positive yaw is toward the image's right.
  EXPECT_GT(ball.iris_for({0, 10}).x, 112);
  // Beyond the rim: clamped, not NaN.
  const mv::Gaze rim = ball.gaze_of({112, 47 - 50});
  EXPECT_FLOAT_EQ(rim.pitch_deg, 90);
  EXPECT_TRUE(std::isfinite(rim.yaw_deg));
  mv::Eyeball flat;
  EXPECT_FLOAT_EQ(flat.gaze_of({3, 4}).pitch_deg, 0);
}

TEST(EyeModel, EyeballSitsAboveTheCornersAndMovesAgainstATurnedHead) {
  const mv::EyeballParams params{.radius = 0.37f, .rise = 0.1f, .nasal = 0.05f, .depth = 0.13f};
  const cv::Point2f a(100, 50), b(124, 50);  // W = 24
  const mv::Eyeball right = mv::eyeball(a, b, mv::EyeSide::right, {}, params);
  EXPECT_NEAR(right.center.x, 112 + 0.05f * 24, 1e-4);  // toward the nose: +x for the right eye
  EXPECT_NEAR(right.center.y, 50 - 0.1f * 24, 1e-4);
  EXPECT_NEAR(right.radius, 0.37f * 24, 1e-4);
  const mv::Eyeball left = mv::eyeball(a, b, mv::EyeSide::left, {}, params);
  EXPECT_NEAR(left.center.x, 112 - 0.05f * 24, 1e-4);
  // A head turned toward the image's right: the centre, behind the corners, lags to the left;
  // the corners' span shrinks by cos(yaw), the ball does not.
  const mv::HeadPose turned{.pitch_deg = 0, .yaw_deg = 20, .roll_deg = 0};
  const mv::Eyeball t = mv::eyeball(a, b, mv::EyeSide::right, turned, params);
  EXPECT_NEAR(t.center.x, right.center.x - 0.13f * 24 * std::sin(20 * kDeg), 1e-4);
  EXPECT_NEAR(t.radius, 0.37f * 24 / std::cos(20 * kDeg), 1e-4);
  // A face turned up: the centre drops against the corners.
  const mv::Eyeball pitched =
      mv::eyeball(a, b, mv::EyeSide::right, {.pitch_deg = 15, .yaw_deg = 0, .roll_deg = 0}, params);
  EXPECT_NEAR(pitched.center.y, right.center.y + 0.13f * 24 * std::sin(15 * kDeg), 1e-4);
}

TEST(HeadPose, FrontalFaceIsLevelAndTurnsAreSigned) {
  const cv::Point2f c(160, 120);
  const mv::HeadPose frontal = mv::estimate_head_pose(synthetic_face(c).landmarks);
  EXPECT_NEAR(frontal.yaw_deg, 0, 0.5);
  EXPECT_NEAR(frontal.roll_deg, 0, 0.5);
  // Nose tip 10 px (of the 34 px half span) off centre: r = 10/34, yaw = atan(r / 0.75).
  const float right = mv::estimate_head_pose(synthetic_face(c, 24, 1, 10).landmarks).yaw_deg;
  const float left = mv::estimate_head_pose(synthetic_face(c, 24, 1, -10).landmarks).yaw_deg;
  EXPECT_NEAR(right, -left, 1e-3);
  EXPECT_NEAR(right, std::atan(10.0f / 34 / 0.75f) / kDeg, 0.2);
  // The nose tip lower between the eye and mouth lines: the face is turned down (pitch < 0).
  mm::Points lower = synthetic_face(c).landmarks;
  mm::Points higher = lower;
  lower[30].y += 4;
  higher[30].y -= 4;
  EXPECT_LT(mv::estimate_head_pose(lower).pitch_deg, frontal.pitch_deg - 5);
  EXPECT_GT(mv::estimate_head_pose(higher).pitch_deg, frontal.pitch_deg + 5);
  // Roll follows the eye line; the rest does not change with it.
  const mv::HeadPose rolled = mv::estimate_head_pose(rotated(synthetic_face(c).landmarks, c, 12));
  EXPECT_NEAR(rolled.roll_deg, 12, 0.1);
  EXPECT_NEAR(rolled.yaw_deg, frontal.yaw_deg, 0.1);
  EXPECT_NEAR(rolled.pitch_deg, frontal.pitch_deg, 0.1);
  // Not 68 points, or all in one place: level, not NaN.
  EXPECT_FLOAT_EQ(mv::estimate_head_pose(mm::Points(5)).yaw_deg, 0);
  const mv::HeadPose degenerate = mv::estimate_head_pose(mm::Points(68, mm::Point{3, 3}));
  EXPECT_FLOAT_EQ(degenerate.pitch_deg, 0);
}
