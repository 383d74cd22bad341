// The Python interpreter the Python stages run in, and the GIL around their calls.
#pragma once

#include <pybind11/pybind11.h>

namespace micromodels::python {

/// Starts the interpreter once per process when nothing has (the command-line tool embeds it),
/// then releases the GIL: the engine's threads run without it and take it only around Python
/// code. Inside a Python process (the `micromodels` module) the interpreter is already there.
void ensure_interpreter();

/// Holds the GIL for a scope. Each thread keeps its Python thread state after the first time, so
/// that taking the GIL costs a lock, not the creation of a thread state.
class Gil {
 public:
  Gil();
  Gil(const Gil&) = delete;
  Gil& operator=(const Gil&) = delete;

 private:
  pybind11::gil_scoped_acquire acquire_;
};

}  // namespace micromodels::python
