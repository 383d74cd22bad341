// `eye.refine`: places the iris and the lids of each eye to sub-pixel precision from the image,
// after the models have found them roughly. On small eyes (15-30 px wide) the iris's top and
// bottom are hidden by the lids, and the iris model sees about a third of a vertical move
// (docs/eye-contact.md, "Finding the iris on small eyes"). What the picture does show sharply is
// the upper lid's edge, and the upper lid rides on the iris: it covers the iris's top by a
// nearly constant amount as the eye looks up and down (lid-eye coupling). So the iris centre is
// put that far below the measured lid edge; across the eye, where the iris shows its edges
// against the white, the model's position stands. The contour's lids move to the edges found.
// Stateless: any number of consumers.
#include <algorithm>
#include <array>
#include <cmath>
#include <optional>

#include "eye_fields.hpp"
#include "image_mat.hpp"
#include "stage_registration.hpp"

namespace micromodels::vision {

namespace {

struct RefineParams {
  float lid_to_iris = 0.18f;  // iris centre below the upper lid edge, eye widths
  float min_contrast = 2.0f;  // an upper-lid edge weaker than this (gray levels/px) is not used
};

float smoothstep(float t) {
  t = std::clamp(t, 0.0f, 1.0f);
  return t * t * (3.0f - 2.0f * t);
}

// 1 within `core` of `centre` along the eye, falling to 0 at the corners.
float weight(float along, float centre, float core, float first, float last) {
  const float offset = std::abs(along - centre);
  const float reach = along < centre ? centre - first : last - centre;
  return 1 - smoothstep((offset - core) / std::max(reach - core, 1.0f));
}

class EyeRefine final : public Stage {
 public:
  explicit EyeRefine(RefineParams params) : params_(params) {}

  void process(Packet packet, std::vector<Packet>& out) override {
    refine(packet);
    out.push_back(std::move(packet));
  }

 private:
  void refine(Packet& packet) const {
    const Value* frame_value = packet.find("frame");
    const auto* frame = frame_value != nullptr ? std::get_if<Image>(frame_value) : nullptr;
    const Points* landmarks = points_field(packet, "landmarks", kLandmarkCount);
    const Points* iris = points_field(packet, "iris", 2 * kIrisPointsPerEye);
    if (frame == nullptr || frame->depth != Depth::u8 || landmarks == nullptr || iris == nullptr) {
      return;
    }
    const cv::Mat image = to_mat(*frame);
    Points refined_iris = *iris;
    const Points* contours = points_field(packet, "eye_contours", 2 * kContourPointsPerEye);
    Points refined_contours = contours != nullptr ? *contours : Points{};
    Scalars inside(2, 0.0);
    for (const EyeSide side : {EyeSide::right, EyeSide::left}) {
      const std::optional<EyeView> eye = eye_view(packet, side);
      if (!eye || !(eye->axes.width > 2)) continue;
      const std::size_t s = static_cast<std::size_t>(side);
      // The search starts from the iris model's contour, or from dlib's six points.
      std::vector<cv::Point2f> start = eye->eyelid;
      if (start.size() != kEyelidContourPoints) start = sixteen_from_six(eye->eyelid);
      const EyeMeasurement lids =
          measure_eye(image, eye->axes, start, eye->iris_center, eye->iris_radius);
      inside[s] = lids.inside_contrast;
      if (!lids.upper || lids.upper_contrast < params_.min_contrast) continue;
      const EyeAxes& axes = eye->axes;
      const cv::Point2f centre = axes.to_eye(eye->iris_center);
      // Across the eye the model's place stands; up and down, the lid the iris rides on.
      const cv::Point2f placed(centre.x, *lids.upper - params_.lid_to_iris * axes.width);
      const cv::Point2f move = axes.to_frame(placed) - eye->iris_center;
      for (std::size_t i = 0; i < kIrisPointsPerEye; ++i) {
        Point& p = refined_iris[s * kIrisPointsPerEye + i];
        p = {p.x + move.x, p.y + move.y};
      }
      if (contours != nullptr) move_lids(refined_contours, s, *eye, lids, centre.x);
    }
    packet.set("iris", std::move(refined_iris));
    if (contours != nullptr) packet.set("eye_contours", std::move(refined_contours));
    packet.set("eye_contrast", std::move(inside));
  }

  // The contour's lids moved onto the edges found: fully over the iris (upper lid) or the eye's
  // middle (lower lid), fading to nothing at the corners, which stay where the model put them.
  static void move_lids(Points& contours, std::size_t side, const EyeView& eye,
                        const EyeMeasurement& lids, float iris_along) {
    const EyeAxes& axes = eye.axes;
    const float first = eye.lids.upper.front().x;
    const float last = eye.lids.upper.back().x;
    const float upper_by = *lids.upper - eye.lids.upper_at(iris_along);
    const std::optional<float> lower_by =
        lids.lower ? std::optional<float>(*lids.lower - eye.lids.lower_at(0)) : std::nullopt;
    const std::size_t base = side * kContourPointsPerEye;
    for (std::size_t i = 1; i < kEyelidContourPoints; ++i) {
      if (i == 8) continue;  // the other corner
      Point& p = contours[base + i];
      const cv::Point2f q = axes.to_eye({p.x, p.y});
      float by = 0;
      if (i >= 9) {
        by = upper_by * weight(q.x, iris_along, eye.iris_radius + 1, first, last);
      } else if (lower_by) {
        by = *lower_by * weight(q.x, 0, 0.3f * axes.width, first, last);
      }
      const cv::Point2f moved = axes.to_frame({q.x, q.y + by});
      p = {moved.x, moved.y};
    }
  }

  // dlib's six points (corner, two upper, corner, two lower) as a 16-point contour in the iris
  // model's order (0..8 lower lid corner to corner, 9..15 upper lid), for the lid search.
  static std::vector<cv::Point2f> sixteen_from_six(const std::vector<cv::Point2f>& six) {
    if (six.size() != 6) return {};
    const auto along = [](cv::Point2f a, cv::Point2f b, cv::Point2f c, cv::Point2f d, int n,
                          std::vector<cv::Point2f>& out, int first, int last) {
      // Samples the polyline a-b-c-d at n+1 evenly spaced parameters, keeping [first, last].
      const std::array<cv::Point2f, 4> p{a, b, c, d};
      for (int k = first; k <= last; ++k) {
        const float t = 3.0f * static_cast<float>(k) / static_cast<float>(n);
        const int seg = std::min(2, static_cast<int>(t));
        const float f = t - static_cast<float>(seg);
        out.push_back(p[static_cast<std::size_t>(seg)] * (1 - f) +
                      p[static_cast<std::size_t>(seg) + 1] * f);
      }
    };
    std::vector<cv::Point2f> out;
    along(six[0], six[5], six[4], six[3], 8, out, 0, 8);   // lower lid, 9 points
    along(six[0], six[1], six[2], six[3], 8, out, 1, 7);   // upper lid, 7 points
    return out;
  }

  RefineParams params_;
};

}  // namespace

namespace {

RefineParams settings(const Params& params) {
  RefineParams p;
  p.lid_to_iris = static_cast<float>(params.number("lid_to_iris"));
  p.min_contrast = static_cast<float>(params.number("min_contrast"));
  return p;
}

}  // namespace

void register_eye_refine(Registry& registry) {
  registry.add({
      .name = "eye.refine",
      .help = "Measures each eye's upper and lower lid edges in the image (sub-pixel) and places "
              "the iris centre below the upper lid (lid-eye coupling): on small eyes, whose "
              "iris is cut by both lids, this follows a vertical gaze change fully where the "
              "iris model sees about a third of it. Rewrites 'iris' and the lids in "
              "'eye_contours'; writes 'eye_contrast' (how much each eye's inside varies, gray "
              "levels: low when the eye is hidden).",
      .params = {{"lid_to_iris", ParamType::number, 0.18,
                  "how far the iris centre sits below the upper lid's edge, eye widths",
                  ParamRange{.low = 0, .high = 0.5}},
                 {"min_contrast", ParamType::number, 2.0,
                  "an upper-lid edge weaker than this (gray levels per pixel) is not trusted: "
                  "that eye keeps the model's iris",
                  ParamRange{.low = 0}}},
      .info =
          [](const Params&) {
            return StageInfo{.reads = {"frame", "landmarks", "iris"},
                             .writes = {"iris", "eye_contrast"},
                             .optional_reads = {"eye_contours"}};
          },
      .make = [](const Params& params) -> std::unique_ptr<Stage> {
        return std::make_unique<EyeRefine>(settings(params));
      },
      .make_source = {},
  });
}

}  // namespace micromodels::vision
