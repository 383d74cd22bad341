// A generic ONNX model run by OpenCV's DNN module, with the preprocessing declared up front.
#pragma once

#include <filesystem>
#include <mutex>
#include <string>
#include <vector>

#include <opencv2/core.hpp>
#include <opencv2/dnn.hpp>

namespace micromodels::vision {

enum class TensorLayout { nchw, nhwc };

/// How images become the model's input tensor:
///   value = (pixel - mean) * scale, channel order RGB when swap_rb (input images are BGR).
struct OnnxInputSpec {
  cv::Size size;  // network input (width, height); images are resized to it
  double scale = 1.0 / 255.0;
  cv::Scalar mean{0, 0, 0};  // in the channel order after swap_rb
  bool swap_rb = true;
  TensorLayout layout = TensorLayout::nchw;
  int max_batch = 0;  // 0: any batch; models exported with batch 1 say 1
};

/// Loads an ONNX file into a cv::dnn::Net and runs batches of images through it.
/// Images may be gray, BGR or BGRA, 8-bit, any size: they are converted and resized (no
/// letterboxing: callers that care about aspect ratio crop or pad first).
/// Thread safety: cv::dnn::Net::forward mutates the net, so run() takes a lock; for parallel
/// inference create one OnnxModel per consumer.
class OnnxModel {
 public:
  /// Loads the model and warms it up with one forward pass on a blank input. Throws
  /// std::runtime_error naming the path (and scripts/fetch_media.sh) when the file is missing,
  /// is not an ONNX model OpenCV can load, or cannot run on an input of `spec.size`.
  OnnxModel(std::filesystem::path path, OnnxInputSpec spec);

  OnnxModel(const OnnxModel&) = delete;
  OnnxModel& operator=(const OnnxModel&) = delete;

  /// One forward pass over all `images`; returns one tensor per model output (in
  /// output_names() order), batch first. Outputs are owned copies, safe to keep.
  std::vector<cv::Mat> run(const std::vector<cv::Mat>& images);
  /// One forward pass over an already built input tensor.
  std::vector<cv::Mat> run_blob(const cv::Mat& blob);
  /// The input tensor run() would feed for `images` (float32, NCHW or NHWC as specified).
  [[nodiscard]] cv::Mat make_blob(const std::vector<cv::Mat>& images) const;

  [[nodiscard]] const std::vector<std::string>& output_names() const { return output_names_; }
  [[nodiscard]] const OnnxInputSpec& spec() const { return spec_; }
  [[nodiscard]] const std::filesystem::path& path() const { return path_; }

 private:
  std::filesystem::path path_;
  OnnxInputSpec spec_;
  cv::dnn::Net net_;
  std::vector<std::string> output_names_;
  std::mutex mutex_;
};

/// Shape of a tensor as a vector ({1, 896, 16}), for messages and checks.
[[nodiscard]] std::vector<int> tensor_shape(const cv::Mat& tensor);

}  // namespace micromodels::vision
