// gaze.estimate + gaze.redirect + image.blend on a drawn face looking down, and on a real photo:
// the irises move by the turn the eyeball model asks for, measured in the output pixels by the
// evaluation's own measure; and a camera offset out of range is a configuration error at its line.
#include <cmath>
#include <cstdio>
#include <numbers>
#include <string>

#include <gtest/gtest.h>
#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>

#include "eye_eval_support.hpp"
#include "micromodels/pipeline.hpp"
#include "vision/models/hog_face_detector.hpp"
#include "vision/models/iris_model.hpp"
#include "vision/models/landmarks68.hpp"
#include "vision/stages/eye_model.hpp"
#include "vision/stages/head_pose.hpp"

namespace {

using namespace eye_test;

constexpr float kDeg = std::numbers::pi_v<float> / 180;

// A face with two drawn eyes (lids and iris where the test puts them), the landmarks and eyelid
// contours that describe them, and irises turned to `gaze` by the eyeball model.
struct DrawnFace {
  mm::Packet packet;
  std::array<DrawnEye, 2> eyes;
};

DrawnFace drawn_face(mv::Gaze gaze) {
  const cv::Point2f c(160, 120);
  const SyntheticFace face = synthetic_face(c);
  DrawnFace drawn;
  cv::Mat frame(240, 320, CV_8UC3, cv::Scalar::all(kSkin));
  mm::Points contours(142);
  mm::Points iris = face.iris;
  mv::HeadPose head = mv::estimate_head_pose(face.landmarks);
  head.pitch_deg = 0;  // gaze.estimate judges pitch against the stream's usual: this face's own
  for (const mv::EyeSide side : {mv::EyeSide::right, mv::EyeSide::left}) {
    const std::size_t s = static_cast<std::size_t>(side);
    DrawnEye& eye = drawn.eyes[s];
    eye.centre = c + cv::Point2f(s == 0 ? -22.0f : 22.0f, -10);
    eye.lower_drop = 5;
    const std::vector<cv::Point2f> contour = eye.contour(0);
    for (std::size_t i = 0; i < 71; ++i) {
      const cv::Point2f p = contour[std::min<std::size_t>(i, 15)];
      contours[s * 71 + i] = {p.x, p.y};
    }
    const auto six = mv::eye_landmarks(face.landmarks, side);
    const mv::Eyeball ball = mv::eyeball(six[0], six[3], side, head);
    eye.iris = ball.iris_for(gaze);
    for (std::size_t i = 0; i < 5; ++i) {
      const cv::Point2f d = i == 0 ? cv::Point2f(0, 0)
                                   : cv::Point2f(i == 1 ? 5.0f : i == 3 ? -5.0f : 0.0f,
                                                 i == 2 ? -5.0f : i == 4 ? 5.0f : 0.0f);
      iris[s * 5 + i] = {eye.iris.x + d.x, eye.iris.y + d.y};
    }
    // Draw the eye into the face.
    const cv::Mat picture = eye.draw(frame.size());
    const cv::Rect region(static_cast<int>(eye.centre.x - 14), static_cast<int>(eye.centre.y - 12), 28, 22);
    picture(region).copyTo(frame(region));
  }
  drawn.packet = frame_packet(frame, 0);
  drawn.packet.set("landmarks", face.landmarks);
  drawn.packet.set("iris", iris);
  drawn.packet.set("eye_contours", contours);
  return drawn;
}

mm::Packet redirected(mm::Packet p, const std::map<std::string, mm::ParamValue>& params = {},
                      std::optional<double> strength = std::nullopt) {
  // The drawn corners stay where they are whatever the gaze: no lid pulls them along.
  auto estimate = harness("gaze.estimate", {{"corner_follow", 0.0}});
  auto redirect = harness("gaze.redirect", params);
  p = single(estimate.process(std::move(p)));
  p.set("gaze_strength", strength.value_or(1.0));
  return single(redirect.process(std::move(p)));
}

}  // namespace

TEST(GazeRedirect, EyesLookingDownAreTurnedIntoTheCamera) {
  const DrawnFace face = drawn_face({-12, 0});
  const cv::Mat input = mat(face.packet, "frame").clone();
  const mm::Packet out = redirected(face.packet);
  ASSERT_TRUE(out.has("generated"));
  const auto& gaze = out.get<mm::Scalars>("gaze");
  EXPECT_NEAR(gaze[0], -12, 0.2);
  EXPECT_NEAR(gaze[2], -12, 0.2);
  // The shift is the model's: from the iris's place to the eyeball's camera point.
  const auto& balls = out.get<mm::Scalars>("eyeballs");
  const auto& shift = out.get<mm::Points>("gaze_shift");
  ASSERT_EQ(shift.size(), 2u);
  for (std::size_t s = 0; s < 2; ++s) {
    EXPECT_NEAR(shift[s].x, balls[3 * s] - face.eyes[s].iris.x, 0.02);
    EXPECT_NEAR(shift[s].y, balls[3 * s + 1] - face.eyes[s].iris.y, 0.02);
    EXPECT_LT(shift[s].y, -1.5);  // up, by R sin(12 deg) ~ 1.85 px
  }
  auto blend = harness("image.blend");
  const mm::Packet blended = single(blend.process(out));
  const cv::Mat result = mat(blended, "frame");
  EXPECT_EQ(cv::norm(mat(blended, "input_frame"), input, cv::NORM_INF), 0);
  // In the output pixels, each iris moved by its shift (the evaluation's measure).
  for (std::size_t s = 0; s < 2; ++s) {
    const cv::Point2f d(shift[s].x, shift[s].y);
    const auto moved = mb::measure_iris_translation(result, input, eval_eye(face.eyes[s]),
                                                    face.eyes[s].iris + d, face.eyes[s].iris_radius, d, 4);
    ASSERT_TRUE(moved);
    EXPECT_NEAR(moved->y, d.y, 0.1 * std::abs(d.y)) << "eye " << s;
    EXPECT_NEAR(moved->x, d.x, 0.2) << "eye " << s;
  }
  // Whole frames: every pixel whose alpha is 0 is the input's, bit for bit.
  const cv::Rect2f r = to_cv(out.get<mm::Rects>("generated_roi")[0]);
  cv::Mat alpha = cv::Mat::zeros(input.size(), CV_8UC1);
  mv::to_mat(out.get<mm::Image>("generated_mask")).copyTo(alpha(cv::Rect(r)));
  EXPECT_EQ(cv::countNonZero(any_change(result, input) & (alpha == 0)), 0);
}

TEST(GazeRedirect, StrengthTargetAndConjugateShapeTheTurn) {
  const DrawnFace face = drawn_face({-12, 0});
  const mm::Packet full = redirected(face.packet);
  const mm::Packet half = redirected(face.packet, {}, 0.5);
  const auto& balls = full.get<mm::Scalars>("eyeballs");
  const double radius = balls[2];
  const auto pitch_turn = [&](const mm::Packet& p) {
    // The turn in degrees, read back from the right eye's shift: pitch = asin(height / R), the
    // height of the iris over the eyeball's camera point.
    const double height = balls[1] - face.eyes[0].iris.y;
    const double now = std::asin(height / radius);
    const double after = std::asin((height - p.get<mm::Points>("gaze_shift")[0].y) / radius);
    return (after - now) / kDeg;
  };
  EXPECT_NEAR(pitch_turn(full), 12, 0.2);
  EXPECT_NEAR(pitch_turn(half), 6, 0.2);
  EXPECT_FALSE(redirected(face.packet, {}, 0.0).has("generated"));
  // Looking into the camera already: nothing to do.
  EXPECT_FALSE(redirected(drawn_face({0, 0}).packet).has("generated"));
  // target: offset raises the gaze by camera_offset_deg, wherever it was.
  const mm::Packet offset = redirected(drawn_face({0, 0}).packet,
                                       {{"target", std::string("offset")}, {"camera_offset_deg", 10.0}});
  ASSERT_TRUE(offset.has("gaze_shift"));
  EXPECT_NEAR(-offset.get<mm::Points>("gaze_shift")[0].y, radius * std::sin(10 * kDeg), 0.02);
  // The turn is capped.
  const mm::Packet capped = redirected(face.packet, {{"max_correction_deg", 6.0}});
  EXPECT_NEAR(pitch_turn(capped), 6, 0.2);
  // Without conjugate each eye turns by its own estimate.
  mm::Packet skew = face.packet;
  mm::Points iris = skew.get<mm::Points>("iris");
  for (std::size_t i = 0; i < 5; ++i) iris[i].y += 1;  // the right eye looks lower still
  skew.set("iris", iris);
  const mm::Packet own = redirected(skew, {{"conjugate", false}});
  const mm::Packet mean = redirected(skew);
  EXPECT_LT(own.get<mm::Points>("gaze_shift")[0].y, own.get<mm::Points>("gaze_shift")[1].y - 0.5);
  EXPECT_NEAR(mean.get<mm::Points>("gaze_shift")[0].y, mean.get<mm::Points>("gaze_shift")[1].y, 0.05);
}

TEST(GazeRedirect, OnlyThePitchTurnsUnlessTurnYawIsOn) {
  // Looking down and 10 degrees to the side: by default the eyes turn up only, so the iris
  // moves along the eye's up axis; with turn_yaw they also turn sideways into the camera.
  const DrawnFace face = drawn_face({-12, 10});
  const mm::Packet pitch_only = redirected(face.packet);
  const mm::Packet both = redirected(face.packet, {{"turn_yaw", true}});
  const auto& balls = both.get<mm::Scalars>("eyeballs");
  for (std::size_t s = 0; s < 2; ++s) {
    const mm::Point up = pitch_only.get<mm::Points>("gaze_shift")[s];
    const mm::Point full = both.get<mm::Points>("gaze_shift")[s];
    EXPECT_LT(up.y, -1.5) << "eye " << s;
    // A pitch-only turn moves the iris along the eye's up axis (these eyes are level): nothing
    // sideways, not even the sphere's R sin(yaw) (1 - cos(pitch)), which carries the less sure
    // yaw estimate into the picture.
    EXPECT_NEAR(up.x, 0, 1e-3) << "eye " << s;
    EXPECT_NEAR(full.x, balls[3 * s] - face.eyes[s].iris.x, 0.02) << "eye " << s;
    EXPECT_GT(std::abs(full.x), 1.0) << "eye " << s;
  }
}

TEST(GazeRedirect, ACameraOffsetOutOfRangeIsAConfigErrorAtItsLine) {
  const std::string yaml = R"(pipeline: offset
stages:
  - name: source
    type: synthetic.source
  - name: gaze
    type: gaze.redirect
    params:
      target: offset
      camera_offset_deg: 45.5
)";
  mm::Registry registry = mm::Registry::with_builtins();
  mv::register_gaze_redirect(registry);
  const mm::Pipeline pipeline = mm::Pipeline::from_yaml_string(yaml, "offset.yaml");
  try {
    pipeline.validate(registry);
    FAIL() << "validated";
  } catch (const mm::ConfigError& error) {
    const std::string what = error.what();
    EXPECT_NE(what.find("offset.yaml:9"), std::string::npos) << what;
    EXPECT_NE(what.find("camera_offset_deg"), std::string::npos) << what;
    EXPECT_NE(what.find("-30..30"), std::string::npos) << what;
    EXPECT_NE(what.find("got 45.5"), std::string::npos) << what;  // as written, not 45.500000
    EXPECT_EQ(what.find("45.50"), std::string::npos) << what;
  }
}

// A real portrait through the whole chain: she looks into the camera, so ask for a turn with a
// camera offset; the output changes only inside the mask and her irises move as asked.
TEST(GazeRedirectReal, AstronautsIrisesMoveByTheTurnAsked) {
  REQUIRE_CACHE_FILE(media("astronaut.png"));
  REQUIRE_CACHE_FILE(model(mv::Landmarks68::kModelFile));
  REQUIRE_CACHE_FILE(model(mv::IrisModel::kModelFile));
  const cv::Mat image = cv::imread(media("astronaut.png").string(), cv::IMREAD_COLOR);
  const auto faces = mv::HogFaceDetector().detect(image);
  ASSERT_FALSE(faces.empty());
  mm::Packet p = frame_packet(image, 0);
  p.set("face", mm::Rects{to_rect(faces[0].box)});
  for (const char* type : {"face.landmarks68", "eye.iris", "eye.refine", "face.smooth"}) {
    auto stage = harness(type);
    p = single(stage.process(std::move(p)));
  }
  auto estimate = harness("gaze.estimate", {{"fade_frames", std::int64_t{1}}});
  p = single(estimate.process(std::move(p)));
  const auto& pose = p.get<mm::Scalars>("head_pose");
  std::printf("[ astronaut ] head pitch %.1f, yaw %.1f deg\n", pose[0], pose[1]);
  EXPECT_EQ(p.get<std::string>("gaze_reason"), "ok");
  const auto& gaze = p.get<mm::Scalars>("gaze");
  std::printf("[ astronaut ] gaze pitch %.1f / %.1f, yaw %.1f / %.1f deg\n", gaze[0], gaze[2], gaze[1], gaze[3]);
  auto redirect = harness("gaze.redirect", {{"target", std::string("offset")}, {"camera_offset_deg", 12.0}});
  const mm::Packet out = single(redirect.process(p));
  ASSERT_TRUE(out.has("generated"));
  auto blend = harness("image.blend");
  const mm::Packet blended = single(blend.process(out));  // alive while `result` views its pixels
  const cv::Mat result = mat(blended, "frame");
  const cv::Rect2f roi = to_cv(out.get<mm::Rects>("generated_roi")[0]);
  cv::Mat alpha = cv::Mat::zeros(image.size(), CV_8UC1);
  mv::to_mat(out.get<mm::Image>("generated_mask")).copyTo(alpha(cv::Rect(roi)));
  const cv::Mat changed = any_change(result, image);
  EXPECT_EQ(cv::countNonZero(changed & (alpha == 0)), 0);
  EXPECT_GT(cv::countNonZero(changed), 20);
  EXPECT_LT(roi.area(), 0.5f * faces[0].box.area());  // the patch stays around the eyes
  const auto& lm = out.get<mm::Points>("landmarks");
  const auto& iris = out.get<mm::Points>("iris");
  const auto& contours = out.get<mm::Points>("eye_contours");
  const auto& shift = out.get<mm::Points>("gaze_shift");
  for (std::size_t s = 0; s < 2; ++s) {
    mb::EvalEye eye;
    eye.corner_a = {lm[s == 0 ? 36 : 42].x, lm[s == 0 ? 36 : 42].y};
    eye.corner_b = {lm[s == 0 ? 39 : 45].x, lm[s == 0 ? 39 : 45].y};
    for (std::size_t i = 1; i < 8; ++i) eye.lower_lid.emplace_back(contours[s * 71 + i].x, contours[s * 71 + i].y);
    for (std::size_t i = 9; i < 16; ++i) eye.upper_lid.emplace_back(contours[s * 71 + i].x, contours[s * 71 + i].y);
    eye.iris = {iris[s * 5].x, iris[s * 5].y};
    eye.iris_radius = static_cast<float>(cv::norm(cv::Point2f(iris[s * 5 + 1].x, iris[s * 5 + 1].y) - eye.iris));
    const cv::Point2f d(shift[s].x, shift[s].y);
    const auto moved = mb::measure_iris_translation(result, image, eye, eye.iris + d, eye.iris_radius, d, 5);
    ASSERT_TRUE(moved);
    std::printf("[ astronaut ] eye %zu: asked %.2f, %.2f px; moved %.2f, %.2f\n", s, d.x, d.y, moved->x, moved->y);
    EXPECT_NEAR(moved->y, d.y, std::max(0.15f, 0.1f * std::abs(d.y)));
    EXPECT_NEAR(moved->x, d.x, 0.25);
  }
}
