#include "eye_turn.hpp"

#include <algorithm>
#include <cmath>
#include <limits>

#include <opencv2/imgproc.hpp>

namespace micromodels::bench {

namespace {

float smoothstep(float t) {
  t = std::clamp(t, 0.0f, 1.0f);
  return t * t * (3.0f - 2.0f * t);
}

// The eye's frame: `along` from the image-left corner to the other, `up` toward the brow.
// Deliberately its own code, not the stages' (eye_model.hpp): the evaluation must not share the
// geometry it judges.
struct Frame {
  cv::Point2f origin, along{1, 0}, up{0, -1};
  float width = 0;
  [[nodiscard]] cv::Point2f to_eye(cv::Point2f p) const {
    const cv::Point2f d = p - origin;
    return {d.dot(along), d.dot(up)};
  }
  [[nodiscard]] cv::Point2f to_image(cv::Point2f q) const { return origin + along * q.x + up * q.y; }
};

Frame frame_of(const EvalEye& eye) {
  cv::Point2f a = eye.corner_a, b = eye.corner_b;
  if (b.x < a.x) std::swap(a, b);
  Frame f;
  f.origin = (a + b) * 0.5f;
  f.width = static_cast<float>(cv::norm(b - a));
  if (f.width > 0) {
    f.along = (b - a) * (1.0f / f.width);
    f.up = {f.along.y, -f.along.x};
  }
  return f;
}

// Upper and lower lid heights as functions of `along`, from the contour.
struct Lids {
  std::vector<cv::Point2f> upper, lower;  // (along, up), sorted by along
  float first = 0, last = 0;

  static float at(const std::vector<cv::Point2f>& curve, float x) {
    if (curve.empty()) return 0;
    if (x <= curve.front().x) return curve.front().y;
    if (x >= curve.back().x) return curve.back().y;
    for (std::size_t i = 1; i < curve.size(); ++i) {
      if (x <= curve[i].x) {
        const cv::Point2f a = curve[i - 1], b = curve[i];
        const float t = b.x > a.x ? (x - a.x) / (b.x - a.x) : 0.0f;
        return a.y + t * (b.y - a.y);
      }
    }
    return curve.back().y;
  }
  [[nodiscard]] float upper_at(float x) const { return at(upper, x); }
  [[nodiscard]] float lower_at(float x) const { return at(lower, x); }
};

Lids lids_of(const EvalEye& eye, const Frame& f) {
  Lids lids;
  const cv::Point2f a = f.to_eye(eye.corner_a), b = f.to_eye(eye.corner_b);
  lids.upper = {a, b};
  lids.lower = {a, b};
  for (const cv::Point2f& p : eye.upper_lid) lids.upper.push_back(f.to_eye(p));
  for (const cv::Point2f& p : eye.lower_lid) lids.lower.push_back(f.to_eye(p));
  const auto by_along = [](const cv::Point2f& x, const cv::Point2f& y) { return x.x < y.x; };
  std::sort(lids.upper.begin(), lids.upper.end(), by_along);
  std::sort(lids.lower.begin(), lids.lower.end(), by_along);
  lids.first = std::min(a.x, b.x);
  lids.last = std::max(a.x, b.x);
  return lids;
}

// The share of the turn that moves the content at (along, up): 1 over the iris between the
// lids, under the lower lid within a pixel, fading above the upper lid and toward the corners.
float turn_weight(const Lids& lids, cv::Point2f iris, float radius, float width, float shift,
                  cv::Point2f q) {
  if (q.x <= lids.first || q.x >= lids.last) return 0;
  const float core = radius + 1;
  const float offset = std::abs(q.x - iris.x);
  const float reach = q.x < iris.x ? iris.x - lids.first : lids.last - iris.x;
  const float across = 1 - smoothstep((offset - core) / std::max(reach - core, 1.0f));
  const float upper = lids.upper_at(q.x);
  const float lower = lids.lower_at(q.x);
  const float above = std::max(1.6f * std::abs(shift) + 1, 0.45f * width);
  // The lower lid's rim (about a pixel inside the contour's lower line) stays with the lid; the
  // eye's content slides under it.
  constexpr float kRim = 1.0f;
  constexpr float kUnderLid = 0.25f;
  const float rim = lower + std::min(kRim, 0.25f * (upper - lower));
  float height = 0;
  if (q.y > upper) {
    height = 1 - smoothstep((q.y - upper) / above);
  } else if (q.y > rim + kUnderLid) {
    height = 1;
  } else if (q.y > rim) {
    height = smoothstep((q.y - rim) / kUnderLid);
  }
  return across * height;
}

double squared_difference(const cv::Mat& a, const cv::Mat& b, const cv::Rect& region) {
  cv::Mat diff;
  cv::absdiff(a(region), b(region), diff);
  diff.convertTo(diff, CV_32F);
  return cv::sum(diff.mul(diff))[0];
}

}  // namespace

float EvalEye::width() const { return static_cast<float>(cv::norm(corner_b - corner_a)); }

cv::Point2f EvalEye::down() const { return -frame_of(*this).up; }

EvalEye EvalEye::moved_by(cv::Point2f offset) const {
  EvalEye moved = *this;
  moved.corner_a += offset;
  moved.corner_b += offset;
  for (cv::Point2f& p : moved.upper_lid) p += offset;
  for (cv::Point2f& p : moved.lower_lid) p += offset;
  moved.iris += offset;
  return moved;
}

cv::Rect turn_region(const EvalEye& eye, float max_shift, int margin) {
  const Frame f = frame_of(eye);
  const Lids lids = lids_of(eye, f);
  float top = 0, bottom = 0;
  for (const cv::Point2f& p : lids.upper) top = std::max(top, p.y);
  for (const cv::Point2f& p : lids.lower) bottom = std::min(bottom, p.y);
  top += std::max(1.6f * std::abs(max_shift) + 1, 0.45f * f.width) + std::abs(max_shift);
  bottom -= std::abs(max_shift);
  std::vector<cv::Point2f> corners;
  for (const float u : {lids.first, lids.last}) {
    for (const float t : {bottom, top}) corners.push_back(f.to_image({u, t}));
  }
  const cv::Rect box = cv::boundingRect(corners);
  return {box.x - margin, box.y - margin, box.width + 2 * margin, box.height + 2 * margin};
}

cv::Mat turn_eye(const cv::Mat& image, const EvalEye& eye, float shift) {
  cv::Mat out = image.clone();
  const Frame f = frame_of(eye);
  if (!(f.width > 2) || shift == 0) return out;
  const Lids lids = lids_of(eye, f);
  const cv::Point2f iris = f.to_eye(eye.iris);
  const float radius = eye.iris_radius > 0 ? eye.iris_radius : 0.2f * f.width;
  const cv::Rect region = turn_region(eye, shift, 1) & cv::Rect(0, 0, image.cols, image.rows);
  if (region.empty()) return out;
  cv::Mat map_x(region.size(), CV_32FC1), map_y(region.size(), CV_32FC1);
  for (int y = 0; y < region.height; ++y) {
    auto* mx = map_x.ptr<float>(y);
    auto* my = map_y.ptr<float>(y);
    for (int x = 0; x < region.width; ++x) {
      const cv::Point2f p(static_cast<float>(x + region.x), static_cast<float>(y + region.y));
      const float w = turn_weight(lids, iris, radius, f.width, shift, f.to_eye(p));
      // Content moves down (against `up`) by shift * w: each pixel takes what was above it.
      const cv::Point2f from = p + f.up * (shift * w);
      mx[x] = from.x;
      my[x] = from.y;
    }
  }
  cv::remap(image, out(region), map_x, map_y, cv::INTER_CUBIC, cv::BORDER_REPLICATE);
  return out;
}

std::optional<float> measure_turn(const cv::Mat& turned, const cv::Mat& base, const EvalEye& eye,
                                  float range) {
  const cv::Rect region =
      turn_region(eye, range, 0) & cv::Rect(0, 0, base.cols, base.rows);
  if (region.area() < 4 || turned.size() != base.size()) return std::nullopt;
  const auto cost = [&](float s) { return squared_difference(turned, turn_eye(base, eye, s), region); };
  // Coarse steps over the range, then finer ones around the best, then a parabola.
  float best = 0;
  double best_cost = std::numeric_limits<double>::max();
  for (float step : {0.25f, 0.05f}) {
    const float from = step == 0.25f ? -range : best - 0.25f;
    const float to = step == 0.25f ? range : best + 0.25f;
    for (float s = from; s <= to + 1e-4f; s += step) {
      const double c = cost(s);
      if (c < best_cost) {
        best_cost = c;
        best = s;
      }
    }
  }
  const double before = cost(best - 0.05f), after = cost(best + 0.05f);
  const double curvature = before - 2 * best_cost + after;
  if (curvature > 0) best += static_cast<float>(0.5 * (before - after) / curvature * 0.05);
  return best;
}

std::optional<cv::Point2f> measure_iris_translation(const cv::Mat& moved, const cv::Mat& base,
                                                    const EvalEye& eye, cv::Point2f iris,
                                                    float radius, cv::Point2f expected, float range) {
  if (moved.size() != base.size() || !(radius > 1)) return std::nullopt;
  const Frame f = frame_of(eye);
  const Lids lids = lids_of(eye, f);
  // A pixel inside the opening: a pixel from each lid, and two from the lower lid, whose rim and
  // shadow a rendering may fill rather than move.
  const auto inside = [&](cv::Point2f p) {
    const cv::Point2f q = f.to_eye(p);
    return q.x > lids.first + 1 && q.x < lids.last - 1 && q.y < lids.upper_at(q.x) - 1 &&
           q.y > lids.lower_at(q.x) + 2;
  };
  // Pixels of the iris disk in `moved` (shrunk by half a pixel) compared with base(p - t).
  std::vector<cv::Point> disk;
  const float r = radius - 0.5f;
  for (int y = static_cast<int>(std::floor(iris.y - r)); y <= static_cast<int>(std::ceil(iris.y + r)); ++y) {
    for (int x = static_cast<int>(std::floor(iris.x - r)); x <= static_cast<int>(std::ceil(iris.x + r)); ++x) {
      if (x < 0 || y < 0 || x >= moved.cols || y >= moved.rows) continue;
      const cv::Point2f p(static_cast<float>(x), static_cast<float>(y));
      if (cv::norm(p - iris) > r || !inside(p) || !inside(p - expected)) continue;
      disk.emplace_back(x, y);
    }
  }
  if (disk.size() < 4) return std::nullopt;
  cv::Mat moved_f, base_f;
  moved.convertTo(moved_f, CV_32F);
  base.convertTo(base_f, CV_32F);
  const int channels = base.channels();
  const auto cost = [&](cv::Point2f t) {
    double sum = 0;
    for (const cv::Point& p : disk) {
      // base(p - t), bilinear, borders clamped.
      const float sx = std::clamp(static_cast<float>(p.x) - t.x, 0.0f, static_cast<float>(base.cols - 1));
      const float sy = std::clamp(static_cast<float>(p.y) - t.y, 0.0f, static_cast<float>(base.rows - 1));
      const int x0 = static_cast<int>(sx), y0 = static_cast<int>(sy);
      const int x1 = std::min(x0 + 1, base.cols - 1), y1 = std::min(y0 + 1, base.rows - 1);
      const float fx = sx - static_cast<float>(x0), fy = sy - static_cast<float>(y0);
      const float* r0 = base_f.ptr<float>(y0);
      const float* r1 = base_f.ptr<float>(y1);
      const float* want = moved_f.ptr<float>(p.y) + static_cast<std::ptrdiff_t>(p.x) * channels;
      for (int c = 0; c < channels; ++c) {
        const float top = r0[x0 * channels + c] * (1 - fx) + r0[x1 * channels + c] * fx;
        const float bottom = r1[x0 * channels + c] * (1 - fx) + r1[x1 * channels + c] * fx;
        const float got = top * (1 - fy) + bottom * fy;
        sum += (got - want[c]) * (got - want[c]);
      }
    }
    return sum;
  };
  cv::Point2f best(0, 0);
  double best_cost = std::numeric_limits<double>::max();
  for (const float step : {0.25f, 0.05f}) {
    const cv::Point2f centre = best;
    const float half = step == 0.25f ? range : 0.25f;
    for (float dy = -half; dy <= half + 1e-4f; dy += step) {
      for (float dx = -half; dx <= half + 1e-4f; dx += step) {
        const cv::Point2f t = centre + cv::Point2f(dx, dy);
        const double c = cost(t);
        if (c < best_cost) {
          best_cost = c;
          best = t;
        }
      }
    }
  }
  return best;
}

std::optional<cv::Point2f> find_iris(const cv::Mat& image, const EvalEye& eye) {
  constexpr int k = 4;
  const Frame f = frame_of(eye);
  if (!(f.width > 4)) return std::nullopt;
  const Lids lids = lids_of(eye, f);
  std::vector<cv::Point2f> outline;
  for (const cv::Point2f& q : lids.lower) outline.push_back(f.to_image(q));
  for (auto it = lids.upper.rbegin(); it != lids.upper.rend(); ++it) outline.push_back(f.to_image(*it));
  cv::Rect box = cv::boundingRect(outline);
  box = cv::Rect(box.x - 3, box.y - 3, box.width + 6, box.height + 6) & cv::Rect(0, 0, image.cols, image.rows);
  if (box.width < 4 || box.height < 4) return std::nullopt;
  cv::Mat gray;
  if (image.channels() == 1) {
    gray = image(box).clone();
  } else {
    cv::cvtColor(image(box), gray, cv::COLOR_BGR2GRAY);
  }
  cv::Mat big;
  gray.convertTo(gray, CV_32F);
  cv::resize(gray, big, cv::Size(), k, k, cv::INTER_CUBIC);
  cv::GaussianBlur(big, big, cv::Size(), 0.6 * k);
  cv::Mat gx, gy, magnitude;
  cv::Sobel(big, gx, CV_32F, 1, 0, 3);
  cv::Sobel(big, gy, CV_32F, 0, 1, 3);
  cv::magnitude(gx, gy, magnitude);
  // The opening, in the upsampled crop (pixel centres: x_big = (x - box.x + 0.5) k - 0.5).
  const auto to_big = [&](cv::Point2f p) {
    return cv::Point2f((p.x - static_cast<float>(box.x) + 0.5f) * k - 0.5f,
                       (p.y - static_cast<float>(box.y) + 0.5f) * k - 0.5f);
  };
  std::vector<cv::Point> polygon;
  for (const cv::Point2f& p : outline) polygon.emplace_back(to_big(p));
  cv::Mat inside = cv::Mat::zeros(big.size(), CV_8UC1);
  cv::fillPoly(inside, std::vector<std::vector<cv::Point>>{polygon}, cv::Scalar(255));
  cv::Mat near;
  cv::dilate(inside, near, cv::getStructuringElement(cv::MORPH_ELLIPSE, {2 * k + 1, 2 * k + 1}));
  cv::Scalar mean, stddev;
  cv::meanStdDev(magnitude, mean, stddev, near);
  const double threshold = mean[0] + 0.3 * stddev[0];
  struct Gradient {
    float x, y, gx, gy;
  };
  std::vector<Gradient> gradients;
  for (int y = 0; y < big.rows; ++y) {
    for (int x = 0; x < big.cols; ++x) {
      const float m = magnitude.at<float>(y, x);
      if (near.at<std::uint8_t>(y, x) == 0 || m <= threshold) continue;
      gradients.push_back({static_cast<float>(x), static_cast<float>(y), gx.at<float>(y, x) / m,
                           gy.at<float>(y, x) / m});
    }
  }
  if (gradients.size() < 8) return std::nullopt;
  cv::Mat dark;
  cv::GaussianBlur(big, dark, cv::Size(), 1.0 * k);
  cv::Mat score(big.size(), CV_32F, cv::Scalar(-1));
  for (int y = 0; y < big.rows; ++y) {
    for (int x = 0; x < big.cols; ++x) {
      if (inside.at<std::uint8_t>(y, x) == 0) continue;
      double sum = 0;
      for (const Gradient& g : gradients) {
        const float dx = g.x - static_cast<float>(x), dy = g.y - static_cast<float>(y);
        const float n = std::hypot(dx, dy);
        if (n < 1e-3f) continue;
        const float dot = std::max(0.0f, (dx * g.gx + dy * g.gy) / n);  // pointing away: dark inside
        sum += dot * dot;
      }
      score.at<float>(y, x) =
          static_cast<float>((255.0 - dark.at<float>(y, x)) * sum / static_cast<double>(gradients.size()));
    }
  }
  cv::Point best;
  double best_value = 0;
  cv::minMaxLoc(score, nullptr, &best_value, nullptr, &best);
  if (best_value <= 0) return std::nullopt;
  const auto refine = [&](float before, float here, float after) {
    const float curvature = before - 2 * here + after;
    return before >= 0 && after >= 0 && curvature < 0 ? std::clamp(0.5f * (before - after) / curvature, -0.5f, 0.5f)
                                                      : 0.0f;
  };
  const float at = score.at<float>(best);
  float ox = 0, oy = 0;
  if (best.x > 0 && best.x < score.cols - 1) {
    ox = refine(score.at<float>(best.y, best.x - 1), at, score.at<float>(best.y, best.x + 1));
  }
  if (best.y > 0 && best.y < score.rows - 1) {
    oy = refine(score.at<float>(best.y - 1, best.x), at, score.at<float>(best.y + 1, best.x));
  }
  return cv::Point2f((static_cast<float>(best.x) + ox + 0.5f) / k - 0.5f + static_cast<float>(box.x),
                     (static_cast<float>(best.y) + oy + 0.5f) / k - 0.5f + static_cast<float>(box.y));
}

}  // namespace micromodels::bench
