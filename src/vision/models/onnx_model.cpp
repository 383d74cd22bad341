#include "vision/models/onnx_model.hpp"

#include <cstring>
#include <stdexcept>
#include <utility>

#include <opencv2/imgproc.hpp>

#include "vision/models/image_utils.hpp"
#include "vision/models/model_files.hpp"

namespace micromodels::vision {

OnnxModel::OnnxModel(std::filesystem::path path, OnnxInputSpec spec)
    : path_(std::move(path)), spec_(std::move(spec)) {
  require_file(path_, "ONNX model");
  if (spec_.size.width <= 0 || spec_.size.height <= 0) {
    throw std::invalid_argument("OnnxModel '" + path_.string() + "': input size must be positive");
  }
  try {
    net_ = cv::dnn::readNetFromONNX(path_.string());
  } catch (const cv::Exception& e) {
    // OpenCV's message is a protobuf parse error at best; say what the file should have been.
    throw std::runtime_error("cannot load '" + path_.string() +
                             "' as an ONNX model (corrupt or not ONNX?); run "
                             "scripts/fetch_media.sh to fetch and convert the models. OpenCV: " +
                             e.what());
  }
  if (net_.empty()) {
    throw std::runtime_error("'" + path_.string() +
                             "' holds no ONNX graph; run scripts/fetch_media.sh to fetch and "
                             "convert the models");
  }
  // Plain CPU: the reference path every machine here has.
  net_.setPreferableBackend(cv::dnn::DNN_BACKEND_OPENCV);
  net_.setPreferableTarget(cv::dnn::DNN_TARGET_CPU);
  for (const auto& name : net_.getUnconnectedOutLayersNames()) {
    output_names_.push_back(name);
  }
  // Warm up: OpenCV sets the net up (allocates and fuses layers) on the first forward pass,
  // which takes several times a normal pass. Doing it here keeps that out of the first packet,
  // and a stage swapped in while the pipeline runs takes over ready.
  try {
    run({cv::Mat(spec_.size, CV_8UC3, cv::Scalar::all(0))});
  } catch (const cv::Exception& e) {
    throw std::runtime_error("'" + path_.string() + "' loaded, but a forward pass on a " +
                             std::to_string(spec_.size.width) + "x" +
                             std::to_string(spec_.size.height) +
                             " input failed: is it the model this stage expects? OpenCV: " +
                             e.what());
  }
}

cv::Mat OnnxModel::make_blob(const std::vector<cv::Mat>& images) const {
  if (images.empty()) {
    throw std::invalid_argument("OnnxModel::run: no images");
  }
  if (spec_.max_batch > 0 && static_cast<int>(images.size()) > spec_.max_batch) {
    throw std::invalid_argument("OnnxModel '" + path_.filename().string() + "': batch of " +
                                std::to_string(images.size()) + " exceeds the model's " +
                                std::to_string(spec_.max_batch));
  }
  const int n = static_cast<int>(images.size());
  const int h = spec_.size.height;
  const int w = spec_.size.width;
  const int shape_nchw[] = {n, 3, h, w};
  const int shape_nhwc[] = {n, h, w, 3};
  cv::Mat blob(4, spec_.layout == TensorLayout::nchw ? shape_nchw : shape_nhwc, CV_32F);

  cv::Mat bgr, resized, rgb, f32;
  for (int i = 0; i < n; ++i) {
    bgr = to_bgr8(images[static_cast<size_t>(i)], "OnnxModel::run");
    if (bgr.size() != spec_.size) {
      cv::resize(bgr, resized, spec_.size, 0, 0, cv::INTER_LINEAR);
    } else {
      resized = bgr;
    }
    if (spec_.swap_rb) {
      cv::cvtColor(resized, rgb, cv::COLOR_BGR2RGB);
    } else {
      rgb = resized;
    }
    // (pixel - mean) * scale; the mean is per channel, so it is a separate step.
    rgb.convertTo(f32, CV_32F);
    if (spec_.mean != cv::Scalar()) {
      cv::subtract(f32, spec_.mean, f32);
    }
    f32 *= spec_.scale;

    auto* dst = blob.ptr<float>(i);
    if (spec_.layout == TensorLayout::nhwc) {
      // Interleaved HWC is exactly the memory of a continuous CV_32FC3 image.
      if (!f32.isContinuous()) {
        f32 = f32.clone();
      }
      std::memcpy(dst, f32.ptr<float>(), sizeof(float) * static_cast<size_t>(h * w * 3));
    } else {
      // Planar CHW: split straight into the three planes of this batch item.
      std::vector<cv::Mat> planes;
      planes.reserve(3);
      for (int c = 0; c < 3; ++c) {
        planes.emplace_back(h, w, CV_32F, dst + c * h * w);
      }
      cv::split(f32, planes);
    }
  }
  return blob;
}

std::vector<cv::Mat> OnnxModel::run(const std::vector<cv::Mat>& images) {
  return run_blob(make_blob(images));
}

std::vector<cv::Mat> OnnxModel::run_blob(const cv::Mat& blob) {
  std::vector<cv::Mat> outputs;
  {
    std::scoped_lock lock(mutex_);
    net_.setInput(blob);
    net_.forward(outputs, output_names_);
    // forward() hands out views of the net's internal buffers, which the next call (maybe
    // from another thread, once the lock is released) overwrites.
    for (auto& out : outputs) {
      out = out.clone();
    }
  }
  return outputs;
}

std::vector<int> tensor_shape(const cv::Mat& tensor) {
  std::vector<int> shape;
  shape.reserve(tensor.dims);
  for (int i = 0; i < tensor.dims; ++i) {
    shape.push_back(tensor.size[i]);
  }
  return shape;
}

}  // namespace micromodels::vision
