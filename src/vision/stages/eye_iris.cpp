// `eye.iris`: MediaPipe's iris model on both eyes, batched over eyes and frames; with `every`
// above 1, run on key frames only and carried along with the face in between
// (iris_schedule.hpp).
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>

#include "eye_fields.hpp"
#include "image_mat.hpp"
#include "iris_schedule.hpp"
#include "model_pool.hpp"
#include "stage_registration.hpp"
#include "vision/models/iris_model.hpp"
#include "vision/models/landmarks68.hpp"
#include "vision/models/model_files.hpp"

namespace micromodels::vision {

namespace {

// What one stream's last model run saw and found.
struct StreamIris {
  std::mutex mutex;  // a pipeline without state: per_stream must still not race
  std::optional<IrisKeyFrame> key;
};

class EyeIris final : public Stage {
 public:
  EyeIris(const std::filesystem::path& path, IrisScheduleOptions schedule)
      : models_([path] { return std::make_unique<IrisModel>(path); }), schedule_(schedule) {}

  void process(Packet packet, std::vector<Packet>& out) override {
    std::vector<Packet> batch;
    batch.push_back(std::move(packet));
    process_batch(batch, out);
  }

  // Both eyes of every frame in the batch that needs the model go through one forward pass;
  // the others are carried from their stream's last run, in the batch's order.
  void process_batch(std::vector<Packet>& batch, std::vector<Packet>& out) override {
    // The streams' states stay locked for the whole batch: a frame is carried from the last run
    // before it, which may be in this very batch.
    std::map<std::uint32_t, std::shared_ptr<StreamIris>> streams;
    std::vector<std::unique_lock<std::mutex>> locks;
    if (schedule_.every > 1) {
      for (const Packet& packet : batch) {
        if (streams.contains(packet.stream)) continue;
        const std::shared_ptr<StreamIris> state = stream_state(packet.stream);
        streams.emplace(packet.stream, state);
      }
      for (auto& [stream, state] : streams) locks.emplace_back(state->mutex);
    }

    // Which frames run the model: decided from the landmarks alone, before any forward pass.
    enum class Plan { none, run, carry };
    std::vector<Plan> plan(batch.size(), Plan::none);
    std::map<std::uint32_t, std::optional<IrisKeyFrame>> planned_key;  // key as of the plan
    for (const auto& [stream, state] : streams) planned_key[stream] = state->key;
    std::vector<EyeCrop> crops;  // two per frame that runs the model, in the batch's order
    for (std::size_t i = 0; i < batch.size(); ++i) {
      const Packet& packet = batch[i];
      const Points* lm = points_field(packet, "landmarks", kLandmarkCount);
      if (lm == nullptr) {
        if (schedule_.every > 1) planned_key[packet.stream].reset();
        continue;
      }
      if (schedule_.every > 1) {
        std::optional<IrisKeyFrame>& key = planned_key[packet.stream];
        if (can_carry_iris(key, packet.seq, *lm, schedule_)) {
          plan[i] = Plan::carry;
          continue;
        }
        // Only seq and landmarks are needed to plan; the points come after the forward pass.
        key = IrisKeyFrame{.seq = packet.seq,
                           .landmarks = *lm,
                           .iris = Points(2 * kIrisPointsPerEye),
                           .contours = {}};
      }
      plan[i] = Plan::run;
      const cv::Mat frame = to_mat(packet.get<Image>("frame"));
      const auto at = [&](std::size_t k) { return cv::Point2f((*lm)[k].x, (*lm)[k].y); };
      // The model expects a subject's right eye; the left eye is mirrored into that shape.
      crops.push_back(IrisModel::crop_eye(frame, at(36), at(39), false));
      crops.push_back(IrisModel::crop_eye(frame, at(42), at(45), true));
    }
    std::vector<IrisLandmarks> results;
    if (!crops.empty()) results = models_.with([&](IrisModel& model) { return model.run(crops); });

    std::size_t next_result = 0;
    for (std::size_t i = 0; i < batch.size(); ++i) {
      Packet& packet = batch[i];
      if (plan[i] == Plan::none) {
        // No face: nothing to carry into the face that comes back.
        if (schedule_.every > 1) streams.at(packet.stream)->key.reset();
        out.push_back(std::move(packet));
        continue;
      }
      const Points& landmarks = *points_field(packet, "landmarks", kLandmarkCount);
      if (plan[i] == Plan::run) {
        Points iris;
        Points contours;
        for (std::size_t eye = 0; eye < 2; ++eye) {
          const IrisLandmarks& r = results[2 * next_result + eye];
          for (const cv::Point3f& p : r.iris) iris.push_back({p.x, p.y});
          for (const cv::Point3f& p : r.contour) contours.push_back({p.x, p.y});
        }
        ++next_result;
        if (schedule_.every > 1) {
          streams.at(packet.stream)->key = IrisKeyFrame{
              .seq = packet.seq, .landmarks = landmarks, .iris = iris, .contours = contours};
        }
        packet.set("iris", std::move(iris));
        packet.set("eye_contours", std::move(contours));
        packet.set("iris_measured", std::int64_t{1});
      } else {
        const IrisKeyFrame& key = *streams.at(packet.stream)->key;
        const cv::Matx23f motion = face_motion(key.landmarks, landmarks);
        packet.set("iris", move_points(key.iris, motion));
        if (!key.contours.empty()) {
          packet.set("eye_contours", move_points(key.contours, motion));
        } else {
          packet.erase("eye_contours");
        }
        packet.set("iris_measured", std::int64_t{0});
      }
      out.push_back(std::move(packet));
    }
  }

 private:
  std::shared_ptr<StreamIris> stream_state(std::uint32_t stream) {
    std::lock_guard lock(streams_mutex_);
    std::shared_ptr<StreamIris>& state = streams_[stream];
    if (!state) state = std::make_shared<StreamIris>();
    return state;
  }

  ModelPool<IrisModel> models_;
  IrisScheduleOptions schedule_;
  std::mutex streams_mutex_;
  std::map<std::uint32_t, std::shared_ptr<StreamIris>> streams_;
};

}  // namespace

void register_eye_iris(Registry& registry) {
  registry.add({
      .name = "eye.iris",
      .help = "Iris centre and edge (5 points per eye) and the eye contour (71 per eye) with "
              "MediaPipe Iris; batches both eyes of several frames per forward pass. With every "
              "> 1 the model runs on at least every Nth frame of a stream and the frames between "
              "carry the last run's points along with the face (run it with state: per_stream).",
      .params = {{"path", ParamType::text, std::string(),
                  "iris ONNX; empty: the converted iris.onnx"},
                 {"every", ParamType::integer, std::int64_t{1},
                  "run the model on at least every Nth frame of a stream (1: every frame)"},
                 {"max_motion", ParamType::number, 0.2,
                  "with every > 1: run anyway when the face moved more than this since the last "
                  "run, in eye widths"},
                 {"max_ear_change", ParamType::number, 0.04,
                  "with every > 1: run anyway when an eye's aspect ratio (openness) changed more "
                  "than this since the last run"}},
      .info =
          [](const Params&) {
            return StageInfo{.reads = {"frame", "landmarks"},
                             .writes = {"iris", "eye_contours", "iris_measured"},
                             .batching = true};
          },
      .make = [](const Params& params) -> std::unique_ptr<Stage> {
        std::filesystem::path path = params.text("path");
        if (path.empty()) path = models_dir() / IrisModel::kModelFile;
        IrisScheduleOptions schedule;
        schedule.every = params.integer("every");
        schedule.max_motion = params.number("max_motion");
        schedule.max_ear_change = params.number("max_ear_change");
        if (schedule.every < 1) {
          throw std::invalid_argument("param 'every' must be >= 1, got " +
                                      std::to_string(schedule.every));
        }
        if (!(schedule.max_motion >= 0)) {
          throw std::invalid_argument("param 'max_motion' must be >= 0, got " +
                                      std::to_string(schedule.max_motion));
        }
        if (!(schedule.max_ear_change >= 0)) {
          throw std::invalid_argument("param 'max_ear_change' must be >= 0, got " +
                                      std::to_string(schedule.max_ear_change));
        }
        return std::make_unique<EyeIris>(path, schedule);
      },
  });
}

}  // namespace micromodels::vision
