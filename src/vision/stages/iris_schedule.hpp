// When eye.iris runs its model (eye.iris_schedule decides), and what eye.iris_carry writes on the
// frames in between.
//
// The iris model is the most expensive step of the eye-contact pipeline. Between two runs the
// iris keeps its place in the eye unless the eye itself turns, which a saccade does in a frame
// or two; what does change every frame is where the eye is, and that the 68 landmarks (which run
// on every frame) follow. So on a frame without a model run the iris points and eyelid contours
// of the last run are carried along with the face: moved by the similarity transform (shift,
// rotation, scale) that takes the last run's rigid landmarks (eye corners, nose bridge) onto this
// frame's. A fresh run is forced whenever the carried estimate would be doubtful: the face moved
// or rescaled by more than a fraction of the eye width, an eyelid opened or closed (the eye
// aspect ratio changed), or the last run is `every` frames old.
#pragma once

#include <cstdint>
#include <optional>

#include <opencv2/core.hpp>

#include "micromodels/packet.hpp"

namespace micromodels::vision {

struct IrisScheduleOptions {
  std::int64_t every = 1;        // run the model on at least every Nth frame of a stream
  double max_motion = 0.2;       // fresh run when the face moved more, in eye widths
  double max_ear_change = 0.04;  // fresh run when an eye's aspect ratio changed more
};

/// The frame the model last ran on: what the schedule needs to decide about the next frames.
struct IrisKeyFrame {
  std::uint64_t seq = 0;
  Points landmarks;  // 68
};

/// Shift, rotation and scale taking `from` to `to`, fitted by least squares on the rigid
/// landmarks (eye corners 36, 39, 42, 45 and the nose bridge 27..30); both hold 68 points.
[[nodiscard]] cv::Matx23f face_motion(const Points& from, const Points& to);

/// `points` moved by `motion`.
[[nodiscard]] Points move_points(const Points& points, const cv::Matx23f& motion);

/// Whether the frame `seq` with `landmarks` (68) can reuse `key` (nullopt: no key yet, or a
/// stream that started over) rather than run the model. With every = 1 it never can.
[[nodiscard]] bool can_carry_iris(const std::optional<IrisKeyFrame>& key, std::uint64_t seq,
                                  const Points& landmarks, const IrisScheduleOptions& options);

}  // namespace micromodels::vision
