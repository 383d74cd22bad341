// Enlarged pictures of the eyes, for people judging eye contact: at video sizes the eyes are a
// few dozen pixels wide, too small to see a gaze change without a closer look.
#pragma once

#include <optional>

#include <opencv2/core.hpp>

#include "micromodels/packet.hpp"

namespace micromodels::vision {

/// The box around both eyes of the first face in `landmarks` (dlib's 68 points): centred on the
/// twelve eye points, 1.6 times the outer corners' span wide and `width / aspect` tall, moved
/// inside the frame. nullopt without 68 landmarks.
[[nodiscard]] std::optional<cv::Rect2f> eyes_box(const Points& landmarks, cv::Size frame,
                                                 float aspect = 3.0f);

/// The pixels of `box` (rounded out to whole pixels, clipped to the image) in `image`, resized to
/// `size` with cubic interpolation; black when the box misses the image.
[[nodiscard]] cv::Mat enlarge(const cv::Mat& image, const cv::Rect2f& box, cv::Size size);

}  // namespace micromodels::vision
