#include "python_fields.hpp"

#include <cstring>
#include <variant>

#include <pybind11/numpy.h>
#include <pybind11/operators.h>
#include <pybind11/stl.h>

namespace py = pybind11;

namespace micromodels::python {

namespace {

constexpr std::size_t kImage = 0;
constexpr std::size_t kTensor = 1;

// numpy's dtype for a Depth, and back.
py::dtype dtype_of(Depth depth) {
  return depth == Depth::u8 ? py::dtype::of<std::uint8_t>() : py::dtype::of<float>();
}

std::string type_name_of(py::handle object) {
  return py::str(py::type::handle_of(object).attr("__name__")).cast<std::string>();
}

[[noreturn]] void wrong(std::string_view field, std::size_t type, const std::string& given) {
  throw py::type_error("field '" + std::string(field) + "' is declared " +
                       std::string(value_type_name(type)) + "; got " + given);
}

// A read-only numpy view of `buffer`, which the array keeps alive.
py::array view(const Buffer& buffer, Depth depth, std::vector<py::ssize_t> shape) {
  std::vector<py::ssize_t> strides(shape.size());
  py::ssize_t stride = static_cast<py::ssize_t>(depth_size(depth));
  for (std::size_t i = shape.size(); i-- > 0;) {
    strides[i] = stride;
    stride *= shape[i];
  }
  auto* owner = new Buffer(buffer);
  py::capsule base(owner, [](void* held) { delete static_cast<Buffer*>(held); });
  py::array array(dtype_of(depth), std::move(shape), std::move(strides), buffer.data(), base);
  py::detail::array_proxy(array.ptr())->flags &= ~py::detail::npy_api::NPY_ARRAY_WRITEABLE_;
  return array;
}

// `object` as a C-contiguous uint8 or float32 array, and its depth.
std::pair<py::array, Depth> contiguous(py::handle object, std::string_view field,
                                       std::size_t type) {
  if (!py::isinstance<py::array>(object)) wrong(field, type, type_name_of(object));
  auto array = py::reinterpret_borrow<py::array>(object);
  Depth depth = Depth::u8;
  if (array.dtype().is(py::dtype::of<float>())) {
    depth = Depth::f32;
  } else if (!array.dtype().is(py::dtype::of<std::uint8_t>())) {
    wrong(field, type,
          "a numpy array of " + py::str(array.dtype()).cast<std::string>() +
              " (uint8 and float32 are supported: convert with .astype)");
  }
  return {py::array::ensure(array, py::array::c_style), depth};
}

// The copy runs without the GIL (the array stays referenced), so that other consumers' Python
// code runs meanwhile.
Buffer copy_of(const py::array& array) {
  const void* data = array.data();
  const auto size = static_cast<std::size_t>(array.nbytes());
  py::gil_scoped_release release;
  return Buffer::copy_of(data, size);
}

Value image_from(py::handle object, std::string_view field) {
  auto [array, depth] = contiguous(object, field, kImage);
  if (array.ndim() != 2 && array.ndim() != 3) {
    wrong(field, kImage,
          "an array of " + std::to_string(array.ndim()) + " dimensions (an image is H x W or H x W x C)");
  }
  Image image;
  image.height = static_cast<int>(array.shape(0));
  image.width = static_cast<int>(array.shape(1));
  image.channels = array.ndim() == 3 ? static_cast<int>(array.shape(2)) : 1;
  image.depth = depth;
  image.pixels = copy_of(array);
  return image;
}

Value tensor_from(py::handle object, std::string_view field) {
  auto [array, depth] = contiguous(object, field, kTensor);
  Tensor tensor;
  tensor.dtype = depth;
  for (py::ssize_t i = 0; i < array.ndim(); ++i) tensor.shape.push_back(array.shape(i));
  tensor.data = copy_of(array);
  return tensor;
}

template <class T>
Value cast(py::handle object, std::string_view field, std::size_t type) {
  try {
    return object.cast<T>();
  } catch (const py::cast_error&) {
    wrong(field, type, type_name_of(object));
  }
}

}  // namespace

std::optional<std::size_t> field_type(std::string_view name) {
  for (std::size_t i = 0; i < std::variant_size_v<Value>; ++i) {
    if (value_type_name(i) == name) return i;
  }
  return std::nullopt;
}

std::string field_type_names() {
  std::string names;
  for (std::size_t i = 0; i < std::variant_size_v<Value>; ++i) {
    names += (i == 0 ? "" : ", ") + std::string(value_type_name(i));
  }
  return names;
}

py::object to_python(const Value& value) {
  return std::visit(
      [](const auto& v) -> py::object {
        using T = std::decay_t<decltype(v)>;
        if constexpr (std::is_same_v<T, Image>) {
          std::vector<py::ssize_t> shape{v.height, v.width};
          if (v.channels != 1) shape.push_back(v.channels);
          return view(v.pixels, v.depth, std::move(shape));
        } else if constexpr (std::is_same_v<T, Tensor>) {
          return view(v.data, v.dtype, std::vector<py::ssize_t>(v.shape.begin(), v.shape.end()));
        } else if constexpr (std::is_same_v<T, Buffer>) {
          return py::bytes(reinterpret_cast<const char*>(v.data()), v.size());
        } else {
          return py::cast(v);
        }
      },
      value);
}

Value from_python(py::handle object, std::size_t type, std::string_view field) {
  switch (type) {  // the Value alternatives, in their order
    case 0: return image_from(object, field);
    case 1: return tensor_from(object, field);
    case 2: return cast<Rects>(object, field, type);
    case 3: return cast<Points>(object, field, type);
    case 4: return cast<Scalars>(object, field, type);
    case 5: return cast<std::int64_t>(object, field, type);
    case 6: return cast<double>(object, field, type);
    case 7: return cast<std::string>(object, field, type);
    default: {
      if (!py::isinstance<py::bytes>(object)) wrong(field, type, type_name_of(object));
      const std::string bytes = object.cast<std::string>();
      return Buffer::copy_of(bytes.data(), bytes.size());
    }
  }
}

void bind_geometry(py::module_& module) {
  py::class_<Rect>(module, "Rect", "A box: x, y, width, height and a score.")
      .def(py::init<float, float, float, float, float>(), py::arg("x") = 0, py::arg("y") = 0,
           py::arg("width") = 0, py::arg("height") = 0, py::arg("score") = 0)
      .def_readwrite("x", &Rect::x)
      .def_readwrite("y", &Rect::y)
      .def_readwrite("width", &Rect::width)
      .def_readwrite("height", &Rect::height)
      .def_readwrite("score", &Rect::score)
      .def(py::self == py::self)
      .def("__repr__", [](const Rect& r) {
        return "Rect(x=" + std::to_string(r.x) + ", y=" + std::to_string(r.y) +
               ", width=" + std::to_string(r.width) + ", height=" + std::to_string(r.height) +
               ", score=" + std::to_string(r.score) + ")";
      });
  py::class_<Point>(module, "Point", "A point: x, y.")
      .def(py::init<float, float>(), py::arg("x") = 0, py::arg("y") = 0)
      .def_readwrite("x", &Point::x)
      .def_readwrite("y", &Point::y)
      .def(py::self == py::self)
      .def("__repr__", [](const Point& p) {
        return "Point(x=" + std::to_string(p.x) + ", y=" + std::to_string(p.y) + ")";
      });
}

}  // namespace micromodels::python
