#include "vision/models/blaze_face.hpp"

#include <algorithm>
#include <cmath>
#include <stdexcept>

#include <opencv2/imgproc.hpp>

#include "vision/models/image_utils.hpp"

namespace micromodels::vision {
namespace {

constexpr int kNumCoords = 16;  // box (4) + 6 keypoints x (x, y)
// MediaPipe clips raw scores before the sigmoid, to keep exp() finite.
constexpr float kScoreClip = 100.0f;

float calculate_scale(float min_scale, float max_scale, int index, int count) {
  if (count == 1) {
    return (min_scale + max_scale) / 2;
  }
  return min_scale +
         (max_scale - min_scale) * static_cast<float>(index) / static_cast<float>(count - 1);
}

}  // namespace

std::vector<SsdAnchor> generate_ssd_anchors(const SsdAnchorOptions& o) {
  // A port of MediaPipe's SsdAnchorsCalculator for square inputs, single aspect ratio 1.0.
  std::vector<SsdAnchor> anchors;
  const int num_strides = static_cast<int>(o.strides.size());
  int layer = 0;
  while (layer < num_strides && layer < o.num_layers) {
    std::vector<float> widths, heights;
    // Consecutive layers with the same stride share one feature map.
    int last = layer;
    while (last < num_strides &&
           o.strides[static_cast<size_t>(last)] == o.strides[static_cast<size_t>(layer)]) {
      const float scale = calculate_scale(o.min_scale, o.max_scale, last, num_strides);
      widths.push_back(scale);  // aspect ratio 1.0
      heights.push_back(scale);
      if (o.interpolated_scale_aspect_ratio > 0) {
        const float next = last == num_strides - 1
                               ? 1.0f
                               : calculate_scale(o.min_scale, o.max_scale, last + 1, num_strides);
        const float s = std::sqrt(scale * next);
        const float r = std::sqrt(o.interpolated_scale_aspect_ratio);
        widths.push_back(s * r);
        heights.push_back(s / r);
      }
      ++last;
    }
    const int stride = o.strides[static_cast<size_t>(layer)];
    const int cells = (o.input_size + stride - 1) / stride;
    for (int y = 0; y < cells; ++y) {
      for (int x = 0; x < cells; ++x) {
        for (size_t a = 0; a < widths.size(); ++a) {
          SsdAnchor anchor;
          anchor.x_center = (static_cast<float>(x) + o.anchor_offset) / static_cast<float>(cells);
          anchor.y_center = (static_cast<float>(y) + o.anchor_offset) / static_cast<float>(cells);
          anchor.width = o.fixed_anchor_size ? 1.0f : widths[a];
          anchor.height = o.fixed_anchor_size ? 1.0f : heights[a];
          anchors.push_back(anchor);
        }
      }
    }
    layer = last;
  }
  return anchors;
}

const char* BlazeFace::model_file(Variant variant) {
  return variant == Variant::front ? "face_detection_front_128x128_barracuda.onnx"
                                   : "face_detection_back_256x256_barracuda.onnx";
}

SsdAnchorOptions BlazeFace::anchor_options(Variant variant) {
  // From MediaPipe's face_detection_front/back graphs (mobile_calculators.pbtxt).
  SsdAnchorOptions o;
  if (variant == Variant::front) {
    o.input_size = 128;
    o.min_scale = 0.1484375f;
    o.strides = {8, 16, 16, 16};
  } else {
    o.input_size = 256;
    o.min_scale = 0.15625f;
    o.strides = {16, 32, 32, 32};
  }
  return o;
}

namespace {

OnnxInputSpec blaze_face_spec(int size) {
  OnnxInputSpec spec;
  spec.size = {size, size};
  // RGB in [-1, 1]: MediaPipe's input range, and what keijiro's Unity preprocessing feeds
  // these exports (NNUtils' ImagePreprocess, ColorCoeffs (-1, -1, -1, 2): 2 * rgb - 1).
  spec.scale = 1.0 / 127.5;
  spec.mean = cv::Scalar(127.5, 127.5, 127.5);
  spec.swap_rb = true;
  spec.layout = TensorLayout::nhwc;  // input:0 is [1, S, S, 3]; the graph transposes itself
  spec.max_batch = 1;                // the export fixed the batch to 1 (Reshape to [1, 512, 1])
  return spec;
}

}  // namespace

BlazeFace::BlazeFace(const std::filesystem::path& model_path, Variant variant, Options options)
    : variant_(variant),
      options_(options),
      input_size_(variant == Variant::front ? 128 : 256),
      model_(model_path, blaze_face_spec(input_size_)),
      anchors_(generate_ssd_anchors(anchor_options(variant))) {
  // Outputs: Identity:0 [1,512,1] scores of the 16x16 map, Identity_1:0 [1,384,1] of the 8x8
  // map, Identity_2:0 [1,512,16] and Identity_3:0 [1,384,16] the matching boxes.
  const auto& names = model_.output_names();
  const std::vector<std::string> expected{"Identity:0", "Identity_1:0", "Identity_2:0",
                                          "Identity_3:0"};
  if (names != expected) {
    throw std::runtime_error("'" + model_path.string() +
                             "' does not have BlazeFace's outputs Identity:0..Identity_3:0");
  }
  if (anchors_.size() != 896) {
    throw std::logic_error("BlazeFace: expected 896 anchors, generated " +
                           std::to_string(anchors_.size()));
  }
}

std::vector<BlazeFaceDetection> BlazeFace::detect(const cv::Mat& image) {
  const cv::Mat bgr = to_bgr8(image, "BlazeFace::detect");
  // Letterbox: scale the longer side to the input size, centre, pad with black.
  const float s =
      static_cast<float>(input_size_) / static_cast<float>(std::max(bgr.cols, bgr.rows));
  const int w = std::clamp(static_cast<int>(std::lround(bgr.cols * s)), 1, input_size_);
  const int h = std::clamp(static_cast<int>(std::lround(bgr.rows * s)), 1, input_size_);
  const int left = (input_size_ - w) / 2;
  const int top = (input_size_ - h) / 2;
  cv::Mat square(input_size_, input_size_, CV_8UC3, cv::Scalar::all(0));
  cv::resize(bgr, square(cv::Rect(left, top, w, h)), cv::Size(w, h), 0, 0,
             s < 1 ? cv::INTER_AREA : cv::INTER_LINEAR);

  std::vector<BlazeFaceDetection> faces = decode(model_.run({square}));

  // Back from the square's normalised coordinates to the frame's pixels.
  const auto to_frame = [&](cv::Point2f p) {
    return cv::Point2f((p.x * static_cast<float>(input_size_) - static_cast<float>(left)) / s,
                       (p.y * static_cast<float>(input_size_) - static_cast<float>(top)) / s);
  };
  for (auto& f : faces) {
    const cv::Point2f tl = to_frame(f.box.tl());
    const cv::Point2f br = to_frame(f.box.br());
    f.box = cv::Rect2f(tl, br);
    for (auto& k : f.keypoints) {
      k = to_frame(k);
    }
  }
  return faces;
}

std::vector<BlazeFaceDetection> BlazeFace::decode(const std::vector<cv::Mat>& outputs) const {
  // Map 0 (16x16 cells, 2 anchors each) comes first in the anchor list, then map 1.
  std::vector<BlazeFaceDetection> candidates;
  const auto size = static_cast<float>(input_size_);
  size_t anchor_index = 0;
  for (int map = 0; map < 2; ++map) {
    const cv::Mat& scores = outputs[static_cast<size_t>(map)];
    const cv::Mat& boxes = outputs[static_cast<size_t>(map) + 2];
    const int count = static_cast<int>(scores.total());
    if (static_cast<int>(boxes.total()) != count * kNumCoords) {
      throw std::runtime_error("BlazeFace: unexpected output sizes");
    }
    const auto* score = scores.ptr<float>();
    const auto* box = boxes.ptr<float>();
    for (int i = 0; i < count; ++i, ++anchor_index) {
      const float raw = std::clamp(score[i], -kScoreClip, kScoreClip);
      const float p = 1.0f / (1.0f + std::exp(-raw));
      if (p < options_.score_threshold) {
        continue;
      }
      const SsdAnchor& a = anchors_[anchor_index];
      const float* r = box + static_cast<ptrdiff_t>(i) * kNumCoords;
      // Offsets are in input pixels relative to the anchor centre (MediaPipe's x/y/w/h_scale
      // equal the input size; anchors have unit size).
      const float cx = r[0] / size * a.width + a.x_center;
      const float cy = r[1] / size * a.height + a.y_center;
      const float bw = r[2] / size * a.width;
      const float bh = r[3] / size * a.height;
      BlazeFaceDetection d;
      d.score = p;
      d.box = cv::Rect2f(cx - bw / 2, cy - bh / 2, bw, bh);
      for (int k = 0; k < 6; ++k) {
        d.keypoints[static_cast<size_t>(k)] =
            cv::Point2f(r[4 + 2 * k] / size * a.width + a.x_center,
                        r[5 + 2 * k] / size * a.height + a.y_center);
      }
      candidates.push_back(d);
    }
  }
  auto faces =
      non_max_suppression(std::move(candidates), options_.iou_threshold, options_.weighted_nms);
  if (options_.max_faces > 0 && static_cast<int>(faces.size()) > options_.max_faces) {
    faces.resize(static_cast<size_t>(options_.max_faces));
  }
  return faces;
}

float intersection_over_union(const cv::Rect2f& a, const cv::Rect2f& b) {
  const float inter = (a & b).area();
  const float uni = a.area() + b.area() - inter;
  return uni > 0 ? inter / uni : 0.0f;
}

std::vector<BlazeFaceDetection> non_max_suppression(std::vector<BlazeFaceDetection> detections,
                                                    float iou_threshold, bool weighted) {
  std::stable_sort(detections.begin(), detections.end(),
                   [](const auto& a, const auto& b) { return a.score > b.score; });
  std::vector<BlazeFaceDetection> kept;
  std::vector<bool> used(detections.size(), false);
  for (size_t i = 0; i < detections.size(); ++i) {
    if (used[i]) {
      continue;
    }
    const BlazeFaceDetection& best = detections[i];
    BlazeFaceDetection merged = best;
    if (weighted) {
      float total = 0;
      float x = 0, y = 0, w = 0, h = 0;
      std::array<cv::Point2f, 6> kps{};
      for (size_t j = i; j < detections.size(); ++j) {
        if (used[j]) {
          continue;
        }
        const BlazeFaceDetection& d = detections[j];
        if (j != i && intersection_over_union(best.box, d.box) <= iou_threshold) {
          continue;
        }
        used[j] = true;
        total += d.score;
        x += d.box.x * d.score;
        y += d.box.y * d.score;
        w += d.box.width * d.score;
        h += d.box.height * d.score;
        for (size_t k = 0; k < kps.size(); ++k) {
          kps[k] += d.keypoints[k] * d.score;
        }
      }
      merged.box = cv::Rect2f(x / total, y / total, w / total, h / total);
      for (size_t k = 0; k < kps.size(); ++k) {
        merged.keypoints[k] = kps[k] / total;
      }
    } else {
      for (size_t j = i; j < detections.size(); ++j) {
        if (!used[j] &&
            (j == i || intersection_over_union(best.box, detections[j].box) > iou_threshold)) {
          used[j] = true;
        }
      }
    }
    kept.push_back(merged);  // keeps the best score, as MediaPipe does
  }
  return kept;
}

}  // namespace micromodels::vision
