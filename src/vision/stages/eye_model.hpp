// The eyeball model behind gaze in degrees. Each eye is a ball that turns about its centre; the
// iris centre sits on it at `radius` from that centre. Looking into the camera, the iris centre
// lies on the camera's ray through the eyeball centre, so it projects onto the eyeball centre's
// own projection, whatever the eye's place in the picture: that point (`Eyeball::center`) is
// where gaze.redirect moves the iris for `target: camera`, and gaze angles are measured from it.
// Pure functions on points; no engine types.
#pragma once


#include <opencv2/core.hpp>

namespace micromodels::vision {

/// An eye's own axes in the frame: `along` runs from the corner on the image's left to the one
/// on its right, `up` is perpendicular to it toward the top of the head; the origin is the
/// corners' midpoint and `width` the corner-to-corner distance (frame pixels).
struct EyeAxes {
  cv::Point2f origin;
  cv::Point2f along{1, 0};
  cv::Point2f up{0, -1};
  float width = 0;

  /// Frame pixels to (along, up) coordinates, pixels.
  [[nodiscard]] cv::Point2f to_eye(cv::Point2f p) const {
    const cv::Point2f d = p - origin;
    return {d.dot(along), d.dot(up)};
  }
  /// (along, up) coordinates back to frame pixels.
  [[nodiscard]] cv::Point2f to_frame(cv::Point2f q) const { return origin + along * q.x + up * q.y; }
};

/// The axes of the eye whose corners are `a` and `b` (any order). Faces are taken as upright
/// within +-90 degrees of roll. `width` 0 when the corners coincide.
[[nodiscard]] EyeAxes eye_axes(cv::Point2f a, cv::Point2f b);

/// A gaze direction relative to the camera: 0/0 looks into it. Pitch is positive up, yaw
/// positive toward the image's right (the subject's left in an unmirrored video).
struct Gaze {
  float pitch_deg = 0;
  float yaw_deg = 0;
};

/// Head orientation relative to the camera, degrees: pitch positive when the face turns up, yaw
/// positive when it turns toward the image's right, roll positive clockwise in the image.
struct HeadPose {
  float pitch_deg = 0;
  float yaw_deg = 0;
  float roll_deg = 0;
};

/// The model's constants, in eye widths (corner to corner). Defaults are adult averages: an
/// eyeball turns the iris centre on a radius of about 11 mm, and the palpebral fissure is about
/// 29 mm wide; `rise` was set on franck.mp4, whose subject talks into the camera
/// (docs/eye-contact.md, gaze.estimate).
struct EyeballParams {
  float radius = 0.37f;          // iris centre's turning radius
  float rise = 0.155f;           // eyeball centre above the corner line, seen frontally
  float nasal = 0.0f;            // eyeball centre toward the nose from the corners' midpoint
  float depth = 0.13f;           // eyeball centre behind the corners' midpoint (for head turns)
};

/// One eye's model in the frame.
struct Eyeball {
  EyeAxes axes;
  cv::Point2f center;  // where the iris centre projects when the eye looks into the camera
  float radius = 0;    // pixels

  /// The gaze that puts the iris centre at `iris` (clamped to the ball's rim).
  [[nodiscard]] Gaze gaze_of(cv::Point2f iris) const;
  /// Where the iris centre projects for `gaze`.
  [[nodiscard]] cv::Point2f iris_for(Gaze gaze) const;
};

/// Which eye: the subject's right eye is on the image's left in an unmirrored video.
enum class EyeSide : std::size_t { right = 0, left = 1 };

/// The eyeball of an eye with corners `a`, `b`: the corners, which are fixed to the skull, give
/// the centre's place. (The lids are not fixed: their measured edges also move with the image's
/// blur, by more than a gaze's worth from one video to another.) A turned or pitched head moves
/// the centre, which lies `depth` behind the corners, against them.
[[nodiscard]] Eyeball eyeball(cv::Point2f a, cv::Point2f b, EyeSide side, const HeadPose& head,
                              const EyeballParams& params = {});

}  // namespace micromodels::vision
