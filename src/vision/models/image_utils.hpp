// Normalising the images handed to the models: every model class accepts gray, BGR and BGRA
// 8-bit images of any size, and rejects everything else with a clear message.
#pragma once

#include <string_view>

#include <opencv2/core.hpp>

namespace micromodels::vision {

/// 3-channel 8-bit BGR version of `image`: BGR is returned as is (no copy), gray and BGRA are
/// converted. Throws std::invalid_argument, naming `who`, for an empty image, a depth other
/// than 8-bit, or a channel count other than 1, 3 or 4.
[[nodiscard]] cv::Mat to_bgr8(const cv::Mat& image, std::string_view who);
/// 1-channel 8-bit version of `image`, same rules.
[[nodiscard]] cv::Mat to_gray8(const cv::Mat& image, std::string_view who);

}  // namespace micromodels::vision
