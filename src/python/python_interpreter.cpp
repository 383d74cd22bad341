#include "python_interpreter.hpp"

#include <mutex>

#include <pybind11/embed.h>

namespace micromodels::python {

void ensure_interpreter() {
  static std::once_flag once;
  std::call_once(once, [] {
    if (Py_IsInitialized() != 0) return;
    PyConfig config;
    PyConfig_InitPythonConfig(&config);
    // The interpreter the build found (its standard library and site-packages: numpy, OpenCV),
    // whatever `python3` comes first on PATH; and no signal handlers: Ctrl-C stays the tool's.
    PyConfig_SetBytesString(&config, &config.program_name, MICROMODELS_PYTHON_EXECUTABLE);
    config.install_signal_handlers = 0;
    pybind11::initialize_interpreter(&config, 0, nullptr, false);
    pybind11::detail::get_internals();
    // The program's embedded `micromodels` module defines the Packet the stages receive.
    pybind11::module_::import("micromodels");
    PyEval_SaveThread();  // never finalized: stages may be destroyed until the process exits
  });
}

Gil::Gil() {
  static thread_local const bool kept = (acquire_.inc_ref(), true);
  (void)kept;
}

}  // namespace micromodels::python
