#include "vision/models/landmarks68.hpp"

#include <cmath>
#include <stdexcept>
#include <string>

#include <dlib/image_processing/shape_predictor.h>
#include <dlib/opencv/cv_image.h>
#include <dlib/serialize.h>

#include "vision/models/image_utils.hpp"
#include "vision/models/model_files.hpp"

namespace micromodels::vision {

struct Landmarks68::Impl {
  dlib::shape_predictor predictor;
};

Landmarks68::Landmarks68(const std::filesystem::path& model_path)
    : impl_(std::make_unique<Impl>()) {
  require_file(model_path, "dlib shape predictor");
  try {
    dlib::deserialize(model_path.string()) >> impl_->predictor;
  } catch (const std::exception& e) {  // dlib::serialization_error and friends
    throw std::runtime_error("cannot load '" + model_path.string() +
                             "' as a dlib shape predictor (corrupt or wrong file?); run "
                             "scripts/fetch_media.sh. dlib: " +
                             e.what());
  }
  if (impl_->predictor.num_parts() != 68) {
    throw std::runtime_error("'" + model_path.string() + "' predicts " +
                             std::to_string(impl_->predictor.num_parts()) + " points, expected 68");
  }
}

Landmarks68::~Landmarks68() = default;

Landmarks68Points Landmarks68::fit(const cv::Mat& image, const cv::Rect2f& face) const {
  return fit(image, std::vector<cv::Rect2f>{face}).front();
}

std::vector<Landmarks68Points> Landmarks68::fit(const cv::Mat& image,
                                                const std::vector<cv::Rect2f>& faces) const {
  // The predictor samples pixel intensities; on a gray image it does no per-sample conversion.
  const cv::Mat gray = to_gray8(image, "Landmarks68::fit");
  const dlib::cv_image<unsigned char> view(gray);
  std::vector<Landmarks68Points> result;
  result.reserve(faces.size());
  for (const auto& f : faces) {
    if (!(f.width > 0 && f.height > 0)) {
      throw std::invalid_argument("Landmarks68::fit: empty face box");
    }
    // dlib boxes are inclusive integer rectangles.
    const dlib::rectangle box(std::lround(f.x), std::lround(f.y), std::lround(f.x + f.width) - 1,
                              std::lround(f.y + f.height) - 1);
    const dlib::full_object_detection shape = impl_->predictor(view, box);
    Landmarks68Points points;
    for (unsigned long i = 0; i < 68; ++i) {
      points[i] =
          cv::Point2f(static_cast<float>(shape.part(i).x()), static_cast<float>(shape.part(i).y()));
    }
    result.push_back(points);
  }
  return result;
}

}  // namespace micromodels::vision
