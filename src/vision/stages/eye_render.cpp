#include "eye_render.hpp"

#include <algorithm>
#include <cmath>

#include <opencv2/imgproc.hpp>

namespace micromodels::vision {

namespace {

constexpr float kMinShift = 1e-3f;     // pixels: below this nothing is rendered
constexpr float kFullShift = 0.5f;     // pixels: smaller shifts fade the rendering in
constexpr float kWhiteAt = 1.5f;       // the white is sampled this far beyond the iris's edge,
constexpr float kWhiteAtWidths = 0.06f;  // or this share of the eye's width, if more
constexpr float kLowerRim = 1.25f;     // pixels of the lower lid's rim inside its measured edge,
constexpr float kLowerRimWidths = 0.0625f;  // or this share of the eye's width, if more
constexpr float kCarried = 1.5f;       // pixels below the old opening filled from the content above
constexpr float kUpperEdge = 1.0f;     // pixels under the upper lid's contour that show its edge,
constexpr float kUpperEdgeWidths = 0.08f;  // or this share of the eye's width, if more
// A vertical shift opens (or closes) the eye by as much, and what comes into view is invented.
// So it is at most kMaxOpening of the opening between the lids over the iris beyond
// kClosedAperture eye widths (the lash lines' own height: an eye that shows no more is shut
// and left alone; an open eye measures ~0.3). A nearly shut eye asked for a large raise (a
// closing lid reads as a look down) was opened into a dark box with a pale line below it.
constexpr float kClosedAperture = 0.08f;
constexpr float kMaxOpening = 0.8f;
constexpr int kSamples = 4;            // per pixel side, for the opening's coverage

float smoothstep(float t) {
  t = std::clamp(t, 0.0f, 1.0f);
  return t * t * (3.0f - 2.0f * t);
}

// Bicubic sample (Keys, a = -0.5) of an 8-bit image at (x, y), all channels, borders
// replicated. Bicubic rather than bilinear: a sharp lid or iris edge moved by half a pixel stays
// sharp, where bilinear would blur it (and with it shift where the edge seems to be).
void sample(const cv::Mat& image, float x, float y, float* out) {
  const int channels = image.channels();
  x = std::clamp(x, 0.0f, static_cast<float>(image.cols - 1));
  y = std::clamp(y, 0.0f, static_cast<float>(image.rows - 1));
  const auto ix = static_cast<int>(std::floor(x));
  const auto iy = static_cast<int>(std::floor(y));
  const float fx = x - static_cast<float>(ix);
  const float fy = y - static_cast<float>(iy);
  if (fx == 0 && fy == 0) {  // on a pixel: the pixel itself, bit for bit
    const auto* pixel = image.ptr<std::uint8_t>(iy) + static_cast<std::ptrdiff_t>(ix) * channels;
    for (int c = 0; c < channels; ++c) out[c] = pixel[c];
    return;
  }
  const auto weights = [](float t, float* w) {
    constexpr float a = -0.5f;
    const float t2 = t * t, t3 = t2 * t;
    w[0] = a * (t3 - 2 * t2 + t);
    w[1] = (a + 2) * t3 - (a + 3) * t2 + 1;
    w[2] = -(a + 2) * t3 + (2 * a + 3) * t2 - a * t;
    w[3] = a * (t2 - t3);
  };
  float wx[4], wy[4];
  weights(fx, wx);
  weights(fy, wy);
  for (int c = 0; c < channels; ++c) out[c] = 0;
  for (int j = 0; j < 4; ++j) {
    const int row = std::clamp(iy - 1 + j, 0, image.rows - 1);
    const auto* line = image.ptr<std::uint8_t>(row);
    for (int i = 0; i < 4; ++i) {
      const int col = std::clamp(ix - 1 + i, 0, image.cols - 1);
      const float w = wx[i] * wy[j];
      for (int c = 0; c < channels; ++c) out[c] += w * static_cast<float>(line[col * channels + c]);
    }
  }
}

// One eye, prepared: its geometry in the eye's axes and the layers' parameters.
class EyeLayers {
 public:
  EyeLayers(const cv::Mat& frame, const EyeRenderRequest& eye, cv::Point2f shift,
            const EyeRenderOptions& options)
      : frame_(frame), eye_(eye) {
    const EyeAxes& axes = eye.axes;
    centre_ = axes.to_eye(eye.iris);
    radius_ = eye.iris_radius > 0 ? eye.iris_radius : 0.2f * axes.width;
    rim_ = std::max(kLowerRim, kLowerRimWidths * axes.width);
    upper_edge_ = std::max(kUpperEdge, kUpperEdgeWidths * axes.width);
    white_at_ = std::max(kWhiteAt, kWhiteAtWidths * axes.width);
    // A closing eye is opened less and less, and a shut one not at all (kMaxOpening). A sideways
    // shift opens nothing; it fades out over the last kClosedAperture before the eye is shut.
    const float closed = kClosedAperture * axes.width;
    const float opening = eye.lids.upper_at(centre_.x) - eye.lids.lower_at(centre_.x);
    const float beyond = std::max(0.0f, opening - closed);
    const float limit = kMaxOpening * beyond;
    const cv::Point2f d = {shift.dot(axes.along) * std::min(1.0f, beyond / closed),
                           std::clamp(shift.dot(axes.up), -limit, limit)};
    shift_ = axes.along * d.x + axes.up * d.y;
    shift_eye_ = d;
    lid_ = options.lid_follow * d.y;
    above_ = std::max(0.45f * axes.width, 2 * std::abs(lid_) + 1);
    band_ = std::max(1.5f, std::abs(lid_) + 1);
    first_ = eye.lids.lower.front().x;
    last_ = eye.lids.lower.back().x;
    opacity_ = std::min(1.0f, static_cast<float>(cv::norm(shift_)) / kFullShift);
    iris_colour();
  }

  // How much of the rendering shows: rising over the first half pixel of the shift rendered (0
  // for a shut eye).
  [[nodiscard]] float opacity() const { return opacity_; }

  // The shift rendered, frame pixels (the one asked, its vertical part clamped to the opening).
  [[nodiscard]] cv::Point2f shift() const { return shift_; }

  // The region the layers may change, in frame pixels.
  [[nodiscard]] cv::Rect2f extent() const {
    float top = -1e9f, bottom = 1e9f;
    for (const cv::Point2f& p : eye_.lids.upper) top = std::max(top, p.y);
    for (const cv::Point2f& p : eye_.lids.lower) bottom = std::min(bottom, p.y);
    top += std::max(0.0f, lid_) + above_ + 1;
    bottom -= std::abs(shift_eye_.y) + 1;
    std::vector<cv::Point2f> corners;
    for (const float u : {first_ - 2, last_ + 2}) {
      for (const float t : {bottom, top}) corners.push_back(eye_.axes.to_frame({u, t}));
    }
    return cv::boundingRect(corners);
  }

  // Renders pixel (x, y) into `out` (channels floats); false when it is left as it is.
  bool render(int x, int y, float* out) const {
    const cv::Point2f p(static_cast<float>(x), static_cast<float>(y));
    const cv::Point2f q = eye_.axes.to_eye(p);
    if (q.x < first_ - 1 || q.x > last_ + 1) return false;
    const float upper = eye_.lids.upper_at(q.x);
    const float along = follow(q.x);
    const float lid_here = lid_ * along;

    // Above the opening: the upper lid and the skin over it, following the iris. The move fades
    // with the height above the lid's new place (a backward map is the inverse of the move).
    float lid_move = 0;
    const float upper_new = upper + lid_here;
    if (q.y >= upper - band_) {
      lid_move = q.y <= upper_new ? lid_here
                                  : lid_here * (1 - smoothstep((q.y - upper_new) / above_));
    }
    const float new_cover = coverage(q, lid_here);
    if (new_cover <= 0 && lid_move == 0) return false;
    const int channels = frame_.channels();
    float skin[4];
    const cv::Point2f from = p - eye_.axes.up * lid_move;
    sample(frame_, from.x, from.y, skin);

    // Inside the opening: the eye turns, iris and white together, by the shift (fading toward
    // the corners, which stay); what comes into view from under a lid is filled in.
    float inside[4] = {0, 0, 0, 0};
    if (new_cover > 0) {
      const cv::Point2f source = q - shift_eye_ * along;
      const float seen = soft_inside(source);
      if (seen > 0) {
        const cv::Point2f at = eye_.axes.to_frame(source);
        sample(frame_, at.x, at.y, inside);
      }
      if (seen < 1) {
        float hidden[4];
        fill_hidden(q, source, hidden);
        for (int c = 0; c < channels; ++c) inside[c] = seen * inside[c] + (1 - seen) * hidden[c];
      }
    }
    float original[4];
    sample(frame_, p.x, p.y, original);
    for (int c = 0; c < channels; ++c) {
      const float rendered = new_cover * inside[c] + (1 - new_cover) * skin[c];
      out[c] = original[c] + opacity_ * (rendered - original[c]);
    }
    return true;
  }

 private:
  // The lower lid's edge as the eye's content meets it: the lid's own margin (its dark rim and
  // pale waterline, about a pixel on 20 px eyes, which the edge search finds the far side of)
  // belongs to the lid and stays. It grows with the eye: on 40 px eyes (720p) a rim of 1.25 px
  // left the waterline with the eye, and a raised iris got a pale line under it.
  [[nodiscard]] float lower_at(float along) const {
    const float lower = eye_.lids.lower_at(along);
    return lower + std::min(rim_, 0.25f * (eye_.lids.upper_at(along) - lower));
  }

  // How much of the lid's move applies at `along`: all of it over the iris, none at the corners.
  [[nodiscard]] float follow(float along) const {
    const float core = radius_ + 1;
    const float offset = std::abs(along - centre_.x);
    const float reach = along < centre_.x ? centre_.x - first_ : last_ - centre_.x;
    return 1 - smoothstep((offset - core) / std::max(reach - core, 1.0f));
  }

  [[nodiscard]] bool inside_opening(float u, float t, float lid) const {
    if (u <= first_ || u >= last_) return false;
    const float lift = lid * follow(u);
    return t > lower_at(u) && t < eye_.lids.upper_at(u) + lift;
  }

  // Share of the pixel around q inside the opening whose upper lid is raised by `lid_here`
  // (kSamples x kSamples sub-samples; the axes are orthonormal, so a pixel is a unit square).
  [[nodiscard]] float coverage(cv::Point2f q, float lid_here) const {
    const float upper = eye_.lids.upper_at(q.x) + lid_here;
    const float lower = lower_at(q.x);
    if (q.y < lower - 1 || q.y > upper + 1 || q.x < first_ - 1 || q.x > last_ + 1) return 0;
    if (q.y > lower + 1 && q.y < upper - 1 && q.x > first_ + 1 && q.x < last_ - 1) return 1;
    int hits = 0;
    for (int i = 0; i < kSamples; ++i) {
      for (int j = 0; j < kSamples; ++j) {
        const float du = (static_cast<float>(i) + 0.5f) / kSamples - 0.5f;
        const float dt = (static_cast<float>(j) + 0.5f) / kSamples - 0.5f;
        hits += inside_opening(q.x + du, q.y + dt, lid_) ? 1 : 0;
      }
    }
    return static_cast<float>(hits) / (kSamples * kSamples);
  }

  // A one-pixel ramp across the old opening's border: how surely q showed the eye's inside.
  // Everything above the lower lid's rim counts, as the eyeball carries it. Filling a band
  // above the rim as well (tried, for the lid's shadow) left real eyes turned down and rendered
  // back up by the same turn looking 0.11-0.17 of it low by the eval's measure (0.06-0.11
  // without it), and moved them sideways.
  // With `upper_edge`, q must lie that much further under the upper lid's contour.
  [[nodiscard]] float soft_inside(cv::Point2f q, float upper_edge = 0) const {
    const float margin = std::min({q.y - lower_at(q.x), eye_.lids.upper_at(q.x) - upper_edge - q.y,
                                   q.x - first_, last_ - q.x});
    return std::clamp(margin + 0.5f, 0.0f, 1.0f);
  }

  // The old opening's height range at `along`, shrunk half a pixel, as a clamp for sampling.
  // What a raised eye shows first is what lay next to the lower lid, shadow and all: sampled a
  // pixel and a half above the rim, clear of the shadow, it drew a pale band under a raised iris.
  [[nodiscard]] float clamp_inside(float along, float t) const {
    const float lo = lower_at(along) + 0.5f;
    const float hi = eye_.lids.upper_at(along) - 0.5f;
    return lo < hi ? std::clamp(t, lo, hi) : 0.5f * (lo + hi);
  }

  // What comes into view at q from under the lower lid (`source`: where it was, eye axes).
  // The eye's content next to the lid's rim, carried down column by column, giving way over
  // kCarried pixels to the eyeball's own fill: the hidden iris inside its circle, the white
  // beside it. The carried part follows the pixels, where the fill's iris edge is drawn where
  // the estimated iris centre puts it: with the fill throughout, a noise of 0.15 px on that
  // estimate moved the eval's iris finder on real eyes by up to 0.28 of the noise's own motion,
  // with the first pixel carried by at most 0.17
  // (EyeRender.StillRealEyesUnderNoisyGeometryKeepTheirIrisStill). Real eyes turned down and
  // rendered back up come out 0.24-0.36 of the turned eye's pixel difference from the unturned
  // ones, against 0.29-0.41 with a pixel's ramp sampled a pixel higher
  // (EyeRender.RealEyesTurnedDownAndRenderedBackUpLookAsBefore); a longer ramp, or sampling
  // nearer the rim, came closer still there but drew a drawn eye's dark rim into the white that
  // a raised iris uncovers (EyeRender.TurnsADrawnEyeIntoTheSameEyeLookingUp). Deeper, the fill
  // stays: a raised iris that touched the lower lid shows white below it.
  void fill_hidden(cv::Point2f q, cv::Point2f source, float* out) const {
    const int channels = frame_.channels();
    float carried[4];
    const cv::Point2f at = eye_.axes.to_frame({source.x, clamp_inside(source.x, source.y)});
    sample(frame_, at.x, at.y, carried);
    const float model = smoothstep((lower_at(source.x) - source.y) / kCarried);
    if (model <= 0) {
      for (int c = 0; c < channels; ++c) out[c] = carried[c];
      return;
    }
    float white[4];
    fill_white(q, white);
    const float iris =
        std::clamp(radius_ - static_cast<float>(cv::norm(source - centre_)) + 0.5f, 0.0f, 1.0f);
    float iris_fill[4];
    fill_iris(source, iris_fill);
    for (int c = 0; c < channels; ++c) {
      const float filled = iris * iris_fill[c] + (1 - iris) * white[c];
      out[c] = (1 - model) * carried[c] + model * filled;
    }
  }

  // The white of the eye at q where it comes into view: interpolated, row by row, between the
  // white on either side of the iris (just beyond its edge, inside the opening). The iris's edge
  // is soft over more pixels on a larger eye: at 1.5 px beyond it, a 1080p face's white was
  // sampled from the limbus, and the rows it filled showed as dark lines in the white.
  void fill_white(cv::Point2f q, float* out) const {
    const int channels = frame_.channels();
    const float left_u = centre_.x - radius_ - white_at_;
    const float right_u = centre_.x + radius_ + white_at_;
    const bool has_left = left_u > first_ + 0.5f;
    const bool has_right = right_u < last_ - 0.5f;
    if (!has_left && !has_right) {
      for (int c = 0; c < channels; ++c) out[c] = colour_[c];
      return;
    }
    float left[4], right[4];
    if (has_left) {
      const cv::Point2f at = eye_.axes.to_frame({left_u, clamp_inside(left_u, q.y)});
      sample(frame_, at.x, at.y, left);
    }
    if (has_right) {
      const cv::Point2f at = eye_.axes.to_frame({right_u, clamp_inside(right_u, q.y)});
      sample(frame_, at.x, at.y, right);
    }
    const float w = has_left && has_right
                        ? std::clamp((q.x - left_u) / (right_u - left_u), 0.0f, 1.0f)
                    : has_right ? 1.0f
                                : 0.0f;
    for (int c = 0; c < channels; ++c) {
      out[c] = (has_left ? left[c] : 0) * (1 - w) + (has_right ? right[c] : 0) * w;
    }
  }

  // Iris that was hidden by a lid, at q (eye axes, before the move): the iris mirrored across
  // its centre's row where the eye shows that, so that the limbus and the pupil's edge come
  // back where they belong; else the iris's median colour. The mirrored rows keep clear of the
  // upper lid's edge: its pixels are part lid, and mirrored they drew a pale arc across the
  // lower iris. The edge is a pixel deep on 20 px eyes and grows with the eye: on a 1080p face
  // (eyes ~90 px wide) a fixed pixel mirrored the lashes below it into a dark line along the
  // bottom of the iris a raise uncovers (EyeRender.ALargeEyesLashesAreNotMirroredInto...).
  void fill_iris(cv::Point2f q, float* out) const {
    const int channels = frame_.channels();
    const cv::Point2f mirror(q.x, 2 * centre_.y - q.y);
    const float seen = soft_inside(mirror, upper_edge_);
    float mirrored[4] = {0, 0, 0, 0};
    if (seen > 0) {
      const cv::Point2f at = eye_.axes.to_frame(mirror);
      sample(frame_, at.x, at.y, mirrored);
    }
    for (int c = 0; c < channels; ++c) out[c] = seen * mirrored[c] + (1 - seen) * colour_[c];
  }

  // The median colour of the iris where the eye shows it, for iris that was hidden by a lid.
  void iris_colour() {
    const int channels = frame_.channels();
    std::vector<std::vector<float>> values(static_cast<std::size_t>(channels));
    const float r = std::max(0.5f, radius_ - 0.5f);
    for (float u = -r; u <= r; u += 0.5f) {
      for (float t = -r; t <= r; t += 0.5f) {
        if (u * u + t * t > r * r) continue;
        const cv::Point2f q = centre_ + cv::Point2f(u, t);
        if (soft_inside(q) < 1) continue;
        float v[4];
        const cv::Point2f at = eye_.axes.to_frame(q);
        sample(frame_, at.x, at.y, v);
        for (int c = 0; c < channels; ++c) values[static_cast<std::size_t>(c)].push_back(v[c]);
      }
    }
    for (int c = 0; c < channels; ++c) {
      std::vector<float>& v = values[static_cast<std::size_t>(c)];
      if (v.empty()) {
        float at_centre[4];
        const cv::Point2f p = eye_.axes.to_frame(centre_);
        sample(frame_, p.x, p.y, at_centre);
        colour_[c] = at_centre[c];
        continue;
      }
      std::nth_element(v.begin(), v.begin() + static_cast<std::ptrdiff_t>(v.size() / 2), v.end());
      colour_[c] = v[v.size() / 2];
    }
  }

  const cv::Mat& frame_;
  const EyeRenderRequest& eye_;
  cv::Point2f shift_;
  cv::Point2f centre_;      // iris centre, eye axes
  cv::Point2f shift_eye_;   // the shift, eye axes
  float radius_ = 0;
  float rim_ = kLowerRim;   // the lower lid's rim, pixels
  float upper_edge_ = kUpperEdge;  // the upper lid's edge under its contour, pixels
  float white_at_ = kWhiteAt;      // the white is sampled this far beyond the iris, pixels
  float lid_ = 0;           // the upper lid's move over the iris, along `up`
  float above_ = 0;         // the skin above the lid follows it over this height
  float band_ = 0;          // and this much of the opening below the lid line moves with it
  float first_ = 0, last_ = 0;  // the corners, along
  float opacity_ = 1;
  float colour_[4] = {0, 0, 0, 0};
};

}  // namespace

EyePatch render_eyes(const cv::Mat& frame, std::span<const EyeRenderRequest> eyes,
                     const EyeRenderOptions& options) {
  EyePatch result;
  result.applied.assign(eyes.size(), cv::Point2f(0, 0));
  if (frame.empty() || frame.depth() != CV_8U || frame.channels() > 4) return result;

  const cv::Rect bounds(0, 0, frame.cols, frame.rows);
  std::vector<EyeLayers> layers;
  std::vector<cv::Rect> boxes;
  cv::Rect roi;
  for (std::size_t i = 0; i < eyes.size(); ++i) {
    const EyeRenderRequest& eye = eyes[i];
    if (!(eye.axes.width > 0) || eye.lids.upper.size() < 2 || eye.lids.lower.size() < 2 ||
        !std::isfinite(eye.iris.x) || !std::isfinite(eye.iris.y)) {
      continue;
    }
    cv::Point2f d = eye.shift;
    if (!std::isfinite(d.x) || !std::isfinite(d.y)) continue;
    const float limit = std::max(0.0f, options.max_shift) * eye.axes.width;
    if (const auto len = static_cast<float>(cv::norm(d)); len > limit) d *= limit / len;
    if (cv::norm(d) < kMinShift) continue;
    EyeLayers eye_layers(frame, eye, d, options);
    const cv::Rect box = cv::Rect(eye_layers.extent()) & bounds;
    if (box.empty() || !(eye_layers.opacity() > 0)) continue;
    result.applied[i] = eye_layers.shift() * eye_layers.opacity();
    layers.push_back(std::move(eye_layers));
    boxes.push_back(box);
    roi = roi.empty() ? box : (roi | box);
  }
  const int grow = 1 + std::max(0, options.feather_px);
  roi = cv::Rect(roi.x - 2 * grow, roi.y - 2 * grow, roi.width + 4 * grow, roi.height + 4 * grow) &
        bounds;
  if (layers.empty() || roi.empty()) {
    result.applied.assign(eyes.size(), cv::Point2f(0, 0));
    return result;
  }
  result.roi = roi;
  result.patch = frame(roi).clone();
  cv::Mat changed = cv::Mat::zeros(roi.size(), CV_8UC1);
  const int channels = frame.channels();
  for (std::size_t e = 0; e < layers.size(); ++e) {
    const cv::Rect& box = boxes[e];
    for (int y = box.y; y < box.y + box.height; ++y) {
      auto* row = result.patch.ptr<std::uint8_t>(y - roi.y);
      auto* mark = changed.ptr<std::uint8_t>(y - roi.y);
      for (int x = box.x; x < box.x + box.width; ++x) {
        float out[4];
        if (!layers[e].render(x, y, out)) continue;
        std::uint8_t* pixel = row + static_cast<std::ptrdiff_t>(x - roi.x) * channels;
        for (int c = 0; c < channels; ++c) {
          const auto v = static_cast<std::uint8_t>(std::clamp(std::lround(out[c]), 0L, 255L));
          if (v != pixel[c]) mark[x - roi.x] = 255;
          pixel[c] = v;
        }
      }
    }
  }
  // Alpha: full over every changed pixel grown by `grow`, then blurred over feather_px, so the
  // band where it falls from 255 to 0 covers only pixels the patch did not change.
  const int k = 2 * grow + 1;
  cv::dilate(changed, result.mask, cv::getStructuringElement(cv::MORPH_ELLIPSE, cv::Size(k, k)));
  if (options.feather_px > 0) {
    const int blur = 2 * options.feather_px + 1;
    cv::Mat inner;
    cv::dilate(changed, inner,
               cv::getStructuringElement(cv::MORPH_ELLIPSE, cv::Size(3, 3)));  // changed + 1
    cv::GaussianBlur(result.mask, result.mask, cv::Size(blur, blur), 0, 0, cv::BORDER_CONSTANT);
    result.mask.setTo(255, inner);
  }
  return result;
}

}  // namespace micromodels::vision
