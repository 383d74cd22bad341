// The one place where an exception from stage code is contained.
#pragma once

#include <exception>
#include <string>

namespace micromodels::detail {

/// Runs `call` (a stage's process or process_batch, a source's next) and turns anything it
/// throws, std::exception or not, into `error`: the packet fails, the process lives on
/// (DESIGN.md: stage code may throw, the runner contains it). Returns false when it threw.
template <class Call>
bool contained(Call&& call, std::string& error) noexcept {
  try {
    call();
    return true;
  } catch (const std::exception& e) {
    try {
      error = e.what();
    } catch (...) {
      error.clear();  // no memory even for the message: the packet still fails
    }
  } catch (...) {
    try {
      error = "an exception not derived from std::exception";
    } catch (...) {
      error.clear();
    }
  }
  return false;
}

}  // namespace micromodels::detail
