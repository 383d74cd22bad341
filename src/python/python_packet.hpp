// The packet a Python stage's process() receives: micromodels.Packet.
#pragma once

#include <cstddef>
#include <map>
#include <memory>
#include <string>

#include <pybind11/pybind11.h>

#include "micromodels/packet.hpp"
#include "micromodels/params.hpp"

namespace micromodels::python {

/// What a Python stage class declares: field name to field type (an index of Value), and its
/// own params (name to type).
struct Declaration {
  std::map<std::string, std::size_t> reads{};
  std::map<std::string, std::size_t> optional_reads{};
  std::map<std::string, std::size_t> writes{};
  bool batching = false;  // the class defines process_batch
  std::map<std::string, ParamType> params{};
  friend bool operator==(const Declaration&, const Declaration&) = default;
};

/// A packet lent to Python for one call. Reading a field checks it against the declared reads
/// and writes, writing one against the declared writes, so that what the plan checks (and what
/// a hop between processes carries) is what the code does.
struct PythonPacket {
  Packet packet;
  std::shared_ptr<const Declaration> declaration;
  bool taken = false;  // handed back to the engine already
};

/// Defines micromodels.Packet (and Rect, Point) in `module`.
void bind_packet(pybind11::module_& module);

}  // namespace micromodels::python
