// The `micromodels` module for stage code in a program that embeds the interpreter (the tool).
#include <pybind11/embed.h>

#include "micromodels/python.hpp"
#include "python_packet.hpp"
#include "python_stage.hpp"

PYBIND11_EMBEDDED_MODULE(micromodels, module) {
  module.doc() = "The types a Python stage's process() receives and writes.";
  micromodels::python::bind_packet(module);
  micromodels::python::bind_count(module);
}

namespace micromodels {

// Here, beside the embedded module, so that a program calling it links the module in.
void register_python_stages(Registry& registry) { python::register_python_stage(registry); }

}  // namespace micromodels
