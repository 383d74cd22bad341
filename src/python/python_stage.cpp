#include "python_stage.hpp"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <filesystem>
#include <map>
#include <optional>
#include <set>
#include <stdexcept>
#include <string>
#include <string_view>
#include <type_traits>
#include <variant>
#include <vector>

#include "python_fields.hpp"
#include "python_interpreter.hpp"
#include "python_packet.hpp"

namespace py = pybind11;

namespace micromodels::python {

namespace {

// What a Python exception says, as Python prints it: the traceback, then the error.
std::string python_error(py::error_already_set& error) {
  try {
    const py::object lines = py::module_::import("traceback")
                                 .attr("format_exception")(error.type(), error.value(), error.trace());
    std::string text = py::str("").attr("join")(lines).cast<std::string>();
    while (!text.empty() && text.back() == '\n') text.pop_back();
    return text;
  } catch (const std::exception&) {
    return error.what();
  }
}

std::string type_name_of(py::handle object) {
  return py::str(py::type::handle_of(object).attr("__name__")).cast<std::string>();
}

// A class attribute `name` (reads, optional_reads, writes): a dict of field name to type name.
std::map<std::string, std::size_t> declared(py::handle cls, const char* name,
                                            const std::string& label) {
  std::map<std::string, std::size_t> fields;
  if (!py::hasattr(cls, name)) return fields;
  const py::object value = cls.attr(name);
  const std::string where = label + "." + name;
  if (!py::isinstance<py::dict>(value)) {
    throw ParamError("class", where + " must be a dict of field name to type, e.g. {\"image\": "
                                      "\"image\"}; it is a " + type_name_of(value));
  }
  for (const auto& [key, type] : py::reinterpret_borrow<py::dict>(value)) {
    if (!py::isinstance<py::str>(key) || !py::isinstance<py::str>(type)) {
      throw ParamError("class", where + " must map field names (str) to type names (str)");
    }
    const auto field = key.cast<std::string>();
    const auto type_name = type.cast<std::string>();
    const auto index = field_type(type_name);
    if (!index) {
      throw ParamError("class", where + "['" + field + "'] has unknown type '" + type_name +
                                    "'; the types are " + field_type_names());
    }
    fields.emplace(field, *index);
  }
  return fields;
}

// A param's default as Python gives it: bool, int, float, str or a list of numbers.
std::optional<ParamValue> param_value(py::handle value) {
  if (py::isinstance<py::bool_>(value)) return ParamValue(value.cast<bool>());
  if (py::isinstance<py::int_>(value)) {
    try {
      return ParamValue(value.cast<std::int64_t>());
    } catch (const py::cast_error&) {
      return std::nullopt;  // beyond 64 bits
    }
  }
  if (py::isinstance<py::float_>(value)) {
    const auto number = value.cast<double>();
    if (!std::isfinite(number)) return std::nullopt;  // as a YAML or --set value must be
    return ParamValue(number);
  }
  if (py::isinstance<py::str>(value)) return ParamValue(value.cast<std::string>());
  if (py::isinstance<py::list>(value)) {
    std::vector<double> numbers;
    for (const py::handle item : value) {
      if (py::isinstance<py::bool_>(item) ||
          !(py::isinstance<py::int_>(item) || py::isinstance<py::float_>(item))) {
        return std::nullopt;
      }
      numbers.push_back(item.cast<double>());
      if (!std::isfinite(numbers.back())) return std::nullopt;
    }
    return ParamValue(std::move(numbers));
  }
  return std::nullopt;
}

ParamType type_of(const ParamValue& value) {
  constexpr ParamType kTypes[] = {ParamType::boolean, ParamType::integer, ParamType::number,
                                  ParamType::text, ParamType::numbers};
  return kTypes[value.index()];  // the order of ParamValue's alternatives
}

py::object to_python(const ParamValue& value) {
  return std::visit(
      [](const auto& v) -> py::object {
        using T = std::decay_t<decltype(v)>;
        if constexpr (std::is_same_v<T, std::vector<double>>) {
          py::list numbers;
          for (const double x : v) numbers.append(x);
          return numbers;
        } else {
          return py::cast(v);
        }
      },
      value);
}

// A param's range as a class writes it: (low, high), both inclusive, either None for no bound.
std::optional<ParamRange> param_range(py::handle value) {
  if (!py::isinstance<py::tuple>(value) || py::len(value) != 2) return std::nullopt;
  ParamRange range;
  for (const bool low : {true, false}) {
    const py::handle bound = py::reinterpret_borrow<py::tuple>(value)[low ? 0 : 1];
    if (bound.is_none()) continue;
    if (py::isinstance<py::bool_>(bound) ||
        !(py::isinstance<py::int_>(bound) || py::isinstance<py::float_>(bound))) {
      return std::nullopt;
    }
    const auto number = bound.cast<double>();
    if (!std::isfinite(number)) return std::nullopt;
    (low ? range.low : range.high) = number;
  }
  return range;
}

// The class attribute `params`: a dict of param name to its default, whose type is the param's
// (bool, int, float, str, or a list of numbers), or to a tuple (default, "help") or
// (default, "help", (low, high)).
std::vector<ParamSpec> declared_params(py::handle cls, const std::string& label) {
  std::vector<ParamSpec> specs;
  if (!py::hasattr(cls, "params")) return specs;
  const py::object value = cls.attr("params");
  const std::string where = label + ".params";
  if (!py::isinstance<py::dict>(value)) {
    throw ParamError("class", where + " must be a dict of param name to its default, e.g. "
                                      "{\"radius\": 3}; it is a " + type_name_of(value));
  }
  for (const auto& [key, entry] : py::reinterpret_borrow<py::dict>(value)) {
    if (!py::isinstance<py::str>(key) || !key.attr("isidentifier")().cast<bool>()) {
      throw ParamError("class", where + " must map param names (identifiers, as they become "
                                        "attributes) to defaults; " +
                                        py::repr(key).cast<std::string>() + " is none");
    }
    ParamSpec spec{.name = key.cast<std::string>()};
    const std::string at = where + "['" + spec.name + "']";
    if (py::hasattr(cls, spec.name.c_str())) {
      throw ParamError("class", at + ": the class has an attribute '" + spec.name +
                                    "' already, which the param would hide; rename the param");
    }
    py::handle fallback = entry;
    if (py::isinstance<py::tuple>(entry)) {
      const auto tuple = py::reinterpret_borrow<py::tuple>(entry);
      if ((tuple.size() != 2 && tuple.size() != 3) || !py::isinstance<py::str>(tuple[1])) {
        throw ParamError("class", at + " is a tuple: write (default, \"help\") or (default, "
                                       "\"help\", (low, high))");
      }
      fallback = tuple[0];
      spec.help = tuple[1].cast<std::string>();
      if (tuple.size() == 3) {
        const std::optional<ParamRange> range = param_range(tuple[2]);
        if (!range) {
          throw ParamError("class", at + ": the range " + py::repr(tuple[2]).cast<std::string>() +
                                        " is not (low, high), each a number or None");
        }
        spec.range = *range;
      }
    }
    const std::optional<ParamValue> typed = param_value(fallback);
    if (!typed) {
      throw ParamError("class", at + " = " + py::repr(fallback).cast<std::string>() +
                                    ": a param's default is a bool, int (64-bit), finite float, str or a "
                                    "list of numbers, and gives the param its type");
    }
    spec.type = type_of(*typed);
    spec.default_value = *typed;
    specs.push_back(std::move(spec));
  }
  return specs;
}

struct Loaded {
  py::object cls;
  std::shared_ptr<const Declaration> declaration;
  std::vector<ParamSpec> params;  // the class's own
  std::string label;  // module.Class
};

// The file a module was imported from, as it was then (its time and size), by module name:
// a module whose file changed since is imported again, so that a pipeline checked or built
// later in this process (a notebook's next run, a swap after a refused one) sees the file as it
// is. Guarded by the GIL.
struct FileStamp {
  std::filesystem::file_time_type time{};
  std::uintmax_t size = 0;
  bool operator==(const FileStamp&) const = default;
};
std::map<std::string, FileStamp>& imported_files() {
  static std::map<std::string, FileStamp> files;
  return files;
}
std::optional<FileStamp> stamp_of(const py::module_& module) {
  if (!py::hasattr(module, "__file__") || module.attr("__file__").is_none()) return std::nullopt;
  const std::filesystem::path file = py::str(module.attr("__file__")).cast<std::string>();
  std::error_code error;
  FileStamp stamp{std::filesystem::last_write_time(file, error), 0};
  if (!error) stamp.size = std::filesystem::file_size(file, error);
  if (error) return std::nullopt;
  return stamp;
}

// Python keeps one module of a name per process (sys.modules): once a module is imported, an
// import of its name gives it back whatever the path. A stage whose `path` holds another file of
// that name (two models' `model.py`, or a `types.py` beside the standard one) would run the
// other module's class: refused, naming both files. Needs the GIL.
void refuse_a_hidden_module(const std::string& module_name, const std::string& path) {
  const std::string top = module_name.substr(0, module_name.find('.'));
  std::string in_path;
  std::string imported_from;
  try {
    const py::module_ os_path = py::module_::import("os.path");
    py::list search;
    search.append(os_path.attr("abspath")(path));
    const py::object spec = py::module_::import("importlib.machinery")
                                .attr("PathFinder")
                                .attr("find_spec")(top, search);
    if (spec.is_none() || spec.attr("origin").is_none()) return;  // not there, or a namespace
    const py::object imported = py::module_::import("sys").attr("modules").attr("get")(top);
    if (imported.is_none()) return;
    const py::object file = py::getattr(imported, "__file__", py::none());
    const py::object realpath = os_path.attr("realpath");
    if (!file.is_none() && realpath(file).equal(realpath(spec.attr("origin")))) return;
    in_path = py::str(spec.attr("origin")).cast<std::string>();
    imported_from =
        file.is_none() ? "the interpreter (built in)" : py::str(file).cast<std::string>();
  } catch (py::error_already_set&) {
    return;  // nothing to compare: the import itself worked
  }
  throw ParamError("module",
                   "Python module '" + top + "' is already imported from '" + imported_from +
                       "', so '" + in_path +
                       "' in this stage's path is not used (Python keeps one module "
                       "per name in a process); rename one of them, or make them packages "
                       "(detector.model, classifier.model)");
}

// Imports the module (again when `reload`, or when its file changed since) and checks the
// class. Needs the GIL.
Loaded load(const Params& params, bool reload = false) {
  const std::string& module_name = params.text("module");
  const std::string& class_name = params.text("class");
  const std::string& path = params.text("path");
  Loaded loaded;
  loaded.label = module_name + "." + class_name;
  py::module_ module;
  std::string searched = "'" + path + "'";  // and, when relative, where that is
  try {
    const py::object absolute = py::module_::import("os.path").attr("abspath")(path);
    if (const auto full = py::str(absolute).cast<std::string>(); full != path) {
      searched += ", which is " + full + " from the working directory";
    }
    py::list sys_path = py::module_::import("sys").attr("path");
    if (!sys_path.contains(absolute)) sys_path.insert(0, absolute);
    module = py::module_::import(module_name.c_str());
    const auto known = imported_files().find(module_name);
    if (reload || (known != imported_files().end() && stamp_of(module) != known->second)) {
      module.reload();
    }
    if (const std::optional<FileStamp> stamp = stamp_of(module)) {
      imported_files()[module_name] = *stamp;
    }
  } catch (py::error_already_set& error) {
    throw ParamError("module", "Python module '" + module_name + "' (searched first in " +
                                   searched + ") does not import; fix the module or the path:\n" +
                                   python_error(error));
  }
  refuse_a_hidden_module(module_name, path);
  const std::string file = py::hasattr(module, "__file__")
                               ? py::str(module.attr("__file__")).cast<std::string>()
                               : module_name;
  if (!py::hasattr(module, class_name.c_str())) {
    std::string classes;
    for (const auto& [name, value] : py::reinterpret_borrow<py::dict>(module.attr("__dict__"))) {
      if (py::isinstance<py::type>(value)) classes += (classes.empty() ? "" : ", ") + py::str(name).cast<std::string>();
    }
    throw ParamError("class", "Python module '" + module_name + "' (" + file + ") has no class '" +
                                  class_name + "'; its classes: " +
                                  (classes.empty() ? "none" : classes));
  }
  loaded.cls = module.attr(class_name.c_str());
  if (!py::isinstance<py::type>(loaded.cls)) {
    throw ParamError("class", "'" + loaded.label + "' (" + file + ") is a " +
                                  type_name_of(loaded.cls) + ", not a class");
  }
  const py::object process = py::getattr(loaded.cls, "process", py::none());
  if (process.is_none() || !PyCallable_Check(process.ptr())) {
    throw ParamError("class", "class '" + loaded.label + "' (" + file +
                                  ") has no method process(self, packet); a Python stage needs one");
  }
  Declaration declaration;
  declaration.reads = declared(loaded.cls, "reads", loaded.label);
  declaration.optional_reads = declared(loaded.cls, "optional_reads", loaded.label);
  declaration.writes = declared(loaded.cls, "writes", loaded.label);
  declaration.batching = py::hasattr(loaded.cls, "process_batch");
  loaded.params = declared_params(loaded.cls, loaded.label);
  for (const ParamSpec& spec : loaded.params) declaration.params.emplace(spec.name, spec.type);
  loaded.declaration = std::make_shared<const Declaration>(std::move(declaration));
  return loaded;
}

std::string key_of(const Params& params) {
  return params.text("path") + '\n' + params.text("module") + '\n' + params.text("class");
}

// What the live instances of each class (key_of) declared; guarded by the GIL. A stage built
// while instances of its class live (a swap) re-imports the module, and must declare what the
// running pipeline was checked with.
std::map<std::string, std::vector<std::shared_ptr<const Declaration>>>& live_declarations() {
  static std::map<std::string, std::vector<std::shared_ptr<const Declaration>>> declarations;
  return declarations;
}

std::vector<ParamSpec> class_params(const Params& params) {
  ensure_interpreter();
  Gil gil;
  return load(params).params;
}

StageInfo describe(const Params& params) {
  ensure_interpreter();
  Gil gil;
  const Loaded loaded = load(params);
  const Declaration& declaration = *loaded.declaration;
  StageInfo info;
  for (const auto& [name, type] : declaration.reads) info.reads.push_back(name);
  for (const auto& [name, type] : declaration.optional_reads) info.optional_reads.push_back(name);
  for (const auto& [name, type] : declaration.writes) info.writes.push_back(name);
  info.batching = declaration.batching;
  // Its own threads: a consumer waiting for the GIL must not hold a slot of the worker pool
  // that the C++ stages run on.
  info.blocking = true;
  return info;
}

class PythonStage;

// The Python stage whose process() or process_batch() this thread is in: micromodels.count()
// counts for it.
thread_local const PythonStage* calling_stage = nullptr;

class CallingStage {
 public:
  explicit CallingStage(const PythonStage* stage) : previous_(calling_stage) {
    calling_stage = stage;
  }
  ~CallingStage() { calling_stage = previous_; }
  CallingStage(const CallingStage&) = delete;
  CallingStage& operator=(const CallingStage&) = delete;

 private:
  const PythonStage* previous_;
};

class PythonStage final : public Stage {
 public:
  void count_event(std::string_view event, std::uint64_t n) const { count(event, n); }

  // The class's params are attributes of the instance, set before its __init__ runs.
  PythonStage(Loaded loaded, const Params& params)
      : label_("Python stage " + loaded.label),
        key_(key_of(params)),
        declaration_(std::move(loaded.declaration)) {
    try {
      instance_ = loaded.cls.attr("__new__")(loaded.cls);
      for (const ParamSpec& spec : loaded.params) {
        py::setattr(instance_, spec.name.c_str(), to_python(params.values().at(spec.name)));
      }
      instance_.attr("__init__")();
    } catch (py::error_already_set& error) {
      throw std::runtime_error(loaded.label + "() raised:\n" + python_error(error));
    }
    process_ = instance_.attr("process");
    if (declaration_->batching) process_batch_ = instance_.attr("process_batch");
    live_declarations()[key_].push_back(declaration_);
  }

  ~PythonStage() override {
    Gil gil;
    process_batch_ = py::object();
    process_ = py::object();
    instance_ = py::object();
    auto& live = live_declarations()[key_];
    live.erase(std::find(live.begin(), live.end(), declaration_));
    if (live.empty()) live_declarations().erase(key_);
  }

  PythonStage(const PythonStage&) = delete;
  PythonStage& operator=(const PythonStage&) = delete;

  void process(Packet packet, std::vector<Packet>& out) override {
    Gil gil;
    const CallingStage calling(this);
    py::object result;
    try {
      result = process_(PythonPacket{std::move(packet), declaration_, false});
    } catch (py::error_already_set& error) {
      throw std::runtime_error(label_ + ": process raised:\n" + python_error(error));
    }
    collect(result, "process", out);
  }

  void process_batch(std::vector<Packet>& batch, std::vector<Packet>& out) override {
    if (!process_batch_) {
      Stage::process_batch(batch, out);
      return;
    }
    Gil gil;
    const CallingStage calling(this);
    py::list packets;
    for (Packet& packet : batch) packets.append(PythonPacket{std::move(packet), declaration_, false});
    batch.clear();
    py::object result;
    try {
      result = process_batch_(packets);
    } catch (py::error_already_set& error) {
      throw std::runtime_error(label_ + ": process_batch raised:\n" + python_error(error));
    }
    // None is what a method without `return` gives: the batch must not vanish as filtered.
    if (result.is_none()) {
      throw std::runtime_error(label_ +
                               ": process_batch returned None; return the list of packets (an "
                               "empty list when none goes on)");
    }
    collect(result, "process_batch", out);
  }

  // A class that keeps per-stream state forgets a stream with an optional forget_stream(stream).
  void forget_stream(std::uint32_t stream) override {
    Gil gil;
    if (!py::hasattr(instance_, "forget_stream")) return;
    try {
      instance_.attr("forget_stream")(stream);
    } catch (py::error_already_set& error) {
      throw std::runtime_error(label_ + ": forget_stream raised:\n" + python_error(error));
    }
  }

 private:
  // What `method` returned: None (nothing comes out), a packet, or a list (or tuple) of packets.
  void collect(const py::object& result, const char* method, std::vector<Packet>& out) const {
    if (result.is_none()) return;
    std::vector<PythonPacket*> packets;
    const auto add = [&](py::handle item) {
      if (!py::isinstance<PythonPacket>(item)) {
        throw std::runtime_error(label_ + ": " + method + " returned " +
                                 (item.is(result) ? "" : "a list holding ") + type_name_of(item) +
                                 "; return the packet, a list of packets, or None to drop it");
      }
      auto* packet = item.cast<PythonPacket*>();
      if (packet->taken || std::find(packets.begin(), packets.end(), packet) != packets.end()) {
        throw std::runtime_error(label_ + ": " + method +
                                 " returned a packet twice; return packet.copy() for another one");
      }
      packets.push_back(packet);
    };
    if (py::isinstance<py::list>(result) || py::isinstance<py::tuple>(result)) {
      for (const py::handle item : result) add(item);
    } else {
      add(result);
    }
    for (PythonPacket* packet : packets) {
      out.push_back(std::move(packet->packet));
      packet->taken = true;
    }
  }

  std::string label_;
  std::string key_;  // key_of its params: its class
  std::shared_ptr<const Declaration> declaration_;
  py::object instance_;
  py::object process_;
  py::object process_batch_;
};

std::unique_ptr<Stage> build(const Params& params) {
  ensure_interpreter();
  Gil gil;
  const auto live = live_declarations().find(key_of(params));
  const bool swapping = live != live_declarations().end();
  Loaded loaded = load(params, swapping);
  if (swapping && !(*live->second.front() == *loaded.declaration)) {
    throw std::runtime_error("the re-imported class '" + loaded.label +
                             "' declares other reads, writes, batching or params than the "
                             "running pipeline was checked with; stop the run to change them");
  }
  return std::make_unique<PythonStage>(std::move(loaded), params);
}

}  // namespace

void bind_count(py::module_& module) {
  module.def(
      "count",
      [](const std::string& event, std::int64_t n) {
        if (calling_stage == nullptr) {
          throw std::runtime_error(
              "micromodels.count() counts an event of the Python stage whose process() or "
              "process_batch() calls it; call it from there");
        }
        if (event.empty()) throw py::value_error("micromodels.count(): the event needs a name");
        if (n < 0) {
          throw py::value_error("micromodels.count('" + event + "', " + std::to_string(n) +
                                "): a count only grows; n must be >= 0");
        }
        calling_stage->count_event(event, static_cast<std::uint64_t>(n));
      },
      py::arg("event"), py::arg("n") = 1,
      "Counts n more of `event` (\"retries\") for the Python stage whose process() or "
      "process_batch() calls it; shown per stage as `events` in the metrics.");
}

void register_python_stage(Registry& registry) {
  registry.add(
      {.name = "python",
       .help = "A Python class as a stage: process(packet) returns the packet, a list, or None. "
               "Its reads and writes (dicts of field name to type) are checked like any stage's, "
               "and so are its own params (a dict `params` of name to default, whose type is the "
               "param's), given beside module and class and set as attributes before __init__.",
       .params = {{.name = "module", .type = ParamType::text, .help = "Python module to import"},
                  {.name = "class", .type = ParamType::text, .help = "class in the module"},
                  {.name = "path",
                   .type = ParamType::text,
                   .default_value = std::string("."),
                   .help = "directory searched first for the module"}},
       .more_params = class_params,
       .info = describe,
       .make = build});
}

}  // namespace micromodels::python
