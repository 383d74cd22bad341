// `gaze.redirect`: turns each eye's gaze toward the camera, by the angle between them, and
// re-renders the eyes that way (eye_render.hpp); the result goes on as a patch for image.blend.
// With `target: camera` (the default) the gaze gaze.estimate measured is turned to 0/0, so a
// person who already looks into the camera is left alone; with `target: offset` it is raised by
// `camera_offset_deg`, for users who know how far their camera sits above what they look at.
// Stateless: any number of consumers.
#include <algorithm>
#include <cmath>
#include <optional>

#include "eye_fields.hpp"
#include "eye_render.hpp"
#include "image_mat.hpp"
#include "stage_registration.hpp"

namespace micromodels::vision {

namespace {

struct RedirectSettings {
  bool to_camera = true;
  double camera_offset_deg = 0;
  double max_correction_deg = 30;
  bool turn_yaw = false;
  bool conjugate = true;
  EyeRenderOptions render;
};

// The params, checked; a ParamError names the key, so a pipeline file reports its line.
RedirectSettings settings(const Params& params) {
  RedirectSettings s;
  const std::string& target = params.text("target");
  if (target != "camera" && target != "offset") {
    throw ParamError("target", "param 'target': expected camera or offset, got '" + target + "'");
  }
  s.to_camera = target == "camera";
  s.camera_offset_deg = params.number("camera_offset_deg");
  s.max_correction_deg = params.number("max_correction_deg");
  s.conjugate = params.boolean("conjugate");
  s.turn_yaw = params.boolean("turn_yaw");
  s.render.lid_follow = static_cast<float>(params.number("lid_follow"));
  s.render.max_shift = static_cast<float>(params.number("max_shift"));
  s.render.feather_px = static_cast<int>(params.integer("feather_px"));
  return s;
}

class GazeRedirect final : public Stage {
 public:
  explicit GazeRedirect(RedirectSettings settings) : settings_(settings) {}

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
    // Without gaze.estimate's strength every frame gets the full correction.
    double strength = 1.0;
    if (const Value* s = packet.find("gaze_strength"); s != nullptr) {
      const auto* number = std::get_if<double>(s);
      if (number == nullptr) throw FieldError("field 'gaze_strength' must hold a number");
      strength = std::clamp(*number, 0.0, 1.0);
    }
    if (!(strength > 0)) return;
    // eye.steady's held geometry when it ran, else the estimates.
    const bool steady = packet.find("steady_gaze") != nullptr;
    const Scalars* gaze = scalars_field(packet, steady ? "steady_gaze" : "gaze", 5);
    const Scalars* balls = scalars_field(packet, steady ? "steady_eyeballs" : "eyeballs", 6);
    if (gaze == nullptr || balls == nullptr) return;

    struct Eye {
      EyeView view;
      Eyeball ball;
      Gaze now;
      Gaze turn;
    };
    std::vector<Eye> eyes;
    for (const EyeSide side : {EyeSide::right, EyeSide::left}) {
      std::optional<EyeView> view = steady ? steady_eye_view(packet, side) : eye_view(packet, side);
      if (!view) continue;
      const std::size_t s = static_cast<std::size_t>(side);
      Eyeball ball;
      ball.axes = view->axes;
      ball.center = {static_cast<float>((*balls)[3 * s]), static_cast<float>((*balls)[3 * s + 1])};
      ball.radius = static_cast<float>((*balls)[3 * s + 2]);
      if (!(ball.radius > 0)) continue;
      const Gaze now{static_cast<float>((*gaze)[2 * s]), static_cast<float>((*gaze)[2 * s + 1])};
      const Gaze wanted = settings_.to_camera
                              ? Gaze{}
                              : Gaze{static_cast<float>(now.pitch_deg + settings_.camera_offset_deg),
                                     now.yaw_deg};
      const auto turn = [&](float from, float to) {
        return static_cast<float>(std::clamp((to - from) * strength, -settings_.max_correction_deg,
                                             settings_.max_correction_deg));
      };
      eyes.push_back({.view = std::move(*view),
                      .ball = ball,
                      .now = now,
                      .turn = {turn(now.pitch_deg, wanted.pitch_deg),
                               settings_.turn_yaw ? turn(now.yaw_deg, wanted.yaw_deg) : 0.0f}});
    }
    if (eyes.empty()) return;
    if (settings_.conjugate && eyes.size() == 2) {
      // The eyes turn together; one shared turn also halves either estimate's error.
      const Gaze mean{0.5f * (eyes[0].turn.pitch_deg + eyes[1].turn.pitch_deg),
                      0.5f * (eyes[0].turn.yaw_deg + eyes[1].turn.yaw_deg)};
      eyes[0].turn = eyes[1].turn = mean;
    }
    std::vector<EyeRenderRequest> requests;
    for (const Eye& eye : eyes) {
      const Gaze to{eye.now.pitch_deg + eye.turn.pitch_deg, eye.now.yaw_deg + eye.turn.yaw_deg};
      cv::Point2f shift = eye.ball.iris_for(to) - eye.ball.iris_for(eye.now);
      // A pitch-only turn moves the iris along the eye's up axis only. On the sphere it would
      // also move sideways, by the yaw's sine times (1 - cos pitch): under a tenth of a pixel on
      // these eyes, but it carries the sideways estimate, the less sure one, into the picture.
      if (!settings_.turn_yaw) shift = eye.ball.axes.up * shift.dot(eye.ball.axes.up);
      requests.push_back({.axes = eye.view.axes,
                          .lids = eye.view.lids,
                          .iris = eye.view.iris_center,
                          .iris_radius = eye.view.iris_radius,
                          .shift = shift});
    }
    EyePatch patch = render_eyes(to_mat(*frame), requests, settings_.render);
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

  RedirectSettings settings_;
};

}  // namespace

void register_gaze_redirect(Registry& registry) {
  const EyeRenderOptions render;
  registry.add({
      .name = "gaze.redirect",
      .help = "Turns each eye's gaze ('gaze', 'eyeballs' from gaze.estimate) toward the camera by "
              "the angle between them, scaled by 'gaze_strength', and re-renders the eyes: the "
              "iris moved, the white filled in behind it, the upper lid following. Writes the "
              "patch 'generated', its place 'generated_roi' and alpha 'generated_mask' for "
              "image.blend, and each iris's shift 'gaze_shift'. Nothing when there is nothing to "
              "change.",
      .params = {{"target", ParamType::text, std::string("camera"),
                  "camera: turn the gaze into the camera (0 degrees); offset: raise it by "
                  "camera_offset_deg"},
                 {"camera_offset_deg", ParamType::number, 0.0,
                  "with target: offset, how far the camera sits above where the eyes look, "
                  "degrees (beyond 30 a warp of the eye shows)",
                  ParamRange{.low = -30, .high = 30}},
                 {"max_correction_deg", ParamType::number, 30.0,
                  "largest turn of the gaze, degrees", ParamRange{.low = 0, .high = 45}},
                 {"lid_follow", ParamType::number, static_cast<double>(render.lid_follow),
                  "share of the iris's vertical move the upper lid makes",
                  ParamRange{.low = 0, .high = 1}},
                 {"max_shift", ParamType::number, static_cast<double>(render.max_shift),
                  "largest iris displacement, as a fraction of the eye width",
                  ParamRange{.low = 0, .high = 1}},
                 {"feather_px", ParamType::integer, std::int64_t{render.feather_px},
                  "the mask covers everything changed grown by this, pixels, with a blurred edge",
                  ParamRange{.low = 0, .high = 20}},
                 {"turn_yaw", ParamType::boolean, false,
                  "turn the gaze sideways toward the camera too; off by default: the camera "
                  "usually sits above the screen, and the sideways estimate is the less sure"},
                 {"conjugate", ParamType::boolean, true,
                  "turn both eyes by their mean correction (eyes turn together)"}},
      .info =
          [](const Params& params) {
            (void)settings(params);  // a bad param is a configuration error, at its line
            return StageInfo{
                .reads = {"frame", "landmarks", "iris", "gaze", "eyeballs"},
                .writes = {"generated", "generated_roi", "generated_mask", "gaze_shift"},
                // gaze.estimate's strength (else 1), eye.iris's finer eye opening (else the
                // landmarks'), and eye.steady's held geometry, preferred when present.
                .optional_reads = {"gaze_strength", "eye_contours", "steady_iris",
                                   "steady_eyelids", "steady_gaze", "steady_eyeballs"}};
          },
      .make = [](const Params& params) -> std::unique_ptr<Stage> {
        return std::make_unique<GazeRedirect>(settings(params));
      },
      .make_source = {},
  });
}

}  // namespace micromodels::vision
