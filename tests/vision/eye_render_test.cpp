// The eye re-rendering (eye_render.hpp) on drawn eyes: the output is compared with the same eye
// drawn turned, and the iris's move is measured by the evaluation's own measure
// (bench/eye_turn.hpp), not by the renderer's geometry.
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include <gtest/gtest.h>
#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>

#include "eye_eval_support.hpp"
#include "vision/stages/eye_render.hpp"

namespace {

using namespace eye_test;

mv::EyeRenderRequest request(const DrawnEye& eye, cv::Point2f shift, float contour_error = 0) {
  const mv::EyeAxes axes = eye.axes();
  return {.axes = axes,
          .lids = mv::lid_profile(axes, eye.contour(contour_error)),
          .iris = eye.iris,
          .iris_radius = eye.iris_radius,
          .shift = shift};
}

cv::Mat apply(const cv::Mat& frame, const mv::EyePatch& patch) {
  cv::Mat out = frame.clone();
  if (!patch.empty()) patch.patch.copyTo(out(patch.roi));
  return out;
}

double mean_abs_diff(const cv::Mat& a, const cv::Mat& b, const cv::Rect& region) {
  return mean_abs_difference(a(region), b(region));
}

// The truth for a raised gaze: the same eye drawn with its iris `by` px higher and the upper lid
// following it.
cv::Mat drawn_looking_up(DrawnEye eye, float by, cv::Size size = {120, 80}) {
  eye.iris.y -= by;
  eye.upper_rise += by;
  return eye.draw(size);
}

// An eye as large as on a 1080p face (96 px wide), in a frame of kLargeEyeFrame.
const cv::Size kLargeEyeFrame(160, 110);
DrawnEye large_eye() {
  DrawnEye eye;
  eye.centre = {80, 55};
  eye.half_width = 48;
  eye.upper_rise = 18;
  eye.lower_drop = 12;
  eye.iris = {80, 55};
  eye.rim = 3;
  return eye;
}

// The images one above the other, enlarged, to look at when MICROMODELS_TEST_PICTURES names a
// folder.
void save_picture(const std::string& name, const std::vector<cv::Mat>& images, double scale) {
  const char* dir = std::getenv("MICROMODELS_TEST_PICTURES");
  if (dir == nullptr) return;
  cv::Mat strip;
  cv::vconcat(images, strip);
  cv::resize(strip, strip, cv::Size(), scale, scale, cv::INTER_NEAREST);
  cv::imwrite(std::string(dir) + "/" + name, strip);
}

}  // namespace

// Raising the gaze by 2 px: the iris moves 2 px, the upper lid with it, and the picture becomes
// the same eye drawn looking up, white showing below the iris.
TEST(EyeRender, TurnsADrawnEyeIntoTheSameEyeLookingUp) {
  DrawnEye eye;
  eye.lower_drop = 5.5;  // some white below the iris, to show where it goes
  const cv::Mat frame = eye.draw();
  const cv::Point2f shift(0, -2);
  const mv::EyeRenderRequest r = request(eye, shift);
  const mv::EyePatch patch = mv::render_eyes(frame, {&r, 1}, {});
  ASSERT_FALSE(patch.empty());
  EXPECT_EQ(patch.applied[0], shift);
  const cv::Mat out = apply(frame, patch);

  const cv::Mat truth = drawn_looking_up(eye, 2);
  const cv::Rect region(44, 28, 34, 20);
  const double before = mean_abs_diff(frame, truth, region);
  const double after = mean_abs_diff(out, truth, region);
  // The same move without the lid following: the iris goes up under a lid that stays down.
  const mv::EyePatch lid_stays = mv::render_eyes(frame, {&r, 1}, {.lid_follow = 0});
  const double without_lid = mean_abs_diff(apply(frame, lid_stays), truth, region);
  std::printf("[ render    ] mean difference from the eye drawn looking up: %.2f before, %.2f after "
              "(%.2f without the lid following)\n",
              before, after, without_lid);
  EXPECT_LT(after, 0.45 * before);  // the rest: the lower lid's rim, and a filled-in iris edge
  EXPECT_LT(after, 0.8 * without_lid);
  save_picture("eye_render_up.png", {frame(region), out(region), truth(region)}, 10);

  // Measured by the evaluation's own means: the iris's pixels moved by what was asked.
  const auto moved = mb::measure_iris_translation(out, frame, eval_eye(eye), eye.iris + shift,
                                                  eye.iris_radius, shift, 4);
  ASSERT_TRUE(moved);
  EXPECT_NEAR(moved->y, shift.y, 0.1 * std::abs(shift.y));
  EXPECT_NEAR(moved->x, 0, 0.15);
}

// The same on an eye twice the size, as at 720p: its lower lid's rim is twice as thick too, and
// stays with the lid. With a rim of a fixed 1.25 px, the render took the rim's inner half for
// the eye's content, carried it up with the iris and drew it again as a dark line under it.
TEST(EyeRender, TurnsALargeDrawnEyeIntoTheSameEyeLookingUp) {
  DrawnEye eye;
  eye.half_width = 24;
  eye.upper_rise = 12;
  eye.lower_drop = 11;
  eye.iris = {60, 38};
  eye.iris_radius = 10;
  eye.rim = 3;
  const cv::Mat frame = eye.draw();
  const cv::Point2f shift(0, -4);
  const mv::EyeRenderRequest r = request(eye, shift);
  const mv::EyePatch patch = mv::render_eyes(frame, {&r, 1}, {});
  ASSERT_FALSE(patch.empty());
  const cv::Mat out = apply(frame, patch);
  const cv::Mat truth = drawn_looking_up(eye, 4);
  const cv::Rect region(34, 22, 52, 34);
  const double before = mean_abs_diff(frame, truth, region);
  const double after = mean_abs_diff(out, truth, region);
  std::printf("[ render    ] a 48 px eye: mean difference from it drawn looking up: %.2f before, "
              "%.2f after\n", before, after);
  EXPECT_LT(after, 0.45 * before);  // 13.25 with a fixed rim of 1.25 px
  const auto moved = mb::measure_iris_translation(out, frame, eval_eye(eye), eye.iris + shift,
                                                  eye.iris_radius, shift, 6);
  ASSERT_TRUE(moved);
  EXPECT_NEAR(moved->y, shift.y, 0.1 * std::abs(shift.y));
  EXPECT_NEAR(moved->x, 0, 0.15);
}

// An eye as large as at 1080p (96 px wide), its iris under both lids: raising it uncovers iris
// that the lower lid hid, filled with the iris mirrored across its centre's row. The mirror of
// those rows lies under the upper lid's edge, whose dark lashes are some pixels deep on an eye
// this size: kept out of the mirror by a margin of a fixed pixel, they were drawn again as a
// dark line along the uncovered iris's bottom.
TEST(EyeRender, ALargeEyesLashesAreNotMirroredIntoTheIrisARaiseUncovers) {
  DrawnEye eye = large_eye();
  eye.iris_radius = 19;  // from 36 to 74: under the lashes (37-43) and the lower lid (64-67)
  eye.lashes = 6;
  const cv::Mat frame = eye.draw(kLargeEyeFrame);
  const cv::Point2f shift(0, -8);
  const mv::EyeRenderRequest r = request(eye, shift);
  const mv::EyePatch patch = mv::render_eyes(frame, {&r, 1}, {});
  ASSERT_FALSE(patch.empty());
  ASSERT_EQ(patch.applied[0], shift);
  const cv::Mat out = apply(frame, patch);
  const cv::Mat truth = drawn_looking_up(eye, 8, kLargeEyeFrame);
  const cv::Point2f raised = eye.iris + shift;
  // Lash-dark pixels (the iris is 70, the lashes 40) in the iris the raise uncovered: the rows
  // the lower lid's rim hid, now 8 px higher, inside the iris.
  const auto dark = [&](const cv::Mat& image) {
    int n = 0;
    for (int y = 52; y < 64; ++y) {
      for (int x = 66; x < 95; ++x) {
        if (std::hypot(static_cast<float>(x) - raised.x, static_cast<float>(y) - raised.y) >
            eye.iris_radius - 1) {
          continue;
        }
        n += image.at<cv::Vec3b>(y, x)[0] < 55 ? 1 : 0;
      }
    }
    return n;
  };
  save_picture("eye_render_large_lashes.png", {frame, out, truth}, 6);
  EXPECT_EQ(dark(truth), 0);
  EXPECT_EQ(dark(out), 0) << "the lashes were mirrored into the uncovered iris";
}

// The same large eye, soft as a 1080p frame upscaled from a small camera is (a blur of 2.5 px):
// the white a raise uncovers beside the iris is sampled beyond the iris's soft edge. Sampled
// 1.5 px from the edge, as on 20 px eyes, it took the limbus's grey, and each row it filled
// showed as a dark line across the white.
TEST(EyeRender, ASoftLargeEyesUncoveredWhiteIsTakenFromTheWhite) {
  DrawnEye eye = large_eye();
  eye.iris_radius = 14;
  const cv::Size size = kLargeEyeFrame;
  cv::Mat frame = eye.draw(size);
  cv::GaussianBlur(frame, frame, {0, 0}, 2.5);
  const cv::Point2f shift(0, -6);
  const mv::EyeRenderRequest r = request(eye, shift);
  const mv::EyePatch patch = mv::render_eyes(frame, {&r, 1}, {});
  ASSERT_FALSE(patch.empty());
  ASSERT_EQ(patch.applied[0], shift);
  const cv::Mat out = apply(frame, patch);
  // The truth: the same soft eye drawn looking up. Where it shows clear white (over 225), the
  // output may not show grey (under 195): the limbus's grey drawn into the white.
  cv::Mat truth = drawn_looking_up(eye, 6, size);
  cv::GaussianBlur(truth, truth, {0, 0}, 2.5);
  const auto grey = [&](const cv::Mat& image) {
    int n = 0;
    for (int y = 0; y < size.height; ++y) {
      for (int x = 0; x < size.width; ++x) {
        if (truth.at<cv::Vec3b>(y, x)[0] <= 225) continue;
        n += image.at<cv::Vec3b>(y, x)[0] < 195 ? 1 : 0;
      }
    }
    return n;
  };
  save_picture("eye_render_soft_white.png", {frame, out, truth}, 6);
  EXPECT_EQ(grey(truth), 0);
  EXPECT_EQ(grey(out), 0) << "the white was filled with the limbus's grey";
}

TEST(EyeRender, MovesTheIrisSidewaysWithoutMovingTheLids) {
  const DrawnEye eye;
  const cv::Mat frame = eye.draw();
  const cv::Point2f shift(3, 0);
  const mv::EyeRenderRequest r = request(eye, shift);
  const cv::Mat out = apply(frame, mv::render_eyes(frame, {&r, 1}, {}));
  const auto moved = mb::measure_iris_translation(out, frame, eval_eye(eye), eye.iris + shift,
                                                  eye.iris_radius, shift, 5);
  ASSERT_TRUE(moved);
  EXPECT_NEAR(moved->x, 3, 0.3);
  EXPECT_NEAR(moved->y, 0, 0.15);
  // The lids stay: above the upper lid and below the lower one nothing changed.
  for (int x = static_cast<int>(eye.centre.x - eye.half_width); x <= eye.centre.x + eye.half_width; ++x) {
    const auto fx = static_cast<float>(x);
    for (const float y : {eye.upper_at(fx) - 1.5f, eye.lower_at(fx) + 1.5f}) {
      const cv::Point at(x, static_cast<int>(std::lround(y)));
      EXPECT_EQ(out.at<cv::Vec3b>(at), frame.at<cv::Vec3b>(at)) << at;
    }
  }
}

TEST(EyeRender, ChangesNothingOutsideTheMaskAndFeathersOnlyOverUnchangedPixels) {
  const DrawnEye eye;
  const cv::Mat frame = eye.draw();
  const mv::EyeRenderRequest r = request(eye, {1, -1.5f});
  const mv::EyePatch patch = mv::render_eyes(frame, {&r, 1}, {});
  ASSERT_FALSE(patch.empty());
  ASSERT_EQ(patch.patch.size(), patch.roi.size());
  ASSERT_EQ(patch.mask.size(), patch.roi.size());
  ASSERT_EQ(patch.mask.type(), CV_8UC1);
  const cv::Mat changed = any_change(patch.patch, frame(patch.roi));
  EXPECT_GT(cv::countNonZero(changed), 20);
  // Every changed pixel is under full alpha; where alpha is partial the patch is the frame.
  EXPECT_EQ(cv::countNonZero(changed & (patch.mask < 255)), 0);
  // The patch's border row is never used, and the ROI lies on the frame.
  EXPECT_EQ(cv::countNonZero(patch.mask.row(0)), 0);
  EXPECT_TRUE((patch.roi & cv::Rect(0, 0, frame.cols, frame.rows)) == patch.roi);
}

TEST(EyeRender, SmallShiftsFadeInAndClosedEyesAreLeftAlone) {
  const DrawnEye eye;
  const cv::Mat frame = eye.draw();
  // A quarter pixel: half the rendering shows, so a correction fading out leaves no step.
  const mv::EyeRenderRequest tiny = request(eye, {0, -0.25f});
  const mv::EyePatch faint = mv::render_eyes(frame, {&tiny, 1}, {});
  ASSERT_FALSE(faint.empty());
  EXPECT_NEAR(faint.applied[0].y, -0.125f, 1e-4);
  // Nothing asked, nothing done.
  const mv::EyeRenderRequest still = request(eye, {0, 0});
  EXPECT_TRUE(mv::render_eyes(frame, {&still, 1}, {}).empty());
  // A closed eye: the lids meet over the iris, whatever the gaze.
  DrawnEye closed = eye;
  closed.upper_rise = 0.8f;
  closed.lower_drop = 0.6f;
  const mv::EyeRenderRequest shut = request(closed, {0, -2});
  EXPECT_TRUE(mv::render_eyes(closed.draw(), {&shut, 1}, {}).empty());
}

// A drawn eye closing step by step (the upper lid coming down a quarter pixel at a time, the iris
// placed below it as eye.refine places it), asked to look 3 px up (about 20 degrees on this 24 px
// eye). A raise opens the eye by as much and what comes into view is invented, so the render
// opens an eye by at most 0.8 of what it shows beyond its lash lines (0.08 eye widths, 1.92 px):
// the shift applied falls with the opening, never by more than 0.4 px a step (0.8 a pixel,
// doubled where the shift falls below half a pixel and fades out), to nothing once only the lash
// lines are left. The render before gave the full 3 px down to an opening of 3.84 px (0.16 eye
// widths) and faded it out over the next 1.92: a nearly shut eye was opened by nearly its own
// height, into a dark box (cap13_edit2.mp4 turned down 15 degrees, frames 55-57, in the eval).
TEST(EyeRender, AClosingEyeIsOpenedLessAndLessThenLeftAlone) {
  const cv::Point2f asked(0, -3);
  constexpr float kLashLines = 0.08f * 24;
  float last = -1;
  for (float rise = 6; rise >= -3.49f; rise -= 0.25f) {
    DrawnEye eye;
    eye.upper_rise = rise;
    eye.iris.y = eye.upper_at(eye.centre.x) + 0.18f * 2 * eye.half_width;
    const float opening = eye.upper_rise + eye.lower_drop;
    const mv::EyeRenderRequest r = request(eye, asked);
    const mv::EyePatch patch = mv::render_eyes(eye.draw(), {&r, 1}, {});
    const float applied = patch.empty() ? 0.0f : -patch.applied[0].y;
    std::printf("[ closing  ] opening %.2f px: applied %.2f of 3 px\n", opening, applied);
    EXPECT_LE(applied, 0.8f * std::max(0.0f, opening - kLashLines) + 1e-3f)
        << "opening " << opening;
    if (opening >= kLashLines + 3 / 0.8f) {
      EXPECT_NEAR(applied, 3, 1e-3) << "an open eye gets what it asks, opening " << opening;
    }
    if (opening <= kLashLines) {
      EXPECT_TRUE(patch.empty()) << "shut: left alone, opening " << opening;
    }
    if (last >= 0) {
      EXPECT_LE(applied, last + 1e-4f) << "opening " << opening;
      EXPECT_LE(last - applied, 0.4f + 1e-3f) << "smoothly, at opening " << opening;
    }
    last = applied;
  }
  EXPECT_EQ(last, 0);
}

TEST(EyeRender, DegenerateInputsGiveAnEmptyPatch) {
  const DrawnEye eye;
  const cv::Mat frame = eye.draw();
  const mv::EyeRenderRequest ok = request(eye, {0, -2});
  EXPECT_TRUE(mv::render_eyes(cv::Mat(), {&ok, 1}, {}).empty());
  EXPECT_TRUE(mv::render_eyes(cv::Mat(80, 120, CV_32FC3), {&ok, 1}, {}).empty());
  mv::EyeRenderRequest nan = ok;
  nan.iris = {NAN, 1};
  EXPECT_TRUE(mv::render_eyes(frame, {&nan, 1}, {}).empty());
  mv::EyeRenderRequest nan_shift = ok;
  nan_shift.shift = {NAN, 0};
  EXPECT_TRUE(mv::render_eyes(frame, {&nan_shift, 1}, {}).empty());
  DrawnEye away = eye;
  away.centre = {1000, 1000};
  away.iris = {1000, 999};
  const mv::EyeRenderRequest off = request(away, {0, -2});
  EXPECT_TRUE(mv::render_eyes(frame, {&off, 1}, {}).empty());
  mv::EyeRenderRequest no_lids = ok;
  no_lids.lids = {};
  EXPECT_TRUE(mv::render_eyes(frame, {&no_lids, 1}, {}).empty());
  // Tiny frames: the ROI is clipped, nothing breaks.
  for (const cv::Size size : {cv::Size(1, 1), cv::Size(3, 2), cv::Size(61, 41)}) {
    const cv::Mat small(size, CV_8UC3, cv::Scalar::all(100));
    const mv::EyePatch out = mv::render_eyes(small, {&ok, 1}, {});
    if (!out.empty()) {
      EXPECT_TRUE((out.roi & cv::Rect(0, 0, size.width, size.height)) == out.roi);
      EXPECT_EQ(out.patch.size(), out.roi.size());
    }
  }
  // Longer than max_shift x width: shortened along its direction.
  const mv::EyeRenderRequest far = request(eye, {0, -30});
  const mv::EyePatch clamped =
      mv::render_eyes(frame, {&far, 1}, {.lid_follow = 1, .max_shift = 0.2f, .feather_px = 2});
  ASSERT_FALSE(clamped.empty());
  EXPECT_NEAR(clamped.applied[0].y, -0.2f * 24, 1e-3);  // within what the opening allows, 5.7 px
}
