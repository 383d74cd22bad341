// `face.track`: follows the primary face between key frames with a cheap tracker, so that the
// face detector only has to run every Nth frame. On a key frame (field `faces` present) it
// adopts a detection; in between it matches a small gray template of the face in a window
// around its last position; when the match gets poor or the face leaves the frame it runs its
// own detector on that frame ("asks for re-detection").
//
// Why template matching and not cv::TrackerMIL (in Debian's OpenCV 4.6, module video): MIL
// costs several milliseconds a frame and reports only found / not found, while a normalised
// cross-correlation of a ~32 px template costs a fraction of a millisecond and its peak is a
// confidence we can threshold and publish.
#include <algorithm>
#include <cmath>
#include <filesystem>
#include <map>
#include <memory>
#include <mutex>
#include <optional>

#include <opencv2/imgproc.hpp>
#include <spdlog/spdlog.h>

#include "image_mat.hpp"
#include "model_pool.hpp"
#include "stage_registration.hpp"
#include "vision/models/blaze_face.hpp"
#include "vision/models/hog_face_detector.hpp"
#include "vision/models/image_utils.hpp"
#include "vision/models/model_files.hpp"

namespace micromodels::vision {

namespace {

// The template's longer side in pixels: big enough to lock onto eyes, nose and mouth, small
// enough that matching is far cheaper than any detector.
constexpr double kTemplateSide = 32.0;
// The template is the face box shrunk by this fraction on each side, so that the background
// around the face (which does not move with it) weighs little in the match.
constexpr double kTemplateInset = 0.1;
// A scale change is taken only when it beats the unchanged size by this much correlation:
// without the margin, noise makes the box breathe.
constexpr double kScaleStep = 1.06;
constexpr double kScaleMargin = 0.02;
// Below this standard deviation (gray levels) a template has no structure to match.
constexpr double kMinTemplateStddev = 2.0;
// Frames smaller than this are not searched for faces (the detectors' own minimum).
constexpr int kMinFrameSide = 8;
// Overlap needed for a detection to count as the tracked face rather than another one.
constexpr float kSameFaceIou = 0.05f;

float iou(const cv::Rect2f& a, const cv::Rect2f& b) {
  const float inter = (a & b).area();
  const float uni = a.area() + b.area() - inter;
  return uni > 0 ? inter / uni : 0.0f;
}

// Sub-pixel peak offset along one axis from three samples around the maximum (a parabola).
double parabola_peak(double left, double centre, double right) {
  const double denominator = left - 2 * centre + right;
  if (std::abs(denominator) < 1e-9) return 0;
  return std::clamp(0.5 * (left - right) / denominator, -0.5, 0.5);
}

struct StreamTrack {
  bool active = false;
  bool seen = false;
  std::uint64_t last_seq = 0;
  cv::Rect2f box;                  // frame pixels
  cv::Mat templ;                   // gray, downscaled
  double templ_scale = 1;          // template pixels per frame pixel
  cv::Point2d templ_offset{0, 0};  // the template's top-left minus the box's, frame pixels
  double confidence = 0;
  std::int64_t redetections = 0;
  std::optional<std::uint64_t> last_attempt;  // seq of the last own detection
};

struct StreamSlot {
  std::mutex mutex;  // a misconfigured pipeline (no per_stream) must still not race
  StreamTrack track;
};

struct MatchResult {
  cv::Rect2f box;
  double score = 0;
};

// The params, checked; a ParamError names the key, so a pipeline file reports its line.
void check_params(const Params& params) {
  const std::string& detector = params.text("detector");
  if (detector != "blazeface" && detector != "hog" && detector != "none") {
    throw ParamError("detector",
                     "param 'detector': expected blazeface, hog or none, got '" + detector + "'");
  }
}

class FaceTrack final : public Stage {
 public:
  explicit FaceTrack(const Params& params)
      : min_confidence_(params.number("min_confidence")),
        search_scale_(params.number("search_scale")),
        retry_every_(params.integer("retry_every")),
        detector_name_(params.text("detector")) {
    check_params(params);
    if (detector_name_ == "blazeface") {
      std::filesystem::path path = params.text("path");
      if (path.empty()) path = models_dir() / BlazeFace::model_file(BlazeFace::Variant::front);
      blaze_ = std::make_unique<ModelPool<BlazeFace>>(
          [path] { return std::make_unique<BlazeFace>(path, BlazeFace::Variant::front); });
    } else if (detector_name_ == "hog") {
      hog_ = std::make_unique<ModelPool<HogFaceDetector>>(
          [] { return std::make_unique<HogFaceDetector>(); });
    }
  }

  void process(Packet packet, std::vector<Packet>& out) override {
    const std::shared_ptr<StreamSlot> slot = stream_slot(packet.stream);
    std::lock_guard lock(slot->mutex);
    StreamTrack* track = &slot->track;
    if (track->seen && packet.seq <= track->last_seq) {
      // The stream started over (or packets came out of order: state was not per_stream).
      *track = StreamTrack{};
    }
    track->seen = true;
    track->last_seq = packet.seq;

    const cv::Mat frame = to_mat(packet.get<Image>("frame"));
    if (const Value* faces = packet.find("faces"); faces != nullptr) {
      const auto* rects = std::get_if<Rects>(faces);
      if (rects == nullptr) throw FieldError("field 'faces' must hold rects");
      adopt(*track, frame, to_boxes(*rects));
    } else if (track->active) {
      follow(*track, frame, packet.seq);
    } else if (retry_every_ > 0 && has_detector() &&
               (!track->last_attempt ||
                packet.seq - *track->last_attempt >= static_cast<std::uint64_t>(retry_every_))) {
      redetect(*track, frame, packet.seq);
    }

    Rects face;
    if (track->active) {
      face.push_back({track->box.x, track->box.y, track->box.width, track->box.height,
                      static_cast<float>(track->confidence)});
    }
    packet.set("face", std::move(face));
    packet.set("track_confidence", track->active ? track->confidence : 0.0);
    packet.set("track_redetections", track->redetections);
    out.push_back(std::move(packet));
  }

  void forget_stream(std::uint32_t stream) override {
    std::lock_guard lock(streams_mutex_);
    streams_.erase(stream);
  }

 private:
  [[nodiscard]] bool has_detector() const { return blaze_ || hog_; }

  // The slot of `stream`, created on first sight. The map lock is held only for the lookup:
  // streams served by different consumers then track in parallel.
  std::shared_ptr<StreamSlot> stream_slot(std::uint32_t stream) {
    std::lock_guard lock(streams_mutex_);
    std::shared_ptr<StreamSlot>& slot = streams_[stream];
    if (!slot) slot = std::make_shared<StreamSlot>();
    return slot;
  }

  static std::vector<cv::Rect2f> to_boxes(const Rects& rects) {
    std::vector<cv::Rect2f> boxes;
    for (const Rect& r : rects) {
      if (r.width > 0 && r.height > 0 && std::isfinite(r.x) && std::isfinite(r.y) &&
          std::isfinite(r.width) && std::isfinite(r.height)) {
        boxes.emplace_back(r.x, r.y, r.width, r.height);
      }
    }
    return boxes;
  }

  // A detection (key frame or our own): the one overlapping the current track best, else the
  // largest. No detection drops the track: on a key frame the detector is the authority.
  static void adopt(StreamTrack& track, const cv::Mat& frame,
                    const std::vector<cv::Rect2f>& boxes) {
    if (boxes.empty()) {
      track.active = false;
      track.confidence = 0;
      track.templ.release();
      return;
    }
    const cv::Rect2f* chosen = nullptr;
    if (track.active) {
      float best = kSameFaceIou;
      for (const cv::Rect2f& b : boxes) {
        if (const float o = iou(b, track.box); o > best) {
          best = o;
          chosen = &b;
        }
      }
    }
    if (chosen == nullptr) {
      chosen = &*std::max_element(boxes.begin(), boxes.end(),
                                  [](const auto& a, const auto& b) { return a.area() < b.area(); });
    }
    track.active = true;
    track.box = *chosen;
    track.confidence = 1.0;
    make_template(track, frame);
  }

  // The gray, downscaled centre of the face box; left empty when it has nothing to match.
  static void make_template(StreamTrack& track, const cv::Mat& frame) {
    track.templ.release();
    const cv::Rect2f inner(track.box.x + kTemplateInset * track.box.width,
                           track.box.y + kTemplateInset * track.box.height,
                           (1 - 2 * kTemplateInset) * track.box.width,
                           (1 - 2 * kTemplateInset) * track.box.height);
    const cv::Rect pixels = cv::Rect(inner) & cv::Rect(0, 0, frame.cols, frame.rows);
    if (pixels.width < 4 || pixels.height < 4 || pixels.area() < 0.5 * inner.area()) return;
    // Template and search windows are resized with explicit factors (not target sizes): OpenCV
    // then maps both with exactly that factor, so their pixel grids agree.
    const double scale = std::min(1.0, kTemplateSide / std::max(pixels.width, pixels.height));
    cv::Mat small;
    cv::resize(to_gray8(frame(pixels), "face.track"), small, cv::Size(), scale, scale,
               cv::INTER_AREA);
    cv::Scalar mean, stddev;
    cv::meanStdDev(small, mean, stddev);
    if (small.cols < 3 || small.rows < 3 || stddev[0] < kMinTemplateStddev) return;
    track.templ = small;
    track.templ_scale = scale;
    track.templ_offset = {pixels.x - track.box.x, pixels.y - track.box.y};
  }

  // One normalised cross-correlation search of `templ` in the window; box in frame pixels.
  // `to_frame`: frame pixels per window pixel, per axis.
  // `templ_offset`: the template's top-left minus the box's, frame pixels, at this box size.
  [[nodiscard]] static MatchResult match(const cv::Mat& window, const cv::Point2d& window_origin,
                                         const cv::Point2d& to_frame, const cv::Mat& templ,
                                         const cv::Point2d& templ_offset,
                                         const cv::Size2f& box_size) {
    MatchResult best{.box = {}, .score = -1};
    if (window.cols < templ.cols || window.rows < templ.rows) return best;
    cv::Mat response;
    cv::matchTemplate(window, templ, response, cv::TM_CCOEFF_NORMED);
    double max_value = 0;
    cv::Point at;
    cv::minMaxLoc(response, nullptr, &max_value, nullptr, &at);
    if (!std::isfinite(max_value)) return best;
    cv::Point2d peak(at.x, at.y);
    const auto r = [&](int x, int y) { return static_cast<double>(response.at<float>(y, x)); };
    if (at.x > 0 && at.x + 1 < response.cols) {
      peak.x += parabola_peak(r(at.x - 1, at.y), max_value, r(at.x + 1, at.y));
    }
    if (at.y > 0 && at.y + 1 < response.rows) {
      peak.y += parabola_peak(r(at.x, at.y - 1), max_value, r(at.x, at.y + 1));
    }
    // The template's top-left back in frame pixels, then out to the box's.
    const double x = window_origin.x + peak.x * to_frame.x - templ_offset.x;
    const double y = window_origin.y + peak.y * to_frame.y - templ_offset.y;
    best.box =
        cv::Rect2f(static_cast<float>(x), static_cast<float>(y), box_size.width, box_size.height);
    best.score = max_value;
    return best;
  }

  void follow(StreamTrack& track, const cv::Mat& frame, std::uint64_t seq) {
    const MatchResult found = track_template(track, frame);
    const cv::Rect2f frame_box(0, 0, static_cast<float>(frame.cols),
                               static_cast<float>(frame.rows));
    const bool on_frame =
        found.score >= 0 && (found.box & frame_box).area() >= 0.5f * found.box.area();
    if (on_frame && found.score >= min_confidence_) {
      track.box = found.box;
      track.confidence = std::clamp(found.score, 0.0, 1.0);
      return;
    }
    if (has_detector()) {
      redetect(track, frame, seq);
    } else {
      track.active = false;
      track.confidence = 0;
    }
  }

  [[nodiscard]] MatchResult track_template(const StreamTrack& track, const cv::Mat& frame) const {
    MatchResult none{.box = {}, .score = -1};
    if (track.templ.empty() || frame.cols < kMinFrameSide || frame.rows < kMinFrameSide) {
      return none;
    }
    const cv::Point2f centre(track.box.x + track.box.width / 2, track.box.y + track.box.height / 2);
    const cv::Rect bounds(0, 0, frame.cols, frame.rows);
    // The search window for a box `factor` x the tracked one: the box grown to search_scale x
    // its size around the last centre, clipped to the frame.
    const auto window_for = [&](double factor) {
      const double w = track.box.width * factor * search_scale_;
      const double h = track.box.height * factor * search_scale_;
      return cv::Rect(cv::Rect2d(centre.x - w / 2, centre.y - h / 2, w, h)) & bounds;
    };
    // Gray once, for the largest window; the others are inside it.
    const cv::Rect outer = window_for(kScaleStep);
    if (outer.empty()) return none;
    const cv::Mat gray = to_gray8(frame(outer), "face.track");

    MatchResult best = none;
    double unchanged = -1;
    for (const double factor : {1.0, kScaleStep, 1.0 / kScaleStep}) {
      const cv::Rect window = window_for(factor) & outer;
      // Searching the window shrunk by factor keeps the template pristine (no resampling).
      const double s = track.templ_scale / factor;
      if (window.width * s < track.templ.cols || window.height * s < track.templ.rows) continue;
      cv::Mat small;
      cv::resize(gray(window - outer.tl()), small, cv::Size(), s, s, cv::INTER_AREA);
      const cv::Size2f size(static_cast<float>(track.box.width * factor),
                            static_cast<float>(track.box.height * factor));
      const cv::Point2d to_frame(1 / s, 1 / s);
      const MatchResult m = match(small, cv::Point2d(window.x, window.y), to_frame, track.templ,
                                  track.templ_offset * factor, size);
      if (factor == 1.0) {
        unchanged = m.score;
        best = m;
      } else if (m.score > best.score && m.score > unchanged + kScaleMargin) {
        best = m;
      }
    }
    return best;
  }

  void redetect(StreamTrack& track, const cv::Mat& frame, std::uint64_t seq) {
    track.last_attempt = seq;
    ++track.redetections;
    std::vector<cv::Rect2f> boxes;
    if (frame.cols >= kMinFrameSide && frame.rows >= kMinFrameSide) {
      if (blaze_) {
        for (const auto& d : blaze_->with([&](BlazeFace& m) { return m.detect(frame); })) {
          boxes.push_back(d.box);
        }
      } else if (hog_) {
        for (const auto& d : hog_->with([&](HogFaceDetector& m) { return m.detect(frame); })) {
          boxes.push_back(d.box);
        }
      }
    }
    spdlog::debug("face.track: re-detection at seq {} found {} face(s)", seq, boxes.size());
    adopt(track, frame, boxes);
  }

  double min_confidence_;
  double search_scale_;
  std::int64_t retry_every_;
  std::string detector_name_;
  std::unique_ptr<ModelPool<BlazeFace>> blaze_;
  std::unique_ptr<ModelPool<HogFaceDetector>> hog_;
  std::mutex streams_mutex_;
  std::map<std::uint32_t, std::shared_ptr<StreamSlot>> streams_;
};

}  // namespace

void register_face_track(Registry& registry) {
  registry.add({
      .name = "face.track",
      .help = "Follows the primary face between key frames (template matching) and re-detects "
              "when it is lost. Writes 'face' (0 or 1 rect), 'track_confidence' (0..1) and "
              "'track_redetections' (own detector runs so far in this stream). Run it with "
              "state: per_stream.",
      .params = {{"min_confidence", ParamType::number, 0.5,
                  "template correlation below which the face counts as lost",
                  ParamRange{.low = 0, .high = 1}},
                 {"detector", ParamType::text, std::string("blazeface"),
                  "own detector for re-detection: blazeface, hog, or none (drop the track and "
                  "wait for the next key frame)"},
                 {"path", ParamType::text, std::string(),
                  "BlazeFace ONNX file; empty: the fetched front model"},
                 {"search_scale", ParamType::number, 2.0,
                  "search window around the last position, as a multiple of the face box",
                  ParamRange{.low = 1}},
                 {"retry_every", ParamType::integer, std::int64_t{1},
                  "while no face is tracked, run the own detector every Nth frame (0: never)",
                  ParamRange{.low = 0}}},
      .info =
          [](const Params& params) {
            check_params(params);  // a bad param is a configuration error, at its line
            // `faces`: only key frames carry it (face.detect with every > 1).
            return StageInfo{.reads = {"frame"},
                             .writes = {"face", "track_confidence", "track_redetections"},
                             .optional_reads = {"faces"},
                             .per_stream = true};
          },
      .make = [](const Params& params) -> std::unique_ptr<Stage> {
        return std::make_unique<FaceTrack>(params);
      },
      .make_source = {},
  });
}

}  // namespace micromodels::vision
