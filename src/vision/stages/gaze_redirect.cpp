// `gaze.redirect`: moves each iris toward where it would be when looking into the camera, by
// warping the eye openings (eye_warp.hpp), and hands the result on as a patch for image.blend.
// Stateless: any number of consumers.
#include <algorithm>
#include <cmath>
#include <optional>

#include "eye_fields.hpp"
#include "eye_warp.hpp"
#include "image_mat.hpp"
#include "stage_registration.hpp"

namespace micromodels::vision {

namespace {

class GazeRedirect final : public Stage {
 public:
  GazeRedirect(EyeWarpOptions options, GazeTarget target, bool conjugate)
      : options_(options), target_(target), conjugate_(conjugate) {}

  void process(Packet packet, std::vector<Packet>& out) override {
    redirect(packet);
    out.push_back(std::move(packet));
  }

 private:
  void redirect(Packet& packet) const {
    const Value* frame_value = packet.find("frame");
    const auto* frame = frame_value != nullptr ? std::get_if<Image>(frame_value) : nullptr;
    if (frame == nullptr || frame->depth != Depth::u8 || frame->width < 1 || frame->height < 1) {
      return;
    }
    // Without face.smooth upstream every frame gets the full correction.
    double strength = 1.0;
    if (const Value* s = packet.find("gaze_strength"); s != nullptr) {
      const auto* number = std::get_if<double>(s);
      if (number == nullptr) throw FieldError("field 'gaze_strength' must hold a number");
      strength = std::clamp(*number, 0.0, 1.0);
    }
    if (!(strength > 0)) return;

    std::vector<EyeWarpRequest> requests;
    for (const EyeSide side : {EyeSide::right, EyeSide::left}) {
      std::optional<EyeShape> eye = eye_shape(packet, side);
      if (!eye) continue;
      if (eye_opening_polygon(eye->opening).empty()) continue;
      const cv::Point2f target = target_.for_eye(*eye);
      const cv::Point2f shift = (target - eye->iris_center) * static_cast<float>(strength);
      requests.push_back({.eye = std::move(*eye), .shift = shift});
    }
    if (requests.empty()) return;
    if (conjugate_ && requests.size() == 2) {
      // The eyes turn together; one shared shift also halves either iris estimate's error.
      const cv::Point2f mean = (requests[0].shift + requests[1].shift) * 0.5f;
      requests[0].shift = requests[1].shift = mean;
    }

    EyePatch patch = redirect_eyes(to_mat(*frame), requests, options_);
    if (patch.empty()) return;
    packet.set("generated", to_image(patch.patch));
    packet.set("generated_mask", to_image(patch.mask));
    packet.set("generated_roi",
               Rects{{static_cast<float>(patch.roi.x), static_cast<float>(patch.roi.y),
                      static_cast<float>(patch.roi.width), static_cast<float>(patch.roi.height),
                      static_cast<float>(strength)}});
    Points applied;
    for (const cv::Point2f& d : patch.applied) applied.push_back({d.x, d.y});
    packet.set("gaze_shift", std::move(applied));
  }

  EyeWarpOptions options_;
  GazeTarget target_;
  bool conjugate_;
};

}  // namespace

void register_gaze_redirect(Registry& registry) {
  registry.add({
      .name = "gaze.redirect",
      .help = "Warps each iris toward where it sits when looking into the camera (between the "
              "eye corners, raised by iris_rise), scaled "
              "by 'gaze_strength'; writes the eye patch 'generated', its place 'generated_roi' "
              "and alpha 'generated_mask' for image.blend, and the applied per-eye shift "
              "'gaze_shift'. Nothing is written when there is nothing to change.",
      .params = {{"target", ParamType::text, std::string("camera"),
                  "where the eyes should look: camera (the eye corners' midpoint raised by "
                  "iris_rise eye widths, plus target_offset_px)"},
                 {"iris_rise", ParamType::number, kDefaultIrisRise,
                  "how far above the eye corners' line the iris centre sits when looking into "
                  "the camera, in eye widths (varies a little between people)"},
                 {"target_offset_px", ParamType::numbers, std::vector<double>{0.0, 0.0},
                  "{dx, dy} added to the target, frame pixels (e.g. a camera above the "
                  "screen's centre of attention)"},
                 {"max_shift", ParamType::number, 0.25,
                  "largest iris displacement, as a fraction of the eye width"},
                 {"feather_px", ParamType::integer, std::int64_t{3},
                  "blur radius of the mask edge, pixels"},
                 {"grow_px", ParamType::integer, std::int64_t{2},
                  "the mask covers the eye opening grown by this many pixels"},
                 {"conjugate", ParamType::boolean, true,
                  "move both irises by their mean shift (eyes turn together)"}},
      .info =
          [](const Params&) {
            return StageInfo{
                .reads = {"frame", "landmarks", "iris"},
                .writes = {"generated", "generated_roi", "generated_mask", "gaze_shift"},
                // face.smooth's strength (else 1) and eye.iris's finer eye opening (else the
                // landmarks').
                .optional_reads = {"gaze_strength", "eye_contours"}};
          },
      .make = [](const Params& params) -> std::unique_ptr<Stage> {
        if (params.text("target") != "camera") {
          throw std::invalid_argument("param 'target': expected camera, got '" +
                                      params.text("target") + "'");
        }
        const std::vector<double>& offset = params.numbers("target_offset_px");
        if (offset.size() != 2) {
          throw std::invalid_argument("param 'target_offset_px' must be two numbers {dx, dy}");
        }
        EyeWarpOptions options;
        options.max_shift = static_cast<float>(params.number("max_shift"));
        options.feather_px = static_cast<int>(params.integer("feather_px"));
        options.grow_px = static_cast<int>(params.integer("grow_px"));
        if (options.max_shift < 0 || options.max_shift > 1 || options.feather_px < 0 ||
            options.feather_px > 50 || options.grow_px < 0 || options.grow_px > 50) {
          throw std::invalid_argument(
              "max_shift must be within 0..1, feather_px and grow_px within 0..50");
        }
        const GazeTarget target{
            .iris_rise = static_cast<float>(params.number("iris_rise")),
            .offset_px = {static_cast<float>(offset[0]), static_cast<float>(offset[1])}};
        return std::make_unique<GazeRedirect>(options, target, params.boolean("conjugate"));
      },
      .make_source = {},
  });
}

}  // namespace micromodels::vision
