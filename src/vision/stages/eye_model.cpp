#include "eye_model.hpp"

#include <algorithm>
#include <cmath>
#include <numbers>

namespace micromodels::vision {

namespace {

constexpr float kDegrees = 180.0f / std::numbers::pi_v<float>;

float radians(float degrees) { return degrees / kDegrees; }

}  // namespace

EyeAxes eye_axes(cv::Point2f a, cv::Point2f b) {
  if (b.x < a.x) std::swap(a, b);
  EyeAxes axes;
  axes.origin = (a + b) * 0.5f;
  axes.width = static_cast<float>(cv::norm(b - a));
  if (axes.width > 0) {
    axes.along = (b - a) * (1.0f / axes.width);
    axes.up = {axes.along.y, -axes.along.x};  // along turned a quarter counter-clockwise
  }
  return axes;
}

Gaze Eyeball::gaze_of(cv::Point2f iris) const {
  if (!(radius > 0)) return {};
  const cv::Point2f q = axes.to_eye(iris) - axes.to_eye(center);
  const float up = std::clamp(q.y / radius, -1.0f, 1.0f);
  const float pitch = std::asin(up);
  const float across = radius * std::cos(pitch);
  const float along = across > 0 ? std::clamp(q.x / across, -1.0f, 1.0f) : 0.0f;
  return {.pitch_deg = pitch * kDegrees, .yaw_deg = std::asin(along) * kDegrees};
}

cv::Point2f Eyeball::iris_for(Gaze gaze) const {
  const float pitch = radians(gaze.pitch_deg);
  const float yaw = radians(gaze.yaw_deg);
  const cv::Point2f q(radius * std::cos(pitch) * std::sin(yaw), radius * std::sin(pitch));
  return axes.to_frame(axes.to_eye(center) + q);
}

Eyeball eyeball(cv::Point2f a, cv::Point2f b, EyeSide side, const HeadPose& head,
                const EyeballParams& params) {
  Eyeball ball;
  ball.axes = eye_axes(a, b);
  const float w = ball.axes.width;
  // The subject's right eye is on the image's left: its nose side is toward +along.
  const float toward_nose = side == EyeSide::right ? 1.0f : -1.0f;
  // A point `depth` behind the corners moves against them when the head turns or pitches.
  const float along = toward_nose * params.nasal * w - params.depth * w * std::sin(radians(head.yaw_deg));
  const float up = params.rise * w - params.depth * w * std::sin(radians(head.pitch_deg));
  ball.center = ball.axes.to_frame({along, up});
  // The corners' span shrinks with the head's yaw; the ball does not.
  const float foreshortening = std::max(0.5f, std::cos(radians(head.yaw_deg)));
  ball.radius = params.radius * w / foreshortening;
  return ball;
}

}  // namespace micromodels::vision
