// Gaze redirection by warping: the iris is slid inside the eye opening with a smooth backward
// displacement field, eyelids and everything outside the opening stay put. Pure functions on
// cv::Mat, no engine types, so the algorithm is testable (and reusable) on its own.
#pragma once

#include <span>
#include <vector>

#include <opencv2/core.hpp>

namespace micromodels::vision {

/// One eye as the warp sees it, in frame pixels.
struct EyeShape {
  // The eye opening: eyelid contour points (dlib's 6 points per eye, or the iris model's 16),
  // in any order; see eye_opening_polygon().
  std::vector<cv::Point2f> opening;
  cv::Point2f iris_center;
  float iris_radius = 0;  // <= 0: estimated as 0.2 x the eye width (the human iris/eye ratio)
};

/// How far to move one eye's iris.
struct EyeWarpRequest {
  EyeShape eye;
  cv::Point2f shift;  // wanted iris displacement, frame pixels (clamped by redirect_eyes)
};

struct EyeWarpOptions {
  float max_shift = 0.25f;  // largest displacement, as a fraction of the eye width
  // Content slides along the eyelids up to this far outside the opening, and the mask is full
  // (255) that far out ...
  int grow_px = 2;
  // ... then falls to 0 over 2 x this (a blur of this radius): 0 beyond grow + 2 feather.
  int feather_px = 3;
};

/// The result: a patch of the frame with the irises moved, where it goes, and its alpha.
struct EyePatch {
  cv::Rect roi;                      // in the frame, clipped to it; empty when nothing to do
  cv::Mat patch;                     // roi.size(), the frame's type
  cv::Mat mask;                      // roi.size(), CV_8UC1, 255 = use the patch
  std::vector<cv::Point2f> applied;  // the displacement actually applied to each eye

  [[nodiscard]] bool empty() const noexcept { return roi.empty(); }
};

/// The eye opening as a closed, smooth polygon: the convex hull of `points` (so their order
/// does not matter) with its sides bent into short cardinal-spline arcs, because a 6-point
/// hexagon cuts off the curved eyelids. Empty when there are fewer than 3 distinct points.
[[nodiscard]] std::vector<cv::Point2f> eye_opening_polygon(std::span<const cv::Point2f> points);

/// Area centroid of a closed polygon (its vertices' mean when it has no area: a closed eye).
[[nodiscard]] cv::Point2f polygon_centroid(std::span<const cv::Point2f> polygon);

/// Corner-to-corner width of an eye opening: the largest distance between two of its points.
[[nodiscard]] float eye_width(std::span<const cv::Point2f> points);

/// How far above the line through the eye corners the iris centre sits when the eye looks into
/// the camera, in eye widths. Measured with the iris model on camera-facing faces (astronaut.png
/// 0.076, franck.mp4 0.085); a person looking at a screen below a webcam measured 0.035-0.040.
/// People differ by a few hundredths. A double, like the number param it is the default of (as a
/// float it would show as 0.07999999821186066 there).
inline constexpr double kDefaultIrisRise = 0.08;

/// Where the iris centre of `eye` would be when looking into the camera: the midpoint of the
/// eye corners (the two points of the opening farthest apart), raised by `rise` x the eye width
/// perpendicular to the corner line. The corners are fixed to the skull, unlike the eyelids,
/// which follow the gaze (a downward look lowers the upper lid and with it the opening's
/// centre), so they are the steadier reference.
[[nodiscard]] cv::Point2f camera_gaze_target(const EyeShape& eye,
                                             float rise = static_cast<float>(kDefaultIrisRise));

/// Where gaze.redirect aims an eye's iris: camera_gaze_target() plus a fixed per-setup offset.
/// The one definition of the target, shared by the stage and by `micromodels eval eye_contact`
/// (which measures how close the irises get to it).
struct GazeTarget {
  float iris_rise = static_cast<float>(kDefaultIrisRise);  // eye widths above the corner line
  cv::Point2f offset_px{};             // added to the target, frame pixels

  [[nodiscard]] cv::Point2f for_eye(const EyeShape& eye) const {
    return camera_gaze_target(eye, iris_rise) + offset_px;
  }
};

/// The displacement redirect_eyes() will really apply for `wanted` on this eye: no longer than
/// `max_shift` x eye width, and its component across the eye (toward a lid) small enough for
/// the field to stay fold-free inside the opening's height.
[[nodiscard]] cv::Point2f clamp_eye_shift(const EyeShape& eye, cv::Point2f wanted, float max_shift);

/// Warps `frame` (8-bit, any channel count) around the given eyes. Each output pixel p samples
/// the frame at p - D(p) (cv::remap, bilinear): the iris slides to its target and the sclera it
/// uncovers is stretched in from beside it. D(p) = g(p) * split(d): g is 1 within the iris
/// radius of the segment from the iris to its new position and falls smoothly to 0 over
/// max(0.6 r, 1.6 |d|); split(d) divides d at the nearest stretch of eyelid into the part
/// across the lid, which fades in over a margin inside the opening (so the lid line does not
/// move), and the part along it, which applies up to the lid and fades out over grow_px beyond
/// it (sliding along a line leaves the line where it is). Wherever D = 0 the patch is exactly
/// the frame. The patch covers all eyes plus the mask's margin.
[[nodiscard]] EyePatch redirect_eyes(const cv::Mat& frame, std::span<const EyeWarpRequest> eyes,
                                     const EyeWarpOptions& options);

}  // namespace micromodels::vision
