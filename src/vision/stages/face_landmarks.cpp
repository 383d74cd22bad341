// `face.landmarks68`: dlib's 68-point shape predictor on the tracked face.
#include "image_mat.hpp"
#include "stage_registration.hpp"
#include "vision/models/landmarks68.hpp"
#include "vision/models/model_files.hpp"

namespace micromodels::vision {

namespace {

class FaceLandmarks final : public Stage {
 public:
  explicit FaceLandmarks(const std::filesystem::path& path) : model_(path) {}

  void process(Packet packet, std::vector<Packet>& out) override {
    const Rects* face = packet.has("face") ? &packet.get<Rects>("face") : nullptr;
    if (face != nullptr && !face->empty() && (*face)[0].width > 1 && (*face)[0].height > 1) {
      const Rect& r = (*face)[0];
      // dlib's predictor is read-only while fitting: safe from several consumers at once.
      const Landmarks68Points points =
          model_.fit(to_mat(packet.get<Image>("frame")), cv::Rect2f(r.x, r.y, r.width, r.height));
      Points landmarks;
      landmarks.reserve(points.size());
      for (const cv::Point2f& p : points) landmarks.push_back({p.x, p.y});
      packet.set("landmarks", std::move(landmarks));
    } else {
      packet.erase("landmarks");
    }
    out.push_back(std::move(packet));
  }

 private:
  Landmarks68 model_;
};

}  // namespace

void register_face_landmarks(Registry& registry) {
  registry.add({
      .name = "face.landmarks68",
      .help = "68 face landmarks (dlib, iBUG 300-W layout) inside the tracked 'face'. The model's "
              "training data restricts commercial use: see docs/models.md.",
      .params = {{"path", ParamType::text, std::string(),
                  "shape predictor .dat; empty: the fetched shape_predictor_68_face_landmarks.dat"}},
      .info = [](const Params&) {
        return StageInfo{.reads = {"frame", "face"}, .writes = {"landmarks"}};
      },
      .make = [](const Params& params) -> std::unique_ptr<Stage> {
        std::filesystem::path path = params.text("path");
        if (path.empty()) path = models_dir() / Landmarks68::kModelFile;
        return std::make_unique<FaceLandmarks>(path);
      },
  });
}

}  // namespace micromodels::vision
