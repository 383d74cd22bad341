// The `python` stage type: a Python class with process(packet) as a stage of a pipeline.
#pragma once

#include "micromodels/registry.hpp"

namespace micromodels::python {

/// Registers the `python` stage type (params module, class, path) into `registry`.
void register_python_stage(Registry& registry);

}  // namespace micromodels::python
