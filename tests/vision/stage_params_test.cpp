// A bad param value of a vision stage is a configuration error found by Pipeline::validate (what
// `micromodels inspect` runs), at the param's own line, or naming the --set override that gave it.
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "micromodels/pipeline.hpp"
#include "micromodels/registry.hpp"
#include "micromodels/vision/vision_stages.hpp"

namespace {

namespace mm = micromodels;

struct BadParam {
  std::string type;
  std::string key;
  std::string value;      // as written in YAML and after --set s.key=
  std::string range;      // what the message must say is allowed
  std::string more = "";  // other params the stage needs, after the bad one
};

const std::vector<BadParam> kBadParams = {
    {"gaze.estimate", "hold_deg", "10", "within 0..5"},
    {"gaze.estimate", "average_frames", "0", "1..1000"},
    {"gaze.estimate", "brow_hold", "2", "0..1"},
    {"gaze.estimate", "fade_frames", "0", "at least 1"},
    {"gaze.estimate", "head_yaw_fade_deg", "[25, 20]", "0 <= from < to <= 90"},
    {"gaze.estimate", "smile_fade", "[0.2]", "0 <= from < to <= 2"},
    {"gaze.estimate", "eyeball_radius", "0", "above 0.1 and below 1"},
    {"gaze.estimate", "blink_ratio", "7", "above 0 and below 1"},
    {"gaze.estimate", "min_eye_px", "-5", "at least 0"},
    {"gaze.estimate", "blink_ear", "2", "at least 0 and below 1"},
    {"gaze.estimate", "min_eye_contrast", "-1", "0..255"},
    {"face.track", "min_confidence", "5", "0..1"},
    {"face.track", "search_scale", "0", "at least 1"},
    {"face.track", "retry_every", "-1", "at least 0"},
    {"face.track", "detector", "hogg", "blazeface, hog or none"},
    {"face.detect", "every", "-1", "at least 1"},
    {"face.detect", "model", "blazefase", "blazeface, blazeface_back or hog"},
    {"face.detect", "score_threshold", "3", "0..1"},
    {"face.mesh68", "crop_scale", "5", "1..4"},
    {"face.smooth", "min_cutoff", "-1", "above 0"},
    {"face.smooth", "blink_ear", "-0.1", "at least 0 and below 1"},
    {"eye.iris_schedule", "every", "0", "at least 1"},
    {"eye.refine", "lid_to_iris", "-3", "0..0.5"},
    {"eye.steady", "settle_s", "0", "above 0 and at most 10"},
    {"gaze.redirect", "feather_px", "30", "0..20"},
    {"model.onnx", "layout", "nwhc", "nchw or nhwc", "      path: m.onnx\n"},
    {"model.onnx", "channels", "rbg", "rgb or bgr", "      path: m.onnx\n"},
    {"eye_contact.monolith", "detector", "yolo", "blazeface, blazeface_back or hog"},
    {"video.source", "max_frames", "-5", "at least 0", "      path: in.mp4\n"},
    {"video.source", "start", "-3", "at least 0", "      path: in.mp4\n"},
    {"video.sink", "preset", "fastest", "ultrafast, superfast", "      path: out.mp4\n"},
    {"video.sink", "fps", "-10", "at least 0", "      path: out.mp4\n"},
    {"video.sink", "max_width", "-5", "at least 0", "      path: out.mp4\n"},
};

// A source, then stage `s` of the type; the bad param, when given, on line 10.
std::string yaml_of(const BadParam& bad, bool with_bad_value) {
  return "pipeline: params\n"
         "stages:\n"
         "  - name: source\n"
         "    type: video.source\n"
         "    params:\n"
         "      path: in.mp4\n"
         "  - name: s\n"
         "    type: " +
         bad.type +
         "\n"
         "    params:\n" +
         (with_bad_value ? "      " + bad.key + ": " + bad.value + "\n" : "") + bad.more +
         (with_bad_value || !bad.more.empty() ? "" : "      {}\n");
}

// The message validate gives, or "" when it accepts the pipeline.
std::string validate_error(const mm::Pipeline& pipeline) {
  static const mm::Registry registry = [] {
    mm::Registry r = mm::Registry::with_builtins();
    micromodels::vision::register_stages(r);
    return r;
  }();
  try {
    pipeline.validate(registry);
  } catch (const mm::ConfigError& error) {
    return error.what();
  }
  return "";
}

TEST(StageParams, ABadValueIsAConfigErrorAtItsLineOrItsOverride) {
  for (const BadParam& bad : kBadParams) {
    SCOPED_TRACE(bad.type + " " + bad.key + "=" + bad.value);
    const std::string in_file =
        validate_error(mm::Pipeline::from_yaml_string(yaml_of(bad, true), "bad.yaml"));
    EXPECT_NE(in_file.find("bad.yaml:10:"), std::string::npos) << in_file;
    EXPECT_NE(in_file.find("'" + bad.key + "'"), std::string::npos) << in_file;
    EXPECT_NE(in_file.find(bad.range), std::string::npos) << in_file;

    mm::Pipeline pipeline = mm::Pipeline::from_yaml_string(yaml_of(bad, false), "set.yaml");
    const std::string assignment = "s." + bad.key + "=" + bad.value;
    pipeline.set_param(assignment);
    const std::string overridden = validate_error(pipeline);
    EXPECT_EQ(overridden.rfind("--set " + assignment + ": ", 0), 0u) << overridden;
    EXPECT_NE(overridden.find(bad.range), std::string::npos) << overridden;
  }
}

}  // namespace
