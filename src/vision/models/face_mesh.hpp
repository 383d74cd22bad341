// MediaPipe's face mesh (468 points; face_landmark.tflite as the TFJS graph in
// @vladmandic/human), converted to ONNX by scripts/convert_tfjs_to_onnx.py.
#pragma once

#include <array>
#include <filesystem>
#include <vector>

#include <opencv2/core.hpp>

#include "vision/models/onnx_model.hpp"

namespace micromodels::vision {

/// A square, upright face patch and the way back to the frame.
struct FaceCrop {
  cv::Mat patch;               // kInputSize x kInputSize BGR
  cv::Matx23d patch_to_image;  // patch pixel -> frame pixel
  float patch_scale = 1;       // frame pixels per patch pixel
};

struct FaceMeshResult {
  std::vector<cv::Point3f> points;  // 468, frame pixels; z relative depth in x's units
  float face_score = 0;             // [0, 1]: is there a face in the crop at all
};

class FaceMesh {
 public:
  static constexpr int kInputSize = 192;
  static constexpr int kNumPoints = 468;
  static constexpr const char* kModelFile = "facemesh.onnx";
  // MediaPipe enlarges the detector's box 1.5x around its centre for the mesh ROI.
  static constexpr float kDefaultCropScale = 1.5f;

  explicit FaceMesh(const std::filesystem::path& model_path);

  /// Cuts the patch for one face: a square of side max(w, h) * scale centred on `face`,
  /// rotated by `angle_rad` (clockwise in the image, e.g. the eye line's angle) so the face is
  /// upright in the patch.
  [[nodiscard]] static FaceCrop crop_face(const cv::Mat& image, const cv::Rect2f& face,
                                          float angle_rad = 0, float scale = kDefaultCropScale);
  /// The angle of the line from the subject's right eye to the left eye (image pixels), for
  /// crop_face: 0 for a level face.
  [[nodiscard]] static float eye_angle(cv::Point2f right_eye, cv::Point2f left_eye);

  /// All crops in one forward pass.
  std::vector<FaceMeshResult> run(const std::vector<FaceCrop>& crops);

 private:
  OnnxModel model_;
};

}  // namespace micromodels::vision
