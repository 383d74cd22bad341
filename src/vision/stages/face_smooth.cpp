// `face.smooth`: steadies the per-frame landmark, iris and eyelid estimates of each stream with
// One-Euro filters. Whether and how much to correct is gaze.estimate's call, downstream.
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
#include "stream_states.hpp"

namespace micromodels::vision {

namespace {

struct SmoothParams {
  OneEuroParams filter;  // the points' offsets from the anchor
  OneEuroParams anchor;  // the anchor: the same cutoffs, its own beta
  double blink_ear = 0.18;
};

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
};

// A closing lid moves fast: the eye filters restart when either eye is closed (judged on the
// raw points, so that the smoothed eyelids never trail a closing lid).
bool blinking(const Points& landmarks, double blink_ear) {
  for (const EyeSide side : {EyeSide::right, EyeSide::left}) {
    if (eye_aspect_ratio(eye_landmarks(landmarks, side)) < blink_ear) return true;
  }
  return false;
}

class FaceSmooth final : public Stage {
 public:
  explicit FaceSmooth(SmoothParams params) : params_(params) {}

  void forget_stream(std::uint32_t stream) override { streams_.forget(stream); }

  void process(Packet packet, std::vector<Packet>& out) override {
    const std::shared_ptr<StreamSmooth> state =
        streams_.of(packet.stream, params_.filter, params_.anchor);
    std::lock_guard lock(state->mutex);
    if (state->seen && packet.seq <= state->last_seq) state->reset_points();  // started over
    state->seen = true;
    state->last_seq = packet.seq;

    const Points* landmarks = points_field(packet, "landmarks", kLandmarkCount);
    const Points* iris = points_field(packet, "iris", 2 * kIrisPointsPerEye);

    if (landmarks == nullptr) {
      state->reset_points();  // a face that comes back starts fresh, not from a stale place
    } else {
      if (blinking(*landmarks, params_.blink_ear)) state->reset_eyes();
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

    out.push_back(std::move(packet));
  }

 private:

  SmoothParams params_;
  StreamStates<StreamSmooth> streams_;
};

}  // namespace

namespace {

SmoothParams settings(const Params& params) {
  SmoothParams p;
  p.filter.min_cutoff = params.number("min_cutoff");
  p.filter.beta = params.number("beta");
  p.filter.d_cutoff = params.number("d_cutoff");
  p.anchor = p.filter;
  p.anchor.beta = params.number("anchor_beta");
  p.blink_ear = params.number("blink_ear");
  return p;
}

}  // namespace

void register_face_smooth(Registry& registry) {
  registry.add({
      .name = "face.smooth",
      .help = "One-Euro smoothing of 'landmarks', 'iris' (and 'eye_contours') per stream, "
              "steady at rest without lagging a moving head; the eye points restart on a blink. "
              "Run it with state: per_stream.",
      .params = {{"min_cutoff", ParamType::number, 1.0, "One-Euro cutoff at rest, Hz",
                  ParamRange{.low = 0, .low_exclusive = true}},
                 {"beta", ParamType::number, 0.02,
                  "One-Euro speed coefficient of the points' offsets from the face's mean "
                  "position, per pixel/second (higher: less lag in expressions and saccades)",
                  ParamRange{.low = 0}},
                 {"anchor_beta", ParamType::number, 0.5,
                  "One-Euro speed coefficient of the face's mean position (higher: less lag "
                  "behind a moving head)",
                  ParamRange{.low = 0}},
                 {"d_cutoff", ParamType::number, 1.0, "One-Euro cutoff of the speed, Hz",
                  ParamRange{.low = 0, .low_exclusive = true}},
                 {"blink_ear", ParamType::number, 0.18,
                  "eye aspect ratio below which an eye counts as closed (its filters restart; "
                  "an open eye is about 0.3)",
                  ParamRange{.low = 0, .high = 1, .high_exclusive = true}}},
      .info =
          [](const Params&) {
            // Smooths whichever of the three is there.
            return StageInfo{.reads = {},
                             .writes = {"landmarks", "iris"},
                             .optional_reads = {"landmarks", "iris", "eye_contours"},
                             .per_stream = true};
          },
      .make = [](const Params& params) -> std::unique_ptr<Stage> {
        return std::make_unique<FaceSmooth>(settings(params));
      },
      .make_source = {},
  });
}

}  // namespace micromodels::vision
