// MediaPipe's iris landmark model (iris_landmark.tflite as the TFJS graph in @vladmandic/human),
// converted to ONNX by scripts/convert_tfjs_to_onnx.py.
#pragma once

#include <array>
#include <filesystem>
#include <vector>

#include <opencv2/core.hpp>

#include "vision/models/onnx_model.hpp"

namespace micromodels::vision {

/// A square, eye-aligned patch cut from a frame, ready for the iris model, and the way back.
struct EyeCrop {
  cv::Mat patch;               // kInputSize x kInputSize BGR
  cv::Matx23d patch_to_image;  // patch pixel -> frame pixel (undoes rotation and mirroring)
  float patch_scale = 1;       // frame pixels per patch pixel (for z)
  bool mirrored = false;
};

/// The model's 76 points for one eye, in frame pixels; z is relative depth in the same units
/// as x (larger is farther), as MediaPipe outputs it.
struct IrisLandmarks {
  // Contour: 0..15 the eyelid contour (0..8 lower lid from the outer corner 0 to the inner
  // corner 8, 9..15 upper lid), 16..70 the wider eye region and brow, as in MediaPipe's
  // iris_landmark model card.
  std::array<cv::Point3f, 71> contour;
  // Iris: 0 centre, then four points on the iris edge.
  std::array<cv::Point3f, 5> iris;

  [[nodiscard]] cv::Point2f iris_center() const { return {iris[0].x, iris[0].y}; }
  /// Iris radius in pixels: mean distance from the centre to the four edge points.
  [[nodiscard]] float iris_radius() const;
};

class IrisModel {
 public:
  static constexpr int kInputSize = 64;
  static constexpr const char* kModelFile = "iris.onnx";
  // MediaPipe's eye ROI: the corner-to-corner distance enlarged 2.3x, square.
  static constexpr float kDefaultCropScale = 2.3f;

  /// Throws std::runtime_error (naming the path and scripts/fetch_media.sh) if the file is
  /// missing or not ONNX.
  explicit IrisModel(const std::filesystem::path& model_path);

  /// Cuts the patch for one eye given its two corners (image pixels, any order): centred on
  /// their midpoint, rotated so they lie level, side = distance * scale. The model expects a
  /// subject's right eye; set `mirror` for a left eye (flipped horizontally in the patch, and
  /// flipped back by patch_to_image). Gray/BGRA images are converted; out-of-frame areas are
  /// filled by replicating the border.
  [[nodiscard]] static EyeCrop crop_eye(const cv::Mat& image, cv::Point2f corner_a,
                                        cv::Point2f corner_b, bool mirror,
                                        float scale = kDefaultCropScale);

  /// Runs all crops in one forward pass (batch = crops.size()); results in frame pixels.
  std::vector<IrisLandmarks> run(const std::vector<EyeCrop>& crops);
  /// Raw output for the patches, [N, 228] in patch pixels (contour 71x3 then iris 5x3).
  cv::Mat run_raw(const std::vector<cv::Mat>& patches);

 private:
  OnnxModel model_;
};

}  // namespace micromodels::vision
