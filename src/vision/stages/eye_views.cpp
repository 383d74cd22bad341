#include "eye_views.hpp"

#include <algorithm>
#include <cmath>

#include <opencv2/imgproc.hpp>

namespace micromodels::vision {

std::optional<cv::Rect2f> eyes_box(const Points& landmarks, cv::Size frame, float aspect) {
  if (landmarks.size() < 68 || frame.width < 2 || frame.height < 2) return std::nullopt;
  cv::Point2f centre(0, 0);
  for (std::size_t i = 36; i <= 47; ++i) centre += cv::Point2f(landmarks[i].x, landmarks[i].y);
  centre *= 1.0f / 12;
  const cv::Point2f span(landmarks[45].x - landmarks[36].x, landmarks[45].y - landmarks[36].y);
  float width = std::max(8.0f, 1.6f * static_cast<float>(cv::norm(span)));
  float height = width / aspect;
  // Shrunk, keeping the aspect, when the frame is smaller than the box.
  const float fit = std::min({1.0f, static_cast<float>(frame.width) / width,
                              static_cast<float>(frame.height) / height});
  width *= fit;
  height *= fit;
  const float x = std::clamp(centre.x - width / 2, 0.0f, static_cast<float>(frame.width) - width);
  const float y = std::clamp(centre.y - height / 2, 0.0f, static_cast<float>(frame.height) - height);
  return cv::Rect2f(x, y, width, height);
}

cv::Mat enlarge(const cv::Mat& image, const cv::Rect2f& box, cv::Size size) {
  // An affine map from the output's pixels to the box: sub-pixel boxes need no rounding.
  const double sx = box.width / size.width;
  const double sy = box.height / size.height;
  const cv::Matx23d to_box(sx, 0, box.x + 0.5 * sx - 0.5, 0, sy, box.y + 0.5 * sy - 0.5);
  cv::Mat out;
  cv::warpAffine(image, out, to_box, size, cv::INTER_CUBIC | cv::WARP_INVERSE_MAP,
                 cv::BORDER_REPLICATE);
  return out;
}

}  // namespace micromodels::vision
