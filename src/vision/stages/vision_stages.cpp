#include "micromodels/vision/vision_stages.hpp"

#include "stage_registration.hpp"

namespace micromodels::vision {

void register_stages(Registry& registry) {
  register_video_stages(registry);
  register_onnx_model(registry);
  register_face_detect(registry);
  register_face_track(registry);
  register_face_landmarks(registry);
  register_face_mesh68(registry);
  register_eye_iris_schedule(registry);
  register_eye_iris(registry);
  register_eye_iris_carry(registry);
  register_eye_refine(registry);
  register_face_smooth(registry);
  register_gaze_estimate(registry);
  register_eye_steady(registry);
  register_gaze_redirect(registry);
  register_image_blend(registry);
  register_eye_contact_monolith(registry);
}

}  // namespace micromodels::vision
