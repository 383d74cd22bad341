// The eye-related packet fields and their layout, read in one place so that the stages that
// measure, judge and redirect the eyes see the same eye.
//
//   landmarks     68 points, dlib order: right eye 36..41 (36 outer corner, 39 inner),
//                 left eye 42..47 (42 inner corner, 45 outer)
//   iris          10 points: right eye centre + 4 edge points, then the left eye's
//   eye_contours  142 points (optional): 71 per eye, right first, MediaPipe iris-model order;
//                 the first 16 of each eye are the eyelid contour (0..8 lower lid from the
//                 outer corner to the inner one, 9..15 upper lid)
#pragma once

#include <array>
#include <cstddef>
#include <optional>
#include <span>
#include <string_view>
#include <vector>

#include <opencv2/core.hpp>

#include "micromodels/packet.hpp"

#include "eye_measure.hpp"
#include "eye_model.hpp"

namespace micromodels::vision {

inline constexpr std::size_t kLandmarkCount = 68;
inline constexpr std::size_t kIrisPointsPerEye = 5;
inline constexpr std::size_t kContourPointsPerEye = 71;
inline constexpr std::size_t kEyelidContourPoints = 16;
/// dlib indices of each eye, in dlib's order (outer/inner corner, upper lid, lower lid).
inline constexpr std::array<std::size_t, 6> kRightEyeLandmarks{36, 37, 38, 39, 40, 41};
inline constexpr std::array<std::size_t, 6> kLeftEyeLandmarks{42, 43, 44, 45, 46, 47};

/// The field if present and of the right size (`count`), else nullptr. Throws FieldError when
/// the field holds another type (a wiring mistake worth failing loudly).
[[nodiscard]] const Points* points_field(const Packet& packet, std::string_view name,
                                         std::size_t count);

/// The field if present and of the right size, else nullptr; FieldError for another type.
[[nodiscard]] const Scalars* scalars_field(const Packet& packet, std::string_view name,
                                           std::size_t count);

/// dlib's 6 landmarks of one eye.
[[nodiscard]] std::vector<cv::Point2f> eye_landmarks(const Points& landmarks, EyeSide side);

/// The 16-point eyelid contour of one eye from `eye_contours`, or empty without it.
[[nodiscard]] std::vector<cv::Point2f> eyelid_contour(const Packet& packet, EyeSide side);

/// One eye as the packet describes it.
struct EyeView {
  EyeAxes axes;                     // from dlib's eye corners
  std::vector<cv::Point2f> eyelid;  // the iris model's 16 eyelid points, or dlib's 6
  LidProfile lids;                  // the opening between the lids, in `axes`
  cv::Point2f iris_center;
  float iris_radius = 0;
};

/// nullopt when the packet lacks landmarks or iris (no face, or the models did not run).
[[nodiscard]] std::optional<EyeView> eye_view(const Packet& packet, EyeSide side);

/// The same eye as eye.steady holds it: the iris from `steady_iris` and the eyelid from
/// `steady_eyelids` (16 points per eye, right first), the corners from `landmarks`. nullopt
/// when those fields are absent.
[[nodiscard]] std::optional<EyeView> steady_eye_view(const Packet& packet, EyeSide side);

/// Eye aspect ratio (Soukupova & Cech 2016) of dlib's 6 eye points: lid-to-lid heights over
/// corner-to-corner width; ~0.3 open, below ~0.2 closed.
[[nodiscard]] float eye_aspect_ratio(std::span<const cv::Point2f> six);

}  // namespace micromodels::vision
