// `eye.iris`: MediaPipe's iris model on both eyes, batched over eyes and frames. Stateless: it
// runs the model on every frame with landmarks, or, after eye.iris_schedule, on the key frames
// only (`iris_key` equal to the frame's seq); eye.iris_carry fills in the others.
#include <memory>
#include <string>

#include "eye_fields.hpp"
#include "image_mat.hpp"
#include "model_pool.hpp"
#include "stage_registration.hpp"
#include "vision/models/iris_model.hpp"
#include "vision/models/landmarks68.hpp"
#include "vision/models/model_files.hpp"

namespace micromodels::vision {

namespace {

// Whether the model runs on this frame: it has a face, and no schedule said to carry it.
const Points* landmarks_to_run(const Packet& packet) {
  const Points* landmarks = points_field(packet, "landmarks", kLandmarkCount);
  if (landmarks == nullptr) return nullptr;
  if (packet.has("iris_key") &&
      static_cast<std::uint64_t>(packet.get<std::int64_t>("iris_key")) != packet.seq) {
    return nullptr;  // eye.iris_carry brings the key frame's points
  }
  return landmarks;
}

class EyeIris final : public Stage {
 public:
  explicit EyeIris(const std::filesystem::path& path)
      : models_([path] { return std::make_unique<IrisModel>(path); }) {}

  void process(Packet packet, std::vector<Packet>& out) override {
    std::vector<Packet> batch;
    batch.push_back(std::move(packet));
    process_batch(batch, out);
  }

  // Both eyes of every frame in the batch that runs the model go through one forward pass.
  void process_batch(std::vector<Packet>& batch, std::vector<Packet>& out) override {
    std::vector<EyeCrop> crops;  // two per frame that runs the model, in the batch's order
    for (const Packet& packet : batch) {
      const Points* lm = landmarks_to_run(packet);
      if (lm == nullptr) continue;
      const cv::Mat frame = to_mat(packet.get<Image>("frame"));
      const auto at = [&](std::size_t k) { return cv::Point2f((*lm)[k].x, (*lm)[k].y); };
      // The model expects a subject's right eye; the left eye is mirrored into that shape.
      crops.push_back(IrisModel::crop_eye(frame, at(36), at(39), false));
      crops.push_back(IrisModel::crop_eye(frame, at(42), at(45), true));
    }
    std::vector<IrisLandmarks> results;
    if (!crops.empty()) results = models_.with([&](IrisModel& model) { return model.run(crops); });

    std::size_t next_result = 0;
    for (Packet& packet : batch) {
      if (landmarks_to_run(packet) != nullptr) {
        Points iris;
        Points contours;
        for (std::size_t eye = 0; eye < 2; ++eye) {
          const IrisLandmarks& r = results[2 * next_result + eye];
          for (const cv::Point3f& p : r.iris) iris.push_back({p.x, p.y});
          for (const cv::Point3f& p : r.contour) contours.push_back({p.x, p.y});
        }
        ++next_result;
        packet.set("iris", std::move(iris));
        packet.set("eye_contours", std::move(contours));
        packet.set("iris_measured", std::int64_t{1});
      }
      out.push_back(std::move(packet));
    }
  }

 private:
  ModelPool<IrisModel> models_;
};

}  // namespace

void register_eye_iris(Registry& registry) {
  registry.add({
      .name = "eye.iris",
      .help = "Iris centre and edge (5 points per eye) and the eye contour (71 per eye) with "
              "MediaPipe Iris; batches both eyes of several frames per forward pass. Stateless: "
              "runs on every frame with landmarks, or only on the key frames eye.iris_schedule "
              "marks ('iris_key'), eye.iris_carry filling in the others.",
      .params = {{"path", ParamType::text, std::string(),
                  "iris ONNX; empty: the converted iris.onnx"}},
      .info =
          [](const Params&) {
            return StageInfo{.reads = {"frame", "landmarks"},
                             .writes = {"iris", "eye_contours", "iris_measured"},
                             .batching = true,
                             .optional_reads = {"iris_key"}};
          },
      .make = [](const Params& params) -> std::unique_ptr<Stage> {
        std::filesystem::path path = params.text("path");
        if (path.empty()) path = models_dir() / IrisModel::kModelFile;
        return std::make_unique<EyeIris>(path);
      },
  });
}

}  // namespace micromodels::vision
