// Packet field values as Python objects, and back: the conversions of the Python stages.
#pragma once

#include <cstddef>
#include <optional>
#include <string>
#include <string_view>

#include <pybind11/pybind11.h>

#include "micromodels/packet.hpp"

namespace micromodels::python {

/// The Value alternative a type name stands for (the names of value_type_name: "image",
/// "tensor", "rects", "points", "scalars", "int", "number", "text", "bytes"); nullopt when none.
[[nodiscard]] std::optional<std::size_t> field_type(std::string_view name);
/// The type names, for messages: "image, tensor, ...".
[[nodiscard]] std::string field_type_names();

/// A field as Python sees it. Images and tensors are read-only numpy arrays over the packet's
/// own buffer (no copy; an image of one channel is H x W, otherwise H x W x C); rects and points
/// are lists of micromodels.Rect and micromodels.Point; scalars a list of floats; int, number
/// and text the Python int, float and str; bytes a bytes object (a copy). Needs the GIL.
[[nodiscard]] pybind11::object to_python(const Value& value);

/// A Python object as the field type `type`, for the field `field`. numpy arrays are copied
/// into a new buffer (uint8 or float32, made C-contiguous first). Throws pybind11::type_error
/// naming the field, its declared type and what was given. Needs the GIL.
[[nodiscard]] Value from_python(pybind11::handle object, std::size_t type, std::string_view field);

/// Defines micromodels.Rect and micromodels.Point in `module`.
void bind_geometry(pybind11::module_& module);

}  // namespace micromodels::python
