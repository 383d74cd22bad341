#include "eye_fields.hpp"

#include <string>

#include "eye_render.hpp"

namespace micromodels::vision {

namespace {

cv::Point2f at(const Points& points, std::size_t i) { return {points[i].x, points[i].y}; }

// The field `name` as a T of `count` elements: nullptr when absent or of another size, an error
// when it holds another type (`what` names T for the message).
template <typename T>
const T* sized_field(const Packet& packet, std::string_view name, std::size_t count, const char* what) {
  const Value* value = packet.find(name);
  if (value == nullptr) return nullptr;
  const auto* field = std::get_if<T>(value);
  if (field == nullptr) {
    throw FieldError("field '" + std::string(name) + "' must hold " + what + ", not " +
                     std::string(value_type_name(value->index())));
  }
  return field->size() == count ? field : nullptr;
}

}  // namespace

const Points* points_field(const Packet& packet, std::string_view name, std::size_t count) {
  return sized_field<Points>(packet, name, count, "points");
}

const Scalars* scalars_field(const Packet& packet, std::string_view name, std::size_t count) {
  return sized_field<Scalars>(packet, name, count, "numbers");
}

std::vector<cv::Point2f> eye_landmarks(const Points& landmarks, EyeSide side) {
  const auto& indices = side == EyeSide::right ? kRightEyeLandmarks : kLeftEyeLandmarks;
  std::vector<cv::Point2f> eye;
  eye.reserve(indices.size());
  for (const std::size_t i : indices) eye.push_back(at(landmarks, i));
  return eye;
}

std::vector<cv::Point2f> eyelid_contour(const Packet& packet, EyeSide side) {
  std::vector<cv::Point2f> eyelid;
  if (const Points* contours = points_field(packet, "eye_contours", 2 * kContourPointsPerEye)) {
    const std::size_t base = static_cast<std::size_t>(side) * kContourPointsPerEye;
    for (std::size_t i = 0; i < kEyelidContourPoints; ++i) eyelid.push_back(at(*contours, base + i));
  }
  return eyelid;
}

namespace {

// An eye from the corners in `landmarks`, an iris field (5 points per eye) and an eyelid contour
// (16 points, or empty for dlib's six).
EyeView view_of(const Points& landmarks, const Points& iris, std::vector<cv::Point2f> eyelid,
                EyeSide side) {
  const std::vector<cv::Point2f> six = eye_landmarks(landmarks, side);
  EyeView eye;
  eye.axes = eye_axes(six[0], six[3]);
  eye.eyelid = std::move(eyelid);
  if (eye.eyelid.empty()) {
    eye.eyelid = six;
    eye.lids = lid_profile_of_six(eye.axes, six);
  } else {
    eye.lids = lid_profile(eye.axes, eye.eyelid);
  }
  const std::size_t base = static_cast<std::size_t>(side) * kIrisPointsPerEye;
  eye.iris_center = at(iris, base);
  float radius = 0;
  for (std::size_t i = 1; i < kIrisPointsPerEye; ++i) {
    radius += static_cast<float>(cv::norm(at(iris, base + i) - eye.iris_center));
  }
  eye.iris_radius = radius / static_cast<float>(kIrisPointsPerEye - 1);
  return eye;
}

}  // namespace

std::optional<EyeView> eye_view(const Packet& packet, EyeSide side) {
  const Points* landmarks = points_field(packet, "landmarks", kLandmarkCount);
  const Points* iris = points_field(packet, "iris", 2 * kIrisPointsPerEye);
  if (landmarks == nullptr || iris == nullptr) return std::nullopt;
  return view_of(*landmarks, *iris, eyelid_contour(packet, side), side);
}

std::optional<EyeView> steady_eye_view(const Packet& packet, EyeSide side) {
  const Points* landmarks = points_field(packet, "landmarks", kLandmarkCount);
  const Points* iris = points_field(packet, "steady_iris", 2 * kIrisPointsPerEye);
  const Points* eyelids = points_field(packet, "steady_eyelids", 2 * kEyelidContourPoints);
  if (landmarks == nullptr || iris == nullptr || eyelids == nullptr) return std::nullopt;
  std::vector<cv::Point2f> eyelid;
  const std::size_t base = static_cast<std::size_t>(side) * kEyelidContourPoints;
  for (std::size_t i = 0; i < kEyelidContourPoints; ++i) eyelid.push_back(at(*eyelids, base + i));
  return view_of(*landmarks, *iris, std::move(eyelid), side);
}

float eye_aspect_ratio(std::span<const cv::Point2f> six) {
  if (six.size() != 6) return 0;
  const auto d = [&](std::size_t a, std::size_t b) {
    return static_cast<float>(cv::norm(six[a] - six[b]));
  };
  const float width = d(0, 3);
  if (width <= 0) return 0;
  return (d(1, 5) + d(2, 4)) / (2 * width);
}

}  // namespace micromodels::vision
