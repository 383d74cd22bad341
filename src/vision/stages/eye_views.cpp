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
  // The box rounded to whole pixels (a view of at most a pixel more or less), then resized:
  // cv::resize is several times faster than a sub-pixel warp, and a video's inset pays it on
  // every frame.
  const cv::Rect whole(cv::Point(static_cast<int>(std::floor(box.x)), static_cast<int>(std::floor(box.y))),
                       cv::Point(static_cast<int>(std::ceil(box.x + box.width)),
                                 static_cast<int>(std::ceil(box.y + box.height))));
  const cv::Rect inside = whole & cv::Rect(0, 0, image.cols, image.rows);
  cv::Mat out;
  if (inside.empty()) {
    out = cv::Mat(size, image.type(), cv::Scalar::all(0));
    return out;
  }
  cv::resize(image(inside), out, size, 0, 0, cv::INTER_CUBIC);
  return out;
}

}  // namespace micromodels::vision
