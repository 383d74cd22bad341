#include "vision/models/image_utils.hpp"

#include <stdexcept>
#include <string>

#include <opencv2/imgproc.hpp>

namespace micromodels::vision {
namespace {

void check(const cv::Mat& image, std::string_view who) {
  if (image.empty()) {
    throw std::invalid_argument(std::string(who) + ": empty image");
  }
  if (image.depth() != CV_8U) {
    throw std::invalid_argument(std::string(who) + ": expected an 8-bit image, got depth " +
                                std::to_string(image.depth()) + " (convert it to CV_8U first)");
  }
  const int c = image.channels();
  if (c != 1 && c != 3 && c != 4) {
    throw std::invalid_argument(std::string(who) + ": expected 1, 3 or 4 channels, got " +
                                std::to_string(c));
  }
}

}  // namespace

cv::Mat to_bgr8(const cv::Mat& image, std::string_view who) {
  check(image, who);
  cv::Mat out;
  switch (image.channels()) {
    case 1:
      cv::cvtColor(image, out, cv::COLOR_GRAY2BGR);
      return out;
    case 4:
      cv::cvtColor(image, out, cv::COLOR_BGRA2BGR);
      return out;
    default:
      return image;
  }
}

cv::Mat to_gray8(const cv::Mat& image, std::string_view who) {
  check(image, who);
  cv::Mat out;
  switch (image.channels()) {
    case 3:
      cv::cvtColor(image, out, cv::COLOR_BGR2GRAY);
      return out;
    case 4:
      cv::cvtColor(image, out, cv::COLOR_BGRA2GRAY);
      return out;
    default:
      return image;
  }
}

}  // namespace micromodels::vision
