// `eye.iris_schedule`: which frames of a stream eye.iris runs its model on (the key frames), from
// the landmarks alone and the stream's last key frame (iris_schedule.hpp). Writes `iris_key`, the
// seq of the key frame whose iris a frame gets: its own on a key frame.
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <string>

#include "eye_fields.hpp"
#include "iris_schedule.hpp"
#include "stage_registration.hpp"
#include "stream_states.hpp"

namespace micromodels::vision {

namespace {

struct StreamSchedule {
  std::mutex mutex;  // a misconfigured pipeline (no per_stream) must still not race
  std::optional<IrisKeyFrame> key;
};

class EyeIrisSchedule final : public Stage {
 public:
  explicit EyeIrisSchedule(IrisScheduleOptions options) : options_(options) {}

  void forget_stream(std::uint32_t stream) override { streams_.forget(stream); }

  void process(Packet packet, std::vector<Packet>& out) override {
    const std::shared_ptr<StreamSchedule> state = streams_.of(packet.stream);
    std::lock_guard lock(state->mutex);
    const Points* landmarks = points_field(packet, "landmarks", kLandmarkCount);
    if (landmarks == nullptr) {
      state->key.reset();  // no face: nothing to carry into the face that comes back
    } else {
      if (!can_carry_iris(state->key, packet.seq, *landmarks, options_)) {
        state->key = IrisKeyFrame{.seq = packet.seq, .landmarks = *landmarks};
      }
      packet.set("iris_key", static_cast<std::int64_t>(state->key->seq));
    }
    out.push_back(std::move(packet));
  }

 private:

  IrisScheduleOptions options_;
  StreamStates<StreamSchedule> streams_;
};

}  // namespace

namespace {

IrisScheduleOptions settings(const Params& params) {
  IrisScheduleOptions options;
  options.every = params.integer("every");
  options.max_motion = params.number("max_motion");
  options.max_ear_change = params.number("max_ear_change");
  return options;
}

}  // namespace

void register_eye_iris_schedule(Registry& registry) {
  registry.add({
      .name = "eye.iris_schedule",
      .help = "Marks the key frames eye.iris runs its model on: at least every Nth frame of a "
              "stream, and sooner when the face moved or a lid opened or closed since the last "
              "one. Writes 'iris_key', the seq of the key frame whose iris a frame gets (its "
              "own on a key frame). Run it with state: per_stream.",
      .params = {{"every", ParamType::integer, std::int64_t{2},
                  "a key frame at least every Nth frame of a stream (1: every frame)",
                  ParamRange{.low = 1}},
                 {"max_motion", ParamType::number, 0.2,
                  "a key frame anyway when the face moved more than this since the last one, in "
                  "eye widths",
                  ParamRange{.low = 0}},
                 {"max_ear_change", ParamType::number, 0.04,
                  "a key frame anyway when an eye's aspect ratio (openness) changed more than "
                  "this since the last one",
                  ParamRange{.low = 0}}},
      .info =
          [](const Params&) {
            return StageInfo{.reads = {"landmarks"}, .writes = {"iris_key"}, .per_stream = true};
          },
      .make = [](const Params& params) -> std::unique_ptr<Stage> {
        return std::make_unique<EyeIrisSchedule>(settings(params));
      },
  });
}

}  // namespace micromodels::vision
