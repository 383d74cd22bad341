#include "eye_warp.hpp"

#include <algorithm>
#include <cmath>
#include <limits>

#include <opencv2/imgproc.hpp>

namespace micromodels::vision {

namespace {

// smoothstep's largest slope is 1.5 per unit of its input: a field d * smoothstep(x / width)
// stays fold-free (its backward map keeps increasing) while |d| * 1.5 / width < 1. Every
// falloff below is at least kNoFold x the displacement it carries.
constexpr float kNoFold = 1.6f;
// The iris model's and dlib's points sit on the limbus; a little more keeps the dark ring.
constexpr float kIrisCore = 1.1f;
// Cardinal-spline tangent scale for the opening (Catmull-Rom is 0.5): smaller bulges less
// past the eye corners while still rounding the eyelids.
constexpr float kTension = 0.35f;
constexpr int kSplineSamples = 4;   // per hull side
constexpr float kMinShift = 1e-3f;  // pixels: below this the warp would change nothing

float smoothstep(float t) {
  t = std::clamp(t, 0.0f, 1.0f);
  return t * t * (3.0f - 2.0f * t);
}

float length(cv::Point2f v) { return std::hypot(v.x, v.y); }

// The closest point of a closed polygon to p: its distance and the unit normal of the side it
// lies on.
struct Nearest {
  float distance = 0;
  cv::Point2f normal{0, 1};
};

Nearest nearest_on_polygon(const std::vector<cv::Point2f>& polygon, cv::Point2f p) {
  Nearest best{.distance = std::numeric_limits<float>::max(), .normal = {0, 1}};
  for (std::size_t i = 0; i < polygon.size(); ++i) {
    const cv::Point2f a = polygon[i];
    const cv::Point2f b = polygon[(i + 1) % polygon.size()];
    const cv::Point2f ab = b - a;
    const float len2 = ab.dot(ab);
    if (len2 <= 0) continue;
    const float t = std::clamp((p - a).dot(ab) / len2, 0.0f, 1.0f);
    const float dist = length(p - (a + t * ab));
    if (dist < best.distance) {
      const float len = std::sqrt(len2);
      best = {.distance = dist, .normal = {-ab.y / len, ab.x / len}};
    }
  }
  return best;
}

float distance_to_segment(cv::Point2f p, cv::Point2f a, cv::Point2f b) {
  const cv::Point2f ab = b - a;
  const float len2 = ab.dot(ab);
  const float t = len2 > 0 ? std::clamp((p - a).dot(ab) / len2, 0.0f, 1.0f) : 0.0f;
  return length(p - (a + t * ab));
}

struct Corners {
  cv::Point2f a, b;
  float distance = 0;
};

// The two points farthest apart (n is tiny: 6 or 16 points).
Corners eye_corners(std::span<const cv::Point2f> points) {
  Corners best;
  for (std::size_t i = 0; i < points.size(); ++i) {
    for (std::size_t j = i + 1; j < points.size(); ++j) {
      if (const float d = length(points[i] - points[j]); d > best.distance) {
        best = {.a = points[i], .b = points[j], .distance = d};
      }
    }
  }
  return best;
}

// The eye's own frame: its polygon, width along the corner-to-corner axis, and height across.
struct EyeFrame {
  std::vector<cv::Point2f> polygon;
  float width = 0;
  float height = 0;
  cv::Point2f across{0, 1};  // unit normal to the corner-to-corner axis

  // The eyelid margin: inside the opening, the field rises from 0 at the lid to full strength
  // over this distance. At least 1 px; no more than ~half the opening; wide enough for the
  // displacement across the eye not to fold.
  [[nodiscard]] float lid_margin(float shift_across) const {
    return std::max(1.0f, std::min(0.45f * height, 1.0f + kNoFold * std::abs(shift_across)));
  }
};

EyeFrame eye_frame(const EyeShape& eye) {
  EyeFrame frame;
  frame.polygon = eye_opening_polygon(eye.opening);
  if (frame.polygon.empty()) return frame;
  const Corners corners = eye_corners(eye.opening);
  frame.width = corners.distance;
  if (corners.distance > 0) {
    const cv::Point2f axis = (corners.b - corners.a) * (1.0f / corners.distance);
    frame.across = {-axis.y, axis.x};
  }
  float lo = 0, hi = 0;
  bool first = true;
  for (const cv::Point2f& p : frame.polygon) {
    const float t = p.dot(frame.across);
    lo = first ? t : std::min(lo, t);
    hi = first ? t : std::max(hi, t);
    first = false;
  }
  frame.height = hi - lo;
  return frame;
}

cv::Point2f clamp_shift(const EyeFrame& frame, cv::Point2f wanted, float max_shift) {
  if (frame.polygon.empty() || frame.width <= 0) return {0, 0};
  cv::Point2f d = wanted;
  const float limit = std::max(0.0f, max_shift) * frame.width;
  if (const float len = length(d); len > limit) d *= len > 0 ? limit / len : 0.0f;
  // Across the eye the opening is short: keep that component within what its margin allows.
  const float across = d.dot(frame.across);
  const float allowed = frame.lid_margin(across) / kNoFold;
  if (std::abs(across) > allowed) {
    d -= (across - std::copysign(allowed, across)) * frame.across;
  }
  return d;
}

}  // namespace

std::vector<cv::Point2f> eye_opening_polygon(std::span<const cv::Point2f> points) {
  std::vector<cv::Point2f> finite;
  for (const cv::Point2f& p : points) {
    if (std::isfinite(p.x) && std::isfinite(p.y)) finite.push_back(p);
  }
  if (finite.size() < 3) return {};
  std::vector<cv::Point2f> hull;
  cv::convexHull(finite, hull);
  if (hull.size() < 3) return {};
  const std::size_t n = hull.size();
  std::vector<cv::Point2f> curve;
  curve.reserve(n * kSplineSamples);
  for (std::size_t i = 0; i < n; ++i) {
    const cv::Point2f p0 = hull[(i + n - 1) % n];
    const cv::Point2f p1 = hull[i];
    const cv::Point2f p2 = hull[(i + 1) % n];
    const cv::Point2f p3 = hull[(i + 2) % n];
    const cv::Point2f m1 = kTension * (p2 - p0);
    const cv::Point2f m2 = kTension * (p3 - p1);
    for (int s = 0; s < kSplineSamples; ++s) {
      const float t = static_cast<float>(s) / kSplineSamples;
      const float t2 = t * t;
      const float t3 = t2 * t;
      // Cubic Hermite basis.
      const float h00 = 2 * t3 - 3 * t2 + 1;
      const float h10 = t3 - 2 * t2 + t;
      const float h01 = -2 * t3 + 3 * t2;
      const float h11 = t3 - t2;
      curve.push_back(h00 * p1 + h10 * m1 + h01 * p2 + h11 * m2);
    }
  }
  return curve;
}

cv::Point2f polygon_centroid(std::span<const cv::Point2f> polygon) {
  if (polygon.empty()) return {0, 0};
  double area2 = 0, cx = 0, cy = 0, mx = 0, my = 0;
  for (std::size_t i = 0; i < polygon.size(); ++i) {
    const cv::Point2f& a = polygon[i];
    const cv::Point2f& b = polygon[(i + 1) % polygon.size()];
    const double cross = static_cast<double>(a.x) * b.y - static_cast<double>(b.x) * a.y;
    area2 += cross;
    cx += (a.x + b.x) * cross;
    cy += (a.y + b.y) * cross;
    mx += a.x;
    my += a.y;
  }
  const auto n = static_cast<double>(polygon.size());
  if (std::abs(area2) < 1e-6) return {static_cast<float>(mx / n), static_cast<float>(my / n)};
  return {static_cast<float>(cx / (3 * area2)), static_cast<float>(cy / (3 * area2))};
}

float eye_width(std::span<const cv::Point2f> points) { return eye_corners(points).distance; }

cv::Point2f camera_gaze_target(const EyeShape& eye, float rise) {
  const Corners corners = eye_corners(eye.opening);
  const cv::Point2f middle = (corners.a + corners.b) * 0.5f;
  if (corners.distance <= 0) return middle;
  const cv::Point2f axis = (corners.b - corners.a) * (1.0f / corners.distance);
  cv::Point2f up(-axis.y, axis.x);
  if (up.y > 0) up = -up;  // toward the top of the image (faces are upright within +-90 deg)
  return middle + up * (rise * corners.distance);
}

cv::Point2f clamp_eye_shift(const EyeShape& eye, cv::Point2f wanted, float max_shift) {
  return clamp_shift(eye_frame(eye), wanted, max_shift);
}

EyePatch redirect_eyes(const cv::Mat& frame, std::span<const EyeWarpRequest> eyes,
                       const EyeWarpOptions& options) {
  EyePatch result;
  result.applied.assign(eyes.size(), cv::Point2f(0, 0));
  if (frame.empty() || frame.depth() != CV_8U) return result;

  struct Prepared {
    EyeFrame frame;
    cv::Point2f shift;
    float iris_radius = 0;
    cv::Point2f iris;
  };
  std::vector<Prepared> prepared;
  const cv::Rect bounds(0, 0, frame.cols, frame.rows);
  const int margin = std::max(0, options.grow_px) + 2 * std::max(0, options.feather_px) + 1;
  cv::Rect roi;
  for (std::size_t i = 0; i < eyes.size(); ++i) {
    Prepared eye{.frame = eye_frame(eyes[i].eye), .shift = {0, 0}, .iris = eyes[i].eye.iris_center};
    if (eye.frame.polygon.empty() || !std::isfinite(eye.iris.x) || !std::isfinite(eye.iris.y)) {
      continue;
    }
    eye.shift = clamp_shift(eye.frame, eyes[i].shift, options.max_shift);
    if (length(eye.shift) < kMinShift) continue;
    eye.iris_radius =
        eyes[i].eye.iris_radius > 0 ? eyes[i].eye.iris_radius : 0.2f * eye.frame.width;
    const cv::Rect box = cv::boundingRect(eye.frame.polygon);
    const cv::Rect grown(box.x - margin, box.y - margin, box.width + 2 * margin,
                         box.height + 2 * margin);
    if ((grown & bounds).empty()) continue;  // the eye is entirely off the frame
    roi = roi.empty() ? grown : (roi | grown);
    result.applied[i] = eye.shift;
    prepared.push_back(std::move(eye));
  }
  roi &= bounds;
  if (prepared.empty() || roi.empty()) {
    result.applied.assign(eyes.size(), cv::Point2f(0, 0));
    return result;
  }
  result.roi = roi;

  // Backward map in absolute frame coordinates: identity, then each eye's field subtracted.
  cv::Mat map_x(roi.size(), CV_32FC1);
  cv::Mat map_y(roi.size(), CV_32FC1);
  for (int y = 0; y < roi.height; ++y) {
    auto* mx = map_x.ptr<float>(y);
    auto* my = map_y.ptr<float>(y);
    for (int x = 0; x < roi.width; ++x) {
      mx[x] = static_cast<float>(x + roi.x);
      my[x] = static_cast<float>(y + roi.y);
    }
  }
  for (const Prepared& eye : prepared) {
    const cv::Point2f d = eye.shift;
    const cv::Point2f from = eye.iris;
    const cv::Point2f to = eye.iris + d;
    const float core = kIrisCore * eye.iris_radius;
    const float falloff = std::max({0.6f * eye.iris_radius, kNoFold * length(d), 1.0f});
    const float lid = eye.frame.lid_margin(d.dot(eye.frame.across));
    const int band = std::max(0, options.grow_px);
    const cv::Rect polygon_box = cv::boundingRect(eye.frame.polygon);
    const cv::Rect box = cv::Rect(polygon_box.x - band, polygon_box.y - band,
                                  polygon_box.width + 2 * band, polygon_box.height + 2 * band) &
                         roi;
    for (int y = box.y; y < box.y + box.height; ++y) {
      auto* mx = map_x.ptr<float>(y - roi.y);
      auto* my = map_y.ptr<float>(y - roi.y);
      for (int x = box.x; x < box.x + box.width; ++x) {
        const cv::Point2f p(static_cast<float>(x), static_cast<float>(y));
        const float g = 1.0f - smoothstep((distance_to_segment(p, from, to) - core) / falloff);
        if (g <= 0) continue;
        const Nearest lid_point = nearest_on_polygon(eye.frame.polygon, p);
        const bool inside = cv::pointPolygonTest(eye.frame.polygon, p, false) > 0;
        // Split d at the nearest stretch of eyelid: the part across it would move the lid, so
        // it fades in only past the lid margin; the part along it slides content along the
        // lid without moving its line, so it applies right up to the lid and a few pixels
        // beyond (the iris the landmarks' polygon cuts off moves with the rest).
        const cv::Point2f across = d.dot(lid_point.normal) * lid_point.normal;
        const cv::Point2f along = d - across;
        cv::Point2f field;
        if (inside) {
          field = along + smoothstep(lid_point.distance / lid) * across;
        } else if (band > 0 && lid_point.distance < static_cast<float>(band)) {
          field = (1.0f - smoothstep(lid_point.distance / static_cast<float>(band))) * along;
        } else {
          continue;
        }
        mx[x - roi.x] -= g * field.x;
        my[x - roi.x] -= g * field.y;
      }
    }
  }
  cv::remap(frame, result.patch, map_x, map_y, cv::INTER_LINEAR, cv::BORDER_REPLICATE);

  result.mask = cv::Mat::zeros(roi.size(), CV_8UC1);
  constexpr int kShift = 4;  // sub-pixel polygon vertices for fillPoly
  for (const Prepared& eye : prepared) {
    std::vector<cv::Point> points;
    points.reserve(eye.frame.polygon.size());
    for (const cv::Point2f& p : eye.frame.polygon) {
      points.emplace_back(cvRound((p.x - static_cast<float>(roi.x)) * (1 << kShift)),
                          cvRound((p.y - static_cast<float>(roi.y)) * (1 << kShift)));
    }
    cv::fillPoly(result.mask, std::vector<std::vector<cv::Point>>{points}, cv::Scalar(255),
                 cv::LINE_8, kShift);
  }
  // Grown by grow_px + feather_px, then blurred over feather_px: alpha is exactly 255 up to
  // grow_px outside the opening (all the field touches) and 0 from grow_px + 2 feather_px.
  if (const int grow = std::max(0, options.grow_px) + std::max(0, options.feather_px); grow > 0) {
    const int k = 2 * grow + 1;
    cv::dilate(result.mask, result.mask,
               cv::getStructuringElement(cv::MORPH_ELLIPSE, cv::Size(k, k)));
  }
  if (options.feather_px > 0) {
    const int k = 2 * options.feather_px + 1;
    cv::GaussianBlur(result.mask, result.mask, cv::Size(k, k), 0, 0, cv::BORDER_CONSTANT);
  }
  return result;
}

}  // namespace micromodels::vision
