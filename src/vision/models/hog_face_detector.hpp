// dlib's HOG + linear SVM frontal face detector (get_frontal_face_detector).
#pragma once

#include <memory>
#include <mutex>
#include <vector>

#include <opencv2/core.hpp>

namespace micromodels::vision {

struct HogFaceDetection {
  cv::Rect2f box;   // image pixels
  float score = 0;  // SVM margin: > 0 is a detection at the default threshold; not a probability
};

class HogFaceDetector {
 public:
  struct Options {
    // Times to double the image before scanning. dlib's detector finds faces of ~80x80 pixels
    // and up; each upsampling halves that (and costs ~4x the time).
    int upsample = 0;
    // Added to the SVM threshold: negative finds more (and falser) faces.
    double adjust_threshold = 0.0;
  };

  HogFaceDetector() : HogFaceDetector(Options{}) {}
  explicit HogFaceDetector(Options options);
  ~HogFaceDetector();
  HogFaceDetector(const HogFaceDetector&) = delete;
  HogFaceDetector& operator=(const HogFaceDetector&) = delete;

  /// Detects frontal faces in a gray, BGR or BGRA 8-bit image (scanned as gray), best first.
  /// Thread safety: dlib's detector is not reentrant, so calls are serialised; create one per
  /// consumer for parallel detection.
  std::vector<HogFaceDetection> detect(const cv::Mat& image);

 private:
  struct Impl;  // keeps dlib out of this header
  Options options_;
  std::unique_ptr<Impl> impl_;
  std::mutex mutex_;
};

}  // namespace micromodels::vision
