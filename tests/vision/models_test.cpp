// Tests of the vision model layer on real media and models from the cache that
// scripts/fetch_media.sh fills. Without the cache a test skips and prints the setup command;
// with MICROMODELS_REQUIRE_MEDIA=1 (CI, after the fetch) a missing cache fails instead.
// About 650 lines: each model of the layer on the same cached media, one test per behaviour.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <functional>
#include <string>
#include <vector>

#include <dlib/image_processing/shape_predictor.h>
#include <dlib/opencv/cv_image.h>
#include <dlib/serialize.h>
#include <gtest/gtest.h>
#include <opencv2/core/utility.hpp>
#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>
#include <opencv2/videoio.hpp>

#include "cache_files.hpp"
#include "vision/models/blaze_face.hpp"
#include "vision/models/face_mesh.hpp"
#include "vision/models/hog_face_detector.hpp"
#include "vision/models/iris_model.hpp"
#include "vision/models/landmarks68.hpp"
#include "vision/models/model_files.hpp"
#include "vision/models/onnx_model.hpp"

namespace mv = micromodels::vision;
namespace fs = std::filesystem;

namespace {

// Hand-labelled on skimage's astronaut.png (512x512, Eileen Collins): pupil centres, nose tip,
// mouth centre, and a box from the brows to the chin, cheek to cheek.
const cv::Point2f kAstronautRightEye(204, 102);  // subject's right: image left
const cv::Point2f kAstronautLeftEye(246, 104);
const cv::Point2f kAstronautNose(223, 126);
const cv::Point2f kAstronautMouth(224, 144);
const cv::Rect2f kAstronautFace(180, 80, 92, 100);

using micromodels::vision::testing::media;
using micromodels::vision::testing::model;

cv::Mat load_astronaut() { return cv::imread(media("astronaut.png").string(), cv::IMREAD_COLOR); }

float distance(cv::Point2f a, cv::Point2f b) { return static_cast<float>(cv::norm(a - b)); }

cv::Rect2f grow(const cv::Rect2f& r, float f) {
  return {r.x - r.width * f, r.y - r.height * f, r.width * (1 + 2 * f), r.height * (1 + 2 * f)};
}

// Reads the check file written by convert_tfjs_to_onnx.py --check-out.
struct CheckTensor {
  std::string name;
  std::vector<int> shape;
  std::vector<float> data;
};

std::vector<CheckTensor> read_check_file(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  char magic[8] = {};
  in.read(magic, 8);
  if (!in || std::string(magic, 8) != "MMCHK001") {
    throw std::runtime_error("bad check file");
  }
  const auto u32 = [&] {
    std::uint32_t v = 0;
    in.read(reinterpret_cast<char*>(&v), 4);  // little-endian, as is this machine
    return v;
  };
  std::vector<CheckTensor> tensors(u32());
  for (auto& t : tensors) {
    t.name.resize(u32());
    in.read(t.name.data(), static_cast<std::streamsize>(t.name.size()));
    t.shape.resize(u32());
    size_t count = 1;
    for (auto& d : t.shape) {
      d = static_cast<int>(u32());
      count *= static_cast<size_t>(d);
    }
    t.data.resize(count);
    in.read(reinterpret_cast<char*>(t.data.data()), static_cast<std::streamsize>(count * 4));
  }
  if (!in) {
    throw std::runtime_error("truncated check file");
  }
  return tensors;
}

void expect_converted_model_matches_reference(const char* onnx_name, const char* check_name) {
  const fs::path onnx = model(onnx_name);
  const fs::path check = model(check_name);
  REQUIRE_CACHE_FILE(onnx);
  REQUIRE_CACHE_FILE(check);
  const auto tensors = read_check_file(check);
  ASSERT_GE(tensors.size(), 2u);
  ASSERT_EQ(tensors[0].name, "input");

  cv::dnn::Net net = cv::dnn::readNetFromONNX(onnx.string());
  const cv::Mat input(static_cast<int>(tensors[0].shape.size()), tensors[0].shape.data(), CV_32F,
                      const_cast<float*>(tensors[0].data.data()));
  net.setInput(input);
  for (size_t i = 1; i < tensors.size(); ++i) {
    const CheckTensor& ref = tensors[i];
    const cv::Mat out = net.forward(ref.name);
    ASSERT_EQ(out.total(), ref.data.size()) << ref.name;
    const cv::Mat expected(1, static_cast<int>(ref.data.size()), CV_32F,
                           const_cast<float*>(ref.data.data()));
    const double diff = cv::norm(out.reshape(1, 1), expected, cv::NORM_INF);
    const double scale = cv::norm(expected, cv::NORM_INF);
    std::printf(
        "[ converter ] %s %s: OpenCV vs numpy reference of the TFJS graph: max abs diff "
        "%.3g (max |ref| %.3g)\n",
        onnx_name, ref.name.c_str(), diff, scale);
    EXPECT_LT(diff, 1e-3 * std::max(1.0, scale)) << ref.name;
  }
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// Generic ONNX wrapper and errors

TEST(OnnxModel, MissingFileNamesPathAndSetupScript) {
  const fs::path missing = fs::temp_directory_path() / "micromodels_no_such_model.onnx";
  try {
    mv::OnnxModel m(missing, mv::OnnxInputSpec{{64, 64}});
    FAIL() << "no exception";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find(missing.string()), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("scripts/fetch_media.sh"), std::string::npos) << e.what();
  }
}

TEST(OnnxModel, NonOnnxFileNamesPathAndSetupScript) {
  const fs::path bogus = fs::temp_directory_path() / "micromodels_not_a_model.onnx";
  { std::ofstream(bogus) << "this is a text file, not a protobuf\n"; }
  try {
    mv::OnnxModel m(bogus, mv::OnnxInputSpec{{64, 64}});
    FAIL() << "no exception";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find(bogus.string()), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("scripts/fetch_media.sh"), std::string::npos) << e.what();
  }
  fs::remove(bogus);
}

// A real ONNX model that cannot take the input the stage would feed it (BlazeFace wants NHWC
// 128x128, given NCHW 64x64) fails when it is built, during its warm-up pass, not on the first
// packet; so a swap to it is refused and the old instance keeps running.
TEST(OnnxModel, ModelThatCannotTakeTheInputFailsAtLoad) {
  const fs::path path = model("face_detection_front_128x128_barracuda.onnx");
  REQUIRE_CACHE_FILE(path);
  try {
    mv::OnnxModel m(path, mv::OnnxInputSpec{{64, 64}});
    FAIL() << "no exception";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find(path.string()), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("64x64 input failed"), std::string::npos) << e.what();
  }
}

TEST(Landmarks68, NonDlibFileIsAClearError) {
  const fs::path bogus = fs::temp_directory_path() / "micromodels_not_a_predictor.dat";
  { std::ofstream(bogus) << "not a dlib model"; }
  try {
    mv::Landmarks68 m(bogus);
    FAIL() << "no exception";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find(bogus.string()), std::string::npos) << e.what();
  }
  // A dlib shape predictor with nothing in it (dlib's own serialization of an empty one).
  { dlib::serialize(bogus.string()) << dlib::shape_predictor(); }
  try {
    mv::Landmarks68 m(bogus);
    FAIL() << "no exception";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("a mean shape of 0 values"), std::string::npos)
        << e.what();
  }
  fs::remove(bogus);
}

TEST(OnnxModel, BatchOfImagesGivesOneResultPerImage) {
  const fs::path path = model("iris.onnx");
  REQUIRE_CACHE_FILE(path);
  mv::OnnxModel m(path, mv::OnnxInputSpec{{64, 64}});
  cv::Mat a(80, 100, CV_8UC3, cv::Scalar(10, 100, 200));
  cv::Mat b(64, 64, CV_8UC1, cv::Scalar(128));
  cv::Mat c(64, 64, CV_8UC4, cv::Scalar(1, 2, 3, 255));
  const auto single = m.run({a});
  const auto batch = m.run({a, b, c});
  ASSERT_EQ(batch.size(), 1u);
  EXPECT_EQ(mv::tensor_shape(batch[0]), (std::vector<int>{3, 1, 1, 228}));
  // Item 0 of the batch equals the single run: batching does not mix images.
  const cv::Mat first = batch[0].reshape(1, 3).row(0);
  EXPECT_LT(cv::norm(first, single[0].reshape(1, 1), cv::NORM_INF), 1e-4);
  // 16-bit and 2-channel images are refused with a message, not a crash.
  EXPECT_THROW(m.run({cv::Mat(8, 8, CV_16UC3, cv::Scalar::all(0))}), std::invalid_argument);
  EXPECT_THROW(m.run({cv::Mat(8, 8, CV_8UC2, cv::Scalar::all(0))}), std::invalid_argument);
  EXPECT_THROW(m.run({cv::Mat()}), std::invalid_argument);
  EXPECT_THROW(m.run({}), std::invalid_argument);
}

TEST(Converter, IrisOnnxMatchesNumpyReferenceInOpenCV) {
  expect_converted_model_matches_reference("iris.onnx", "iris.check.bin");
}

TEST(Converter, FaceMeshOnnxMatchesNumpyReferenceInOpenCV) {
  expect_converted_model_matches_reference("facemesh.onnx", "facemesh.check.bin");
}

// ---------------------------------------------------------------------------------------------
// BlazeFace

TEST(BlazeFace, AnchorsFollowMediaPipeLayout) {
  for (auto v : {mv::BlazeFace::Variant::front, mv::BlazeFace::Variant::back}) {
    const auto anchors = mv::generate_ssd_anchors(mv::BlazeFace::anchor_options(v));
    ASSERT_EQ(anchors.size(), 896u);
    // 16x16 cells with 2 anchors, then 8x8 cells with 6.
    EXPECT_FLOAT_EQ(anchors[0].x_center, 0.5f / 16);
    EXPECT_FLOAT_EQ(anchors[1].x_center, 0.5f / 16);
    EXPECT_FLOAT_EQ(anchors[2].x_center, 1.5f / 16);
    EXPECT_FLOAT_EQ(anchors[32].y_center, 1.5f / 16);
    EXPECT_FLOAT_EQ(anchors[512].x_center, 0.5f / 8);
    EXPECT_FLOAT_EQ(anchors[517].x_center, 0.5f / 8);
    EXPECT_FLOAT_EQ(anchors[518].x_center, 1.5f / 8);
    EXPECT_FLOAT_EQ(anchors[895].y_center, 7.5f / 8);
    EXPECT_FLOAT_EQ(anchors[895].width, 1.0f);
  }
}

TEST(BlazeFace, NonMaxSuppressionMergesOverlapsOnly) {
  mv::BlazeFaceDetection a, b, c;
  a.box = {0, 0, 10, 10};
  a.score = 0.9f;
  b.box = {1, 0, 10, 10};
  b.score = 0.6f;
  c.box = {50, 50, 10, 10};
  c.score = 0.7f;
  const auto plain = mv::non_max_suppression({b, c, a}, 0.3f, false);
  ASSERT_EQ(plain.size(), 2u);
  EXPECT_EQ(plain[0].box, a.box);
  EXPECT_FLOAT_EQ(plain[0].score, 0.9f);
  EXPECT_EQ(plain[1].box, c.box);
  const auto weighted = mv::non_max_suppression({b, c, a}, 0.3f, true);
  ASSERT_EQ(weighted.size(), 2u);
  EXPECT_NEAR(weighted[0].box.x, 0.6f / 1.5f, 1e-5);  // (0 * 0.9 + 1 * 0.6) / 1.5
  EXPECT_FLOAT_EQ(weighted[0].score, 0.9f);
}

class BlazeFaceAstronaut : public ::testing::TestWithParam<mv::BlazeFace::Variant> {};

TEST_P(BlazeFaceAstronaut, FindsTheFaceAtItsRealLocation) {
  const fs::path path = model(mv::BlazeFace::model_file(GetParam()));
  REQUIRE_CACHE_FILE(path);
  REQUIRE_CACHE_FILE(media("astronaut.png"));
  mv::BlazeFace detector(path, GetParam());
  const cv::Mat image = load_astronaut();
  const auto faces = detector.detect(image);
  ASSERT_EQ(faces.size(), 1u);
  const auto& f = faces[0];
  EXPECT_GT(f.score, 0.75f);
  using K = mv::BlazeFaceDetection;
  EXPECT_TRUE(f.box.contains(f.keypoints[K::right_eye]));
  EXPECT_TRUE(f.box.contains(f.keypoints[K::left_eye]));
  EXPECT_TRUE(f.box.contains(kAstronautRightEye));
  EXPECT_TRUE(f.box.contains(kAstronautMouth));
  EXPECT_GT(mv::intersection_over_union(f.box, kAstronautFace), 0.5f) << f.box;
  EXPECT_LT(distance(f.keypoints[K::right_eye], kAstronautRightEye), 8.f);
  EXPECT_LT(distance(f.keypoints[K::left_eye], kAstronautLeftEye), 8.f);
  EXPECT_LT(distance(f.keypoints[K::nose], kAstronautNose), 10.f);
  EXPECT_LT(distance(f.keypoints[K::mouth], kAstronautMouth), 10.f);
  // The subject's right ear is on the image's left.
  EXPECT_LT(f.keypoints[K::right_ear].x, f.keypoints[K::left_ear].x);
}

TEST_P(BlazeFaceAstronaut, LetterboxMapsBackToTheFrame) {
  const fs::path path = model(mv::BlazeFace::model_file(GetParam()));
  REQUIRE_CACHE_FILE(path);
  REQUIRE_CACHE_FILE(media("astronaut.png"));
  mv::BlazeFace detector(path, GetParam());
  const cv::Mat image = load_astronaut();
  // A 256x256 cut around the face, on the right half of a 512x256 frame and on the lower half
  // of a 256x512 one: after letterboxing the face is as large in the model input as in the
  // plain 512x512 test (the front model misses faces much smaller than that).
  const cv::Rect cut(100, 20, 256, 256);
  for (const cv::Point offset : {cv::Point(256, 0), cv::Point(0, 256)}) {
    cv::Mat frame(256 + offset.y, 256 + offset.x, CV_8UC3, cv::Scalar(90, 90, 90));
    image(cut).copyTo(frame(cv::Rect(offset, cut.size())));
    const auto faces = detector.detect(frame);
    ASSERT_EQ(faces.size(), 1u) << offset;
    const cv::Point2f shift(offset - cut.tl());
    EXPECT_LT(distance(faces[0].keypoints[0], kAstronautRightEye + shift), 10.f) << offset;
    EXPECT_GT(mv::intersection_over_union(faces[0].box, kAstronautFace + shift), 0.4f) << offset;
  }
}

INSTANTIATE_TEST_SUITE_P(Variants, BlazeFaceAstronaut,
                         ::testing::Values(mv::BlazeFace::Variant::front,
                                           mv::BlazeFace::Variant::back),
                         [](const auto& param_info) {
                           return param_info.param == mv::BlazeFace::Variant::front ? "front"
                                                                                    : "back";
                         });

TEST(BlazeFace, GrayBgraAndTinyImagesAreHandled) {
  const fs::path path = model(mv::BlazeFace::model_file(mv::BlazeFace::Variant::front));
  REQUIRE_CACHE_FILE(path);
  REQUIRE_CACHE_FILE(media("astronaut.png"));
  mv::BlazeFace detector(path, mv::BlazeFace::Variant::front);
  const cv::Mat image = load_astronaut();
  cv::Mat gray, bgra;
  cv::cvtColor(image, gray, cv::COLOR_BGR2GRAY);
  cv::cvtColor(image, bgra, cv::COLOR_BGR2BGRA);
  for (const cv::Mat& m : {gray, bgra}) {
    const auto faces = detector.detect(m);
    ASSERT_EQ(faces.size(), 1u) << m.channels() << " channels";
    EXPECT_LT(distance(faces[0].keypoints[0], kAstronautRightEye), 10.f);
  }
  EXPECT_TRUE(detector.detect(cv::Mat(1, 1, CV_8UC3, cv::Scalar::all(0))).empty());
  EXPECT_TRUE(detector.detect(cv::Mat(1, 300, CV_8UC1, cv::Scalar::all(0))).empty());
  EXPECT_THROW(detector.detect(cv::Mat()), std::invalid_argument);
  EXPECT_THROW(detector.detect(cv::Mat(4, 4, CV_32FC3, cv::Scalar::all(0))), std::invalid_argument);
}

// ---------------------------------------------------------------------------------------------
// dlib HOG detector and 68 landmarks

TEST(HogFaceDetector, FindsTheAstronautAndHandlesOddInputs) {
  REQUIRE_CACHE_FILE(media("astronaut.png"));
  mv::HogFaceDetector detector;
  const cv::Mat image = load_astronaut();
  const auto faces = detector.detect(image);
  ASSERT_EQ(faces.size(), 1u);
  EXPECT_GT(faces[0].score, 0.f);
  EXPECT_TRUE(faces[0].box.contains(kAstronautRightEye));
  EXPECT_TRUE(faces[0].box.contains(kAstronautLeftEye));
  EXPECT_TRUE(faces[0].box.contains(kAstronautMouth));
  EXPECT_GT(mv::intersection_over_union(faces[0].box, kAstronautFace), 0.5f) << faces[0].box;

  cv::Mat bgra;
  cv::cvtColor(image, bgra, cv::COLOR_BGR2BGRA);
  EXPECT_EQ(detector.detect(bgra).size(), 1u);
  EXPECT_TRUE(detector.detect(cv::Mat(1, 1, CV_8UC1, cv::Scalar::all(7))).empty());
  EXPECT_THROW(detector.detect(cv::Mat(3, 3, CV_16UC1, cv::Scalar::all(0))), std::invalid_argument);

  // Upsampling once scans the doubled image; the face is found at the same place.
  mv::HogFaceDetector up(mv::HogFaceDetector::Options{.upsample = 1});
  const auto big = up.detect(image);
  ASSERT_FALSE(big.empty());
  EXPECT_GT(mv::intersection_over_union(big[0].box, faces[0].box), 0.6f);
}

TEST(Landmarks68, PointsFallOnTheAstronautsFace) {
  const fs::path path = model(mv::Landmarks68::kModelFile);
  REQUIRE_CACHE_FILE(path);
  REQUIRE_CACHE_FILE(media("astronaut.png"));
  const cv::Mat image = load_astronaut();
  mv::HogFaceDetector detector;
  const auto faces = detector.detect(image);
  ASSERT_EQ(faces.size(), 1u);
  const mv::Landmarks68 predictor(path);
  const auto pts = predictor.fit(image, faces[0].box);
  // Every point within the detector box (grown by 15%: the jaw may reach just past it).
  const cv::Rect2f area = grow(faces[0].box, 0.15f);
  for (size_t i = 0; i < pts.size(); ++i) {
    EXPECT_TRUE(area.contains(pts[i])) << i << " " << pts[i];
  }
  // The centre of each eye's six points is at the pupil.
  const auto centre = [&](int begin, int end) {
    cv::Point2f c(0, 0);
    for (int i = begin; i < end; ++i) {
      c += pts[static_cast<size_t>(i)];
    }
    return c / static_cast<float>(end - begin);
  };
  EXPECT_LT(distance(centre(36, 42), kAstronautRightEye), 5.f);
  EXPECT_LT(distance(centre(42, 48), kAstronautLeftEye), 5.f);
  EXPECT_LT(distance(pts[30], kAstronautNose), 8.f);
  // Gray and BGRA inputs give the same points (the predictor runs on gray anyway).
  cv::Mat gray;
  cv::cvtColor(image, gray, cv::COLOR_BGR2GRAY);
  const auto pts_gray = predictor.fit(gray, faces[0].box);
  for (size_t i = 0; i < pts.size(); ++i) {
    EXPECT_EQ(pts[i], pts_gray[i]);
  }
  // A 1x1 image: no crash, points (wherever they land) are returned.
  EXPECT_NO_THROW(
      (void)predictor.fit(cv::Mat(1, 1, CV_8UC3, cv::Scalar::all(0)), cv::Rect2f(0, 0, 1, 1)));
  EXPECT_THROW((void)predictor.fit(image, cv::Rect2f(0, 0, 0, 0)), std::invalid_argument);
}

// Landmarks68 runs dlib's trees laid out for speed, and returns the points before dlib rounds
// them to whole pixels. Rounded as dlib rounds, they are dlib's own predictor's points exactly,
// on faces of the sample video (the detector's box, and boxes moved and grown off it, as a
// tracker's are) and on the astronaut.
TEST(Landmarks68, IsDlibsOwnPredictorBeforeItRoundsToPixels) {
  const fs::path path = model(mv::Landmarks68::kModelFile);
  REQUIRE_CACHE_FILE(path);
  REQUIRE_CACHE_FILE(media("astronaut.png"));
  REQUIRE_CACHE_FILE(media("franck.mp4"));
  dlib::shape_predictor dlibs;
  dlib::deserialize(path.string()) >> dlibs;
  const mv::Landmarks68 ours(path);
  std::vector<cv::Mat> images{load_astronaut()};
  cv::VideoCapture video(media("franck.mp4").string());
  ASSERT_TRUE(video.isOpened());
  for (int i = 0; i < 60; ++i) {
    cv::Mat frame;
    ASSERT_TRUE(video.read(frame));
    if (i % 12 == 0) images.push_back(frame.clone());
  }
  mv::HogFaceDetector detector;
  std::size_t compared = 0, between_pixels = 0;
  for (const cv::Mat& image : images) {
    const auto faces = detector.detect(image);
    ASSERT_FALSE(faces.empty());
    cv::Mat gray;
    cv::cvtColor(image, gray, cv::COLOR_BGR2GRAY);
    const dlib::cv_image<unsigned char> view(gray);
    for (const float dx : {0.0f, -3.3f, 5.0f}) {
      for (const float grow_by : {1.0f, 1.1f}) {
        const cv::Rect2f f = faces[0].box;
        const cv::Rect2f box(f.x + dx - f.width * (grow_by - 1) / 2,
                             f.y - f.height * (grow_by - 1) / 2, f.width * grow_by,
                             f.height * grow_by);
        const auto got = ours.fit(image, box);
        const dlib::full_object_detection want =
            dlibs(view, dlib::rectangle(std::lround(box.x), std::lround(box.y),
                                        std::lround(box.x + box.width) - 1,
                                        std::lround(box.y + box.height) - 1));
        ASSERT_EQ(want.num_parts(), got.size());
        for (unsigned long i = 0; i < want.num_parts(); ++i) {
          EXPECT_EQ(std::floor(got[i].x + 0.5), want.part(i).x()) << "point " << i;
          EXPECT_EQ(std::floor(got[i].y + 0.5), want.part(i).y()) << "point " << i;
          const bool between = got[i].x != std::floor(got[i].x) || got[i].y != std::floor(got[i].y);
          if (between) ++between_pixels;
          ++compared;
        }
      }
    }
  }
  EXPECT_EQ(compared, images.size() * 6 * 68);
  EXPECT_GT(between_pixels, compared * 9 / 10);  // nearly every point lies between pixels
}

// ---------------------------------------------------------------------------------------------
// Iris

namespace {

bool inside(const std::vector<cv::Point2f>& polygon, cv::Point2f p) {
  return cv::pointPolygonTest(polygon, p, false) > 0;
}

std::vector<cv::Point2f> eyelid(const mv::IrisLandmarks& eye) {
  // 0..8 lower lid from the outer to the inner corner, 9..15 upper lid back towards the
  // outer corner: together a closed polygon.
  std::vector<cv::Point2f> poly;
  for (size_t i = 0; i < 16; ++i) {
    poly.emplace_back(eye.contour[i].x, eye.contour[i].y);
  }
  return poly;
}

}  // namespace

TEST(IrisModel, IrisCentresLieInsideTheEyelidsOfTheAstronaut) {
  const fs::path path = model(mv::IrisModel::kModelFile);
  REQUIRE_CACHE_FILE(path);
  REQUIRE_CACHE_FILE(model(mv::Landmarks68::kModelFile));
  REQUIRE_CACHE_FILE(media("astronaut.png"));
  const cv::Mat image = load_astronaut();
  mv::HogFaceDetector detector;
  const auto faces = detector.detect(image);
  ASSERT_EQ(faces.size(), 1u);
  const auto pts = mv::Landmarks68(model(mv::Landmarks68::kModelFile)).fit(image, faces[0].box);

  mv::IrisModel iris(path);
  // Right eye as is, left eye mirrored: one batch of two.
  const auto right = mv::IrisModel::crop_eye(image, pts[36], pts[39], false);
  const auto left = mv::IrisModel::crop_eye(image, pts[42], pts[45], true);
  ASSERT_EQ(right.patch.size(), cv::Size(64, 64));
  const auto eyes = iris.run({right, left});
  ASSERT_EQ(eyes.size(), 2u);

  const cv::Point2f truth[2] = {kAstronautRightEye, kAstronautLeftEye};
  // Outer and inner corners in the 68-point layout, per eye.
  const cv::Point2f outer[2] = {pts[36], pts[45]};
  const cv::Point2f inner[2] = {pts[39], pts[42]};
  for (size_t e = 0; e < 2; ++e) {
    SCOPED_TRACE(e == 0 ? "right eye" : "left eye");
    const auto& eye = eyes[e];
    EXPECT_TRUE(inside(eyelid(eye), eye.iris_center()));
    EXPECT_LT(distance(eye.iris_center(), truth[e]), 3.f) << eye.iris_center();
    // The lid contour starts at the outer corner and reaches the inner one at point 8: this
    // fails if the mirroring is applied to the wrong eye or not undone.
    EXPECT_LT(distance({eye.contour[0].x, eye.contour[0].y}, outer[e]), 4.f);
    EXPECT_LT(distance({eye.contour[8].x, eye.contour[8].y}, inner[e]), 4.f);
    // The iris is about 1/3..1/2 of the eye's width across (radius 1/6..1/4).
    const float width = distance(outer[e], inner[e]);
    EXPECT_GT(eye.iris_radius(), width / 7) << eye.iris_radius() << " vs eye width " << width;
    EXPECT_LT(eye.iris_radius(), width / 3.5f) << eye.iris_radius() << " vs eye width " << width;
  }
}

TEST(IrisModel, CropHandlesTinyAndOddImages) {
  const fs::path path = model(mv::IrisModel::kModelFile);
  REQUIRE_CACHE_FILE(path);
  mv::IrisModel iris(path);
  const cv::Mat tiny(1, 1, CV_8UC1, cv::Scalar(50));
  const auto crop = mv::IrisModel::crop_eye(tiny, {0, 0}, {0, 0}, false);  // coinciding corners
  EXPECT_EQ(crop.patch.size(), cv::Size(64, 64));
  EXPECT_EQ(crop.patch.type(), CV_8UC3);
  const auto out = iris.run({crop});
  ASSERT_EQ(out.size(), 1u);
  EXPECT_TRUE(std::isfinite(out[0].iris[0].x));
  EXPECT_TRUE(iris.run({}).empty());
  EXPECT_THROW((void)mv::IrisModel::crop_eye(cv::Mat(), {0, 0}, {1, 1}, false),
               std::invalid_argument);
}

TEST(IrisModel, CropTransformRoundTrips) {
  // A mirrored, rotated crop: patch_to_image maps the patch centre to the corners' midpoint and
  // the patch's left half to the right corner's side (mirroring).
  cv::Mat image(100, 100, CV_8UC3, cv::Scalar::all(0));
  const cv::Point2f a(30, 40), b(60, 50);
  const auto crop = mv::IrisModel::crop_eye(image, a, b, true);
  const cv::Matx23d& m = crop.patch_to_image;
  const auto map = [&](double u, double v) {
    return cv::Point2f(static_cast<float>(m(0, 0) * u + m(0, 1) * v + m(0, 2)),
                       static_cast<float>(m(1, 0) * u + m(1, 1) * v + m(1, 2)));
  };
  EXPECT_LT(distance(map(31.5, 31.5), (a + b) * 0.5f), 1e-3f);
  // Corners sit at +-1/2.3 of the half-side from the centre along the row through the centre.
  const double half_span = 32.0 / 2.3;
  EXPECT_LT(distance(map(31.5 - half_span, 31.5), b), 0.05f);  // mirrored: patch left = b
  EXPECT_LT(distance(map(31.5 + half_span, 31.5), a), 0.05f);
}

// ---------------------------------------------------------------------------------------------
// Face mesh

TEST(FaceMesh, MeshCoversTheAstronautsFace) {
  const fs::path path = model(mv::FaceMesh::kModelFile);
  REQUIRE_CACHE_FILE(path);
  REQUIRE_CACHE_FILE(model(mv::BlazeFace::model_file(mv::BlazeFace::Variant::front)));
  REQUIRE_CACHE_FILE(media("astronaut.png"));
  const cv::Mat image = load_astronaut();
  mv::BlazeFace detector(model(mv::BlazeFace::model_file(mv::BlazeFace::Variant::front)),
                         mv::BlazeFace::Variant::front);
  const auto faces = detector.detect(image);
  ASSERT_EQ(faces.size(), 1u);
  using K = mv::BlazeFaceDetection;
  const float angle =
      mv::FaceMesh::eye_angle(faces[0].keypoints[K::right_eye], faces[0].keypoints[K::left_eye]);
  mv::FaceMesh mesh(path);
  const auto result = mesh.run({mv::FaceMesh::crop_face(image, faces[0].box, angle)});
  ASSERT_EQ(result.size(), 1u);
  EXPECT_GT(result[0].face_score, 0.9f);
  ASSERT_EQ(result[0].points.size(), 468u);
  const cv::Rect2f area = grow(kAstronautFace, 0.15f);
  for (const auto& p : result[0].points) {
    EXPECT_TRUE(area.contains({p.x, p.y})) << p;
  }
  // MediaPipe mesh indices: 1 nose tip, 13 upper inner lip; 468 has no iris points.
  EXPECT_LT(distance({result[0].points[1].x, result[0].points[1].y}, kAstronautNose), 8.f);
  EXPECT_LT(distance({result[0].points[13].x, result[0].points[13].y}, kAstronautMouth), 8.f);

  // A crop with no face in it scores low.
  const auto empty = mesh.run({mv::FaceMesh::crop_face(image, {400, 400, 80, 80})});
  EXPECT_LT(empty[0].face_score, 0.5f);
}

// ---------------------------------------------------------------------------------------------
// Video and timings

TEST(Video, BlazeFaceAndHogAgreeOnFranck) {
  REQUIRE_CACHE_FILE(media("franck.mp4"));
  const fs::path path = model(mv::BlazeFace::model_file(mv::BlazeFace::Variant::front));
  REQUIRE_CACHE_FILE(path);
  cv::VideoCapture video(media("franck.mp4").string());
  ASSERT_TRUE(video.isOpened());
  mv::BlazeFace blaze(path, mv::BlazeFace::Variant::front);
  mv::HogFaceDetector hog;
  int frames = 0, blaze_found = 0, hog_found = 0, agree = 0;
  cv::Mat frame;
  // Every 40th of the first 2000 frames: 50 frames spread over the clip's first 83 s.
  for (int i = 0; i < 2000 && video.read(frame); ++i) {
    if (i % 40 != 0) {
      continue;
    }
    ++frames;
    const auto b = blaze.detect(frame);
    const auto h = hog.detect(frame);
    blaze_found += !b.empty();
    hog_found += !h.empty();
    if (!b.empty() && !h.empty()) {
      // The two detectors draw their boxes a little differently, so compare what matters
      // downstream: the HOG box contains both BlazeFace eye keypoints.
      agree += h[0].box.contains(b[0].keypoints[0]) && h[0].box.contains(b[0].keypoints[1]);
    }
  }
  std::printf("[ franck    ] %d frames: BlazeFace found %d, HOG found %d, agree %d\n", frames,
              blaze_found, hog_found, agree);
  EXPECT_EQ(frames, 50);
  EXPECT_GE(blaze_found, frames * 9 / 10);
  EXPECT_GE(hog_found, frames * 8 / 10);
  EXPECT_GE(agree, std::min(blaze_found, hog_found) * 9 / 10);
}

TEST(Video, Franck720pIsFranckScaledAndPillarboxed) {
  REQUIRE_CACHE_FILE(media("franck.mp4"));
  REQUIRE_CACHE_FILE(media("franck_720p.mp4"));
  const fs::path path = model(mv::BlazeFace::model_file(mv::BlazeFace::Variant::front));
  REQUIRE_CACHE_FILE(path);
  cv::VideoCapture sd(media("franck.mp4").string());
  cv::VideoCapture hd(media("franck_720p.mp4").string());
  ASSERT_TRUE(sd.isOpened());
  ASSERT_TRUE(hd.isOpened());
  EXPECT_EQ(hd.get(cv::CAP_PROP_FRAME_WIDTH), 1280);
  EXPECT_EQ(hd.get(cv::CAP_PROP_FRAME_HEIGHT), 720);
  EXPECT_EQ(hd.get(cv::CAP_PROP_FRAME_COUNT), sd.get(cv::CAP_PROP_FRAME_COUNT));
  EXPECT_EQ(hd.get(cv::CAP_PROP_FPS), sd.get(cv::CAP_PROP_FPS));
  // Same face, same place: 360x288 scaled by 2.5 to 900x720, then 190 px of black on the left.
  mv::BlazeFace blaze(path, mv::BlazeFace::Variant::front);
  cv::Mat a, b;
  ASSERT_TRUE(sd.read(a));
  ASSERT_TRUE(hd.read(b));
  const auto fa = blaze.detect(a);
  const auto fb = blaze.detect(b);
  ASSERT_EQ(fa.size(), 1u);
  ASSERT_EQ(fb.size(), 1u);
  // In the 720p frame a model input pixel spans 10 frame pixels, so allow 1.5 of them.
  for (size_t k = 0; k < 2; ++k) {
    const cv::Point2f expected = fa[0].keypoints[k] * 2.5f + cv::Point2f(190, 0);
    EXPECT_LT(distance(fb[0].keypoints[k], expected), 15.f) << k << " " << fb[0].keypoints[k];
  }
  EXPECT_LT(cv::mean(b(cv::Rect(0, 0, 180, 720)))[0], 8.0);  // the black bar
}
