// What the eye-contact stage tests share: the stages under test in a registry, packet helpers,
// and drawn eyes and faces whose answer the tests know.
#pragma once

#include <algorithm>
#include <cmath>
#include <map>
#include <numeric>
#include <optional>
#include <string>
#include <vector>

#include <gtest/gtest.h>
#include <opencv2/imgproc.hpp>

#include "micromodels/packet.hpp"
#include "micromodels/registry.hpp"
#include "micromodels/stage_harness.hpp"

#include "cache_files.hpp"
#include "vision/stages/eye_fields.hpp"
#include "vision/stages/eye_model.hpp"
#include "vision/stages/image_mat.hpp"
#include "vision/stages/stage_registration.hpp"

namespace eye_test {

namespace mm = micromodels;
namespace mv = micromodels::vision;

using micromodels::vision::testing::media;
using micromodels::vision::testing::model;

// The stages under test, registered the way vision_stages.cpp does.
inline const mm::Registry& registry() {
  static const mm::Registry kRegistry = [] {
    mm::Registry r;
    mv::register_face_track(r);
    mv::register_face_detect(r);
    mv::register_face_landmarks(r);
    mv::register_eye_iris_schedule(r);
    mv::register_eye_iris(r);
    mv::register_eye_iris_carry(r);
    mv::register_face_mesh68(r);
    mv::register_eye_refine(r);
    mv::register_face_smooth(r);
    mv::register_gaze_estimate(r);
    mv::register_eye_steady(r);
    mv::register_gaze_redirect(r);
    mv::register_image_blend(r);
    return r;
  }();
  return kRegistry;
}

inline mm::StageHarness harness(const std::string& type,
                         const std::map<std::string, mm::ParamValue>& params = {}) {
  return mm::StageHarness(type, params, registry());
}

inline constexpr std::int64_t kFrameNs = 40'000'000;  // 25 fps

inline mm::Packet frame_packet(const cv::Mat& frame, std::uint64_t seq, std::uint32_t stream = 0) {
  mm::Packet p{.stream = stream, .seq = seq, .time_ns = static_cast<std::int64_t>(seq) * kFrameNs};
  p.set("frame", mv::to_image(frame.clone()));
  return p;
}

inline mm::Packet single(std::vector<mm::Packet> out) {
  EXPECT_EQ(out.size(), 1u);
  return out.empty() ? mm::Packet{} : std::move(out.front());
}

inline cv::Mat mat(const mm::Packet& p, const char* field) { return mv::to_mat(p.get<mm::Image>(field)); }

inline mm::Rect to_rect(const cv::Rect2f& r, float score = 1) {
  return {r.x, r.y, r.width, r.height, score};
}

inline cv::Rect2f to_cv(const mm::Rect& r) { return {r.x, r.y, r.width, r.height}; }

inline cv::Point2f centre(const cv::Rect2f& r) { return {r.x + r.width / 2, r.y + r.height / 2}; }

inline float iou(const cv::Rect2f& a, const cv::Rect2f& b) {
  const float inter = (a & b).area();
  return inter / (a.area() + b.area() - inter);
}

// 255 where any channel of `a` and `b` differs, else 0 (a gray conversion would round a change
// of 1 in one channel away).
inline cv::Mat any_change(const cv::Mat& a, const cv::Mat& b) {
  cv::Mat diff;
  cv::absdiff(a, b, diff);
  cv::Mat per_channel = diff.reshape(1, static_cast<int>(diff.total()));
  cv::Mat most;
  cv::reduce(per_channel, most, 1, cv::REDUCE_MAX);
  return most.reshape(1, a.rows) > 0;
}

inline double stddev(const std::vector<double>& v) {
  const double mean = std::accumulate(v.begin(), v.end(), 0.0) / static_cast<double>(v.size());
  double sum = 0;
  for (double x : v) sum += (x - mean) * (x - mean);
  return std::sqrt(sum / static_cast<double>(v.size()));
}

// ---- synthetic eyes and faces ----------------------------------------------------------------

inline constexpr int kSkin = 170, kSclera = 235, kIris = 70, kPupil = 25;

// dlib's 6 points on an almond of the given size: corners, two on the upper lid, two on the
// lower, in dlib's order for the right eye (outer corner first, image left); `left_eye` gives
// the left eye's order (inner corner first, which is also on the image left).
inline std::vector<cv::Point2f> almond_points(cv::Point2f c, float width, float height) {
  const float a = width / 2, b = height / 2;
  const float y = b * std::sqrt(1.0f - 1.0f / 9.0f);
  return {{c.x - a, c.y}, {c.x - a / 3, c.y - y}, {c.x + a / 3, c.y - y},
          {c.x + a, c.y}, {c.x + a / 3, c.y + y}, {c.x - a / 3, c.y + y}};
}

// Draws an eye: a white almond (ellipse) with a dark iris and pupil clipped to it.
inline void draw_eye(cv::Mat& image, cv::Point2f c, float width, float height, cv::Point2f iris,
              float iris_radius) {
  const cv::Size axes(cvRound(width / 2), cvRound(height / 2));
  cv::Mat opening = cv::Mat::zeros(image.size(), CV_8UC1);
  cv::ellipse(opening, cv::Point(cvRound(c.x), cvRound(c.y)), axes, 0, 0, 360, cv::Scalar(255),
              cv::FILLED, cv::LINE_AA);
  cv::Mat eye(image.size(), image.type(), cv::Scalar::all(kSclera));
  constexpr int kShift = 4;
  const cv::Point at(cvRound(iris.x * 16), cvRound(iris.y * 16));
  cv::circle(eye, at, cvRound(iris_radius * 16), cv::Scalar::all(kIris), cv::FILLED, cv::LINE_AA,
             kShift);
  cv::circle(eye, at, cvRound(iris_radius * 0.45f * 16), cv::Scalar::all(kPupil), cv::FILLED,
             cv::LINE_AA, kShift);
  // Alpha-composite the eye into the skin through the anti-aliased opening.
  for (int y = 0; y < image.rows; ++y) {
    for (int x = 0; x < image.cols; ++x) {
      const int a = opening.at<std::uint8_t>(y, x);
      if (a == 0) continue;
      auto& dst = image.at<cv::Vec3b>(y, x);
      const auto& src = eye.at<cv::Vec3b>(y, x);
      for (int k = 0; k < 3; ++k)
        dst[k] = static_cast<std::uint8_t>((dst[k] * (255 - a) + src[k] * a + 127) / 255);
    }
  }
}

// Darkness-weighted centroid of the pixels inside `polygon` (the iris is the dark blob in it).
inline std::optional<cv::Point2f> dark_centroid(const cv::Mat& bgr,
                                         const std::vector<cv::Point2f>& polygon, int threshold) {
  cv::Mat gray;
  cv::cvtColor(bgr, gray, cv::COLOR_BGR2GRAY);
  double sx = 0, sy = 0, sw = 0;
  const cv::Rect box = cv::boundingRect(polygon) & cv::Rect(0, 0, gray.cols, gray.rows);
  for (int y = box.y; y < box.y + box.height; ++y) {
    for (int x = box.x; x < box.x + box.width; ++x) {
      if (cv::pointPolygonTest(polygon, cv::Point2f(static_cast<float>(x), static_cast<float>(y)),
                               false) < 0) {
        continue;
      }
      const double w = std::max(0, threshold - static_cast<int>(gray.at<std::uint8_t>(y, x)));
      sx += w * x;
      sy += w * y;
      sw += w;
    }
  }
  if (sw <= 0) return std::nullopt;
  return cv::Point2f(static_cast<float>(sx / sw), static_cast<float>(sy / sw));
}

// A plausible frontal 68-point face (dlib order) centred at `c`, eye width `eye_w`. `open`
// scales the eye heights (1: open, EAR 0.3); `nose_dx` moves the nose tip sideways (a head
// turn); the irises sit at the eye centres plus `gaze`.
struct SyntheticFace {
  mm::Points landmarks;
  mm::Points iris;
};

inline SyntheticFace synthetic_face(cv::Point2f c, float eye_w = 24, float open = 1, float nose_dx = 0,
                             cv::Point2f gaze = {0, 0}) {
  const float s = eye_w / 24;
  mm::Points lm(68);
  const auto set = [&](std::size_t i, float x, float y) { lm[i] = {c.x + x * s, c.y + y * s}; };
  for (std::size_t i = 0; i < 17; ++i) {  // jaw: a U from ear to ear
    const float t = static_cast<float>(i) / 16.0f * 3.14159f;
    set(i, -48 * std::cos(t), -10 + 55 * std::sin(t));
  }
  for (std::size_t i = 0; i < 5; ++i) {  // brows
    set(17 + i, -42 + 8 * static_cast<float>(i), -26);
    set(22 + i, 10 + 8 * static_cast<float>(i), -26);
  }
  for (std::size_t i = 0; i < 4; ++i) set(27 + i, 0, -14 + 7 * static_cast<float>(i));  // ridge
  lm[30].x += nose_dx * s;
  for (std::size_t i = 0; i < 5; ++i) set(31 + i, -8 + 4 * static_cast<float>(i), 12);  // nostrils
  const float h = 0.3f * 24 * open;
  const auto eye = [&](std::size_t first, cv::Point2f at) {
    const auto pts = almond_points(at, 24, h);
    for (std::size_t k = 0; k < 6; ++k) set(first + k, pts[k].x, pts[k].y);
  };
  eye(36, {-22, -10});
  eye(42, {22, -10});
  for (std::size_t i = 0; i < 20; ++i) {  // mouth: a ring
    const float t = static_cast<float>(i) / 20.0f * 6.28318f;
    set(48 + i, 16 * std::cos(t), 28 + 6 * std::sin(t));
  }
  mm::Points iris;
  for (const float ex : {-22.0f, 22.0f}) {
    const float x = ex + gaze.x, y = -10 + gaze.y;
    for (const cv::Point2f d : {cv::Point2f(0, 0), cv::Point2f(5, 0), cv::Point2f(0, -5),
                                cv::Point2f(-5, 0), cv::Point2f(0, 5)}) {
      iris.push_back({c.x + (x + d.x) * s, c.y + (y + d.y) * s});
    }
  }
  return {lm, iris};
}

inline mm::Packet face_packet(const SyntheticFace& face, std::uint64_t seq, cv::Size size = {320, 240}) {
  mm::Packet p = frame_packet(cv::Mat(size, CV_8UC3, cv::Scalar::all(kSkin)), seq);
  p.set("landmarks", face.landmarks);
  p.set("iris", face.iris);
  return p;
}

// The mean absolute difference of two images' pixels, over every channel.
inline double mean_abs_difference(const cv::Mat& a, const cv::Mat& b) {
  cv::Mat difference;
  cv::absdiff(a, b, difference);
  const cv::Scalar m = cv::mean(difference);
  return (m[0] + m[1] + m[2] + m[3]) / a.channels();
}

// A level eye drawn at 4x and averaged down, so that its edges sit where they are asked to, to a
// fraction of a pixel: skin, then going down a dark lash line under the upper lid's edge, the
// white with the iris, a dark rim over the lower lid, and the lower lid's skin.
struct DrawnEye {
  cv::Point2f centre{60, 40};
  float half_width = 12;   // corners at centre.x +- this
  float upper_rise = 6;    // the upper lid's edge above the corner line, at the middle
  float lower_drop = 3.5;  // the lower lid's edge below it
  cv::Point2f iris{60, 39};
  float iris_radius = 5;
  float rim = 1.5f;        // the lower lid's dark rim, above its edge
  float lashes = 2.0f;     // the upper lid's dark edge, under its contour

  [[nodiscard]] float upper_at(float x) const {
    const float t = (x - centre.x) / half_width;
    return centre.y - upper_rise * std::max(0.0f, 1 - t * t);
  }
  [[nodiscard]] float lower_at(float x) const {
    const float t = (x - centre.x) / half_width;
    return centre.y + lower_drop * std::max(0.0f, 1 - t * t);
  }

  [[nodiscard]] cv::Mat draw(cv::Size size = {120, 80}) const {
    constexpr int k = 4;
    cv::Mat big(size.height * k, size.width * k, CV_8UC3);
    for (int y = 0; y < big.rows; ++y) {
      for (int x = 0; x < big.cols; ++x) {
        const float fx = (static_cast<float>(x) + 0.5f) / k - 0.5f;
        const float fy = (static_cast<float>(y) + 0.5f) / k - 0.5f;
        int v = kSkin;
        if (std::abs(fx - centre.x) < half_width) {
          const float up = upper_at(fx), low = lower_at(fx);
          if (fy >= up && fy < up + lashes) {
            v = 40;  // lashes
          } else if (fy >= up + lashes && fy < low - rim) {
            v = std::hypot(fx - iris.x, fy - iris.y) < iris_radius ? kIris : kSclera;
          } else if (fy >= low - rim && fy < low) {
            v = 110;  // the lower lid's rim
          } else if (fy >= low) {
            v = 185;
          }
        }
        big.at<cv::Vec3b>(y, x) = cv::Vec3b::all(static_cast<std::uint8_t>(v));
      }
    }
    cv::Mat image;
    cv::resize(big, image, size, 0, 0, cv::INTER_AREA);
    return image;
  }

  // The iris model's 16-point contour (0..8 lower lid, 9..15 upper), off by `error` pixels
  // downward, as a model's rough guess would be.
  [[nodiscard]] std::vector<cv::Point2f> contour(float error) const {
    std::vector<cv::Point2f> points;
    for (int i = 0; i <= 8; ++i) {
      const float x = centre.x - half_width + 2 * half_width * static_cast<float>(i) / 8;
      points.emplace_back(x, lower_at(x) + error);
    }
    for (int i = 1; i <= 7; ++i) {
      const float x = centre.x + half_width - 2 * half_width * static_cast<float>(i) / 8;
      points.emplace_back(x, upper_at(x) + error);
    }
    return points;
  }

  [[nodiscard]] mv::EyeAxes axes() const {
    return mv::eye_axes({centre.x - half_width, centre.y}, {centre.x + half_width, centre.y});
  }
};

}  // namespace eye_test
