// The eye-related packet fields and their layout, read in one place so that face.smooth (which
// decides whether to correct) and gaze.redirect (which corrects) see the same eye.
//
//   landmarks     68 points, dlib order: right eye 36..41 (36 outer corner, 39 inner),
//                 left eye 42..47 (42 inner corner, 45 outer)
//   iris          10 points: right eye centre + 4 edge points, then the left eye's
//   eye_contours  142 points (optional): 71 per eye, right first, MediaPipe iris-model order;
//                 the first 16 of each eye are the eyelid contour
#pragma once

#include <array>
#include <cstddef>
#include <optional>
#include <span>
#include <string_view>
#include <vector>

#include <opencv2/core.hpp>

#include "micromodels/packet.hpp"

#include "eye_warp.hpp"

namespace micromodels::vision {

enum class EyeSide : std::size_t { right = 0, left = 1 };  // the subject's

inline constexpr std::size_t kLandmarkCount = 68;
inline constexpr std::size_t kIrisPointsPerEye = 5;
inline constexpr std::size_t kContourPointsPerEye = 71;
inline constexpr std::size_t kEyelidContourPoints = 16;
inline constexpr std::size_t kNoseTip = 30;
/// dlib indices of each eye, in dlib's order (outer/inner corner, upper lid, lower lid).
inline constexpr std::array<std::size_t, 6> kRightEyeLandmarks{36, 37, 38, 39, 40, 41};
inline constexpr std::array<std::size_t, 6> kLeftEyeLandmarks{42, 43, 44, 45, 46, 47};

/// The field if present and of the right size (`count`), else nullptr. Throws FieldError when
/// the field holds another type (a wiring mistake worth failing loudly).
[[nodiscard]] const Points* points_field(const Packet& packet, std::string_view name,
                                         std::size_t count);

/// dlib's 6 landmarks of one eye.
[[nodiscard]] std::vector<cv::Point2f> eye_landmarks(const Points& landmarks, EyeSide side);

/// One eye for the warp: the opening from `eye_contours` when present (16 eyelid points, finer
/// than dlib's 6), else from the landmarks; the iris centre and radius from `iris`. nullopt
/// when the packet lacks landmarks or iris (no face, or the models did not run).
[[nodiscard]] std::optional<EyeShape> eye_shape(const Packet& packet, EyeSide side);

/// Eye aspect ratio (Soukupova & Cech 2016) of dlib's 6 eye points: lid-to-lid heights over
/// corner-to-corner width; ~0.3 open, below ~0.2 closed.
[[nodiscard]] float eye_aspect_ratio(std::span<const cv::Point2f> six);

/// Head yaw in degrees, estimated from where the nose tip (30) falls between the outer eye
/// corners (36, 45) along the eye line: a frontal face puts it midway. Assumes the nose tip is
/// 0.75 x the half corner span in front of the corners (a typical adult head); good to a few
/// degrees near frontal, coarse beyond ~40 degrees. 0 when the corners coincide.
[[nodiscard]] float estimate_yaw_degrees(const Points& landmarks);

}  // namespace micromodels::vision
