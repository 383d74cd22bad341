// `face.smooth`: steadies the per-frame landmark and iris estimates of each stream with One-Euro
// filters, and decides how much gaze correction each frame gets (`gaze_strength`, 0..1).
//
// Correction is wanted only while it is plausible: eyes open, head near frontal, the person
// roughly looking at the screen (a deliberate look away is left alone), eyes big enough to
// warp. The decision is made on the raw measurements (smoothing would delay a blink by frames),
// and the strength then moves toward it by 1/fade_frames per frame, so that the correction
// fades in and out instead of popping.
#include <algorithm>
#include <array>
#include <cmath>
#include <map>
#include <memory>
#include <mutex>
#include <string>

#include "eye_fields.hpp"
#include "one_euro_filter.hpp"
#include "stage_registration.hpp"

namespace micromodels::vision {

namespace {

struct SmoothParams {
  OneEuroParams filter;  // the points' offsets from the anchor
  OneEuroParams anchor;  // the anchor: the same cutoffs, its own beta
  double blink_ear = 0.18;
  double max_yaw_deg = 25;
  double max_offset = 0.35;
  double min_eye_px = 12;
  std::int64_t fade_frames = 5;
};

// Why a frame gets no correction; written as `gaze_reason` for overlays and debugging.
enum class Gate { ok, no_face, no_iris, blink, head_turned, looking_away, eyes_small };

const char* gate_name(Gate gate) {
  switch (gate) {
    case Gate::ok:
      return "ok";
    case Gate::no_face:
      return "no_face";
    case Gate::no_iris:
      return "no_iris";
    case Gate::blink:
      return "blink";
    case Gate::head_turned:
      return "head_turned";
    case Gate::looking_away:
      return "looking_away";
    case Gate::eyes_small:
      return "eyes_small";
  }
  return "?";
}

// Each point is split into an anchor (the mean of the 68 landmarks) plus its offset from it.
// The anchor averages 68 noisy points, so it is ~8x steadier than any one of them and can follow
// head motion with a high beta, i.e. almost without lag; the offsets (face shape, eyelids,
// irises) barely change when the head moves, so they can be smoothed hard without trailing a
// moving head. Smoothing the points directly forces a choice between jitter at rest and
// landmarks that lag a moving face by pixels, which the warp would then apply in the wrong place.
class FaceSmoother {
 public:
  FaceSmoother(OneEuroParams shape, OneEuroParams anchor) : shape_(shape), anchor_(anchor) {}

  void set_anchor(const Points& landmarks, std::int64_t time_ns) {
    double x = 0, y = 0;
    for (const Point& p : landmarks) {
      x += p.x;
      y += p.y;
    }
    const auto n = static_cast<double>(landmarks.size());
    raw_anchor_ = {static_cast<float>(x / n), static_cast<float>(y / n)};
    smooth_anchor_ = anchor_.filter(raw_anchor_, time_ns);
  }

  // Smooths one point set (landmarks, iris, contours) relative to the current anchor.
  Points filter(std::vector<OneEuroFilter2D>& filters, const Points& points,
                std::int64_t time_ns) const {
    if (filters.size() != points.size()) filters.assign(points.size(), OneEuroFilter2D(shape_));
    Points smoothed;
    smoothed.reserve(points.size());
    for (std::size_t i = 0; i < points.size(); ++i) {
      const Point offset =
          filters[i].filter({points[i].x - raw_anchor_.x, points[i].y - raw_anchor_.y}, time_ns);
      smoothed.push_back({smooth_anchor_.x + offset.x, smooth_anchor_.y + offset.y});
    }
    return smoothed;
  }

  void reset_anchor() { anchor_.reset(); }

 private:
  OneEuroParams shape_;
  OneEuroFilter2D anchor_;
  Point raw_anchor_;
  Point smooth_anchor_;
};

struct StreamSmooth {
  StreamSmooth(const OneEuroParams& shape, const OneEuroParams& anchor) : smoother(shape, anchor) {}

  void reset_eyes() {
    for (const std::array<std::size_t, 6>& eye : {kRightEyeLandmarks, kLeftEyeLandmarks}) {
      for (const std::size_t i : eye) {
        if (i < landmarks.size()) landmarks[i].reset();
      }
    }
    iris.clear();
    contours.clear();
  }
  void reset_points() {
    smoother.reset_anchor();
    landmarks.clear();
    iris.clear();
    contours.clear();
  }

  std::mutex mutex;  // a misconfigured pipeline (no per_stream) must still not race
  bool seen = false;
  std::uint64_t last_seq = 0;
  FaceSmoother smoother;
  std::vector<OneEuroFilter2D> landmarks;
  std::vector<OneEuroFilter2D> iris;
  std::vector<OneEuroFilter2D> contours;
  std::int64_t level = 0;  // strength in steps of 1/fade_frames, exact at 0 and 1
};

Gate judge(const Packet& packet, const Points* landmarks, const Points* iris,
           const SmoothParams& params) {
  if (landmarks == nullptr) return Gate::no_face;
  if (iris == nullptr) return Gate::no_iris;
  float offset = 0;
  for (const EyeSide side : {EyeSide::right, EyeSide::left}) {
    const std::vector<cv::Point2f> six = eye_landmarks(*landmarks, side);
    if (eye_aspect_ratio(six) < params.blink_ear) return Gate::blink;
    if (cv::norm(six[0] - six[3]) < params.min_eye_px) return Gate::eyes_small;
  }
  if (std::abs(estimate_yaw_degrees(*landmarks)) > params.max_yaw_deg) return Gate::head_turned;
  for (const EyeSide side : {EyeSide::right, EyeSide::left}) {
    const std::optional<EyeShape> eye = eye_shape(packet, side);
    if (!eye) return Gate::no_iris;
    const float width = eye_width(eye->opening);
    if (eye_opening_polygon(eye->opening).empty() || width <= 0) return Gate::blink;
    // Measured from where gaze.redirect would put the iris (by default).
    offset += static_cast<float>(cv::norm(eye->iris_center - camera_gaze_target(*eye))) / width;
  }
  // Both eyes move together when a person looks away; their mean is steadier than either.
  if (offset / 2 > params.max_offset) return Gate::looking_away;
  return Gate::ok;
}

class FaceSmooth final : public Stage {
 public:
  explicit FaceSmooth(SmoothParams params) : params_(params) {}

  void process(Packet packet, std::vector<Packet>& out) override {
    const std::shared_ptr<StreamSmooth> state = stream_state(packet.stream);
    std::lock_guard lock(state->mutex);
    if (state->seen && packet.seq <= state->last_seq) {  // the stream started over
      state->reset_points();
      state->level = 0;
    }
    state->seen = true;
    state->last_seq = packet.seq;

    const Points* landmarks = points_field(packet, "landmarks", kLandmarkCount);
    const Points* iris = points_field(packet, "iris", 2 * kIrisPointsPerEye);
    const Gate gate = judge(packet, landmarks, iris, params_);

    if (landmarks == nullptr) {
      state->reset_points();  // a face that comes back starts fresh, not from a stale place
    } else {
      // A closing lid moves fast: restarting the eye filters keeps the smoothed eyelids (and
      // so the warp's eye opening) from trailing it; they settle again once the eye reopens.
      if (gate == Gate::blink) state->reset_eyes();
      FaceSmoother& smoother = state->smoother;
      smoother.set_anchor(*landmarks, packet.time_ns);
      packet.set("landmarks", smoother.filter(state->landmarks, *landmarks, packet.time_ns));
      if (iris != nullptr) {
        packet.set("iris", smoother.filter(state->iris, *iris, packet.time_ns));
      } else {
        state->iris.clear();
      }
      // Smoothed with the rest, or gaze.redirect would use a steady iris in a jittery eyelid.
      if (const Points* contours = points_field(packet, "eye_contours", 2 * kContourPointsPerEye)) {
        packet.set("eye_contours", smoother.filter(state->contours, *contours, packet.time_ns));
      } else {
        state->contours.clear();
      }
    }

    const std::int64_t target = gate == Gate::ok ? params_.fade_frames : 0;
    state->level += std::clamp<std::int64_t>(target - state->level, -1, 1);
    packet.set("gaze_strength",
               static_cast<double>(state->level) / static_cast<double>(params_.fade_frames));
    packet.set("gaze_reason", std::string(gate_name(gate)));
    out.push_back(std::move(packet));
  }

 private:
  std::shared_ptr<StreamSmooth> stream_state(std::uint32_t stream) {
    std::lock_guard lock(streams_mutex_);
    std::shared_ptr<StreamSmooth>& state = streams_[stream];
    if (!state) state = std::make_shared<StreamSmooth>(params_.filter, params_.anchor);
    return state;
  }

  SmoothParams params_;
  std::mutex streams_mutex_;
  std::map<std::uint32_t, std::shared_ptr<StreamSmooth>> streams_;
};

}  // namespace

void register_face_smooth(Registry& registry) {
  registry.add({
      .name = "face.smooth",
      .help = "One-Euro smoothing of 'landmarks', 'iris' (and 'eye_contours') per stream, and "
              "'gaze_strength' (0..1): 1 while the eyes are open, the head near frontal and the "
              "gaze near the camera, fading to 0 over fade_frames on a blink, a turned head, a "
              "look away, small eyes or no face ('gaze_reason' says which). Run it with "
              "state: per_stream.",
      .params = {{"min_cutoff", ParamType::number, 1.0, "One-Euro cutoff at rest, Hz"},
                 {"beta", ParamType::number, 0.02,
                  "One-Euro speed coefficient of the points' offsets from the face's mean "
                  "position, per pixel/second (higher: less lag in expressions and saccades)"},
                 {"anchor_beta", ParamType::number, 0.5,
                  "One-Euro speed coefficient of the face's mean position (higher: less lag "
                  "behind a moving head)"},
                 {"d_cutoff", ParamType::number, 1.0, "One-Euro cutoff of the speed, Hz"},
                 {"blink_ear", ParamType::number, 0.18,
                  "eye aspect ratio below which an eye counts as closed"},
                 {"max_yaw_deg", ParamType::number, 25.0,
                  "head yaw (degrees) beyond which no correction is applied"},
                 {"max_offset", ParamType::number, 0.35,
                  "iris distance from where it sits looking into the camera, as a fraction of "
                  "the eye width, beyond which the person is taken to look away on purpose"},
                 {"min_eye_px", ParamType::number, 12.0,
                  "eye width (corner to corner, pixels) below which eyes are too small to warp"},
                 {"fade_frames", ParamType::integer, std::int64_t{5},
                  "frames for the strength to go from 0 to 1 or back"}},
      .info =
          [](const Params&) {
            // No face, no iris model or no contours upstream: it says so in gaze_reason.
            return StageInfo{.reads = {},
                             .writes = {"gaze_strength", "gaze_reason", "landmarks", "iris"},
                             .optional_reads = {"landmarks", "iris", "eye_contours"}};
          },
      .make = [](const Params& params) -> std::unique_ptr<Stage> {
        SmoothParams p;
        p.filter.min_cutoff = params.number("min_cutoff");
        p.filter.beta = params.number("beta");
        p.filter.d_cutoff = params.number("d_cutoff");
        p.anchor = p.filter;
        p.anchor.beta = params.number("anchor_beta");
        p.blink_ear = params.number("blink_ear");
        p.max_yaw_deg = params.number("max_yaw_deg");
        p.max_offset = params.number("max_offset");
        p.min_eye_px = params.number("min_eye_px");
        p.fade_frames = params.integer("fade_frames");
        if (p.filter.min_cutoff <= 0 || p.filter.d_cutoff <= 0 || p.filter.beta < 0 ||
            p.anchor.beta < 0) {
          throw std::invalid_argument(
              "min_cutoff and d_cutoff must be > 0, beta and anchor_beta >= 0");
        }
        if (p.fade_frames < 1) throw std::invalid_argument("param 'fade_frames' must be >= 1");
        return std::make_unique<FaceSmooth>(p);
      },
      .make_source = {},
  });
}

}  // namespace micromodels::vision
