// eye.steady: the render geometry held still while the eye is still, a real move passed at once.
// The input is an eye whose true geometry the test knows, with known noise added to every
// estimate (iris, lids, eyeball, gaze), as face.smooth and gaze.estimate would hand them on.
#include <cmath>
#include <cstdio>
#include <numbers>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include <gtest/gtest.h>

#include "eye_test_support.hpp"

namespace {

using namespace eye_test;

constexpr float kEyeW = 24;                       // synthetic_face's eye width, pixels
constexpr float kRadius = 0.37f * kEyeW;          // the eyeball radius gaze.estimate would use
constexpr float kRad = std::numbers::pi_v<float> / 180;

// One frame of the eye looking `pitch_deg` up, every estimate off by noise of `sigma_px`
// (iris, lid points, eyeball centre) and the matching angle.
mm::Packet noisy_frame(std::uint64_t seq, float pitch_deg, float sigma_px, std::mt19937& rng) {
  std::normal_distribution<float> noise(0, sigma_px);
  const cv::Point2f c(160, 120);
  const SyntheticFace face = synthetic_face(c);
  mm::Packet p = frame_packet(cv::Mat(240, 320, CV_8UC3, cv::Scalar::all(kSkin)), seq);
  p.set("landmarks", face.landmarks);
  mm::Points iris = face.iris;
  mm::Points contours(142);
  mm::Scalars gaze(5), balls(6);
  for (std::size_t s = 0; s < 2; ++s) {
    const cv::Point2f eye = c + cv::Point2f(s == 0 ? -22.0f : 22.0f, -10);
    const cv::Point2f true_iris = eye + cv::Point2f(0, -kRadius * std::sin(pitch_deg * kRad));
    const cv::Point2f d(noise(rng), noise(rng));
    for (std::size_t i = 0; i < 5; ++i) {
      iris[s * 5 + i] = {iris[s * 5 + i].x + d.x, iris[s * 5 + i].y - (eye.y - true_iris.y) + d.y};
    }
    // 16 lid points on an almond 24 x 8 px (0..8 lower, 9..15 upper).
    for (std::size_t i = 0; i < 16; ++i) {
      const float t = i < 9 ? static_cast<float>(i) / 8 : static_cast<float>(i - 8) / 8;
      const float x = -12 + 24 * t;
      const float y = (i < 9 ? 4.0f : -4.0f) * std::sin(t * std::numbers::pi_v<float>);
      contours[s * 71 + i] = {eye.x + x + noise(rng), eye.y + y + noise(rng)};
    }
    const float measured_up = (eye.y - true_iris.y) - d.y;
    gaze[2 * s] = std::asin(std::clamp(measured_up / kRadius, -1.0f, 1.0f)) / kRad;
    gaze[2 * s + 1] = std::asin(std::clamp(d.x / kRadius, -1.0f, 1.0f)) / kRad;
    balls[3 * s] = eye.x + noise(rng);
    balls[3 * s + 1] = eye.y + noise(rng);
    balls[3 * s + 2] = kRadius;
  }
  gaze[4] = 1;
  p.set("iris", iris);
  p.set("eye_contours", contours);
  p.set("gaze", gaze);
  p.set("eyeballs", balls);
  return p;
}

cv::Point2f point(const mm::Packet& p, const char* field, std::size_t i) {
  const mm::Points& points = p.get<mm::Points>(field);
  return {points[i].x, points[i].y};
}

double mean(const std::vector<double>& v) {
  return v.empty() ? 0 : std::accumulate(v.begin(), v.end(), 0.0) / static_cast<double>(v.size());
}

// Known noise of 0.25 px on every estimate (about what the landmarks keep after face.smooth on
// the sample clips' 20 px eyes): the held geometry moves far less from frame to frame.
TEST(EyeSteady, KnownNoiseMovesTheRenderGeometryFarLess) {
  auto steady = harness("eye.steady");
  std::mt19937 rng(7);
  std::vector<double> iris_in, iris_out, lid_in, lid_out, pitch_in, pitch_out, ball_in, ball_out;
  std::optional<mm::Packet> last;
  for (std::uint64_t seq = 0; seq < 300; ++seq) {
    const mm::Packet p = single(steady.process(noisy_frame(seq, 0, 0.25f, rng)));
    ASSERT_TRUE(p.has("steady_iris") && p.has("steady_eyelids") && p.has("steady_gaze") &&
                p.has("steady_eyeballs"));
    if (last) {
      iris_in.push_back(cv::norm(point(p, "iris", 0) - point(*last, "iris", 0)));
      iris_out.push_back(cv::norm(point(p, "steady_iris", 0) - point(*last, "steady_iris", 0)));
      lid_in.push_back(cv::norm(point(p, "eye_contours", 12) - point(*last, "eye_contours", 12)));
      lid_out.push_back(cv::norm(point(p, "steady_eyelids", 12) - point(*last, "steady_eyelids", 12)));
      pitch_in.push_back(std::abs(p.get<mm::Scalars>("gaze")[0] - last->get<mm::Scalars>("gaze")[0]));
      pitch_out.push_back(
          std::abs(p.get<mm::Scalars>("steady_gaze")[0] - last->get<mm::Scalars>("steady_gaze")[0]));
      const auto ball = [](const mm::Packet& q, const char* f) {
        const mm::Scalars& b = q.get<mm::Scalars>(f);
        return cv::Point2f(static_cast<float>(b[0]), static_cast<float>(b[1]));
      };
      ball_in.push_back(cv::norm(ball(p, "eyeballs") - ball(*last, "eyeballs")));
      ball_out.push_back(cv::norm(ball(p, "steady_eyeballs") - ball(*last, "steady_eyeballs")));
    }
    last = p;
  }
  std::printf("frame-to-frame motion, estimate -> held: iris %.3f -> %.3f px, lid %.3f -> %.3f px, "
              "pitch %.2f -> %.2f deg, eyeball %.3f -> %.3f px\n",
              mean(iris_in), mean(iris_out), mean(lid_in), mean(lid_out), mean(pitch_in),
              mean(pitch_out), mean(ball_in), mean(ball_out));
  // Each held quantity moves less than a fifth of what its estimate moves.
  EXPECT_LT(mean(iris_out), 0.2 * mean(iris_in)) << mean(iris_out) << " vs " << mean(iris_in);
  EXPECT_LT(mean(lid_out), 0.2 * mean(lid_in)) << mean(lid_out) << " vs " << mean(lid_in);
  EXPECT_LT(mean(pitch_out), 0.2 * mean(pitch_in)) << mean(pitch_out) << " vs " << mean(pitch_in);
  EXPECT_LT(mean(ball_out), 0.2 * mean(ball_in)) << mean(ball_out) << " vs " << mean(ball_in);
  // And it is not held off the truth: the eye looks at 0 degrees, its iris at the eye's middle.
  const cv::Point2f held = point(*last, "steady_iris", 0);
  EXPECT_LT(cv::norm(held - cv::Point2f(138, 110)), 0.3) << held;
  EXPECT_LT(std::abs(last->get<mm::Scalars>("steady_gaze")[0]), 2.0);
}

// A look up by 15 degrees at frame 100 and back at frame 130 (2.3 px of iris on a 24 px eye, with
// the same noise): the held geometry is at the new place on the very frame of each move, and
// while the eye stays there it is nearer the truth than the estimates are.
TEST(EyeSteady, ARealLookAwayAndBackPassesOnTheFrameItHappens) {
  auto steady = harness("eye.steady");
  std::mt19937 rng(11);
  const auto pitch_at = [](std::uint64_t seq) { return seq >= 100 && seq < 130 ? 15.0f : 0.0f; };
  double held_error = 0, raw_error = 0;
  int frames = 0;
  for (std::uint64_t seq = 0; seq < 160; ++seq) {
    const mm::Packet p = single(steady.process(noisy_frame(seq, pitch_at(seq), 0.25f, rng)));
    const float true_y = 110 - kRadius * std::sin(pitch_at(seq) * kRad);
    const float held_y = point(p, "steady_iris", 0).y;
    const double held_pitch = p.get<mm::Scalars>("steady_gaze")[0];
    if (seq == 100 || seq == 130) {
      // The frame of the move: within the noise (3 sigma) of the new place, not on the way.
      EXPECT_LT(std::abs(held_y - true_y), 0.75f) << "frame " << seq;
      EXPECT_LT(std::abs(held_pitch - pitch_at(seq)), 5.0) << "frame " << seq;
    }
    if (seq > 100 && seq < 130) {
      held_error += std::abs(held_y - true_y);
      raw_error += std::abs(point(p, "iris", 0).y - true_y);
      ++frames;
    }
  }
  std::printf("mean error while looking up: held %.3f px, estimate %.3f px\n", held_error / frames,
              raw_error / frames);
  EXPECT_LT(held_error / frames, 0.7 * raw_error / frames)
      << held_error / frames << " vs " << raw_error / frames;
}

// No gaze (no face) writes nothing and forgets the eye; a restarted stream starts afresh.
TEST(EyeSteady, NoFaceWritesNothingAndARestartStartsFresh) {
  auto steady = harness("eye.steady");
  std::mt19937 rng(3);
  (void)single(steady.process(noisy_frame(0, 0, 0, rng)));
  mm::Packet empty = frame_packet(cv::Mat(240, 320, CV_8UC3, cv::Scalar::all(kSkin)), 1);
  const mm::Packet none = single(steady.process(std::move(empty)));
  EXPECT_FALSE(none.has("steady_iris"));
  EXPECT_FALSE(none.has("steady_gaze"));
  // The eye comes back looking 5 degrees up (inside the band of the place it was last held at):
  // it is taken as it is, not followed slowly from the old place.
  const mm::Packet back = single(steady.process(noisy_frame(2, 5, 0, rng)));
  EXPECT_NEAR(back.get<mm::Scalars>("steady_gaze")[0], 5.0, 0.01);
  const mm::Packet restarted = single(steady.process(noisy_frame(0, 0, 0, rng)));
  EXPECT_NEAR(restarted.get<mm::Scalars>("steady_gaze")[0], 0.0, 0.01);
}

// gaze.redirect renders from the held geometry when it is there: the turn it applies follows
// `steady_gaze`, not `gaze`.
TEST(EyeSteady, GazeRedirectTurnsByTheHeldGaze) {
  auto steady = harness("eye.steady");
  auto redirect = harness("gaze.redirect");
  std::mt19937 rng(5);
  mm::Packet p = single(steady.process(noisy_frame(0, -10, 0, rng)));  // looks 10 degrees down
  const float up = kRadius * std::sin(10 * kRad);                       // 1.54 px
  const mm::Packet turned = single(redirect.process(p));
  ASSERT_TRUE(turned.has("gaze_shift"));
  EXPECT_NEAR(turned.get<mm::Points>("gaze_shift")[0].y, -up, 0.05);
  // The estimate says 10 degrees down, the held gaze says into the camera: nothing to turn.
  mm::Scalars held = p.get<mm::Scalars>("steady_gaze");
  held[0] = held[2] = 0;
  p.set("steady_gaze", held);
  const mm::Packet left = single(redirect.process(std::move(p)));
  EXPECT_FALSE(left.has("gaze_shift"));
}

TEST(EyeSteady, ParamsOutOfRangeAreErrorsNamingThem) {
  for (const auto& [key, value] : {std::pair<std::string, double>{"dead_band", -0.1},
                                   std::pair<std::string, double>{"settle_s", 0.0}}) {
    try {
      (void)harness("eye.steady", {{key, value}});
      ADD_FAILURE() << key << " = " << value << " was accepted";
    } catch (const std::exception& e) {
      EXPECT_NE(std::string(e.what()).find(key), std::string::npos) << e.what();
    }
  }
}

}  // namespace
