// The vision stages (video I/O, face detection, tracking, landmarks, iris, gaze, blending).
#pragma once

#include "micromodels/registry.hpp"

namespace micromodels::vision {

/// Registers every vision stage type (`video.source`, `face.detect`, ...) into `registry`.
///
///   Registry& registry = Registry::global();
///   micromodels::vision::register_stages(registry);
void register_stages(Registry& registry);

}  // namespace micromodels::vision
