// `eye_contact.monolith`: the whole eye-contact task as one stage, the way it is written without
// micro-models: detect, landmarks, iris, refinement, smoothing, gaze estimation, redirection and
// blending in sequence
// on every frame. It calls the very stages the micro-model pipeline runs, so the two differ
// only in how the work is arranged: the baseline for `micromodels bench eye_contact`.
#include "stage_registration.hpp"

namespace micromodels::vision {

namespace {

// The params, checked; a ParamError names the key, so a pipeline file reports its line.
void check_params(const Params& params) {
  const std::string& detector = params.text("detector");
  if (detector != "blazeface" && detector != "blazeface_back" && detector != "hog") {
    throw ParamError(
        "detector",
        "param 'detector': expected blazeface, blazeface_back or hog, got '" + detector + "'");
  }
}

class EyeContactMonolith final : public Stage {
 public:
  EyeContactMonolith(const Registry& registry, const Params& params) {
    check_params(params);
    const auto build = [&](const std::string& type, std::map<std::string, ParamValue> given) {
      const StageType* stage_type = registry.find(type);
      if (stage_type == nullptr) throw std::logic_error("stage type '" + type + "' is not registered");
      steps_.push_back(stage_type->make(Params::resolve(type, stage_type->params, given)));
    };
    build("face.detect", {{"model", params.text("detector")}, {"every", std::int64_t{1}}});
    build("face.landmarks68", {});
    build("eye.iris", {});
    build("eye.refine", {});
    build("face.smooth", {});
    build("gaze.estimate", {});
    build("gaze.redirect", {});
    build("image.blend", {});
  }

  void process(Packet packet, std::vector<Packet>& out) override {
    std::vector<Packet> current;
    current.push_back(std::move(packet));
    for (std::size_t i = 0; i < steps_.size(); ++i) {
      std::vector<Packet> next;
      for (Packet& p : current) steps_[i]->process(std::move(p), next);
      current = std::move(next);
      if (i == 0) {
        for (Packet& p : current) select_face(p);  // no tracker: the best detection of this frame
      }
    }
    for (Packet& p : current) out.push_back(std::move(p));
  }

 private:
  static void select_face(Packet& packet) {
    Rects face;
    if (packet.has("faces")) {
      const Rects& faces = packet.get<Rects>("faces");
      if (!faces.empty()) face.push_back(faces.front());  // sorted best first
    }
    packet.set("face", std::move(face));
  }

  std::vector<std::unique_ptr<Stage>> steps_;
};

}  // namespace

void register_eye_contact_monolith(Registry& registry) {
  const Registry* types = &registry;
  registry.add({
      .name = "eye_contact.monolith",
      .help = "The eye-contact task in one stage, detecting on every frame (benchmark baseline).",
      .params = {{"detector", ParamType::text, std::string("blazeface"), "blazeface or hog"}},
      .info =
          [](const Params& params) {
            check_params(params);  // a bad param is a configuration error, at its line
            return StageInfo{.reads = {"frame"},
                             .writes = {"faces", "face", "landmarks", "iris", "gaze",
                                        "gaze_strength", "generated", "input_frame"}};
          },
      .make = [types](const Params& params) -> std::unique_ptr<Stage> {
        return std::make_unique<EyeContactMonolith>(*types, params);
      },
  });
}

}  // namespace micromodels::vision
