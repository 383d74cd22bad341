// dlib's 68-point face landmark model (iBUG 300-W layout), shape_predictor_68_face_landmarks.dat.
#pragma once

#include <array>
#include <filesystem>
#include <memory>
#include <vector>

#include <opencv2/core.hpp>

namespace micromodels::vision {

using Landmarks68Points = std::array<cv::Point2f, 68>;

class Landmarks68 {
 public:
  // Index ranges in the 68-point layout (half-open). Right/left are the subject's: the right
  // eye (36..41) is on the image's left in an unmirrored photo.
  static constexpr int kJawBegin = 0, kJawEnd = 17;
  static constexpr int kRightBrowBegin = 17, kRightBrowEnd = 22;
  static constexpr int kLeftBrowBegin = 22, kLeftBrowEnd = 27;
  static constexpr int kNoseBegin = 27, kNoseEnd = 36;
  static constexpr int kRightEyeBegin = 36, kRightEyeEnd = 42;  // 36 outer corner, 39 inner
  static constexpr int kLeftEyeBegin = 42, kLeftEyeEnd = 48;    // 42 inner corner, 45 outer
  static constexpr int kMouthBegin = 48, kMouthEnd = 68;

  /// The file name in <cache>/models.
  static constexpr const char* kModelFile = "shape_predictor_68_face_landmarks.dat";

  /// Loads the predictor (~100 MB, about a second). Throws std::runtime_error naming the path
  /// and scripts/fetch_media.sh if the file is missing or is not a dlib shape predictor.
  explicit Landmarks68(const std::filesystem::path& model_path);
  ~Landmarks68();
  Landmarks68(const Landmarks68&) = delete;
  Landmarks68& operator=(const Landmarks68&) = delete;

  /// Fits the 68 points to the face in `face` (a detector box, image pixels) of a gray, BGR or
  /// BGRA 8-bit image: dlib's predictor's points before it rounds them to whole pixels (rounded,
  /// they are exactly dlib's). Thread-safe: the model is read-only at run time.
  [[nodiscard]] Landmarks68Points fit(const cv::Mat& image, const cv::Rect2f& face) const;
  /// Same for several faces of one image (converts the image once).
  [[nodiscard]] std::vector<Landmarks68Points> fit(const cv::Mat& image,
                                                   const std::vector<cv::Rect2f>& faces) const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace micromodels::vision
