// For the vision tests that measure with the evaluation's own code (bench/eye_turn.hpp, linked
// from the bench library): a drawn eye as the evaluation sees an eye.
#pragma once

#include <vector>

#include "bench/eye_turn.hpp"
#include "eye_test_support.hpp"

namespace eye_test {

namespace mb = micromodels::bench;

inline mb::EvalEye eval_eye(const DrawnEye& eye) {
  mb::EvalEye e;
  e.corner_a = {eye.centre.x - eye.half_width, eye.centre.y};
  e.corner_b = {eye.centre.x + eye.half_width, eye.centre.y};
  const std::vector<cv::Point2f> contour = eye.contour(0);
  e.lower_lid.assign(contour.begin() + 1, contour.begin() + 8);
  e.upper_lid.assign(contour.begin() + 9, contour.end());
  e.iris = eye.iris;
  e.iris_radius = eye.iris_radius;
  return e;
}

}  // namespace eye_test
