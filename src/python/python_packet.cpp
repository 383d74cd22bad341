#include "python_packet.hpp"

#include "core/detail/transport_fields.hpp"
#include "python_fields.hpp"

namespace py = pybind11;

namespace micromodels::python {

namespace {

const Packet& held(const PythonPacket& self) {
  if (self.taken) {
    throw py::value_error("this packet was returned by an earlier call and belongs to the engine now");
  }
  return self.packet;
}

constexpr const char* kTypes = "image, tensor, rects, points, scalars, int, number, text, bytes";

// The field type a value of this Python type most likely is, for an example in an error.
std::string likely_type(py::handle value) {
  if (py::isinstance<py::bool_>(value) || py::isinstance<py::int_>(value)) return "int";
  if (py::isinstance<py::float_>(value)) return "number";
  if (py::isinstance<py::str>(value)) return "text";
  if (py::isinstance<py::bytes>(value)) return "bytes";
  if (py::hasattr(value, "dtype")) {  // an array: 8-bit pixels, or numbers
    return py::str(value.attr("dtype")).cast<std::string>() == "uint8" ? "image" : "tensor";
  }
  if (py::isinstance<py::sequence>(value) && py::len(value) > 0) {  // a list of boxes, or points
    const py::handle first = value[py::int_(0)];
    if (py::isinstance<Rect>(first)) return "rects";
    if (py::isinstance<Point>(first)) return "points";
  }
  return "scalars";
}

// The declared type of a field this packet's stage may read.
std::size_t readable(const PythonPacket& self, const std::string& name) {
  for (const auto* fields : {&self.declaration->reads, &self.declaration->optional_reads,
                             &self.declaration->writes}) {
    if (const auto found = fields->find(name); found != fields->end()) return found->second;
  }
  // KeyError shows its message as a repr: with no apostrophe in it, nothing is escaped.
  throw py::key_error("field " + name +
                      " is not declared: add it with its type to the reads (or optional_reads) "
                      "of the class, e.g. reads = {\"" +
                      name + "\": \"image\"}; the types: " + kTypes);
}

py::object get(const PythonPacket& self, const std::string& name) {
  const std::size_t type = readable(self, name);
  const Value* value = held(self).find(name);
  if (value == nullptr) {
    throw py::key_error("packet stream " + std::to_string(self.packet.stream) + " seq " +
                        std::to_string(self.packet.seq) + " has no field '" + name + "'");
  }
  if (value->index() != type) {
    throw py::type_error("field '" + name + "' is declared " + std::string(value_type_name(type)) +
                         " but holds " + std::string(value_type_name(value->index())));
  }
  return to_python(*value);
}

void set(PythonPacket& self, const std::string& name, py::handle value) {
  held(self);
  const auto found = self.declaration->writes.find(name);
  if (found == self.declaration->writes.end()) {
    throw py::key_error("field " + name +
                        " is not declared: add it with its type to the writes of the class, "
                        "e.g. writes = {\"" +
                        name + "\": \"" + likely_type(value) + "\"}; the types: " + kTypes);
  }
  self.packet.set(name, from_python(value, found->second, name));
}

}  // namespace

void bind_packet(py::module_& module) {
  bind_geometry(module);
  py::class_<PythonPacket>(module, "Packet",
                           "One frame (or item) of one stream: packet['image'], packet['x'] = ...")
      .def_property_readonly("stream", [](const PythonPacket& p) { return held(p).stream; })
      .def_property_readonly("seq", [](const PythonPacket& p) { return held(p).seq; })
      .def_property(
          "time_ns", [](const PythonPacket& p) { return held(p).time_ns; },
          [](PythonPacket& p, std::int64_t time_ns) {
            held(p);
            p.packet.time_ns = time_ns;
          })
      .def("__getitem__", &get)
      .def("__setitem__", &set)
      .def(
          "get",
          [](const PythonPacket& p, const std::string& name, py::object fallback) {
            readable(p, name);
            return held(p).has(name) ? get(p, name) : fallback;
          },
          py::arg("name"), py::arg("default") = py::none())
      .def("__contains__", [](const PythonPacket& p, const std::string& name) {
        return held(p).has(name);
      })
      .def("fields",
           [](const PythonPacket& p) {
             py::list names;
             for (const Packet::Field& field : held(p).fields) {
               if (!detail::is_transport_field(field.name)) names.append(field.name);
             }
             return names;
           })
      .def("copy", [](const PythonPacket& p) {
        return PythonPacket{held(p), p.declaration, false};
      }, "Another packet with the same fields (they share their buffers), to return several.")
      .def("__repr__", [](const PythonPacket& p) {
        if (p.taken) return std::string("<Packet returned to the engine>");
        std::string names;
        for (const Packet::Field& field : p.packet.fields) {
          if (!detail::is_transport_field(field.name)) names += (names.empty() ? "" : ", ") + field.name;
        }
        return "<Packet stream " + std::to_string(p.packet.stream) + " seq " +
               std::to_string(p.packet.seq) + ": " + names + ">";
      });
}

}  // namespace micromodels::python
