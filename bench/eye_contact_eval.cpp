// `micromodels eval eye_contact`: runs the eye-contact pipeline on a video, then on the same video
// with its eyes turned down by known angles, and compares what comes out.
//
// Run 1 (unturned): a probe stage after `substitute` sees every output frame in order, decodes
// the same input frame itself, and records per eye where the pipeline put it (the evaluation's
// test set is placed with these fields; the truth is the known turn, not the fields), crops of
// input and output, the shift the pipeline applied, and the frame-level checks (pixels outside
// the masks, seam, jitter). A second probe on the iris model's output records its raw iris.
// Run 2 per angle: the source is replaced by one that turns every eye of frame i down by
// radius x sin(angle) with eye_turn.hpp, at the place run 1 found it; the same probes record the
// turned run's crops and fields. The turn left between the two runs' outputs is measured by
// fitting the evaluation's own turn between them (measure_turn), and checked on the inputs,
// where it must find the known turn.
//
// About 950 lines: the probes that record each frame and the summaries that turn the records
// into figures share the record types (EvalState, FrameRecord), which stay private to this file.
// The report (targets, table, JSON) is in eye_contact_eval_report.cpp.
#include "eye_contact_eval.hpp"

#include <algorithm>
#include <array>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <exception>
#include <fstream>
#include <map>
#include <memory>
#include <mutex>
#include <numbers>
#include <optional>
#include <set>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>
#include <opencv2/videoio.hpp>

#include "micromodels/micromodels.hpp"

#include "eye_contact_support.hpp"
#include "eye_turn.hpp"
#include "stats.hpp"
#include "vision/stages/image_mat.hpp"

namespace micromodels::bench {

namespace fs = std::filesystem;

namespace {

// The eyeball turns the iris centre on a radius of about 11 mm, the eye is about 29 mm from
// corner to corner (adult averages): the known turn by `angle` moves the iris 0.37 W sin(angle).
constexpr double kEyeballRadius = 0.37;
constexpr int kCropMargin = 3;
constexpr const char* kProbeType = "eval.eye_contact_probe";
constexpr const char* kTapType = "eval.iris_tap";
constexpr const char* kTurnedSourceType = "eval.turned_video";
// The step run's turn: the angle whose recovery has the tightest target.
constexpr double kStepAngle = 10;

template <class T>
const T* field(const Packet& packet, std::string_view name) {
  const Value* value = packet.find(name);
  return value == nullptr ? nullptr : std::get_if<T>(value);
}

cv::Point2f at(const Points& points, std::size_t i) { return {points[i].x, points[i].y}; }


double ratio(double numerator, double denominator) {
  return denominator != 0 ? numerator / denominator : 0.0;
}

cv::Mat channel_max_absdiff(const cv::Mat& a, const cv::Mat& b) {
  cv::Mat diff;
  cv::absdiff(a, b, diff);
  if (diff.channels() == 1) return diff;
  std::vector<cv::Mat> planes;
  cv::split(diff, planes);
  cv::Mat largest = planes[0];
  for (std::size_t i = 1; i < planes.size(); ++i) cv::max(largest, planes[i], largest);
  return largest;
}

cv::Mat gradient_magnitude(const cv::Mat& bgr) {
  cv::Mat gray;
  if (bgr.channels() == 3) {
    cv::cvtColor(bgr, gray, cv::COLOR_BGR2GRAY);
  } else {
    gray = bgr;
  }
  cv::Mat gx, gy, magnitude;
  cv::Sobel(gray, gx, CV_32F, 1, 0, 3);
  cv::Sobel(gray, gy, CV_32F, 0, 1, 3);
  cv::magnitude(gx, gy, magnitude);
  return magnitude;
}

cv::VideoCapture opened(const fs::path& video) {
  cv::VideoCapture capture;
  if (!capture.open(video.string(), cv::CAP_FFMPEG)) {
    throw std::runtime_error("eval: cannot open '" + video.string() + "'");
  }
  return capture;
}

// Decodes the next `count` frames and passes over them, to reach frame `wanted` (exact on any
// video; video.source seeks to --start, and the probe's comparison of the two shows that both
// got there).
void pass_over(cv::VideoCapture& capture, std::uint64_t count, std::uint64_t wanted) {
  for (std::uint64_t i = 0; i < count; ++i) {
    if (!capture.grab()) throw std::runtime_error("eval: the input has no frame " + std::to_string(wanted));
  }
}

// Frame `index` of the video, `decoded_count` frames of which were decoded already.
cv::Mat decoded(cv::VideoCapture& capture, std::uint64_t& decoded_count, std::uint64_t index) {
  if (decoded_count < index) {
    pass_over(capture, index - decoded_count, index);
    decoded_count = index;
  }
  if (decoded_count > index) {
    throw std::runtime_error("eval: input frame " + std::to_string(index) + " asked after frame " +
                             std::to_string(decoded_count - 1));
  }
  cv::Mat frame;
  if (!capture.read(frame)) throw std::runtime_error("eval: the input has no frame " + std::to_string(index));
  ++decoded_count;
  if (frame.channels() == 1) cv::cvtColor(frame, frame, cv::COLOR_GRAY2BGR);
  if (frame.channels() == 4) cv::cvtColor(frame, frame, cv::COLOR_BGRA2BGR);
  return frame;
}

// One eye of one frame as the unturned run saw it.
struct EyeRecord {
  EvalEye eye;            // frame coordinates
  cv::Rect box;           // the crops' place in the frame
  cv::Mat in, out;        // unturned input and output
  cv::Mat turned_in, turned_out;
  cv::Point2f shift{0, 0};  // gaze_shift applied (unturned run)
  cv::Point2f turned_shift{0, 0};
  std::optional<cv::Point2f> iris, turned_iris;              // the pipeline's iris
  std::optional<cv::Point2f> model_iris, turned_model_iris;  // eye.iris's raw iris
  std::optional<cv::Point2f> finder_in, finder_out;          // the finder on in, out (crops)
  std::optional<cv::Point2f> found_in, found_out;  // the same, frame coordinates, as the jitter's
  std::optional<std::pair<float, float>> gaze;     // gaze.estimate's pitch and yaw, degrees
  std::optional<cv::Point2f> turned_corners;                 // the turned run's corners' midpoint
  std::optional<float> bridge_y, turned_bridge_y;            // the nose bridge's height (27..30)
  std::optional<double> pitch_sin, turned_pitch_sin;         // radius x sin(gaze pitch), pixels
  double turn_px = 0;                                        // the known turn
};

// The eye as the unturned output shows it: the iris where the pipeline moved it, and the upper
// lid with it.
EvalEye corrected_eye(EvalEye eye, cv::Point2f shift) {
  eye.iris += shift;
  for (cv::Point2f& p : eye.upper_lid) p.y += shift.y;
  return eye;
}

struct FrameRecord {
  double strength = 0;
  double turned_strength = -1;  // -1: not seen in a turned run yet
  std::string turned_reason;    // the turned run's gaze_reason
  std::string reason;           // the unturned run's
  std::array<std::optional<EyeRecord>, 2> eyes;
};

// Everything the probes and the turned source share; one mutex, the probes are ordered.
struct EvalState {
  std::mutex mutex;
  std::map<std::uint64_t, FrameRecord> frames;
  std::map<std::uint64_t, std::array<cv::Point2f, 2>> model_iris;  // from the tap, this run
  bool turned = false;  // which run the probes record into
  double angle_deg = 0;
  std::uint64_t step_period = 0;  // turned in every other period of this many frames; 0: always
  double max_turn_px = 0;

  // Frame-level sums of the unturned run.
  std::uint64_t checked = 0, failures = 0, with_face = 0, corrected = 0;
  double strength_sum = 0, pitch_sum = 0, yaw_sum = 0;
  std::uint64_t gaze_frames = 0;  // with reason ok: the gaze of a blink means nothing
  std::map<std::string, std::uint64_t> reasons;
  int max_outside = 0, max_inside = 0;
  std::uint64_t frames_outside = 0, input_mismatches = 0;
  double edge_in = 0, edge_out = 0;
  double asked_sum = 0, delivered_sum = 0, finder_delivered_sum = 0;
  std::uint64_t asked_eyes = 0, finder_asked_eyes = 0;
  std::optional<std::pair<std::uint64_t, std::array<std::optional<cv::Point2f>, 6>>> previous;
  double jitter_in = 0, jitter_out = 0, jitter_reference = 0;
  std::uint64_t jitter_steps = 0;
};

std::optional<EvalEye> eval_eye(const Packet& packet, std::size_t side) {
  const Points* landmarks = field<Points>(packet, "landmarks");
  const Points* iris = field<Points>(packet, "iris");
  if (landmarks == nullptr || landmarks->size() != 68 || iris == nullptr || iris->size() != 10) {
    return std::nullopt;
  }
  EvalEye eye;
  eye.corner_a = at(*landmarks, side == 0 ? 36 : 42);
  eye.corner_b = at(*landmarks, side == 0 ? 39 : 45);
  if (const Points* contours = field<Points>(packet, "eye_contours"); contours != nullptr &&
                                                                      contours->size() == 142) {
    // The iris model's order: 0..8 the lower lid corner to corner, 9..15 the upper lid.
    for (std::size_t i = 1; i < 8; ++i) eye.lower_lid.push_back(at(*contours, side * 71 + i));
    for (std::size_t i = 9; i < 16; ++i) eye.upper_lid.push_back(at(*contours, side * 71 + i));
  } else {
    for (const std::size_t i : {1, 2}) eye.upper_lid.push_back(at(*landmarks, side * 6 + 36 + i));
    for (const std::size_t i : {4, 5}) eye.lower_lid.push_back(at(*landmarks, side * 6 + 36 + i));
  }
  eye.iris = at(*iris, side * 5);
  float radius = 0;
  for (std::size_t i = 1; i < 5; ++i) radius += static_cast<float>(cv::norm(at(*iris, side * 5 + i) - eye.iris));
  eye.iris_radius = radius / 4;
  return eye;
}

// The iris's height on the eyeball that gaze.estimate's pitch stands for: radius x sin(pitch),
// pixels (what gaze.redirect's shift is made of).
std::optional<double> gaze_height(const Packet& packet, std::size_t side) {
  const Scalars* gaze = field<Scalars>(packet, "gaze");
  const Scalars* balls = field<Scalars>(packet, "eyeballs");
  if (gaze == nullptr || gaze->size() != 5 || balls == nullptr || balls->size() != 6) return std::nullopt;
  return (*balls)[3 * side + 2] * std::sin((*gaze)[2 * side] * std::numbers::pi / 180);
}

// The nose bridge's mean height (landmarks 27..30), pixels: the face's own move.
std::optional<float> bridge_height(const Packet& packet) {
  const Points* landmarks = field<Points>(packet, "landmarks");
  if (landmarks == nullptr || landmarks->size() != 68) return std::nullopt;
  float sum = 0;
  for (std::size_t i = 27; i <= 30; ++i) sum += (*landmarks)[i].y;
  return sum / 4;
}

class Probe final : public Stage {
 public:
  Probe(std::shared_ptr<EvalState> state, const fs::path& video, std::uint64_t start)
      : state_(std::move(state)), capture_(opened(video)), start_(start) {}

  void process(Packet packet, std::vector<Packet>& /*out*/) override {
    std::lock_guard lock(state_->mutex);
    if (!state_->turned) ++state_->checked;
    try {
      if (state_->turned) {
        record_turned(packet);
      } else {
        record(packet);
      }
    } catch (...) {
      if (!state_->turned) ++state_->failures;
      throw;
    }
  }

 private:
  static cv::Mat frame_mask(const Packet& packet, cv::Size size) {
    const Image* mask = field<Image>(packet, "generated_mask");
    const Rects* roi = field<Rects>(packet, "generated_roi");
    if (field<Image>(packet, "generated") == nullptr || mask == nullptr || roi == nullptr ||
        roi->empty()) {
      return {};
    }
    const Rect& where = roi->front();
    const cv::Mat alpha = vision::to_mat(*mask);
    const cv::Rect placed(static_cast<int>(std::lround(where.x)), static_cast<int>(std::lround(where.y)),
                          alpha.cols, alpha.rows);
    const cv::Rect clipped = placed & cv::Rect(0, 0, size.width, size.height);
    cv::Mat full = cv::Mat::zeros(size, CV_8UC1);
    if (!clipped.empty()) {
      alpha(cv::Rect(clipped.x - placed.x, clipped.y - placed.y, clipped.width, clipped.height))
          .copyTo(full(clipped));
    }
    return full;
  }

  static std::array<cv::Point2f, 2> shifts(const Packet& packet) {
    std::array<cv::Point2f, 2> d{};
    if (const Points* shift = field<Points>(packet, "gaze_shift"); shift != nullptr && shift->size() == 2) {
      d = {at(*shift, 0), at(*shift, 1)};
    }
    return d;
  }

  void record(const Packet& packet) {
    EvalState& s = *state_;
    const cv::Mat out = vision::to_mat(packet.get<Image>("frame"));
    const cv::Mat in = decoded(capture_, decoded_, start_ + packet.seq);
    if (in.size() != out.size() || in.type() != out.type()) {
      throw std::runtime_error("eval: output frame " + std::to_string(packet.seq) +
                               " differs in size or type from the input");
    }
    if (const Image* kept = field<Image>(packet, "input_frame")) {
      const cv::Mat kept_mat = vision::to_mat(*kept);
      if (kept_mat.size() != in.size() || cv::norm(kept_mat, in, cv::NORM_INF) > 0) ++s.input_mismatches;
    }
    const cv::Mat mask = frame_mask(packet, in.size());
    const cv::Mat change = channel_max_absdiff(in, out);
    double outside = 0, inside = 0;
    if (mask.empty()) {
      cv::minMaxLoc(change, nullptr, &outside);
    } else {
      ++s.corrected;
      cv::minMaxLoc(change, nullptr, &outside, nullptr, nullptr, mask == 0);
      cv::minMaxLoc(change, nullptr, &inside, nullptr, nullptr, mask > 0);
      seam(in, out, mask);
    }
    s.max_outside = std::max(s.max_outside, static_cast<int>(outside));
    s.max_inside = std::max(s.max_inside, static_cast<int>(inside));
    if (outside > 0) ++s.frames_outside;
    const std::string* reason = field<std::string>(packet, "gaze_reason");
    if (reason != nullptr) ++s.reasons[*reason];

    FrameRecord& frame = s.frames[packet.seq];
    if (reason != nullptr) frame.reason = *reason;
    const double* strength = field<double>(packet, "gaze_strength");
    frame.strength = strength != nullptr ? *strength : 0.0;
    if (field<Points>(packet, "landmarks") == nullptr) {
      s.previous.reset();
      return;
    }
    ++s.with_face;
    s.strength_sum += frame.strength;
    if (const Scalars* gaze = field<Scalars>(packet, "gaze");
        gaze != nullptr && gaze->size() == 5 && reason != nullptr && *reason == "ok") {
      ++s.gaze_frames;
      s.pitch_sum += 0.5 * ((*gaze)[0] + (*gaze)[2]);
      s.yaw_sum += 0.5 * ((*gaze)[1] + (*gaze)[3]);
    }
    const std::array<cv::Point2f, 2> d = shifts(packet);
    std::array<std::optional<cv::Point2f>, 4> found;  // finder: in right, in left, out right, out left
    // For the jitter: in right, in left; the output's in its raised opening; the reference's.
    std::array<std::optional<cv::Point2f>, 6> tracked;
    for (std::size_t side = 0; side < 2; ++side) {
      const std::optional<EvalEye> eye = eval_eye(packet, side);
      if (!eye || !(eye->width() > 4)) continue;
      EyeRecord record;
      record.eye = *eye;
      record.box = turn_region(*eye, static_cast<float>(s.max_turn_px) + 2, kCropMargin) &
                   cv::Rect(0, 0, in.cols, in.rows);
      if (record.box.area() < 16) continue;
      record.in = in(record.box).clone();
      record.out = out(record.box).clone();
      record.shift = d[side];
      record.iris = eye->iris;
      record.pitch_sin = gaze_height(packet, side);
      record.bridge_y = bridge_height(packet);
      found[side] = find_iris(in, *eye);
      found[2 + side] = find_iris(out, *eye);
      // For the jitter, the output's iris inside the output's opening: looked for in the input's,
      // a correctly raised eye jitters 2-3.5 times as much as it moves (its raised lid's edge at
      // the border of the search, EyeJitter.AMeasureInTheInputsOpeningMakesAPerfectRaiseJitter).
      tracked[side] = found[side];
      tracked[2 + side] = find_iris(out, corrected_eye(*eye, d[side]));
      tracked[4 + side] = find_iris(turn_eye(in, *eye, d[side].dot(eye->down())),
                                    corrected_eye(*eye, d[side]));
      record.found_in = tracked[side];
      record.found_out = tracked[2 + side];
      if (const Scalars* gaze = field<Scalars>(packet, "gaze");
          gaze != nullptr && gaze->size() == 5) {
        record.gaze = std::make_pair(static_cast<float>((*gaze)[2 * side]),
                                     static_cast<float>((*gaze)[2 * side + 1]));
      }
      const cv::Point2f offset(static_cast<float>(-record.box.x), static_cast<float>(-record.box.y));
      const EvalEye local = eye->moved_by(offset);
      // Measured once here, compared with every turned run's.
      record.finder_in = find_iris(record.in, local);
      record.finder_out = find_iris(record.out, corrected_eye(local, d[side]));
      const float asked = static_cast<float>(cv::norm(d[side]));
      if (asked > 0.25f) {
        const cv::Point2f direction = d[side] * (1.0f / asked);
        // The iris's pixels in the output, where the pipeline put them, found in the input.
        if (const auto moved = measure_iris_translation(record.out, record.in, local,
                                                        eye->iris + d[side] + offset,
                                                        eye->iris_radius, d[side], asked + 2)) {
          s.asked_sum += asked;
          s.delivered_sum += moved->dot(direction);
          ++s.asked_eyes;
        }
        if (found[side] && found[2 + side]) {
          s.finder_delivered_sum += (*found[2 + side] - *found[side]).dot(direction) / asked;
          ++s.finder_asked_eyes;
        }
      }
      frame.eyes[side] = std::move(record);
    }
    if (s.previous && s.previous->first + 1 == packet.seq) {
      for (std::size_t side = 0; side < 2; ++side) {
        const auto& before = s.previous->second;
        if (tracked[side] && tracked[2 + side] && tracked[4 + side] && before[side] &&
            before[2 + side] && before[4 + side]) {
          s.jitter_in += cv::norm(*tracked[side] - *before[side]);
          s.jitter_out += cv::norm(*tracked[2 + side] - *before[2 + side]);
          s.jitter_reference += cv::norm(*tracked[4 + side] - *before[4 + side]);
          ++s.jitter_steps;
        }
      }
    }
    s.previous = std::make_pair(packet.seq, tracked);
  }

  void record_turned(const Packet& packet) {
    auto it = state_->frames.find(packet.seq);
    if (it == state_->frames.end()) return;
    FrameRecord& frame = it->second;
    const double* strength = field<double>(packet, "gaze_strength");
    frame.turned_strength = strength != nullptr ? *strength : 0.0;
    const std::string* reason = field<std::string>(packet, "gaze_reason");
    frame.turned_reason = reason != nullptr ? *reason : "";
    const cv::Mat out = vision::to_mat(packet.get<Image>("frame"));
    const std::array<cv::Point2f, 2> d = shifts(packet);
    const Points* iris = field<Points>(packet, "iris");
    const Points* landmarks = field<Points>(packet, "landmarks");
    for (std::size_t side = 0; side < 2; ++side) {
      if (!frame.eyes[side]) continue;
      EyeRecord& eye = *frame.eyes[side];
      eye.turned_out = out(eye.box).clone();
      eye.turned_shift = d[side];
      eye.turned_iris.reset();
      if (iris != nullptr && iris->size() == 10) eye.turned_iris = at(*iris, side * 5);
      eye.turned_corners.reset();
      if (landmarks != nullptr && landmarks->size() == 68) {
        eye.turned_corners = 0.5f * (at(*landmarks, side == 0 ? 36 : 42) + at(*landmarks, side == 0 ? 39 : 45));
      }
      eye.turned_pitch_sin = gaze_height(packet, side);
      eye.turned_bridge_y = bridge_height(packet);
    }
  }

  // Gradient energy over the mask's transition band, widened by a pixel each side.
  void seam(const cv::Mat& in, const cv::Mat& out, const cv::Mat& mask) {
    const cv::Rect support = cv::boundingRect(mask > 0);
    if (support.empty()) return;
    const cv::Rect box = cv::Rect(support.x - 2, support.y - 2, support.width + 4, support.height + 4) &
                         cv::Rect(0, 0, mask.cols, mask.rows);
    const cv::Mat m = mask(box);
    const cv::Mat kernel = cv::getStructuringElement(cv::MORPH_RECT, {3, 3});
    cv::Mat grown, core;
    cv::dilate(m > 0, grown, kernel);
    cv::erode(m == 255, core, kernel);
    cv::Mat band;
    cv::Mat(grown & ~core).convertTo(band, CV_32F, 1.0 / 255);
    state_->edge_in += cv::sum(gradient_magnitude(in(box)).mul(band))[0];
    state_->edge_out += cv::sum(gradient_magnitude(out(box)).mul(band))[0];
  }

  std::shared_ptr<EvalState> state_;
  cv::VideoCapture capture_;     // decoded only in the unturned run, which compares its input
  const std::uint64_t start_;    // the video's frame that is packet 0
  std::uint64_t decoded_ = 0;
};

// Records the iris model's own iris centres (measured or carried), before any refinement.
class IrisTap final : public Stage {
 public:
  explicit IrisTap(std::shared_ptr<EvalState> state) : state_(std::move(state)) {}
  void process(Packet packet, std::vector<Packet>& /*out*/) override {
    const Points* iris = field<Points>(packet, "iris");
    if (iris == nullptr || iris->size() != 10) return;
    std::lock_guard lock(state_->mutex);
    state_->model_iris[packet.seq] = {at(*iris, 0), at(*iris, 5)};
  }

 private:
  std::shared_ptr<EvalState> state_;
};

// The video with every eye turned down by radius x sin(angle), where the unturned run found it.
class TurnedVideo final : public Source {
 public:
  TurnedVideo(std::shared_ptr<EvalState> state, const std::string& video, std::uint64_t start,
              std::uint64_t frames)
      : state_(std::move(state)), capture_(opened(video)), limit_(frames) {
    pass_over(capture_, start, start);
    // The video's own rate, as video.source gives it, so that the turned runs' videos play as
    // long as the plain one.
    const double fps = capture_.get(cv::CAP_PROP_FPS);
    if (std::isfinite(fps) && fps > 0 && fps <= 1000) fps_ = fps;
  }

  bool next(std::vector<Packet>& out) override {
    if (limit_ > 0 && seq_ >= limit_) return false;
    cv::Mat frame;
    if (!capture_.read(frame)) return false;
    if (frame.channels() == 1) cv::cvtColor(frame, frame, cv::COLOR_GRAY2BGR);
    {
      std::lock_guard lock(state_->mutex);
      auto it = state_->frames.find(seq_);
      if (it != state_->frames.end()) {
        const double angle = state_->angle_deg * std::numbers::pi / 180;
        const std::uint64_t period = state_->step_period;
        const bool down = period == 0 || (seq_ / period) % 2 == 1;
        for (std::optional<EyeRecord>& eye : it->second.eyes) {
          if (!eye) continue;
          eye->turn_px = down ? kEyeballRadius * eye->eye.width() * std::sin(angle) : 0.0;
          if (down) frame = turn_eye(frame, eye->eye, static_cast<float>(eye->turn_px));
        }
        for (std::optional<EyeRecord>& eye : it->second.eyes) {
          if (eye) eye->turned_in = frame(eye->box).clone();
        }
      }
    }
    Packet packet;
    packet.stream = 0;
    packet.seq = seq_;
    packet.time_ns = static_cast<std::int64_t>(static_cast<double>(seq_) * 1e9 / fps_);
    packet.set("frame", vision::to_image(frame));
    packet.set("fps", fps_);
    out.push_back(std::move(packet));
    ++seq_;
    return true;
  }

 private:
  std::shared_ptr<EvalState> state_;
  cv::VideoCapture capture_;
  std::uint64_t limit_;
  std::uint64_t seq_ = 0;
  double fps_ = 25;  // when the video reports none, as video.source
};

void add_eval_types(Registry& registry, const std::shared_ptr<EvalState>& state, const fs::path& video,
                    std::uint64_t start) {
  StageType probe;
  probe.name = kProbeType;
  probe.help = "compares each output frame with the input (micromodels eval eye_contact)";
  probe.info = [](const Params&) { return StageInfo{.reads = {"frame"}, .reads_all = true}; };
  probe.make = [state, video, start](const Params&) -> std::unique_ptr<Stage> {
    return std::make_unique<Probe>(state, video, start);
  };
  registry.add(std::move(probe));
  StageType tap;
  tap.name = kTapType;
  tap.help = "records the iris model's iris (micromodels eval eye_contact)";
  tap.info = [](const Params&) { return StageInfo{.reads = {}, .optional_reads = {"iris"}}; };
  tap.make = [state](const Params&) -> std::unique_ptr<Stage> { return std::make_unique<IrisTap>(state); };
  registry.add(std::move(tap));
  StageType turned;
  turned.name = kTurnedSourceType;
  turned.help = "the video with its eyes turned down by a known angle (micromodels eval eye_contact)";
  turned.params = {{"path", ParamType::text, std::nullopt, "the video"},
                   {"start", ParamType::integer, std::int64_t{0}, "first frame"},
                   {"max_frames", ParamType::integer, std::int64_t{0}, "frames from the start; 0: all"}};
  turned.info = [](const Params&) { return StageInfo{.reads = {}, .writes = {"frame", "fps"}}; };
  turned.make_source = [state](const Params& params) -> std::unique_ptr<Source> {
    return std::make_unique<TurnedVideo>(state, params.text("path"),
                                         static_cast<std::uint64_t>(params.integer("start")),
                                         static_cast<std::uint64_t>(params.integer("max_frames")));
  };
  registry.add(std::move(turned));
}

// The pipeline with the probes added: after `substitute`, and where the iris model's points are
// complete: after the stage of type eye.iris_carry (which fills in the frames between key
// frames), else after the one of type eye.iris.
Pipeline probed(Pipeline pipeline) {
  StageConfig probe;
  probe.name = "eval_probe";
  probe.type = kProbeType;
  probe.ordered = true;  // consecutive frames for the jitter, and one decoder read ahead
  probe.inputs = {"substitute"};
  pipeline.add(probe);
  std::string tapped;
  for (const StageConfig& stage : pipeline.stages()) {
    if (stage.type == "eye.iris_carry" || (stage.type == "eye.iris" && tapped.empty())) {
      tapped = stage.name;
    }
  }
  if (!tapped.empty()) {
    StageConfig tap;
    tap.name = "eval_iris_tap";
    tap.type = kTapType;
    tap.inputs = {tapped};
    pipeline.add(tap);
  }
  return pipeline;
}

MetricsSnapshot run(const Pipeline& pipeline, const Registry& registry) {
  Runner runner(pipeline, registry);
  runner.start();
  runner.wait();
  return runner.metrics();
}

std::uint64_t processed_by(const MetricsSnapshot& metrics, const std::string& stage) {
  const StageMetrics* found = metrics.stage(stage);
  return found == nullptr ? 0 : found->processed;
}

// A picture of what was measured: for a few eyes spread over the video, enlarged, the input, the
// output, the turned input and the turned output, one column each.
void write_eye_sheet(const EvalState& s, const fs::path& path) {
  std::vector<const EyeRecord*> eyes;
  for (const auto& [seq, frame] : s.frames) {
    if (frame.strength < 0.999 || !frame.eyes[0] || frame.eyes[0]->turned_out.empty()) continue;
    eyes.push_back(&*frame.eyes[0]);
  }
  constexpr std::size_t kColumns = 8;
  constexpr int kScale = 6;
  if (eyes.empty()) return;
  std::vector<cv::Mat> columns;
  for (std::size_t i = 0; i < std::min(kColumns, eyes.size()); ++i) {
    const EyeRecord& e = *eyes[i * eyes.size() / std::min(kColumns, eyes.size())];
    std::vector<cv::Mat> tiles;
    for (const cv::Mat* image : {&e.in, &e.out, &e.turned_in, &e.turned_out}) {
      cv::Mat big;
      cv::resize(*image, big, cv::Size(), kScale, kScale, cv::INTER_CUBIC);
      cv::copyMakeBorder(big, big, 0, 2, 0, 2, cv::BORDER_CONSTANT, cv::Scalar(0, 0, 0));
      tiles.push_back(big);
    }
    cv::Mat column;
    cv::vconcat(tiles, column);
    if (!columns.empty() && column.rows != columns.front().rows) {
      cv::resize(column, column, cv::Size(column.cols * columns.front().rows / column.rows, columns.front().rows));
    }
    columns.push_back(column);
  }
  cv::Mat sheet;
  cv::hconcat(columns, sheet);
  (void)cv::imwrite(path.string(), sheet);
}

// A CSV cell: three decimals, or empty for a value that is not there.
std::string cell(std::optional<double> value) {
  if (!value) return {};
  std::array<char, 32> text{};
  (void)std::snprintf(text.data(), text.size(), "%.3f", *value);
  return text.data();
}

// Writes `header` and `rows` (cells joined by commas) as a CSV file.
void write_table(const fs::path& path, const std::string& header,
                 const std::vector<std::vector<std::string>>& rows) {
  std::ofstream table(path);
  table << header << "\n";
  for (const std::vector<std::string>& row : rows) {
    for (std::size_t i = 0; i < row.size(); ++i) table << (i == 0 ? "" : ",") << row[i];
    table << "\n";
  }
  if (!table.flush()) throw std::runtime_error("eval: cannot write '" + path.string() + "'");
}

// The unturned run, one row per eye and frame: what each measure saw, to follow a figure back to
// the frames that make it (docs/eye-contact.md, "The eval"). Frame pixels; an empty cell is a
// value the frame did not have.
void write_frame_table(const EvalState& s, const fs::path& path) {
  const auto mean_y = [](const std::vector<cv::Point2f>& points) -> std::optional<double> {
    if (points.empty()) return std::nullopt;
    double sum = 0;
    for (const cv::Point2f& p : points) sum += p.y;
    return sum / static_cast<double>(points.size());
  };
  const auto x = [](const std::optional<cv::Point2f>& p) -> std::optional<double> {
    return p ? std::optional<double>(p->x) : std::nullopt;
  };
  const auto y = [](const std::optional<cv::Point2f>& p) -> std::optional<double> {
    return p ? std::optional<double>(p->y) : std::nullopt;
  };
  std::vector<std::vector<std::string>> rows;
  for (const auto& [seq, frame] : s.frames) {
    for (std::size_t side = 0; side < 2; ++side) {
      if (!frame.eyes[side]) continue;
      const EyeRecord& e = *frame.eyes[side];
      rows.push_back(
          {std::to_string(seq), side == 0 ? "right" : "left", cell(frame.strength), frame.reason,
           cell(e.gaze ? std::optional<double>(e.gaze->first) : std::nullopt),
           cell(e.gaze ? std::optional<double>(e.gaze->second) : std::nullopt), cell(e.eye.width()),
           cell(0.5 * (e.eye.corner_a.y + e.eye.corner_b.y)), cell(mean_y(e.eye.upper_lid)),
           cell(mean_y(e.eye.lower_lid)), cell(y(e.model_iris)), cell(e.eye.iris.x),
           cell(e.eye.iris.y), cell(x(e.found_in)), cell(y(e.found_in)), cell(x(e.found_out)),
           cell(y(e.found_out)), cell(e.shift.x), cell(e.shift.y)});
    }
  }
  write_table(
      path,
      "seq,eye,gaze_strength,gaze_reason,pitch_deg,yaw_deg,eye_width_px,corners_y,upper_lid_y,"
      "lower_lid_y,iris_model_y,iris_x,iris_y,finder_in_x,finder_in_y,finder_out_x,finder_out_y,"
      "shift_x,shift_y",
      rows);
}

// One turned run's figures, from the medians over the eyes of every frame that the plain run
// corrected fully; `table` gets each eye's own values, the medians' inputs (pixels, down +).
TurnedEval summarise_turn(EvalState& s, double angle, const fs::path& table) {
  TurnedEval t;
  t.angle_deg = angle;
  std::vector<double> known, in, residual, residual_ungated, sideways, finder_in, finder_out, model_gain, refined_gain,
      corner_gain, bridge_gain, gaze_gain, requested, outward;
  std::uint64_t gated = 0;
  std::vector<std::vector<std::string>> rows;
  for (auto& [seq, frame] : s.frames) {
    if (frame.strength < 0.999 || frame.turned_strength < 0) continue;
    if (frame.turned_strength < 0.999) {
      ++gated;
      ++t.gated_reasons[frame.turned_reason];
    }
    for (std::size_t side = 0; side < 2; ++side) {
      std::optional<EyeRecord>& eye = frame.eyes[side];
      if (!eye || eye->turned_in.empty() || eye->turned_out.empty() || !(eye->turn_px > 0)) continue;
      ++t.eyes;
      std::vector<std::optional<double>> row(9);  // turn_in ... shift, as the header below
      const cv::Point2f offset(static_cast<float>(-eye->box.x), static_cast<float>(-eye->box.y));
      const EvalEye local = eye->eye.moved_by(offset);
      const auto range = static_cast<float>(std::max(1.0, 1.5 * eye->turn_px));
      known.push_back(eye->turn_px);
      if (const auto m = measure_turn(eye->turned_in, eye->in, local, range)) {
        in.push_back(*(row[0] = *m));
      }
      const EvalEye corrected = corrected_eye(local, eye->shift);
      if (const auto m = measure_turn(eye->turned_out, eye->out, corrected, range)) {
        residual.push_back(*(row[1] = *m));
        if (frame.turned_strength >= 0.999) residual_ungated.push_back(*m);
      }
      if (const auto m = measure_iris_translation(eye->turned_out, eye->out, corrected, corrected.iris,
                                                  corrected.iris_radius, {0, 0}, range)) {
        sideways.push_back(std::abs(*(row[2] = m->x)) / eye->eye.width());
        // Signed: positive away from the eye's middle, toward the side the iris sits on.
        const cv::Point2f middle = 0.5f * (eye->eye.corner_a + eye->eye.corner_b);
        outward.push_back((eye->eye.iris.x >= middle.x ? m->x : -m->x) / eye->eye.width());
      }
      const auto fti = find_iris(eye->turned_in, local), fto = find_iris(eye->turned_out, corrected);
      if (eye->finder_in && fti) finder_in.push_back(*(row[3] = fti->y - eye->finder_in->y));
      if (eye->finder_out && fto) finder_out.push_back(*(row[4] = fto->y - eye->finder_out->y));
      if (eye->model_iris && eye->turned_model_iris) {
        model_gain.push_back(*(row[5] = eye->turned_model_iris->y - eye->model_iris->y) /
                             eye->turn_px);
      }
      if (eye->iris && eye->turned_iris) {
        refined_gain.push_back(*(row[6] = eye->turned_iris->y - eye->iris->y) / eye->turn_px);
      }
      if (eye->turned_corners) {
        const cv::Point2f corners = 0.5f * (eye->eye.corner_a + eye->eye.corner_b);
        corner_gain.push_back(*(row[7] = eye->turned_corners->y - corners.y) / eye->turn_px);
      }
      if (eye->bridge_y && eye->turned_bridge_y) {
        bridge_gain.push_back((*eye->turned_bridge_y - *eye->bridge_y) / eye->turn_px);
      }
      if (eye->pitch_sin && eye->turned_pitch_sin) {
        gaze_gain.push_back((*eye->pitch_sin - *eye->turned_pitch_sin) / eye->turn_px);
      }
      requested.push_back(-*(row[8] = eye->turned_shift.y - eye->shift.y) / eye->turn_px);
      std::vector<std::string> cells{std::to_string(seq), side == 0 ? "right" : "left",
                                     cell(frame.turned_strength), frame.turned_reason,
                                     cell(eye->turn_px)};
      for (const std::optional<double>& value : row) cells.push_back(cell(value));
      rows.push_back(std::move(cells));
    }
  }
  write_table(
      table,
      "seq,eye,gaze_strength,gaze_reason,turn_px,turn_in_px,turn_left_px,sideways_px,finder_in_px,"
      "finder_out_px,iris_model_px,iris_px,corners_px,shift_px",
      rows);
  t.shift_px = median(known);
  t.turned_gated = ratio(static_cast<double>(gated), static_cast<double>(t.eyes) / 2);
  t.measured_in_px = median(in);
  t.residual_px = median(residual);
  t.recovery = 1 - ratio(t.residual_px, t.measured_in_px);
  t.recovery_ungated = 1 - ratio(median(residual_ungated), t.measured_in_px);
  t.sideways_drift = median(sideways);
  t.sideways_outward = median(outward);
  t.finder_in_px = median(finder_in);
  t.finder_out_px = median(finder_out);
  t.finder_recovery = 1 - ratio(t.finder_out_px, t.finder_in_px);
  t.model_iris_gain = median(model_gain);
  t.refined_iris_gain = median(refined_gain);
  t.corner_gain = median(corner_gain);
  t.bridge_gain = median(bridge_gain);
  t.gaze_gain = median(gaze_gain);
  t.requested_gain = median(requested);
  return t;
}

// The step run: per frame since the eyes went down, the share of the turn taken back (as
// summarise_turn's recovery, over the eyes of that frame of every period down), and per frame
// since they came back up, the turn the output still shows against the unturned run's. `table`
// gets a row per eye and frame.
StepEval summarise_step(EvalState& s, double angle, std::uint64_t period, const fs::path& table) {
  StepEval t;
  t.angle_deg = angle;
  t.period_frames = period;
  std::vector<std::vector<double>> in(period), residual(period), release(period);
  std::vector<std::vector<double>> in_ungated(period), residual_ungated(period);
  std::set<std::uint64_t> looks;           // the periods down that were measured
  std::map<std::uint64_t, std::string> faded;  // period down -> the first fade's reason
  std::vector<std::vector<std::string>> rows;
  for (auto& [seq, frame] : s.frames) {
    if (frame.strength < 0.999 || frame.turned_strength < 0 || seq < period) continue;
    const std::uint64_t k = seq % period;
    const bool down = (seq / period) % 2 == 1;
    const bool ungated = frame.turned_strength >= 0.999;
    if (down && !ungated) faded.emplace(seq / period, frame.turned_reason);
    for (std::size_t side = 0; side < 2; ++side) {
      std::optional<EyeRecord>& eye = frame.eyes[side];
      if (!eye || eye->turned_in.empty() || eye->turned_out.empty()) continue;
      const double known = kEyeballRadius * eye->eye.width() * std::sin(angle * std::numbers::pi / 180);
      const auto range = static_cast<float>(std::max(1.0, 1.5 * known));
      const cv::Point2f offset(static_cast<float>(-eye->box.x), static_cast<float>(-eye->box.y));
      const EvalEye local = eye->eye.moved_by(offset);
      const std::optional<float> left =
          measure_turn(eye->turned_out, eye->out, corrected_eye(local, eye->shift), range);
      std::optional<double> iris_px;
      if (eye->iris && eye->turned_iris) iris_px = eye->turned_iris->y - eye->iris->y;
      rows.push_back({std::to_string(seq), side == 0 ? "right" : "left", down ? "down" : "up",
                      std::to_string(k), cell(frame.turned_strength), frame.turned_reason,
                      cell(down ? known : 0.0), cell(iris_px),
                      cell(eye->turned_shift.y - eye->shift.y),
                      cell(left ? std::optional<double>(*left) : std::nullopt)});
      if (!left) continue;
      if (!down) {
        release[k].push_back(*left / known);
      } else if (const auto m = measure_turn(eye->turned_in, eye->in, local, range)) {
        in[k].push_back(*m);
        residual[k].push_back(*left);
        if (ungated) {
          in_ungated[k].push_back(*m);
          residual_ungated[k].push_back(*left);
        }
        looks.insert(seq / period);
      }
    }
  }
  write_table(table,
              "seq,eye,phase,frame_in_phase,gaze_strength,gaze_reason,turn_px,iris_px,shift_px,"
              "turn_left_px",
              rows);
  t.steps = looks.size();
  for (const auto& [look, reason] : faded) {
    if (looks.contains(look)) ++t.faded_looks[reason];
  }
  std::vector<double> later, later_ungated;
  for (std::uint64_t k = 0; k < period; ++k) {
    t.recovery.push_back(1 - ratio(median(residual[k]), median(in[k])));
    t.release.push_back(median(release[k]));
    if (2 * k >= period) {
      later.push_back(t.recovery.back());
      if (!in_ungated[k].empty()) {
        later_ungated.push_back(1 - ratio(median(residual_ungated[k]), median(in_ungated[k])));
      }
    }
  }
  t.steady = median(later);
  t.steady_ungated = median(later_ungated);
  for (std::uint64_t k = 0; k < period && t.steady > 0; ++k) {
    if (t.recovery[k] >= 0.5 * t.steady) {
      t.lag_frames = static_cast<double>(k);
      break;
    }
  }
  return t;
}

}  // namespace

EyeContactEval evaluate_eye_contact(const fs::path& video, const EyeContactEvalOptions& options,
                                    const fs::path& out_dir) {
  ensure_vision_stages();
  Pipeline pipeline = Pipeline::from_yaml_file(
      options.pipeline.empty() ? find_repo_file("pipelines/eye_contact.yaml") : fs::path(options.pipeline));
  fs::create_directories(out_dir);
  EyeContactEval result;
  result.video = video.string();
  result.output_video = retarget_pipeline(pipeline, video, options.frames, out_dir, "sink", options.start);

  auto state = std::make_shared<EvalState>();
  double max_angle = options.angles.empty() ? 0 : *std::max_element(options.angles.begin(), options.angles.end());
  if (options.step_period > 0) max_angle = std::max(max_angle, kStepAngle);
  // Crops are cut with room for the largest turn of the largest eye (about 45 px at 720p).
  state->max_turn_px = kEyeballRadius * 60 * std::sin(max_angle * std::numbers::pi / 180);
  Registry registry = Registry::global();
  add_eval_types(registry, state, video, options.start);
  const OpenCvThreads threads(1);  // the pipeline's parallelism is its stages
  const auto start = std::chrono::steady_clock::now();

  const MetricsSnapshot metrics = run(probed(pipeline), registry);
  const auto attach_model_iris = [&](bool turned) {
    std::lock_guard lock(state->mutex);
    for (const auto& [seq, iris] : std::exchange(state->model_iris, {})) {
      auto it = state->frames.find(seq);
      if (it == state->frames.end()) continue;
      for (std::size_t side = 0; side < 2; ++side) {
        if (!it->second.eyes[side]) continue;
        (turned ? it->second.eyes[side]->turned_model_iris : it->second.eyes[side]->model_iris) = iris[side];
      }
    }
  };
  attach_model_iris(false);
  {
    std::lock_guard lock(state->mutex);
    write_frame_table(*state, out_dir / "frames.csv");
  }
  result.frames_in = std::max(processed_by(metrics, "source"), metrics.packets_in);
  result.frames_out = processed_by(metrics, "sink");

  // A run of the turned source: the eyes down by `angle`, in every other `period` frames (0: all).
  const auto run_turned = [&](const std::string& tag, double angle, std::uint64_t period) {
    Pipeline turned = pipeline;
    (void)retarget_pipeline(turned, video, options.frames, out_dir / tag, "sink", options.start);
    turned.set_type("source", kTurnedSourceType);
    {
      std::lock_guard lock(state->mutex);
      state->turned = true;
      state->angle_deg = angle;
      state->step_period = period;
      for (auto& [seq, frame] : state->frames) frame.turned_strength = -1;
    }
    (void)run(probed(turned), registry);
  };
  for (const double angle : options.angles) {
    const std::string tag = "down" + std::to_string(static_cast<int>(std::lround(angle))) + "deg";
    run_turned(tag, angle, 0);
    attach_model_iris(true);
    std::lock_guard lock(state->mutex);
    result.turned.push_back(summarise_turn(*state, angle, out_dir / tag / "frames.csv"));
    write_eye_sheet(*state, out_dir / tag / "eyes.png");
  }
  // A look down needs a period up before it and a full period down: twice the period at least.
  if (options.step_period > 0 && (options.frames == 0 || options.frames >= 2 * options.step_period)) {
    run_turned("step", kStepAngle, options.step_period);
    std::lock_guard lock(state->mutex);
    result.step = summarise_step(*state, kStepAngle, options.step_period, out_dir / "step" / "frames.csv");
  }
  result.wall_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();

  std::lock_guard lock(state->mutex);
  const EvalState& s = *state;
  result.frames_checked = s.checked - s.failures;
  result.probe_failures = s.failures;
  result.frames_with_face = s.with_face;
  result.frames_corrected = s.corrected;
  result.face_share = ratio(static_cast<double>(s.with_face), static_cast<double>(s.checked));
  result.corrected_share = ratio(static_cast<double>(s.corrected), static_cast<double>(s.checked));
  result.mean_gaze_strength = ratio(s.strength_sum, static_cast<double>(s.with_face));
  result.reasons = s.reasons;
  result.mean_pitch_deg = ratio(s.pitch_sum, static_cast<double>(s.gaze_frames));
  result.mean_yaw_deg = ratio(s.yaw_sum, static_cast<double>(s.gaze_frames));
  result.asked_px = ratio(s.asked_sum, static_cast<double>(s.asked_eyes));
  result.delivered_ratio = ratio(s.delivered_sum, s.asked_sum);
  result.finder_delivered_ratio = ratio(s.finder_delivered_sum, static_cast<double>(s.finder_asked_eyes));
  result.max_pixel_change_outside_masks = s.max_outside;
  result.frames_changed_outside_masks = s.frames_outside;
  result.max_pixel_change_inside_masks = s.max_inside;
  result.input_frame_mismatches = s.input_mismatches;
  result.iris_jitter_in_px = ratio(s.jitter_in, static_cast<double>(s.jitter_steps));
  result.iris_jitter_out_px = ratio(s.jitter_out, static_cast<double>(s.jitter_steps));
  result.iris_jitter_ratio = ratio(result.iris_jitter_out_px, result.iris_jitter_in_px);
  result.iris_jitter_reference_px = ratio(s.jitter_reference, static_cast<double>(s.jitter_steps));
  result.iris_jitter_reference_ratio =
      ratio(result.iris_jitter_reference_px, result.iris_jitter_in_px);
  result.seam_energy_ratio = ratio(s.edge_out, s.edge_in);
  return result;
}

}  // namespace micromodels::bench
