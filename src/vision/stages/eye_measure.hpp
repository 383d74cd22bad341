// The eyelids of one eye measured in the image, to sub-pixel precision: the upper lid's edge
// above the iris and the lower lid's middle. A landmark model places the lids by regression and
// follows a lid that moves by about half of the move (the iris model's contour on the sample
// videos); the edges themselves are in the picture: the upper lid is where the skin turns into
// the dark lash line going down, the lower lid where the eye's inside turns into the brighter
// lid below it. The search starts from the model's contour and looks a few pixels either side.
#pragma once

#include <optional>
#include <span>

#include <opencv2/core.hpp>

#include "eye_model.hpp"

namespace micromodels::vision {

struct EyeMeasurement {
  std::optional<float> upper;  // upper lid edge above the iris centre: eye axes' `up`, pixels
  std::optional<float> lower;  // lower lid edge at the corners' midpoint: eye axes' `up`
  float upper_contrast = 0;    // strength of the edges found: gray levels per pixel
  float lower_contrast = 0;
  // How much the eye's inside varies (standard deviation of its gray levels between the lids,
  // over the middle of the eye): an open eye shows a dark iris on white (tens of levels), an eye
  // behind a hand or hair shows skin (a few).
  float inside_contrast = 0;
};

/// Measures the lids of the eye with axes `axes` in `frame` (8-bit, 1 or 3 channels), starting from the
/// model's 16-point eyelid contour (MediaPipe order: 0..8 lower lid from one corner to the
/// other, 9..15 upper lid) and the iris (centre, radius). What is not found (too few columns or
/// rows with an edge, the eye off the frame) is nullopt.
[[nodiscard]] EyeMeasurement measure_eye(const cv::Mat& frame, const EyeAxes& axes,
                                         std::span<const cv::Point2f> eyelid16, cv::Point2f iris,
                                         float iris_radius);

/// The contour's lid heights (eye axes' `up`) as a function of `along`, interpolated between
/// its points: `upper` from the corners and points 9..15, `lower` from points 0..8.
struct LidProfile {
  std::vector<cv::Point2f> upper;  // (along, up), sorted by along
  std::vector<cv::Point2f> lower;
  [[nodiscard]] float upper_at(float along) const;
  [[nodiscard]] float lower_at(float along) const;
};
[[nodiscard]] LidProfile lid_profile(const EyeAxes& axes, std::span<const cv::Point2f> eyelid16);

/// The lid profile of dlib's six eye points (36..41 or 42..47 order: corner, two upper, corner,
/// two lower): a coarser opening, for pipelines without the iris model's contour.
[[nodiscard]] LidProfile lid_profile_of_six(const EyeAxes& axes, std::span<const cv::Point2f> six);

}  // namespace micromodels::vision
