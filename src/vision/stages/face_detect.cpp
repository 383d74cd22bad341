// `face.detect`: identify faces with BlazeFace (ONNX) or dlib's HOG detector, on key frames.
#include <opencv2/imgproc.hpp>

#include "image_mat.hpp"
#include "model_pool.hpp"
#include "stage_registration.hpp"
#include "vision/models/blaze_face.hpp"
#include "vision/models/hog_face_detector.hpp"
#include "vision/models/model_files.hpp"

namespace micromodels::vision {

namespace {

// The params, checked; a ParamError names the key, so a pipeline file reports its line.
void check_params(const Params& params) {
  const std::string& model = params.text("model");
  if (model != "blazeface" && model != "blazeface_back" && model != "hog") {
    throw ParamError(
        "model", "param 'model': expected blazeface, blazeface_back or hog, got '" + model + "'");
  }
}

class FaceDetect final : public Stage {
 public:
  explicit FaceDetect(const Params& params)
      : model_(params.text("model")),
        every_(params.integer("every")),
        max_faces_(static_cast<int>(params.integer("max_faces"))) {
    check_params(params);
    const auto threshold = static_cast<float>(params.number("score_threshold"));
    if (model_ == "hog") {
      hog_ = std::make_unique<ModelPool<HogFaceDetector>>(
          [] { return std::make_unique<HogFaceDetector>(); });
    } else if (model_ == "blazeface" || model_ == "blazeface_back") {
      const auto variant =
          model_ == "blazeface" ? BlazeFace::Variant::front : BlazeFace::Variant::back;
      std::filesystem::path path = params.text("path");
      if (path.empty()) path = models_dir() / BlazeFace::model_file(variant);
      BlazeFace::Options options;
      options.score_threshold = threshold;
      options.max_faces = max_faces_;
      blaze_ = std::make_unique<ModelPool<BlazeFace>>(
          [=] { return std::make_unique<BlazeFace>(path, variant, options); });
    }
  }

  void process(Packet packet, std::vector<Packet>& out) override {
    if (packet.seq % static_cast<std::uint64_t>(every_) == 0) {
      packet.set("faces", detect(to_mat(packet.get<Image>("frame"))));
    }
    out.push_back(std::move(packet));
  }

  Rects detect(const cv::Mat& frame) {
    Rects faces;
    if (frame.empty() || frame.cols < 8 || frame.rows < 8) return faces;  // nothing to find
    if (blaze_) {
      for (const auto& d : blaze_->with([&](BlazeFace& m) { return m.detect(frame); })) {
        faces.push_back({d.box.x, d.box.y, d.box.width, d.box.height, d.score});
      }
    } else {
      for (const auto& d : hog_->with([&](HogFaceDetector& m) { return m.detect(frame); })) {
        faces.push_back({d.box.x, d.box.y, d.box.width, d.box.height, d.score});
      }
    }
    if (max_faces_ > 0 && static_cast<int>(faces.size()) > max_faces_) faces.resize(static_cast<std::size_t>(max_faces_));
    return faces;
  }

 private:
  std::string model_;
  std::int64_t every_;
  int max_faces_;
  std::unique_ptr<ModelPool<BlazeFace>> blaze_;
  std::unique_ptr<ModelPool<HogFaceDetector>> hog_;
};

}  // namespace

void register_face_detect(Registry& registry) {
  registry.add({
      .name = "face.detect",
      .help = "Finds faces (field 'faces') on every Nth frame with BlazeFace or dlib HOG.",
      .params =
          {{"model", ParamType::text, std::string("blazeface"),
            "blazeface (near faces, 128 px input), blazeface_back (small faces, 256 px) or hog"},
           {"path", ParamType::text, std::string(), "ONNX file; empty: the fetched model"},
           {"every", ParamType::integer, std::int64_t{1},
            "detect on frames whose seq is a multiple of this (key frames)", ParamRange{.low = 1}},
           {"score_threshold", ParamType::number, 0.5, "BlazeFace minimum score",
            ParamRange{.low = 0, .high = 1}},
           {"max_faces", ParamType::integer, std::int64_t{0}, "keep the best N; 0: all"}},
      .info =
          [](const Params& params) {
            check_params(params);  // a bad param is a configuration error, at its line
            return StageInfo{.reads = {"frame"}, .writes = {"faces"}};
          },
      .make = [](const Params& params) -> std::unique_ptr<Stage> {
        return std::make_unique<FaceDetect>(params);
      },
  });
}

}  // namespace micromodels::vision
