#include "iris_schedule.hpp"

#include <algorithm>
#include <array>
#include <cmath>

#include "eye_fields.hpp"

namespace micromodels::vision {

namespace {

// Points that move with the skull, not with the gaze or the lids.
constexpr std::array<std::size_t, 8> kRigidLandmarks{36, 39, 42, 45, 27, 28, 29, 30};

cv::Point2f at(const Points& points, std::size_t i) { return {points[i].x, points[i].y}; }

float mean_eye_width(const Points& landmarks) {
  return static_cast<float>(cv::norm(at(landmarks, 36) - at(landmarks, 39)) +
                            cv::norm(at(landmarks, 42) - at(landmarks, 45))) /
         2;
}

}  // namespace

cv::Matx23f face_motion(const Points& from, const Points& to) {
  // Closed-form least-squares similarity (Umeyama without reflection): centre both sets, then
  // a = sum(p.q) / sum(p.p), b = sum(p x q) / sum(p.p) give scale*cos and scale*sin.
  cv::Point2f from_mean, to_mean;
  for (const std::size_t i : kRigidLandmarks) {
    from_mean += at(from, i);
    to_mean += at(to, i);
  }
  const auto n = static_cast<float>(kRigidLandmarks.size());
  from_mean /= n;
  to_mean /= n;
  double dot = 0, cross = 0, norm = 0;
  for (const std::size_t i : kRigidLandmarks) {
    const cv::Point2f p = at(from, i) - from_mean;
    const cv::Point2f q = at(to, i) - to_mean;
    dot += p.x * q.x + p.y * q.y;
    cross += p.x * q.y - p.y * q.x;
    norm += p.x * p.x + p.y * p.y;
  }
  const auto a = static_cast<float>(norm > 0 ? dot / norm : 1.0);
  const auto b = static_cast<float>(norm > 0 ? cross / norm : 0.0);
  // q = R p + t with R = [a -b; b a], t = to_mean - R from_mean.
  return {a, -b, to_mean.x - (a * from_mean.x - b * from_mean.y),
          b, a,  to_mean.y - (b * from_mean.x + a * from_mean.y)};
}

Points move_points(const Points& points, const cv::Matx23f& m) {
  Points moved;
  moved.reserve(points.size());
  for (const Point& p : points) {
    moved.push_back(
        {m(0, 0) * p.x + m(0, 1) * p.y + m(0, 2), m(1, 0) * p.x + m(1, 1) * p.y + m(1, 2)});
  }
  return moved;
}

bool can_carry_iris(const std::optional<IrisKeyFrame>& key, std::uint64_t seq,
                    const Points& landmarks, const IrisScheduleOptions& options) {
  if (!key || options.every <= 1) return false;
  if (seq <= key->seq || seq - key->seq >= static_cast<std::uint64_t>(options.every)) return false;
  if (landmarks.size() != kLandmarkCount || key->landmarks.size() != kLandmarkCount) return false;
  const float width = mean_eye_width(key->landmarks);
  if (!(width > 0)) return false;
  // Motion: the farthest any rigid point moved since the key frame, in eye widths.
  float moved = 0;
  for (const std::size_t i : kRigidLandmarks) {
    moved = std::max(moved, static_cast<float>(cv::norm(at(landmarks, i) - at(key->landmarks, i))));
  }
  if (moved > options.max_motion * width) return false;
  // Lids: an eye opening or closing changes what the iris model would see.
  for (const EyeSide side : {EyeSide::right, EyeSide::left}) {
    const float then = eye_aspect_ratio(eye_landmarks(key->landmarks, side));
    const float now = eye_aspect_ratio(eye_landmarks(landmarks, side));
    if (std::abs(now - then) > options.max_ear_change) return false;
  }
  return true;
}

}  // namespace micromodels::vision
