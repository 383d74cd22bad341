// Gaze redirection by re-rendering the eye the way it turns: the eyeball carries the iris and the
// white around it, the upper lid rides on the iris, the lower lid and the corners stay.
//
//  1. Inside the opening, the eye's content moves by the shift: fully over the iris, less and
//     less toward the corners.
//  2. The upper lid follows the iris's vertical move by `lid_follow` (a raised gaze lifts the
//     lid), with the skin above it fading out toward the brow.
//  3. What comes into view from under a lid is filled in: over its first pixel with the eye's
//     content just above the lid, carried down (it follows the pixels, not the estimated iris,
//     whose noise would move a drawn edge from frame to frame); deeper, inside the iris's circle
//     with the iris mirrored across its centre's row (its median colour where that is hidden
//     too), elsewhere with the white on either side of the iris, row by row.
//     So a raised iris shows its round lower edge, with white below it.
//
// The iris thus moves by what it is asked, and pixels that none of this changes stay the
// frame's, bit for bit. Pure functions on cv::Mat; no engine types.
#pragma once

#include <span>
#include <vector>

#include <opencv2/core.hpp>

#include "eye_measure.hpp"
#include "eye_model.hpp"

namespace micromodels::vision {

/// One eye to re-render.
struct EyeRenderRequest {
  EyeAxes axes;        // from the eye corners
  LidProfile lids;     // the opening between the lids, in the axes' coordinates
  cv::Point2f iris;    // iris centre, frame pixels
  float iris_radius;   // pixels
  cv::Point2f shift;   // wanted iris displacement, frame pixels
};

struct EyeRenderOptions {
  float lid_follow = 1.0f;  // share of the iris's vertical move the upper lid makes
  float max_shift = 0.25f;  // largest displacement, as a fraction of the eye width
  int feather_px = 2;       // mask: full over everything changed grown by this, then blurred
};

/// The result: a patch of the frame with the eyes re-rendered, where it goes, and its alpha.
struct EyePatch {
  cv::Rect roi;                      // in the frame, clipped to it; empty when nothing to do
  cv::Mat patch;                     // roi.size(), the frame's type
  cv::Mat mask;                      // roi.size(), CV_8UC1, 255 = use the patch
  std::vector<cv::Point2f> applied;  // the displacement applied to each eye (after the limits)

  [[nodiscard]] bool empty() const noexcept { return roi.empty(); }
};

/// Re-renders `frame` (8-bit, 1 or 3 channels) around the given eyes. Shifts below 0.5 px fade
/// the rendering in (a shift of 0 changes nothing), so a correction that fades out leaves no
/// step. A vertical shift opens the eye by as much, so it is limited to 0.8 of the eye's
/// opening over the iris beyond its lash lines (0.08 eye widths): a nearly shut eye is opened
/// little, a shut one left alone (`applied` holds what was rendered). Wherever nothing changed
/// the patch equals the frame, and the mask's feathered band lies only over such pixels, so
/// blending leaves no seam.
[[nodiscard]] EyePatch render_eyes(const cv::Mat& frame, std::span<const EyeRenderRequest> eyes,
                                   const EyeRenderOptions& options);

}  // namespace micromodels::vision
