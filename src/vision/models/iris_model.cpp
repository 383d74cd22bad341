#include "vision/models/iris_model.hpp"

#include <cmath>
#include <stdexcept>

#include <opencv2/imgproc.hpp>

#include "vision/models/image_utils.hpp"

namespace micromodels::vision {
namespace {

constexpr int kValues = (71 + 5) * 3;

OnnxInputSpec iris_spec() {
  OnnxInputSpec spec;
  spec.size = {IrisModel::kInputSize, IrisModel::kInputSize};
  spec.scale = 1.0 / 255.0;  // RGB in [0, 1], as MediaPipe and Human feed it
  spec.swap_rb = true;
  spec.layout = TensorLayout::nchw;  // the converter emits an NCHW input
  return spec;
}

cv::Point3f map_point(const EyeCrop& crop, const float* v) {
  const cv::Matx23d& m = crop.patch_to_image;
  // The model's coordinates are continuous (0 = the patch's left edge); patch_to_image
  // works on pixel centres (0 = the centre of the first pixel).
  const double x = v[0] - 0.5, y = v[1] - 0.5;
  return {static_cast<float>(m(0, 0) * x + m(0, 1) * y + m(0, 2)),
          static_cast<float>(m(1, 0) * x + m(1, 1) * y + m(1, 2)), v[2] * crop.patch_scale};
}

}  // namespace

float IrisLandmarks::iris_radius() const {
  float sum = 0;
  for (size_t i = 1; i < iris.size(); ++i) {
    sum += std::hypot(iris[i].x - iris[0].x, iris[i].y - iris[0].y);
  }
  return sum / 4;
}

IrisModel::IrisModel(const std::filesystem::path& model_path) : model_(model_path, iris_spec()) {
  if (model_.output_names().size() != 1) {
    throw std::runtime_error("'" + model_path.string() + "' is not the converted iris model");
  }
}

EyeCrop IrisModel::crop_eye(const cv::Mat& image, cv::Point2f corner_a, cv::Point2f corner_b,
                            bool mirror, float scale) {
  const cv::Mat bgr = to_bgr8(image, "IrisModel::crop_eye");
  // Order the corners left to right in the frame so that the rotation stays within +-90 degrees.
  if (corner_b.x < corner_a.x) {
    std::swap(corner_a, corner_b);
  }
  const cv::Point2d a(corner_a), b(corner_b);
  const cv::Point2d center = (a + b) * 0.5;
  const double angle = std::atan2(b.y - a.y, b.x - a.x);
  // A minimum side keeps the transform invertible when both corners coincide.
  const double side = std::max(cv::norm(b - a) * scale, 1.0);
  const double k = side / kInputSize;  // frame pixels per patch pixel
  const double c = std::cos(angle) * k, s = std::sin(angle) * k;
  const double flip = mirror ? -1.0 : 1.0;
  // patch (u, v) -> frame: centre + R(angle) * k * (flip * (u - 32), v - 32); pixel centres
  // are at integer coordinates in both images, as warpAffine assumes.
  const double half = kInputSize / 2.0 - 0.5;
  cv::Matx23d to_image(c * flip, -s, 0, s * flip, c, 0);
  to_image(0, 2) = center.x - (to_image(0, 0) * half + to_image(0, 1) * half);
  to_image(1, 2) = center.y - (to_image(1, 0) * half + to_image(1, 1) * half);

  EyeCrop crop;
  crop.patch_to_image = to_image;
  crop.patch_scale = static_cast<float>(k);
  crop.mirrored = mirror;
  // WARP_INVERSE_MAP: the matrix maps destination (patch) to source (frame).
  cv::warpAffine(bgr, crop.patch, cv::Mat(to_image), cv::Size(kInputSize, kInputSize),
                 cv::INTER_LINEAR | cv::WARP_INVERSE_MAP, cv::BORDER_REPLICATE);
  return crop;
}

cv::Mat IrisModel::run_raw(const std::vector<cv::Mat>& patches) {
  std::vector<cv::Mat> out = model_.run(patches);
  // [N, 1, 1, 228] -> [N, 228]
  if (out.size() != 1 || out[0].total() != patches.size() * kValues) {
    throw std::runtime_error("IrisModel: unexpected output size");
  }
  return out[0].reshape(1, static_cast<int>(patches.size()));
}

std::vector<IrisLandmarks> IrisModel::run(const std::vector<EyeCrop>& crops) {
  if (crops.empty()) {
    return {};
  }
  std::vector<cv::Mat> patches;
  patches.reserve(crops.size());
  for (const auto& c : crops) {
    patches.push_back(c.patch);
  }
  const cv::Mat raw = run_raw(patches);

  std::vector<IrisLandmarks> result(crops.size());
  for (size_t i = 0; i < crops.size(); ++i) {
    const auto* v = raw.ptr<float>(static_cast<int>(i));
    for (size_t p = 0; p < 71; ++p) {
      result[i].contour[p] = map_point(crops[i], v + 3 * p);
    }
    for (size_t p = 0; p < 5; ++p) {
      result[i].iris[p] = map_point(crops[i], v + 3 * (71 + p));
    }
  }
  return result;
}

}  // namespace micromodels::vision
