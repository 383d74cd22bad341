// Zero-copy conversion between the engine's Image and OpenCV's cv::Mat.
#pragma once

#include <opencv2/core.hpp>

#include "micromodels/packet.hpp"

namespace micromodels::vision {

/// A read-only view of the image's pixels (no copy). The Mat must not outlive the Image's buffer
/// unless the caller keeps the Image alive; do not write through it.
[[nodiscard]] cv::Mat to_mat(const Image& image);

/// Wraps a continuous Mat as an Image without copying (the Image keeps the Mat's data alive);
/// a non-continuous Mat is copied once. Supports CV_8UC1..4 and CV_32FC1..4.
[[nodiscard]] Image to_image(const cv::Mat& mat);

}  // namespace micromodels::vision
