#include "head_pose.hpp"

#include <cmath>
#include <numbers>

namespace micromodels::vision {

namespace {

constexpr float kDegrees = 180.0f / std::numbers::pi_v<float>;

// Nose-tip depth in front of the outer eye corners, over half the corner span (yaw).
constexpr float kNoseDepthOverHalfSpan = 0.75f;
// Frontal face: the nose tip's height between the eye line (0) and the mouth corners' line (1),
// and its depth in front of them over the eye-to-mouth distance (pitch). The sample videos put
// the ratio at 0.47 (franck.mp4) and 0.29 (cap12/cap13, filmed from below); 0.38 sits between.
constexpr float kFrontalNoseHeight = 0.38f;
constexpr float kNoseDepthOverEyeToMouth = 0.35f;

cv::Point2f at(const Points& points, std::size_t i) { return {points[i].x, points[i].y}; }

}  // namespace

HeadPose estimate_head_pose(const Points& landmarks) {
  if (landmarks.size() != 68) return {};
  const cv::Point2f right_corner = at(landmarks, 36);
  const cv::Point2f left_corner = at(landmarks, 45);
  const cv::Point2f nose = at(landmarks, 30);
  const cv::Point2f line = left_corner - right_corner;
  const auto span = static_cast<float>(cv::norm(line));
  if (!(span > 0)) return {};
  const cv::Point2f axis = line * (1.0f / span);
  const cv::Point2f down(-axis.y, axis.x);
  HeadPose pose;
  pose.roll_deg = std::atan2(axis.y, axis.x) * kDegrees;
  // Yaw: corners at +-H, the tip D in front. Turning by yaw puts the tip at D sin(yaw) while
  // the corners' span is 2 H cos(yaw), so the tip's off-centre share r = (a - b) / (a + b) is
  // (D / H) tan(yaw).
  const float a = (nose - right_corner).dot(axis);
  const float b = (left_corner - nose).dot(axis);
  if (a + b > 0) pose.yaw_deg = std::atan(((a - b) / (a + b)) / kNoseDepthOverHalfSpan) * kDegrees;
  // Pitch: with the eye line at 0 and the mouth line at 1 (both in one depth plane), a tip at
  // height h0 and depth D shows at (h0 cos(p) - D sin(p)) / cos(p) = h0 - D tan(p).
  const cv::Point2f eyes = (at(landmarks, 36) + at(landmarks, 39) + at(landmarks, 42) +
                            at(landmarks, 45)) * 0.25f;
  const cv::Point2f mouth = (at(landmarks, 48) + at(landmarks, 54)) * 0.5f;
  const float to_mouth = (mouth - eyes).dot(down);
  if (to_mouth > 0) {
    const float height = (nose - eyes).dot(down) / to_mouth;
    pose.pitch_deg =
        std::atan((kFrontalNoseHeight - height) / kNoseDepthOverEyeToMouth) * kDegrees;
  }
  return pose;
}

}  // namespace micromodels::vision
