// `eye.iris`: MediaPipe's iris model on both eyes, batched over eyes and frames.
#include "image_mat.hpp"
#include "model_pool.hpp"
#include "stage_registration.hpp"
#include "vision/models/iris_model.hpp"
#include "vision/models/landmarks68.hpp"
#include "vision/models/model_files.hpp"

namespace micromodels::vision {

namespace {

class EyeIris final : public Stage {
 public:
  explicit EyeIris(const std::filesystem::path& path)
      : models_([path] { return std::make_unique<IrisModel>(path); }) {}

  void process(Packet packet, std::vector<Packet>& out) override {
    std::vector<Packet> batch;
    batch.push_back(std::move(packet));
    process_batch(batch, out);
  }

  // Both eyes of every frame in the batch go through one forward pass.
  void process_batch(std::vector<Packet>& batch, std::vector<Packet>& out) override {
    std::vector<EyeCrop> crops;
    std::vector<std::size_t> owners;  // packet index of each pair of crops
    for (std::size_t i = 0; i < batch.size(); ++i) {
      const Packet& packet = batch[i];
      if (!packet.has("landmarks")) continue;
      const Points& lm = packet.get<Points>("landmarks");
      if (lm.size() != 68) continue;
      const cv::Mat frame = to_mat(packet.get<Image>("frame"));
      const auto at = [&](int k) { return cv::Point2f(lm[static_cast<std::size_t>(k)].x, lm[static_cast<std::size_t>(k)].y); };
      // The model expects a subject's right eye; the left eye is mirrored into that shape.
      crops.push_back(IrisModel::crop_eye(frame, at(36), at(39), false));
      crops.push_back(IrisModel::crop_eye(frame, at(42), at(45), true));
      owners.push_back(i);
    }
    std::vector<IrisLandmarks> results;
    if (!crops.empty()) results = models_.with([&](IrisModel& model) { return model.run(crops); });
    for (std::size_t k = 0; k < owners.size(); ++k) {
      Packet& packet = batch[owners[k]];
      Points iris;
      Points contours;
      for (std::size_t eye = 0; eye < 2; ++eye) {
        const IrisLandmarks& r = results[2 * k + eye];
        for (const cv::Point3f& p : r.iris) iris.push_back({p.x, p.y});
        for (const cv::Point3f& p : r.contour) contours.push_back({p.x, p.y});
      }
      packet.set("iris", std::move(iris));
      packet.set("eye_contours", std::move(contours));
    }
    for (Packet& packet : batch) out.push_back(std::move(packet));
  }

 private:
  ModelPool<IrisModel> models_;
};

}  // namespace

void register_eye_iris(Registry& registry) {
  registry.add({
      .name = "eye.iris",
      .help = "Iris centre and edge (5 points per eye) and the eye contour (71 per eye) with "
              "MediaPipe Iris; batches both eyes of several frames per forward pass.",
      .params = {{"path", ParamType::text, std::string(), "iris ONNX; empty: the converted iris.onnx"}},
      .info = [](const Params&) {
        return StageInfo{.reads = {"frame", "landmarks"},
                         .writes = {"iris", "eye_contours"},
                         .batching = true};
      },
      .make = [](const Params& params) -> std::unique_ptr<Stage> {
        std::filesystem::path path = params.text("path");
        if (path.empty()) path = models_dir() / IrisModel::kModelFile;
        return std::make_unique<EyeIris>(path);
      },
  });
}

}  // namespace micromodels::vision
