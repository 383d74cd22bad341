// The `python` stage type: a Python class with process(packet) as a stage of a pipeline.
#pragma once

#include <pybind11/pybind11.h>

#include "micromodels/registry.hpp"

namespace micromodels::python {

/// Registers the `python` stage type (params module, class, path) into `registry`.
void register_python_stage(Registry& registry);

/// Adds `count(event, n=1)` to the `micromodels` module: from a Python stage's process() or
/// process_batch(), counts an event of that stage (shown as `events` in the metrics).
void bind_count(pybind11::module_& module);

}  // namespace micromodels::python
