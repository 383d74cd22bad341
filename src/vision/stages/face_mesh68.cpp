// `face.mesh68`: the 68 iBUG landmarks from MediaPipe's FaceMesh (468 points), a second landmark
// model beside dlib's `face.landmarks68`, with a licence that allows commercial use.
#include <array>

#include "image_mat.hpp"
#include "model_pool.hpp"
#include "stage_registration.hpp"
#include "vision/models/face_mesh.hpp"
#include "vision/models/model_files.hpp"

namespace micromodels::vision {

namespace {

// The FaceMesh point nearest to each of the 68 iBUG points (jaw 0-16, brows 17-26, nose 27-35,
// eyes 36-47, lips 48-67), as the MediaPipe-to-dlib correspondences in common use give them. The
// eyes, which the eye-contact stages read, map exactly: corners 33/133 and 362/263, lids on the
// same contour; the jaw line is approximate (the mesh's contour sits slightly inside dlib's).
constexpr std::array<int, 68> kMeshToIbug = {
    127, 234, 93,  132, 58,  136, 150, 176, 152, 400, 379, 365, 288, 361, 323, 454, 356,  // jaw
    70,  63,  105, 66,  107,                                                                // brow R
    336, 296, 334, 293, 300,                                                                // brow L
    168, 197, 5,   4,   75,  97,  2,   326, 305,                                            // nose
    33,  160, 158, 133, 153, 144,                                                           // eye R
    362, 385, 387, 263, 373, 380,                                                           // eye L
    61,  39,  37,  0,   267, 269, 291, 405, 314, 17,  84,  181,                             // lips
    78,  82,  13,  312, 308, 317, 14,  87};                                                 // inner

class FaceMesh68 final : public Stage {
 public:
  FaceMesh68(const std::filesystem::path& path, double crop_scale, double min_score)
      : models_([path] { return std::make_unique<FaceMesh>(path); }),
        crop_scale_(static_cast<float>(crop_scale)),
        min_score_(static_cast<float>(min_score)) {}

  void process(Packet packet, std::vector<Packet>& out) override {
    const Rects* face = packet.has("face") ? &packet.get<Rects>("face") : nullptr;
    packet.erase("landmarks");
    if (face != nullptr && !face->empty() && (*face)[0].width > 1 && (*face)[0].height > 1) {
      const Rect& r = (*face)[0];
      const cv::Mat frame = to_mat(packet.get<Image>("frame"));
      const FaceCrop crop = FaceMesh::crop_face(frame, cv::Rect2f(r.x, r.y, r.width, r.height),
                                                0.0F, crop_scale_);
      const FaceMeshResult mesh =
          models_.with([&](FaceMesh& model) { return model.run({crop}).front(); });
      if (mesh.face_score >= min_score_) {
        Points landmarks;
        landmarks.reserve(kMeshToIbug.size());
        for (const int k : kMeshToIbug) {
          const cv::Point3f& p = mesh.points[static_cast<std::size_t>(k)];
          landmarks.push_back({p.x, p.y});
        }
        packet.set("landmarks", std::move(landmarks));
      }
    }
    out.push_back(std::move(packet));
  }

 private:
  ModelPool<FaceMesh> models_;
  float crop_scale_;
  float min_score_;
};

}  // namespace

void register_face_mesh68(Registry& registry) {
  registry.add({
      .name = "face.mesh68",
      .help = "68 face landmarks (iBUG 300-W layout, as face.landmarks68 writes them) from "
              "MediaPipe's FaceMesh inside the tracked 'face'; Apache-2.0 model, usable where "
              "dlib's landmark model is not (see docs/models.md).",
      .params = {{"path", ParamType::text, std::string(),
                  "FaceMesh ONNX file; empty: the fetched " + std::string(FaceMesh::kModelFile)},
                 {"crop_scale", ParamType::number, 1.5,
                  "side of the square crop around the face box, in face-box sides",
                  ParamRange{.low = 1, .high = 4}},
                 {"min_score", ParamType::number, 0.5,
                  "below this face score no landmarks are written (as with no face)",
                  ParamRange{.low = 0, .high = 1}}},
      .info =
          [](const Params&) {
            return StageInfo{.reads = {"frame", "face"}, .writes = {"landmarks"}};
          },
      .make = [](const Params& params) -> std::unique_ptr<Stage> {
        std::filesystem::path path = params.text("path");
        if (path.empty()) path = models_dir() / FaceMesh::kModelFile;
        return std::make_unique<FaceMesh68>(path, params.number("crop_scale"),
                                            params.number("min_score"));
      },
  });
}

}  // namespace micromodels::vision
