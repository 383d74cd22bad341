// Stages written in Python (`type: python`), in a program that embeds the interpreter.
#pragma once

#include "micromodels/registry.hpp"

namespace micromodels {

/// Registers the `python` stage type into `registry`, and the `micromodels` module (Packet,
/// Rect, Point) that the stages' code imports. The interpreter starts when a pipeline first
/// names a Python stage. Link micromodels::python_embed. (Inside a Python process, the
/// `micromodels` Python module registers the stage type itself.)
void register_python_stages(Registry& registry);

}  // namespace micromodels
