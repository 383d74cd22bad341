#include "vision/models/hog_face_detector.hpp"

#include <algorithm>

#include <dlib/image_processing/frontal_face_detector.h>
#include <dlib/image_transforms/interpolation.h>
#include <dlib/opencv/cv_image.h>

#include "vision/models/image_utils.hpp"

namespace micromodels::vision {

struct HogFaceDetector::Impl {
  dlib::frontal_face_detector detector = dlib::get_frontal_face_detector();
};

HogFaceDetector::HogFaceDetector(Options options)
    : options_(options), impl_(std::make_unique<Impl>()) {}

HogFaceDetector::~HogFaceDetector() = default;

std::vector<HogFaceDetection> HogFaceDetector::detect(const cv::Mat& image) {
  const cv::Mat gray = to_gray8(image, "HogFaceDetector::detect");
  // Wraps the cv::Mat without copying: dlib reads the pixels in place.
  const dlib::cv_image<unsigned char> view(gray);

  std::vector<dlib::rect_detection> found;
  double factor = 1.0;
  {
    std::scoped_lock lock(mutex_);
    if (options_.upsample <= 0) {
      impl_->detector(view, found, options_.adjust_threshold);
    } else {
      dlib::array2d<unsigned char> big;
      dlib::assign_image(big, view);
      for (int i = 0; i < options_.upsample; ++i) {
        dlib::pyramid_up(big);
        factor *= 2.0;
      }
      impl_->detector(big, found, options_.adjust_threshold);
    }
  }
  std::sort(found.begin(), found.end(), [](const auto& a, const auto& b) {
    return a.detection_confidence > b.detection_confidence;
  });
  std::vector<HogFaceDetection> faces;
  faces.reserve(found.size());
  for (const auto& d : found) {
    const auto& r = d.rect;
    // dlib rectangles are inclusive: right = left + width - 1.
    faces.push_back(
        {cv::Rect2f(static_cast<float>(r.left() / factor), static_cast<float>(r.top() / factor),
                    static_cast<float>(r.width() / factor),
                    static_cast<float>(r.height() / factor)),
         static_cast<float>(d.detection_confidence)});
  }
  return faces;
}

}  // namespace micromodels::vision
