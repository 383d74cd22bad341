// `eye.steady`: holds the re-rendering's eye geometry still while the eye is still. The iris and
// lid places, the gaze and the eyeball model that gaze.redirect renders from are estimates: from
// frame to frame they wander by a fraction of a pixel while the eye does not move, and the
// re-rendering follows them (they decide what moves, by how much, and what is filled in), so the
// corrected eyes move where the eye did not. This stage keeps each eye's geometry in the eye's
// own frame (the corner line, in eye widths, so a moving head carries it along) and updates it in
// two ways:
//
//   - inside a dead band (`dead_band` eye widths of iris or lid motion, or its worth of gaze) it
//     follows slowly, with time constant `settle_s`: sub-pixel noise hardly moves it, and its
//     mean stays the estimate's mean, so a held correction is not a biased one;
//   - beyond it, it takes the new estimate at once: a real look away and back passes on the
//     frame it is seen (and a start on one noisy estimate is averaged out within a few frames).
//
// It writes the held geometry under its own names (`steady_iris`, `steady_eyelids`,
// `steady_gaze`, `steady_eyeballs`), which gaze.redirect prefers when they are there; the
// estimates themselves are left as they were. It needs the iris model's eyelid contour
// (`eye_contours`); without it, or without a face, it writes nothing and gaze.redirect renders
// from the estimates. Run it with `state: per_stream`, between gaze.estimate and gaze.redirect.
#include <algorithm>
#include <array>
#include <cmath>
#include <map>
#include <memory>
#include <mutex>
#include <numbers>
#include <optional>
#include <string>
#include <vector>

#include "eye_fields.hpp"
#include "stage_registration.hpp"
#include "stream_states.hpp"

namespace micromodels::vision {

namespace {

struct SteadyParams {
  double dead_band = 0.06;  // eye widths
  double settle_s = 0.5;    // time constant of the follow inside the band
  double fallback_rate_hz = 30;
};

// One eye's geometry in its own frame: points as (along, up) / width, angles in degrees.
struct EyeGeometry {
  cv::Point2f iris;                 // iris centre
  cv::Point2f ball;                 // eyeball centre
  std::vector<cv::Point2f> lids;    // the 16 eyelid points
  float iris_radius = 0;            // eye widths
  float ball_radius = 0;            // eye widths
  Gaze gaze;
};

// How far the gaze of `b` is from `a`, in eye widths: the iris's move, and an angle's change as
// the iris's move on the eyeball (radius times the angle). The eyeball's place and the radii
// follow the same decision but do not make it: gaze.estimate already averages the eyeball's
// place over frames, and a noisy part that does not move the iris is not a look elsewhere.
float gaze_distance(const EyeGeometry& a, const EyeGeometry& b) {
  constexpr float kRad = std::numbers::pi_v<float> / 180;
  const float r = b.ball_radius;
  return std::max({static_cast<float>(cv::norm(a.iris - b.iris)),
                   r * kRad * std::abs(a.gaze.pitch_deg - b.gaze.pitch_deg),
                   r * kRad * std::abs(a.gaze.yaw_deg - b.gaze.yaw_deg)});
}

// The lids' mean move (one noisy point is not a lid moving), eye widths.
float lid_distance(const EyeGeometry& a, const EyeGeometry& b) {
  float sum = 0;
  for (std::size_t i = 0; i < a.lids.size(); ++i) sum += static_cast<float>(cv::norm(a.lids[i] - b.lids[i]));
  return a.lids.empty() ? 0 : sum / static_cast<float>(a.lids.size());
}

// One part of the geometry held: beyond the band it starts again from the estimate; inside, it
// is the mean of the estimates since it started, until that mean spans more than the settle
// time, then an exponential average over the settle time. So a move passes at once, and a start
// on one noisy estimate (a noise spike beyond the band) is averaged out within a few frames.
struct Held {
  std::uint64_t count = 0;  // estimates since the last start

  // The share of the new estimate to take, or 1 to start again.
  float share(float distance, float band, float settle_share) {
    if (count == 0 || distance > band) {
      count = 1;
      return 1;
    }
    ++count;
    return std::max(1.0f / static_cast<float>(count), settle_share);
  }
};

struct HeldEye {
  EyeGeometry geometry;
  Held gaze;
  Held lids;
};

void update(HeldEye& held, const EyeGeometry& now, float band, float settle_share) {
  EyeGeometry& g = held.geometry;
  if (g.lids.size() != now.lids.size()) {
    g = now;
    held.gaze = held.lids = {};
  }
  const float a = held.gaze.share(gaze_distance(g, now), band, settle_share);
  const float b = held.lids.share(lid_distance(g, now), band, settle_share);
  const auto mix = [](auto& x, const auto& y, float share) { x += share * (y - x); };
  mix(g.iris, now.iris, a);
  mix(g.ball, now.ball, a);
  mix(g.iris_radius, now.iris_radius, a);
  mix(g.ball_radius, now.ball_radius, a);
  mix(g.gaze.pitch_deg, now.gaze.pitch_deg, a);
  mix(g.gaze.yaw_deg, now.gaze.yaw_deg, a);
  for (std::size_t i = 0; i < g.lids.size(); ++i) mix(g.lids[i], now.lids[i], b);
}

struct StreamSteady {
  std::mutex mutex;  // a misconfigured pipeline (no per_stream) must still not race
  bool seen = false;
  std::uint64_t last_seq = 0;
  std::int64_t last_time_ns = 0;
  std::array<HeldEye, 2> eyes;
};

class EyeSteady final : public Stage {
 public:
  explicit EyeSteady(SteadyParams params)
      : params_(params), band_(static_cast<float>(params.dead_band)) {}

  void forget_stream(std::uint32_t stream) override { streams_.forget(stream); }

  void process(Packet packet, std::vector<Packet>& out) override {
    const std::shared_ptr<StreamSteady> state = streams_.of(packet.stream);
    std::lock_guard lock(state->mutex);
    const bool restarted = state->seen && packet.seq <= state->last_seq;
    const double dt = state->seen && packet.time_ns > state->last_time_ns
                          ? static_cast<double>(packet.time_ns - state->last_time_ns) * 1e-9
                          : 1.0 / params_.fallback_rate_hz;
    if (restarted) state->eyes = {};
    state->seen = true;
    state->last_seq = packet.seq;
    state->last_time_ns = packet.time_ns;
    const float share = static_cast<float>(1 - std::exp(-dt / params_.settle_s));
    steady(packet, *state, share);
    out.push_back(std::move(packet));
  }

 private:
  void steady(Packet& packet, StreamSteady& state, float share) const {
    const Scalars* gaze = scalars_field(packet, "gaze", 5);
    const Scalars* balls = scalars_field(packet, "eyeballs", 6);
    if (gaze == nullptr || balls == nullptr) {
      state.eyes = {};  // a face that comes back starts from its own estimate
      return;
    }
    Points iris(2 * kIrisPointsPerEye);
    Points eyelids(2 * kEyelidContourPoints);
    Scalars steady_gaze = *gaze;
    Scalars steady_balls = *balls;
    for (const EyeSide side : {EyeSide::right, EyeSide::left}) {
      const std::size_t s = static_cast<std::size_t>(side);
      std::optional<EyeView> view = eye_view(packet, side);
      if (!view || !(view->axes.width > 0) || view->eyelid.size() != kEyelidContourPoints) {
        state.eyes = {};
        return;  // both eyes or neither: gaze.redirect then renders from the estimates
      }
      HeldEye& held = state.eyes[s];
      // The eye's own frame follows its corners as they are: the re-rendering must move with the
      // picture's eye. (Holding the corners still too, against the mean of the rigid points,
      // left the geometry behind the eye's content and raised the output's jitter.)
      const EyeAxes& axes = view->axes;
      const float w = axes.width;
      const auto to_eye = [&](cv::Point2f p) { return axes.to_eye(p) * (1 / w); };
      EyeGeometry now;
      now.iris = to_eye(view->iris_center);
      now.ball = to_eye({static_cast<float>((*balls)[3 * s]), static_cast<float>((*balls)[3 * s + 1])});
      for (const cv::Point2f& p : view->eyelid) now.lids.push_back(to_eye(p));
      now.iris_radius = view->iris_radius / w;
      now.ball_radius = static_cast<float>((*balls)[3 * s + 2]) / w;
      now.gaze = {static_cast<float>((*gaze)[2 * s]), static_cast<float>((*gaze)[2 * s + 1])};

      update(held, now, band_, share);
      const EyeGeometry& g = held.geometry;
      const auto to_frame = [&](cv::Point2f q) { return axes.to_frame(q * w); };
      const cv::Point2f centre = to_frame(g.iris);
      const float r = g.iris_radius * w;
      const std::array<cv::Point2f, 5> ring{centre, centre + cv::Point2f(r, 0), centre + cv::Point2f(0, -r),
                                            centre + cv::Point2f(-r, 0), centre + cv::Point2f(0, r)};
      for (std::size_t i = 0; i < ring.size(); ++i) iris[s * kIrisPointsPerEye + i] = {ring[i].x, ring[i].y};
      for (std::size_t i = 0; i < kEyelidContourPoints; ++i) {
        const cv::Point2f p = to_frame(g.lids[i]);
        eyelids[s * kEyelidContourPoints + i] = {p.x, p.y};
      }
      const cv::Point2f ball = to_frame(g.ball);
      steady_balls[3 * s] = ball.x;
      steady_balls[3 * s + 1] = ball.y;
      steady_balls[3 * s + 2] = g.ball_radius * w;
      steady_gaze[2 * s] = g.gaze.pitch_deg;
      steady_gaze[2 * s + 1] = g.gaze.yaw_deg;
    }
    packet.set("steady_iris", std::move(iris));
    packet.set("steady_eyelids", std::move(eyelids));
    packet.set("steady_gaze", std::move(steady_gaze));
    packet.set("steady_eyeballs", std::move(steady_balls));
  }

  SteadyParams params_;
  float band_;
  StreamStates<StreamSteady> streams_;
};

}  // namespace

namespace {

SteadyParams settings(const Params& params) {
  SteadyParams p;
  p.dead_band = params.number("dead_band");
  p.settle_s = params.number("settle_s");
  return p;
}

}  // namespace

void register_eye_steady(Registry& registry) {
  const SteadyParams defaults;
  registry.add({
      .name = "eye.steady",
      .help = "Holds the eye geometry gaze.redirect renders from (iris, lids, gaze, eyeballs) "
              "still while the eye is still: inside a dead band it follows slowly, beyond it at "
              "once. Writes 'steady_iris', 'steady_eyelids', 'steady_gaze', 'steady_eyeballs', "
              "which gaze.redirect prefers. Run it with state: per_stream.",
      .params = {{"dead_band", ParamType::number, defaults.dead_band,
                  "a move of the iris or a lid (or the gaze's worth) beyond this, eye widths, "
                  "passes at once; below it the geometry follows slowly",
                  ParamRange{.low = 0, .high = 0.5}},
                 {"settle_s", ParamType::number, defaults.settle_s,
                  "time constant of the slow follow inside the dead band, seconds",
                  ParamRange{.low = 0, .low_exclusive = true, .high = 10}}},
      .info =
          [](const Params&) {
            return StageInfo{
                .reads = {"landmarks", "iris", "gaze", "eyeballs"},
                .writes = {"steady_iris", "steady_eyelids", "steady_gaze", "steady_eyeballs"},
                .optional_reads = {"eye_contours"},
                .per_stream = true};
          },
      .make = [](const Params& params) -> std::unique_ptr<Stage> {
        return std::make_unique<EyeSteady>(settings(params));
      },
      .make_source = {},
  });
}

}  // namespace micromodels::vision
