// `eye.iris_carry`: after eye.iris, gives the frames eye.iris_schedule did not mark as key frames
// the iris and eye contours of their key frame, moved along with the face (iris_schedule.hpp).
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>

#include "eye_fields.hpp"
#include "iris_schedule.hpp"
#include "stage_registration.hpp"
#include "stream_states.hpp"

namespace micromodels::vision {

namespace {

// What the model measured on a stream's last key frame.
struct MeasuredIris {
  std::uint64_t seq = 0;
  Points landmarks;  // 68
  Points iris;       // 10
  Points contours;   // 142, or empty
};

struct StreamCarry {
  std::mutex mutex;  // a misconfigured pipeline (no per_stream) must still not race
  std::optional<MeasuredIris> key;
};

class EyeIrisCarry final : public Stage {
 public:
  void forget_stream(std::uint32_t stream) override { streams_.forget(stream); }

  void process(Packet packet, std::vector<Packet>& out) override {
    const std::shared_ptr<StreamCarry> state = streams_.of(packet.stream);
    std::lock_guard lock(state->mutex);
    const Points* landmarks = points_field(packet, "landmarks", kLandmarkCount);
    if (landmarks == nullptr) {
      state->key.reset();
    } else if (packet.has("iris_key") &&
               static_cast<std::uint64_t>(packet.get<std::int64_t>("iris_key")) != packet.seq) {
      carry(packet, *landmarks, state->key);
    } else if (const Points* iris = points_field(packet, "iris", 2 * kIrisPointsPerEye)) {
      const Points* contours = points_field(packet, "eye_contours", 2 * kContourPointsPerEye);
      state->key = MeasuredIris{.seq = packet.seq,
                                .landmarks = *landmarks,
                                .iris = *iris,
                                .contours = contours != nullptr ? *contours : Points{}};
    } else {
      state->key.reset();  // a key frame the model gave nothing for
    }
    out.push_back(std::move(packet));
  }

 private:
  // The key frame's points, moved by the similarity that takes its rigid landmarks onto this
  // frame's. Without that key frame (it failed, or this stream's state started elsewhere) the
  // frame goes on without an iris, and the stage counts it.
  void carry(Packet& packet, const Points& landmarks, const std::optional<MeasuredIris>& key) {
    const auto wanted = static_cast<std::uint64_t>(packet.get<std::int64_t>("iris_key"));
    if (!key || key->seq != wanted) {
      count("key_frame_missing");
      return;
    }
    const cv::Matx23f motion = face_motion(key->landmarks, landmarks);
    packet.set("iris", move_points(key->iris, motion));
    if (!key->contours.empty()) {
      packet.set("eye_contours", move_points(key->contours, motion));
    } else {
      packet.erase("eye_contours");
    }
    packet.set("iris_measured", std::int64_t{0});
  }

  StreamStates<StreamCarry> streams_;
};

}  // namespace

void register_eye_iris_carry(Registry& registry) {
  registry.add({
      .name = "eye.iris_carry",
      .help = "After eye.iris: on the frames eye.iris_schedule did not mark as key frames, the "
              "key frame's 'iris' and 'eye_contours' moved along with the face (a similarity "
              "fitted to the eye corners and the nose bridge), 'iris_measured' 0. Run it with "
              "state: per_stream.",
      .info =
          [](const Params&) {
            return StageInfo{.reads = {"landmarks"},
                             .writes = {"iris", "eye_contours", "iris_measured"},
                             .optional_reads = {"iris_key", "iris", "eye_contours"},
                             .per_stream = true};
          },
      .make = [](const Params&) -> std::unique_ptr<Stage> {
        return std::make_unique<EyeIrisCarry>();
      },
  });
}

}  // namespace micromodels::vision
