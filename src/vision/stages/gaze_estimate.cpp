// `gaze.estimate`: where each eye looks, in degrees from the camera, and how much correction the
// frame should get. The eyeball model (eye_model.hpp) turns the iris centre's place into pitch
// and yaw; the head's pose (head_pose.hpp) moves the model's centre and gates the correction.
//
// Correction is wanted only while it is plausible: a face with both eyes open, seen and big
// enough, the head near frontal, the gaze near the camera (a look far away is left alone, as a
// deliberate one). Each check gives a factor from 1 (fine) to 0 (no correction): a hard 0 for a
// missing face, iris or eye, a blink or small eyes; a smooth fade over a band of degrees for the
// head's yaw and pitch, the gaze's angle and a smile. The strength then moves toward the
// product by at most 1/fade_frames per frame, so that corrections fade in and out instead of
// popping.
// While the brows are raised (they lift the upper lids, which the iris is placed from, without
// turning the eyes), the gaze written is held where it was.
// Per stream: run it with state: per_stream.
#include <algorithm>
#include <array>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>

#include <spdlog/fmt/fmt.h>

#include "eye_fields.hpp"
#include "head_pose.hpp"
#include "stage_registration.hpp"
#include "stream_states.hpp"
#include "usual_level.hpp"

namespace micromodels::vision {

namespace {

struct Band {
  double from = 0;  // the factor is 1 up to here
  double to = 0;    // and 0 from here
  [[nodiscard]] double factor(double value) const {
    const double t = std::clamp((std::abs(value) - from) / std::max(to - from, 1e-9), 0.0, 1.0);
    return 1 - t * t * (3 - 2 * t);
  }
};

struct EstimateParams {
  EyeballParams eyeball;
  float corner_follow = 0.16f;
  double blink_ear = 0.12;
  double blink_ratio = 0.7;
  double min_eye_px = 12;
  double min_eye_contrast = 2.0;
  Band head_yaw{20, 25};
  Band head_pitch{20, 30};
  Band gaze{20, 30};
  std::int64_t fade_frames = 6;
  float hold_deg = 1.0f;
  double average_frames = 1;
  double brow_hold = 0.08;
  Band smile{0.14, 0.2};
};

// Why a frame gets less than full correction; written as `gaze_reason`, first failing check.
constexpr const char* kNoFace = "no_face";
constexpr const char* kNoIris = "no_iris";
constexpr const char* kEyesSmall = "eyes_small";
constexpr const char* kEyeHidden = "eye_hidden";
constexpr const char* kBlink = "blink";
constexpr const char* kHeadTurned = "head_turned";
constexpr const char* kHeadPitched = "head_pitched";
constexpr const char* kLookingAway = "looking_away";
constexpr const char* kSmiling = "smiling";
constexpr const char* kOk = "ok";

// The head's pitch is judged against how this person holds it: the nose's height between the
// eyes and the mouth differs from face to face by more than a pitch gate's band, so a fixed
// frontal value would gate some faces always. The usual pitch follows slowly (over about this
// many frames, 12 s at 25 fps), so a nod still counts.
constexpr double kUsualPitchFrames = 300;

// The eyeball's centre is fixed in the eye: from frame to frame its estimate (from the corners
// and the head's pose) varies only by the landmarks' noise, which would go straight into the
// correction as jitter. So its place in the eye's axes (eye widths) is averaged over about this
// many frames; a head turn moves it slowly enough to follow.
constexpr float kCentreFrames = 8;

// A blink is an eye that closes against how open this person's eyes usually are: looking down
// at a screen also narrows the eyes (the upper lid follows the iris), and an absolute threshold
// would take a person who looks down for one who blinks, and stop correcting exactly them. The
// usual opening follows over about this many frames; a blink lasts a few.
constexpr double kUsualEarFrames = 100;

// An eye is hidden (a hand, hair) when its inside shows less contrast than min_eye_contrast,
// than kHiddenShare of the other eye's, or when its contrast fell against its usual to less than
// kHiddenFall of the other eye's fall. A look down (less white in view) and the light lower both
// eyes' contrast, a cover one eye's: its fall against the other eye's is what tells them apart
// best, but not fully. Set from the eval's runs (first 300 frames of the three clips, both eyes
// turned down by 10 and 15 degrees): no open turned eye fell below 0.29 of the other's fall,
// 0.19 of the other's contrast or 2.5 gray levels (a lid lowered on one eye alone, cap12 from
// frame 250); a cheek's skin or dark strands over one eye (tests/vision/eye_measure_test.cpp,
// EyeHidden) fall to 0.25-0.68 of the other's at the median, so only part of them is caught.
constexpr double kHiddenShare = 0.15;
constexpr double kHiddenFall = 0.25;

// An eye is shut when it is seen (its contrast did not fall alone, as a covered eye's does) and
// its contrast fell below kShutFall of its usual: the iris and the white are gone under the lid.
// The image shows it on the frame the lid closes, where the smoothed landmarks' opening (the
// blink check above) still reads open for a frame or two. At franck.mp4's frame 220, where the
// lids have closed and the landmarks still read open, one eye's contrast is 0.26 of its usual.
// A look down lowers it too: at 0.4, eyes of cap12 that the eval turned down 10-15° counted as
// shut on 8% more of the frames; at 0.3, on 0-3% more.
constexpr double kShutFall = 0.3;

// An eye's usual contrast follows over about this many frames, while both eyes are seen.
constexpr double kUsualContrastFrames = 100;

// Each frame's gaze is averaged with the last (an exponential average of weight 1/2): the
// estimate's frame-to-frame noise, which the correction would add to the eyes' own motion,
// falls to a third of its variance, at the price of a frame's lag.
constexpr float kGazeWeight = 0.5f;

// dlib's eye corners, from which the eyeball hangs, are pulled along by the upper lid: on real
// eyes of the sample clips turned down by a known shift (iris and lid together, with the eval's
// warp), the corners as this stage reads them (tracked face, smoothed landmarks) moved down by
// 0.11-0.25 of the shift, 0.16 on average over the three clips and 5, 10 and 15 degrees
// (tests/vision/eye_contact_test.cpp, CornerFollowIsTheCornersMoveInThePipeline). The iris's
// height above the corners then shows only 1 - corner_follow of a vertical gaze change, so the
// height is divided by that before it is read as a pitch. Around the calibrated centre (a gaze
// into the camera) nothing changes.
cv::Point2f unfollow_corners(const Eyeball& ball, cv::Point2f iris, float corner_follow) {
  const cv::Point2f centre = ball.axes.to_eye(ball.center);
  cv::Point2f q = ball.axes.to_eye(iris) - centre;
  q.y /= 1 - corner_follow;
  return ball.axes.to_frame(centre + q);
}

// A look away on purpose is a look far from where this person usually looks (the screen), not
// from the camera: the camera may sit far above the screen, and that is what is corrected. The
// usual gaze follows over about this many frames (12 s at 25 fps).
constexpr double kUsualGazeFrames = 300;

// Raised brows pull the upper lids up with them, and the eyes do not turn: on the sample clips
// the brows rise by 0.15-0.2 eye widths for a second at a time as people talk, and the gaze read
// from the lid then swings by 10-20 degrees while an independent look at the irises sees them
// stay (docs/eye-contact.md, "Raised brows"). So the brows' height above the eye corners is
// judged against this person's usual height (UsualLevel), so that brows held up for long count
// as usual again.

// A smile narrows the eyes from below and lowers the upper lids a little, and the gaze read from
// the lids takes it for a look down: on franck.mp4's smile (frames 28-92) by 10-35 degrees, and
// the irises raised by up to a fifth of the eye's width into a squint came out as a dark iris
// pushed into the lid (docs/eye-contact.md, "Smiles"). The mouth shows a smile plainly: its
// corners move apart and up. How much, against this person's usual mouth: the widening of the
// corners' distance plus the rise of the corners above the lips' middle, each above its usual
// level (UsualLevel, as the brows'), in distances between the outer eye corners. On the sample clips'
// first 600 frames: franck's smiles 0.17-0.26, cap12's widest smile 0.15, cap13 at most 0.09.
struct Mouth {
  double width = 0;  // corner to corner (dlib 48, 54)
  double lift = 0;   // the corners above the middle of the lips (51, 57), along the face's up
};

std::optional<Mouth> mouth_of(const Points& landmarks) {
  const auto at = [&](std::size_t i) { return cv::Point2f(landmarks[i].x, landmarks[i].y); };
  const EyeAxes face = eye_axes(at(36), at(45));  // the outer eye corners' line, and the face's up
  if (!(face.width > 0)) return std::nullopt;
  const cv::Point2f corners = (at(48) + at(54)) * 0.5f;
  const cv::Point2f lips = (at(51) + at(57)) * 0.5f;
  return Mouth{cv::norm(at(54) - at(48)) / face.width, (corners - lips).dot(face.up) / face.width};
}

// Both brows' mean height above their eye's corners, in eye widths (dlib: 17..21 over the right
// eye, 22..26 over the left); nullopt when an eye's corners coincide.
std::optional<double> brow_height(const Points& landmarks) {
  double sum = 0;
  for (const EyeSide side : {EyeSide::right, EyeSide::left}) {
    const std::vector<cv::Point2f> six = eye_landmarks(landmarks, side);
    const EyeAxes axes = eye_axes(six[0], six[3]);
    if (!(axes.width > 0)) return std::nullopt;
    const std::size_t first = side == EyeSide::right ? 17 : 22;
    cv::Point2f brow(0, 0);
    for (std::size_t i = first; i < first + 5; ++i) {
      brow += cv::Point2f(landmarks[i].x, landmarks[i].y) * 0.2f;
    }
    sum += axes.to_eye(brow).y / axes.width;
  }
  return sum / 2;
}

// `from` moved toward `to` by the share `k` (an exponential average's step).
Gaze toward(Gaze from, Gaze to, float k) {
  return {from.pitch_deg + k * (to.pitch_deg - from.pitch_deg),
          from.yaw_deg + k * (to.yaw_deg - from.yaw_deg)};
}

// The gaze reported stays where it is while the averaged estimate moves within `hold_deg` of
// it, and beyond that follows it at that distance (a backlash): the estimate's frame-to-frame
// noise, smaller than the band, no longer moves the eyes, and a real change of gaze is followed
// at once, short of it by at most the band. Around a steady gaze the held value is pushed from
// either side in turn, so on average it sits where the estimate does.
Gaze hold(std::optional<Gaze>& held, Gaze g, float hold_deg) {
  if (held) {
    const float dp = g.pitch_deg - held->pitch_deg;
    const float dy = g.yaw_deg - held->yaw_deg;
    const float d = std::hypot(dp, dy);
    if (d > hold_deg) {
      const float k = hold_deg / d;
      held = Gaze{g.pitch_deg - k * dp, g.yaw_deg - k * dy};
    }
  } else {
    held = g;
  }
  return *held;
}

// What a stream's frames taught the stage; all of it forgotten when the stream starts over.
struct StreamMemory {
  double strength = 0;
  std::optional<double> usual_pitch;
  std::array<std::optional<cv::Point2f>, 2> centre;  // per eye, in its axes, eye widths
  std::array<std::optional<double>, 2> usual_ear;     // per eye
  std::array<std::optional<double>, 2> usual_contrast;  // per eye
  std::array<std::optional<Gaze>, 2> gaze;            // per eye, averaged
  std::array<std::optional<Gaze>, 2> steady;          // per eye, over average_frames
  std::array<std::optional<Gaze>, 2> held;            // per eye, as reported (hold_deg)
  std::optional<Gaze> usual_gaze;                     // both eyes' mean
  // The brows' usual height at the 20th percentile: one that reads low (after a dip) makes
  // brows at their height read as raised, and the gaze is held. The mouth's at the 10th: one
  // that reads low makes a smile read broader, and the eyes are left alone a little longer.
  UsualLevel usual_brow{0.2};                                       // eye widths above the corners
  UsualLevel usual_mouth_width{0.1}, usual_mouth_lift{0.1};         // see mouth_of
};

struct StreamState : StreamMemory {
  std::mutex mutex;  // a pipeline without state: per_stream must still not race
  bool seen = false;
  std::uint64_t last_seq = 0;
};

class GazeEstimate final : public Stage {
 public:
  explicit GazeEstimate(EstimateParams params) : params_(params) {}

  void forget_stream(std::uint32_t stream) override { streams_.forget(stream); }

  void process(Packet packet, std::vector<Packet>& out) override {
    const char* reason = kOk;
    const std::shared_ptr<StreamState> state = streams_.of(packet.stream);
    {
      std::lock_guard lock(state->mutex);
      if (state->seen && packet.seq <= state->last_seq) {  // started over
        static_cast<StreamMemory&>(*state) = StreamMemory{};
      }
      state->seen = true;
      state->last_seq = packet.seq;
      const double target = judge(packet, reason, *state);
      const double step = 1.0 / static_cast<double>(params_.fade_frames);
      const double change = target - state->strength;
      // A blink ends the correction at once: a closing lid reads as a look down, which a fade
      // would turn into a growing raise of a shut eye, and the lid hides the jump. Every other
      // change fades, and the eye that opens again fades in.
      const bool at_once = std::abs(change) <= step || reason == kBlink;
      state->strength = at_once ? target : state->strength + std::copysign(step, change);
      packet.set("gaze_strength", state->strength);
    }
    packet.set("gaze_reason", std::string(reason));
    out.push_back(std::move(packet));
  }

 private:
  // Writes the gaze, eyeballs and head pose when there is a face, and returns the wanted
  // strength (0..1), naming the first check that lowered it in `reason`.
  double judge(Packet& packet, const char*& reason, StreamState& state) const {
    const Points* landmarks = points_field(packet, "landmarks", kLandmarkCount);
    if (landmarks == nullptr) {
      state.centre = {};  // the face that comes back may be another's
      state.usual_ear = {};
      state.usual_contrast = {};
      state.gaze = {};
      state.steady = {};
      state.usual_gaze.reset();
      state.usual_brow.reset();
      state.usual_mouth_width.reset();
      state.usual_mouth_lift.reset();
      reason = kNoFace;
      return 0;
    }
    bool brows_raised = false;
    if (const std::optional<double> brow = brow_height(*landmarks)) {
      const double above = state.usual_brow.above(*brow);
      brows_raised = params_.brow_hold > 0 && above > params_.brow_hold;
    }
    double smile = 0;
    if (const std::optional<Mouth> mouth = mouth_of(*landmarks)) {
      smile = std::max(0.0, state.usual_mouth_width.above(mouth->width)) +
              std::max(0.0, state.usual_mouth_lift.above(mouth->lift));
    }
    HeadPose head = estimate_head_pose(*landmarks);
    if (!state.usual_pitch) state.usual_pitch = head.pitch_deg;
    *state.usual_pitch += (head.pitch_deg - *state.usual_pitch) / kUsualPitchFrames;
    head.pitch_deg -= static_cast<float>(*state.usual_pitch);
    // Written last: setting a new field may move the packet's fields, and `landmarks` with them.
    const Scalars pose{head.pitch_deg, head.yaw_deg, head.roll_deg};
    if (points_field(packet, "iris", 2 * kIrisPointsPerEye) == nullptr) {
      packet.set("head_pose", pose);
      reason = kNoIris;
      return 0;
    }
    const Scalars* contrast = scalars_field(packet, "eye_contrast", 2);
    // Each eye's contrast, and how far it fell against its usual (1: not at all, or no usual yet).
    std::array<double, 2> seen{}, fell{};
    for (std::size_t s = 0; s < 2; ++s) {
      seen[s] = contrast != nullptr ? (*contrast)[s] : params_.min_eye_contrast * 2;
      fell[s] = state.usual_contrast[s] ? seen[s] / std::max(*state.usual_contrast[s], 1e-9) : 1.0;
    }
    bool both_seen = true;
    Scalars gaze(5, 0.0);
    Scalars balls(6, 0.0);
    double factor = 1;
    double confidence = 1;
    Gaze mean;
    const auto fail = [&](const char* why) {
      if (reason == kOk) reason = why;
      factor = 0;
    };
    for (const EyeSide side : {EyeSide::right, EyeSide::left}) {
      const std::size_t s = static_cast<std::size_t>(side);
      const std::optional<EyeView> eye = eye_view(packet, side);
      if (!eye) {
        fail(kNoIris);
        both_seen = false;
        continue;
      }
      const std::vector<cv::Point2f> six = eye_landmarks(*landmarks, side);
      const float width = eye->axes.width;
      const bool big = width >= params_.min_eye_px;
      const double ear = eye_aspect_ratio(six);
      std::optional<double>& usual_ear = state.usual_ear[s];
      const bool open = ear >= params_.blink_ear && (!usual_ear || ear >= params_.blink_ratio * *usual_ear);
      // A closed eye does not count; a narrowed one does, slowly, so that eyes that stay narrow
      // (a long look down) count as open again after a couple of seconds.
      if (ear >= params_.blink_ear) {
        usual_ear = usual_ear ? *usual_ear + (ear - *usual_ear) / kUsualEarFrames : ear;
      }
      const bool visible = seen[s] >= params_.min_eye_contrast &&
                           seen[s] >= kHiddenShare * seen[1 - s] &&
                           fell[s] >= kHiddenFall * fell[1 - s];
      // Seen, but its inside gone as the other eye's went too: the lids closed (kShutFall).
      const bool shut = visible && fell[s] < kShutFall;
      both_seen = both_seen && open && visible && !shut;
      if (!big) fail(kEyesSmall);
      if (!open) fail(kBlink);  // a closed eye also hides its inside: named a blink
      if (!visible) fail(kEyeHidden);
      if (shut) fail(kBlink);
      confidence = std::min(
          {confidence, std::clamp(seen[s] / (2 * params_.min_eye_contrast), 0.0, 1.0),
           std::clamp(static_cast<double>(width) / (2 * params_.min_eye_px), 0.0, 1.0)});
      Eyeball ball = eyeball(six[0], six[3], side, head, params_.eyeball);
      const bool readable = big && open && visible && !shut;  // its gaze can be read
      std::optional<cv::Point2f>& kept = state.centre[s];
      if (width > 0 && readable) {  // a closing lid is not the eyeball moving
        const cv::Point2f now = ball.axes.to_eye(ball.center) * (1.0f / width);
        kept = kept ? *kept + (now - *kept) * (1.0f / kCentreFrames) : now;
      }
      if (kept) ball.center = ball.axes.to_frame(*kept * width);
      Gaze g = ball.gaze_of(unfollow_corners(ball, eye->iris_center, params_.corner_follow));
      std::optional<Gaze>& last = state.gaze[s];
      // What the gates read: the frame's own, averaged with the last (while the brows hold the
      // gaze, the last one before the raise, which `last` keeps for when they come down).
      const Gaze gated = readable && last ? toward(*last, g, kGazeWeight) : g;
      if (readable && brows_raised && state.held[s]) {
        g = *state.held[s];  // the lids moved with the brows, not with the eyes
      } else if (readable) {
        last = gated;
        // The gaze that the correction is made from, kept through blinks (a closing lid reads as
        // a look down, so it does not count).
        std::optional<Gaze>& steady = state.steady[s];  // with 1, exactly this frame's
        steady = steady && params_.average_frames > 1
                     ? toward(*steady, gated, static_cast<float>(1 / params_.average_frames))
                     : gated;
        g = hold(state.held[s], *steady, params_.hold_deg);
      } else {
        last.reset();  // after a blink, from the eye as it opens
        state.held[s].reset();
      }
      gaze[2 * s] = g.pitch_deg;
      gaze[2 * s + 1] = g.yaw_deg;
      balls[3 * s] = ball.center.x;
      balls[3 * s + 1] = ball.center.y;
      balls[3 * s + 2] = ball.radius;
      mean.pitch_deg += 0.5f * gated.pitch_deg;
      mean.yaw_deg += 0.5f * gated.yaw_deg;
    }
    gaze[4] = confidence;
    // A hidden eye does not count, so a hand that stays is still a hand.
    if (both_seen) {
      for (std::size_t s = 0; s < 2; ++s) {
        std::optional<double>& usual = state.usual_contrast[s];
        usual = usual ? *usual + (seen[s] - *usual) / kUsualContrastFrames : seen[s];
      }
    }
    packet.set("head_pose", pose);
    packet.set("gaze", std::move(gaze));
    packet.set("eyeballs", std::move(balls));
    if (factor == 0) return 0;
    const auto fade = [&](double f, const char* why) {
      if (f < 1 && reason == kOk) reason = why;
      factor *= f;
    };
    fade(params_.head_yaw.factor(head.yaw_deg), kHeadTurned);
    fade(params_.head_pitch.factor(head.pitch_deg), kHeadPitched);
    fade(params_.smile.factor(smile), kSmiling);
    // Both eyes look the same way; their mean is steadier than either.
    if (!state.usual_gaze) state.usual_gaze = mean;
    Gaze& usual = *state.usual_gaze;
    usual.pitch_deg += static_cast<float>((mean.pitch_deg - usual.pitch_deg) / kUsualGazeFrames);
    usual.yaw_deg += static_cast<float>((mean.yaw_deg - usual.yaw_deg) / kUsualGazeFrames);
    fade(params_.gaze.factor(std::hypot(mean.pitch_deg - usual.pitch_deg, mean.yaw_deg - usual.yaw_deg)),
         kLookingAway);
    return factor;
  }

  EstimateParams params_;
  StreamStates<StreamState> streams_;
};

// A float constant as the double it was written as (0.37f is 0.37000000476837158 as a double),
// so that `types` and the docs show the defaults as they are written.
double as_written(float value) {
  char text[32];
  std::snprintf(text, sizeof text, "%.6g", static_cast<double>(value));
  return std::strtod(text, nullptr);
}

// A band {from, to} of `what` (e.g. "angles") with 0 <= from < to <= `most`.
Band band_param(const Params& params, const std::string& name, const char* what = "angles",
                double most = 90) {
  const std::vector<double>& v = params.numbers(name);
  if (v.size() != 2 || !(v[0] >= 0) || !(v[1] > v[0]) || v[1] > most) {
    std::string given;
    for (const double x : v) given += (given.empty() ? "" : ", ") + fmt::format("{:g}", x);
    throw ParamError(name, "param '" + name + "' must be two " + what +
                               " {from, to} with 0 <= from < to <= " + fmt::format("{:g}", most) +
                               "; got [" + given + "]");
  }
  return {v[0], v[1]};
}

// The params, checked; a ParamError names the key, so a pipeline file reports its line.
EstimateParams settings(const Params& params) {
  EstimateParams p;
  p.eyeball.radius = static_cast<float>(params.number("eyeball_radius"));
  p.eyeball.rise = static_cast<float>(params.number("eyeball_rise"));
  p.eyeball.nasal = static_cast<float>(params.number("eyeball_nasal"));
  p.eyeball.depth = static_cast<float>(params.number("eyeball_depth"));
  p.corner_follow = static_cast<float>(params.number("corner_follow"));
  p.blink_ear = params.number("blink_ear");
  p.blink_ratio = params.number("blink_ratio");
  p.min_eye_px = params.number("min_eye_px");
  p.min_eye_contrast = params.number("min_eye_contrast");
  p.head_yaw = band_param(params, "head_yaw_fade_deg");
  p.head_pitch = band_param(params, "head_pitch_fade_deg");
  p.gaze = band_param(params, "gaze_fade_deg");
  p.smile = band_param(params, "smile_fade", "shares of the outer eye corners' distance", 2);
  p.fade_frames = params.integer("fade_frames");
  p.hold_deg = static_cast<float>(params.number("hold_deg"));
  p.average_frames = params.number("average_frames");
  p.brow_hold = params.number("brow_hold");
  return p;
}

}  // namespace

void register_gaze_estimate(Registry& registry) {
  const EyeballParams ball;
  registry.add({
      .name = "gaze.estimate",
      .help = "Each eye's gaze in degrees from the camera (an eyeball model hung from the eye "
              "corners, moved by the head's pose) as 'gaze' {right pitch, right yaw, left pitch, "
              "left yaw, confidence}, the models as 'eyeballs' {x, y, radius per eye}, "
              "'head_pose' {pitch against the stream's usual pitch, yaw, roll}, and how much "
              "correction the frame gets: "
              "'gaze_strength' (0..1, fading over fade_frames) and 'gaze_reason'. Run it with "
              "state: per_stream.",
      .params = {{"eyeball_radius", ParamType::number, as_written(ball.radius),
                  "radius on which the iris centre turns, eye widths",
                  ParamRange{.low = 0.1, .low_exclusive = true, .high = 1, .high_exclusive = true}},
                 {"eyeball_rise", ParamType::number, as_written(ball.rise),
                  "eyeball centre above the eye corners' line, eye widths (seen frontally)"},
                 {"eyeball_nasal", ParamType::number, as_written(ball.nasal),
                  "eyeball centre toward the nose from the corners' midpoint, eye widths"},
                 {"eyeball_depth", ParamType::number, as_written(ball.depth),
                  "eyeball centre behind the corners, eye widths (moves it when the head turns)"},
                 {"corner_follow", ParamType::number, as_written(EstimateParams{}.corner_follow),
                  "share of the upper lid's vertical move that the eye corners (landmarks) make; "
                  "the iris's height above them is divided by 1 minus this (0 for corners that "
                  "stay)",
                  ParamRange{.low = 0, .high = 0.5}},
                 {"blink_ear", ParamType::number, 0.12,
                  "eye aspect ratio below which an eye counts as closed, whatever its usual (an "
                  "open eye is about 0.3)",
                  ParamRange{.low = 0, .high = 1, .high_exclusive = true}},
                 {"blink_ratio", ParamType::number, 0.7,
                  "an eye counts as closed below this share of its usual aspect ratio in the "
                  "stream",
                  ParamRange{.low = 0, .low_exclusive = true, .high = 1, .high_exclusive = true}},
                 {"min_eye_px", ParamType::number, 12.0,
                  "eye width (corner to corner, pixels) below which eyes are too small to correct",
                  ParamRange{.low = 0}},
                 {"min_eye_contrast", ParamType::number, 2.0,
                  "an eye whose inside varies less than this (eye.refine's 'eye_contrast', gray "
                  "levels), less than 0.15 of the other eye's, or whose contrast fell against its "
                  "usual to less than 0.25 of the other eye's fall, counts as hidden",
                  ParamRange{.low = 0, .high = 255}},
                 {"head_yaw_fade_deg", ParamType::numbers, std::vector<double>{20, 25},
                  "head yaw over which the correction fades out, degrees {from, to}"},
                 {"head_pitch_fade_deg", ParamType::numbers, std::vector<double>{20, 30},
                  "head pitch away from the stream's usual pitch over which the correction "
                  "fades out, degrees {from, to}"},
                 {"gaze_fade_deg", ParamType::numbers, std::vector<double>{20, 30},
                  "angle between the gaze and where this stream usually looks over which the "
                  "correction fades out (a look away on purpose), degrees {from, to}"},
                 {"fade_frames", ParamType::integer, std::int64_t{6},
                  "frames for the strength to go from 0 to 1 or back", ParamRange{.low = 1}},
                 {"hold_deg", ParamType::number, as_written(EstimateParams{}.hold_deg),
                  "the gaze reported moves only when the estimate leaves a band this wide "
                  "around it, degrees (0: every change; against the estimate's noise)",
                  ParamRange{.low = 0, .high = 5}},
                 {"average_frames", ParamType::number, 1.0,
                  "the gaze written, which the correction is made from, is averaged over about "
                  "this many frames and kept through blinks (1: each frame's own, averaged with "
                  "the last; 50: steady against lids that move without the eyes, but a new "
                  "gaze is corrected over a second or two); the gates read each frame's own",
                  ParamRange{.low = 1, .high = 1000}},
                 {"brow_hold", ParamType::number, 0.08,
                  "while the brows stand more than this above their usual height (eye widths "
                  "above the eye corners), the gaze written stays as it was: raised brows lift "
                  "the upper lids without turning the eyes (0: off)",
                  ParamRange{.low = 0, .high = 1}},
                 {"smile_fade", ParamType::numbers, std::vector<double>{0.14, 0.2},
                  "how far the mouth widens and its corners rise above this person's usual "
                  "(together, in distances between the outer eye corners) over which the "
                  "correction fades out: a smile narrows the eyes, which reads as a look down "
                  "{from, to}"}},
      .info =
          [](const Params& params) {
            (void)settings(params);  // a bad param is a configuration error, at its line
            // No face or no iris: it says so in gaze_reason.
            return StageInfo{
                .reads = {},
                .writes = {"gaze_strength", "gaze_reason", "gaze", "eyeballs", "head_pose"},
                .optional_reads = {"landmarks", "iris", "eye_contours", "eye_contrast"},
                .per_stream = true};
          },
      .make = [](const Params& params) -> std::unique_ptr<Stage> {
        return std::make_unique<GazeEstimate>(settings(params));
      },
      .make_source = {},
  });
}

}  // namespace micromodels::vision
