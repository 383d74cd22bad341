#include "eye_fields.hpp"

#include <cmath>
#include <numbers>
#include <string>

namespace micromodels::vision {

namespace {

// Nose-tip depth in front of the outer eye corners, over half the corner span.
constexpr float kNoseDepthRatio = 0.75f;

cv::Point2f at(const Points& points, std::size_t i) { return {points[i].x, points[i].y}; }

}  // namespace

const Points* points_field(const Packet& packet, std::string_view name, std::size_t count) {
  const Value* value = packet.find(name);
  if (value == nullptr) return nullptr;
  const auto* points = std::get_if<Points>(value);
  if (points == nullptr) {
    throw FieldError("field '" + std::string(name) + "' must hold points, not " +
                     std::string(value_type_name(value->index())));
  }
  return points->size() == count ? points : nullptr;
}

std::vector<cv::Point2f> eye_landmarks(const Points& landmarks, EyeSide side) {
  const auto& indices = side == EyeSide::right ? kRightEyeLandmarks : kLeftEyeLandmarks;
  std::vector<cv::Point2f> eye;
  eye.reserve(indices.size());
  for (const std::size_t i : indices) eye.push_back(at(landmarks, i));
  return eye;
}

std::optional<EyeShape> eye_shape(const Packet& packet, EyeSide side) {
  const Points* landmarks = points_field(packet, "landmarks", kLandmarkCount);
  const Points* iris = points_field(packet, "iris", 2 * kIrisPointsPerEye);
  if (landmarks == nullptr || iris == nullptr) return std::nullopt;
  const auto s = static_cast<std::size_t>(side);
  EyeShape eye;
  if (const Points* contours = points_field(packet, "eye_contours", 2 * kContourPointsPerEye)) {
    for (std::size_t i = 0; i < kEyelidContourPoints; ++i) {
      eye.opening.push_back(at(*contours, s * kContourPointsPerEye + i));
    }
  } else {
    eye.opening = eye_landmarks(*landmarks, side);
  }
  const std::size_t base = s * kIrisPointsPerEye;
  eye.iris_center = at(*iris, base);
  float radius = 0;
  for (std::size_t i = 1; i < kIrisPointsPerEye; ++i) {
    radius += static_cast<float>(cv::norm(at(*iris, base + i) - eye.iris_center));
  }
  eye.iris_radius = radius / static_cast<float>(kIrisPointsPerEye - 1);
  return eye;
}

float eye_aspect_ratio(std::span<const cv::Point2f> six) {
  if (six.size() != 6) return 0;
  const auto d = [&](std::size_t a, std::size_t b) {
    return static_cast<float>(cv::norm(six[a] - six[b]));
  };
  const float width = d(0, 3);
  if (width <= 0) return 0;
  return (d(1, 5) + d(2, 4)) / (2 * width);
}

float estimate_yaw_degrees(const Points& landmarks) {
  if (landmarks.size() != kLandmarkCount) return 0;
  const cv::Point2f right_corner = at(landmarks, 36);
  const cv::Point2f left_corner = at(landmarks, 45);
  const cv::Point2f nose = at(landmarks, kNoseTip);
  const cv::Point2f line = left_corner - right_corner;
  const auto span = static_cast<float>(cv::norm(line));
  if (span <= 0) return 0;
  const cv::Point2f axis = line * (1.0f / span);
  // Orthographic head model: corners at +-H, the nose tip D in front. Turning by yaw puts the
  // tip at D sin(yaw) while the corners' span is 2 H cos(yaw), so the tip's off-centre share
  // r = (a - b) / (a + b) is (D / H) tan(yaw).
  const float a = (nose - right_corner).dot(axis);
  const float b = (left_corner - nose).dot(axis);
  const float r = (a - b) / (a + b);
  return std::atan(r / kNoseDepthRatio) * 180.0f / std::numbers::pi_v<float>;
}

}  // namespace micromodels::vision
