#include "image_mat.hpp"

#include <memory>
#include <stdexcept>

namespace micromodels::vision {

cv::Mat to_mat(const Image& image) {
  if (image.pixels.size() < image.byte_size()) {
    throw std::invalid_argument("image buffer is smaller than its width x height x channels");
  }
  const int depth = image.depth == Depth::u8 ? CV_8U : CV_32F;
  // OpenCV wants a non-const pointer; the view is documented as read-only.
  auto* data = const_cast<std::byte*>(image.pixels.data());  // NOLINT(cppcoreguidelines-pro-type-const-cast)
  return {image.height, image.width, CV_MAKETYPE(depth, image.channels), data};
}

Image to_image(const cv::Mat& mat) {
  if (mat.depth() != CV_8U && mat.depth() != CV_32F) {
    throw std::invalid_argument("only 8-bit and 32-bit float images are supported");
  }
  auto owner = std::make_shared<cv::Mat>(mat.isContinuous() ? mat : mat.clone());
  Image image;
  image.width = owner->cols;
  image.height = owner->rows;
  image.channels = owner->channels();
  image.depth = owner->depth() == CV_8U ? Depth::u8 : Depth::f32;
  const std::size_t size = owner->total() * owner->elemSize();
  const auto* bytes = reinterpret_cast<const std::byte*>(owner->data);
  image.pixels = Buffer(std::shared_ptr<const std::byte>(owner, bytes), size);
  return image;
}

}  // namespace micromodels::vision
