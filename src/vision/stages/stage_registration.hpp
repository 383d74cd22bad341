// One registration function per vision stage file; vision_stages.cpp calls them all.
#pragma once

#include "micromodels/registry.hpp"

namespace micromodels::vision {

void register_video_stages(Registry& registry);     // video.source, video.sink
void register_onnx_model(Registry& registry);       // model.onnx
void register_face_detect(Registry& registry);      // face.detect
void register_face_track(Registry& registry);       // face.track
void register_face_landmarks(Registry& registry);   // face.landmarks68
void register_face_mesh68(Registry& registry);      // face.mesh68
void register_eye_iris_schedule(Registry& registry);  // eye.iris_schedule
void register_eye_iris(Registry& registry);         // eye.iris
void register_eye_iris_carry(Registry& registry);   // eye.iris_carry
void register_eye_refine(Registry& registry);       // eye.refine
void register_face_smooth(Registry& registry);      // face.smooth
void register_gaze_estimate(Registry& registry);    // gaze.estimate
void register_eye_steady(Registry& registry);       // eye.steady
void register_gaze_redirect(Registry& registry);    // gaze.redirect
void register_image_blend(Registry& registry);      // image.blend
void register_eye_contact_monolith(Registry& registry);  // eye_contact.monolith

}  // namespace micromodels::vision
