#include "eye_measure.hpp"

#include <algorithm>
#include <cmath>
#include <vector>

#include <opencv2/imgproc.hpp>

namespace micromodels::vision {

namespace {

// The patch: samples per frame pixel, and its extent in eye widths around the corners' midpoint.
constexpr int kMaxColumns = 192;
constexpr float kHalfLength = 0.75f;
constexpr float kHalfHeight = 0.5f;
// Search windows, frame pixels either side of the model's lid.
constexpr float kUpperSearch = 3.0f;
constexpr float kLowerSearch = 2.5f;
// Columns: within this many iris radii of the iris centre (upper lid), within this share of
// the eye width of its middle (lower lid).
constexpr float kUpperColumns = 1.2f;
constexpr float kLowerColumns = 0.3f;
constexpr int kMinColumns = 3;
constexpr float kInsideColumns = 0.3f;  // the inside's contrast: within this share of the width

float interpolate(const std::vector<cv::Point2f>& curve, float x) {
  if (curve.empty()) return 0;
  if (x <= curve.front().x) return curve.front().y;
  if (x >= curve.back().x) return curve.back().y;
  const auto after = std::upper_bound(curve.begin(), curve.end(), x,
                                      [](float v, const cv::Point2f& p) { return v < p.x; });
  const cv::Point2f b = *after;
  const cv::Point2f a = *(after - 1);
  const float t = b.x > a.x ? (x - a.x) / (b.x - a.x) : 0.0f;
  return a.y + t * (b.y - a.y);
}

std::vector<cv::Point2f> sorted(std::vector<cv::Point2f> points) {
  std::sort(points.begin(), points.end(),
            [](const cv::Point2f& a, const cv::Point2f& b) { return a.x < b.x; });
  return points;
}

// An eye-aligned gray patch: column j, row i sample the frame at
// axes.to_frame({-half_length + (j + 0.5) / k, half_height - (i + 0.5) / k}).
struct EyePatch {
  cv::Mat gray;  // CV_32F
  float k = 1;
  float half_length = 0;
  float half_height = 0;

  [[nodiscard]] float along_of(float column) const { return -half_length + (column + 0.5f) / k; }
  [[nodiscard]] float column_of(float along) const { return (along + half_length) * k - 0.5f; }
  [[nodiscard]] float up_of(float row) const { return half_height - (row + 0.5f) / k; }
  [[nodiscard]] float row_of(float up) const { return (half_height - up) * k - 0.5f; }
};

EyePatch eye_patch(const cv::Mat& frame, const EyeAxes& axes) {
  EyePatch patch;
  patch.half_length = kHalfLength * axes.width;
  patch.half_height = kHalfHeight * axes.width;
  patch.k = std::clamp(static_cast<float>(kMaxColumns) / (2 * patch.half_length), 2.0f, 8.0f);
  const int cols = static_cast<int>(std::lround(2 * patch.half_length * patch.k));
  const int rows = static_cast<int>(std::lround(2 * patch.half_height * patch.k));
  // (j, i) -> frame: origin + along * along_of(j) + up * up_of(i).
  const cv::Point2f du = axes.along * (1.0f / patch.k);
  const cv::Point2f dv = axes.up * (-1.0f / patch.k);
  const cv::Point2f at0 = axes.to_frame({patch.along_of(0), patch.up_of(0)});
  const cv::Matx23f to_frame(du.x, dv.x, at0.x, du.y, dv.y, at0.y);
  // Only the frame region under the patch is converted to gray.
  std::vector<cv::Point2f> corners;
  for (const float j : {0.0f, static_cast<float>(cols)}) {
    for (const float i : {0.0f, static_cast<float>(rows)}) {
      corners.emplace_back(to_frame(0, 0) * j + to_frame(0, 1) * i + to_frame(0, 2),
                           to_frame(1, 0) * j + to_frame(1, 1) * i + to_frame(1, 2));
    }
  }
  const cv::Rect bounds(0, 0, frame.cols, frame.rows);
  cv::Rect box = cv::boundingRect(corners);
  box = cv::Rect(box.x - 3, box.y - 3, box.width + 6, box.height + 6) & bounds;
  if (box.width < 2 || box.height < 2 || cols < 4 || rows < 4) return patch;
  cv::Mat gray;
  if (frame.channels() == 1) {
    frame(box).convertTo(gray, CV_32F);
  } else {
    cv::Mat g8;
    cv::cvtColor(frame(box), g8, frame.channels() == 4 ? cv::COLOR_BGRA2GRAY : cv::COLOR_BGR2GRAY);
    g8.convertTo(gray, CV_32F);
  }
  cv::Matx23f local = to_frame;
  local(0, 2) -= static_cast<float>(box.x);
  local(1, 2) -= static_cast<float>(box.y);
  cv::warpAffine(gray, patch.gray, local, cv::Size(cols, rows),
                 cv::INTER_CUBIC | cv::WARP_INVERSE_MAP, cv::BORDER_REPLICATE);
  return patch;
}

// The strongest edge of the wanted sign in one column, within rows [lo, hi): its row to a
// fraction (parabola through the peak) and its strength; nullopt when none has that sign.
struct Edge {
  float row = 0;
  float strength = 0;
};

std::optional<Edge> strongest_edge(const cv::Mat& derivative, int column, int lo, int hi,
                                   float sign) {
  lo = std::max(lo, 1);
  hi = std::min(hi, derivative.rows - 1);
  int best = -1;
  float best_value = 0;
  for (int i = lo; i < hi; ++i) {
    const float v = sign * derivative.at<float>(i, column);
    if (v > best_value) {
      best_value = v;
      best = i;
    }
  }
  if (best < 0) return std::nullopt;
  const float before = sign * derivative.at<float>(best - 1, column);
  const float after = sign * derivative.at<float>(best + 1, column);
  const float curvature = before - 2 * best_value + after;
  const float offset = curvature < 0 ? std::clamp(0.5f * (before - after) / curvature, -0.5f, 0.5f)
                                     : 0.0f;
  return Edge{.row = static_cast<float>(best) + offset, .strength = best_value};
}

// A weighted parabola row(column) through the edges found, evaluated at `at`, with the mean
// strength. A parabola, not a line: a lid is curved, and a line through its edges above a centred
// iris would sit lower than the lid there by a third of its sag. Columns whose edge is much
// weaker than the typical one are left out: they belong to something else (a blurred corner, an
// eyelash gap).
struct CurveFit {
  float row = 0;
  float strength = 0;
};

std::optional<CurveFit> fit_curve(const std::vector<cv::Point3f>& edges, float at) {
  if (static_cast<int>(edges.size()) < kMinColumns) return std::nullopt;
  std::vector<float> strengths;
  for (const cv::Point3f& e : edges) strengths.push_back(e.z);
  std::nth_element(strengths.begin(), strengths.begin() + strengths.size() / 2, strengths.end());
  const float floor = 0.25f * strengths[strengths.size() / 2];
  // Weighted least squares in x = column - at: row = c0 + c1 x + c2 x^2; c0 is the answer.
  cv::Matx33d normal = cv::Matx33d::zeros();
  cv::Vec3d rhs(0, 0, 0);
  double strength = 0;
  int used = 0;
  double lo = 0, hi = 0;
  for (const cv::Point3f& e : edges) {
    if (e.z < floor) continue;
    const double x = e.x - at;
    const cv::Vec3d basis(1, x, x * x);
    normal += e.z * (basis * basis.t());
    rhs += e.z * e.y * basis;
    strength += e.z;
    lo = used == 0 ? x : std::min(lo, x);
    hi = used == 0 ? x : std::max(hi, x);
    ++used;
  }
  if (used < kMinColumns || normal(0, 0) <= 0) return std::nullopt;
  cv::Vec3d c;
  // Too few distinct columns for a curve (the edges found span under a pixel's worth): a level
  // line through them.
  if (hi - lo < 4 || !cv::solve(normal, rhs, c, cv::DECOMP_CHOLESKY)) {
    c = {rhs[0] / normal(0, 0), 0, 0};
  }
  return CurveFit{.row = static_cast<float>(c[0]), .strength = static_cast<float>(strength / used)};
}

}  // namespace

float LidProfile::upper_at(float along) const { return interpolate(upper, along); }
float LidProfile::lower_at(float along) const { return interpolate(lower, along); }

LidProfile lid_profile(const EyeAxes& axes, std::span<const cv::Point2f> eyelid16) {
  LidProfile profile;
  if (eyelid16.size() < 16) return profile;
  std::vector<cv::Point2f> upper{axes.to_eye(eyelid16[0]), axes.to_eye(eyelid16[8])};
  for (std::size_t i = 9; i < 16; ++i) upper.push_back(axes.to_eye(eyelid16[i]));
  std::vector<cv::Point2f> lower;
  for (std::size_t i = 0; i <= 8; ++i) lower.push_back(axes.to_eye(eyelid16[i]));
  profile.upper = sorted(std::move(upper));
  profile.lower = sorted(std::move(lower));
  return profile;
}

LidProfile lid_profile_of_six(const EyeAxes& axes, std::span<const cv::Point2f> six) {
  LidProfile profile;
  if (six.size() != 6) return profile;
  for (const std::size_t i : {0, 1, 2, 3}) profile.upper.push_back(axes.to_eye(six[i]));
  for (const std::size_t i : {0, 5, 4, 3}) profile.lower.push_back(axes.to_eye(six[i]));
  const auto by_along = [](const cv::Point2f& a, const cv::Point2f& b) { return a.x < b.x; };
  std::sort(profile.upper.begin(), profile.upper.end(), by_along);
  std::sort(profile.lower.begin(), profile.lower.end(), by_along);
  return profile;
}

EyeMeasurement measure_eye(const cv::Mat& frame, const EyeAxes& axes,
                           std::span<const cv::Point2f> eyelid16, cv::Point2f iris,
                           float iris_radius) {
  EyeMeasurement result;
  if (frame.empty() || frame.depth() != CV_8U || !(axes.width > 2) || eyelid16.size() < 16) {
    return result;
  }
  const EyePatch patch = eye_patch(frame, axes);
  if (patch.gray.empty()) return result;
  cv::Mat blurred, down;
  cv::GaussianBlur(patch.gray, blurred, cv::Size(), 0.5 * patch.k);
  cv::Sobel(blurred, down, CV_32F, 0, 1, 3);  // + where it gets brighter going down
  // Sobel of a ramp of 1 per patch pixel is 8: back to gray levels per frame pixel.
  const float to_contrast = patch.k / 8.0f;
  const LidProfile lids = lid_profile(axes, eyelid16);
  const float iris_along = axes.to_eye(iris).x;
  const float radius = iris_radius > 0 ? iris_radius : 0.2f * axes.width;

  std::vector<cv::Point3f> upper_edges;  // (column, row, strength)
  std::vector<cv::Point3f> lower_edges;
  for (int j = 0; j < patch.gray.cols; ++j) {
    const float along = patch.along_of(static_cast<float>(j));
    if (std::abs(along - iris_along) <= kUpperColumns * radius) {
      const float row = patch.row_of(lids.upper_at(along));
      const auto lo = static_cast<int>(std::floor(row - kUpperSearch * patch.k));
      const auto hi = static_cast<int>(std::ceil(row + kUpperSearch * patch.k));
      // Skin above, the dark lash line below: brightness falls going down.
      if (const auto edge = strongest_edge(down, j, lo, hi, -1.0f)) {
        upper_edges.emplace_back(static_cast<float>(j), edge->row, edge->strength);
      }
    }
    if (std::abs(along) <= kLowerColumns * axes.width) {
      const float row = patch.row_of(lids.lower_at(along));
      const auto lo = static_cast<int>(std::floor(row - kLowerSearch * patch.k));
      const auto hi = static_cast<int>(std::ceil(row + kLowerSearch * patch.k));
      if (const auto edge = strongest_edge(down, j, lo, hi, 1.0f)) {
        lower_edges.emplace_back(static_cast<float>(j), edge->row, edge->strength);
      }
    }
  }
  if (const auto fit = fit_curve(upper_edges, patch.column_of(iris_along))) {
    result.upper = patch.up_of(fit->row);
    result.upper_contrast = fit->strength * to_contrast;
  }
  if (const auto fit = fit_curve(lower_edges, patch.column_of(0.0f))) {
    result.lower = patch.up_of(fit->row);
    result.lower_contrast = fit->strength * to_contrast;
  }
  // The inside's variation, between the contour's lids over the middle of the eye.
  double sum = 0, sum2 = 0;
  int n = 0;
  for (int j = 0; j < patch.gray.cols; ++j) {
    const float along = patch.along_of(static_cast<float>(j));
    if (std::abs(along) > kInsideColumns * axes.width) continue;
    const auto top = static_cast<int>(std::ceil(patch.row_of(lids.upper_at(along) - 0.5f)));
    const auto bottom = static_cast<int>(std::floor(patch.row_of(lids.lower_at(along) + 0.5f)));
    for (int i = std::max(top, 0); i <= std::min(bottom, patch.gray.rows - 1); ++i) {
      const double v = patch.gray.at<float>(i, j);
      sum += v;
      sum2 += v * v;
      ++n;
    }
  }
  if (n > 1) {
    const double mean = sum / n;
    result.inside_contrast = static_cast<float>(std::sqrt(std::max(0.0, sum2 / n - mean * mean)));
  }
  return result;
}

}  // namespace micromodels::vision
