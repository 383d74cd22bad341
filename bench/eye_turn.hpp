// What `micromodels eval eye_contact` measures with, written for the evaluation only and sharing
// no code with the stages it judges: a warp that turns real eyes down by a known angle (its test
// set), a search that finds how far one picture's eyes are turned from another's with that same
// warp, and an iris finder of its own (Timm & Barth's means of gradients).
#pragma once

#include <optional>
#include <span>
#include <vector>

#include <opencv2/core.hpp>

namespace micromodels::bench {

/// One eye as the evaluation places it, in the coordinates of the image it is used on: the
/// corners, the points of each lid between them, and the iris.
struct EvalEye {
  cv::Point2f corner_a, corner_b;
  std::vector<cv::Point2f> upper_lid, lower_lid;
  cv::Point2f iris;
  float iris_radius = 0;

  [[nodiscard]] float width() const;
  /// The unit vector turn_eye() turns the eye along: down, across the corners' line.
  [[nodiscard]] cv::Point2f down() const;
  /// The same eye in an image cut out at `origin`.
  [[nodiscard]] EvalEye moved_by(cv::Point2f offset) const;
};

/// Turns the eye down by `shift` pixels (negative: up), as a person looking lower does: the iris
/// and the white around it slide down rigidly, under the lower lid, which stays; the upper lid
/// comes down with them, and the skin above it follows, less and less up to ~half an eye width
/// above; toward the corners, which stay, the move fades out. Pixels outside that region are
/// left as they are. `image` is 8-bit, any channels.
[[nodiscard]] cv::Mat turn_eye(const cv::Mat& image, const EvalEye& eye, float shift);

/// The image region turn_eye() may change for shifts up to `max_shift`, grown by `margin`.
[[nodiscard]] cv::Rect turn_region(const EvalEye& eye, float max_shift, int margin);

/// How far down (pixels) the eye in `turned` is turned from the one in `base`: the shift s that
/// makes turn_eye(base, eye, s) closest to `turned` (sum of squared differences over the eye's
/// region), searched within +-`range`. Both images are the same size; `eye` is in their
/// coordinates. nullopt when the region is empty.
[[nodiscard]] std::optional<float> measure_turn(const cv::Mat& turned, const cv::Mat& base,
                                                const EvalEye& eye, float range);

/// The translation (pixels) that best maps the iris of `base` onto `moved`: moved(p) ~
/// base(p - t), searched within +-`range` on both axes, over the pixels p of the iris disk at
/// `iris` (radius `radius`) in `moved` that lie inside the eye's opening, and whose partner
/// p - `expected` lies inside it too (so that both show the eye's inside, not a lid).
[[nodiscard]] std::optional<cv::Point2f> measure_iris_translation(const cv::Mat& moved,
                                                                  const cv::Mat& base,
                                                                  const EvalEye& eye,
                                                                  cv::Point2f iris, float radius,
                                                                  cv::Point2f expected,
                                                                  float range);

/// The iris centre found by Timm & Barth's means of gradients (VISAPP 2011): the point that the
/// image's gradients inside the eye point away from most consistently, weighted by darkness,
/// on a 4x-upsampled crop with sub-pixel refinement. Independent of the pipeline's models.
/// nullopt when the eye is off the image or has no gradients.
[[nodiscard]] std::optional<cv::Point2f> find_iris(const cv::Mat& image, const EvalEye& eye);

}  // namespace micromodels::bench
