// Head orientation from dlib's 68 landmarks, in degrees, by two ratios of an orthographic head
// model: where the nose tip falls between the outer eye corners (yaw) and between the eye line
// and the mouth line (pitch). The nose tip stands in front of both lines; turning the head moves
// it against them. Cheap and steady (no fitting), good to a few degrees near frontal for yaw;
// pitch depends on each face's proportions and is coarser (a bias of up to ~10 degrees).
#pragma once

#include "micromodels/packet.hpp"

#include "eye_model.hpp"

namespace micromodels::vision {

/// `landmarks` must hold 68 points (dlib / iBUG order); a degenerate face gives 0/0/0.
[[nodiscard]] HeadPose estimate_head_pose(const Points& landmarks);

}  // namespace micromodels::vision
