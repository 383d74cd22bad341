#include "vision/models/face_mesh.hpp"

#include <algorithm>
#include <cmath>
#include <stdexcept>

#include <opencv2/imgproc.hpp>

#include "vision/models/image_utils.hpp"

namespace micromodels::vision {
namespace {

OnnxInputSpec mesh_spec() {
  OnnxInputSpec spec;
  spec.size = {FaceMesh::kInputSize, FaceMesh::kInputSize};
  spec.scale = 1.0 / 255.0;  // RGB in [0, 1], as Human feeds it
  spec.swap_rb = true;
  spec.layout = TensorLayout::nchw;
  return spec;
}

}  // namespace

FaceMesh::FaceMesh(const std::filesystem::path& model_path) : model_(model_path, mesh_spec()) {
  // Converted outputs: Identity [N,266] contours, Identity_1 [N,1] face flag, Identity_2
  // [N,1404] mesh.
  const auto& names = model_.output_names();
  if (std::find(names.begin(), names.end(), "Identity_1") == names.end() ||
      std::find(names.begin(), names.end(), "Identity_2") == names.end()) {
    throw std::runtime_error("'" + model_path.string() + "' is not the converted facemesh model");
  }
}

float FaceMesh::eye_angle(cv::Point2f right_eye, cv::Point2f left_eye) {
  // In an unmirrored image the subject's right eye is on the left, so a level face gives 0.
  return std::atan2(left_eye.y - right_eye.y, left_eye.x - right_eye.x);
}

FaceCrop FaceMesh::crop_face(const cv::Mat& image, const cv::Rect2f& face, float angle_rad,
                             float scale) {
  const cv::Mat bgr = to_bgr8(image, "FaceMesh::crop_face");
  const double side = std::max<double>(std::max(face.width, face.height) * scale, 1.0);
  const double k = side / kInputSize;
  const double c = std::cos(angle_rad) * k, s = std::sin(angle_rad) * k;
  const cv::Point2d center(face.x + face.width / 2.0, face.y + face.height / 2.0);
  const double half = kInputSize / 2.0 - 0.5;  // patch centre in pixel-centre coordinates
  cv::Matx23d to_image(c, -s, 0, s, c, 0);
  to_image(0, 2) = center.x - (c * half - s * half);
  to_image(1, 2) = center.y - (s * half + c * half);

  FaceCrop crop;
  crop.patch_to_image = to_image;
  crop.patch_scale = static_cast<float>(k);
  cv::warpAffine(bgr, crop.patch, cv::Mat(to_image), cv::Size(kInputSize, kInputSize),
                 cv::INTER_LINEAR | cv::WARP_INVERSE_MAP, cv::BORDER_CONSTANT);
  return crop;
}

std::vector<FaceMeshResult> FaceMesh::run(const std::vector<FaceCrop>& crops) {
  if (crops.empty()) {
    return {};
  }
  std::vector<cv::Mat> patches;
  patches.reserve(crops.size());
  for (const auto& c : crops) {
    patches.push_back(c.patch);
  }
  const std::vector<cv::Mat> out = model_.run(patches);
  const auto& names = model_.output_names();
  const auto index = [&](const char* name) {
    return static_cast<size_t>(std::find(names.begin(), names.end(), name) - names.begin());
  };
  const cv::Mat& flags = out[index("Identity_1")];
  const cv::Mat& mesh = out[index("Identity_2")];
  const size_t n = crops.size();
  if (flags.total() != n || mesh.total() != n * kNumPoints * 3) {
    throw std::runtime_error("FaceMesh: unexpected output sizes");
  }
  std::vector<FaceMeshResult> result(n);
  for (size_t i = 0; i < n; ++i) {
    const FaceCrop& crop = crops[i];
    const cv::Matx23d& m = crop.patch_to_image;
    const float* v = mesh.ptr<float>() + i * kNumPoints * 3;
    result[i].face_score = flags.ptr<float>()[i];  // the graph already applies the sigmoid
    result[i].points.reserve(kNumPoints);
    for (int p = 0; p < kNumPoints; ++p, v += 3) {
      // Continuous patch coordinates -> pixel centres, then to the frame.
      const double x = v[0] - 0.5, y = v[1] - 0.5;
      result[i].points.emplace_back(static_cast<float>(m(0, 0) * x + m(0, 1) * y + m(0, 2)),
                                    static_cast<float>(m(1, 0) * x + m(1, 1) * y + m(1, 2)),
                                    v[2] * crop.patch_scale);
    }
  }
  return result;
}

}  // namespace micromodels::vision
