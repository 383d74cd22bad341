// The `micromodels` Python module: load, check and run pipelines from Python, with the names of
// the C++ API (Pipeline, Runner, MetricsSnapshot), and the types Python stages use.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <limits>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <vector>

#include <dlfcn.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>
#include <pybind11/stl/filesystem.h>

#include "micromodels/pipeline.hpp"
#include "micromodels/plugin.hpp"
#include "micromodels/registry.hpp"
#include "micromodels/runner.hpp"

#include "python_packet.hpp"
#include "python_stage.hpp"
#if MICROMODELS_PYTHON_VISION
#include "micromodels/vision/vision_stages.hpp"
#endif
#if MICROMODELS_PYTHON_REDIS
#include "micromodels/redis.hpp"
#endif

namespace py = pybind11;

namespace micromodels::python {

namespace {

// The runners started and not yet deleted. When the interpreter exits with one still running,
// it is stopped and drained first (stop_at_exit): a Python stage's thread that waits for the
// GIL while Python finalizes would abort the process, and the sinks would lose their last
// packets.
std::mutex started_mutex;
std::set<Runner*> started;

void start(Runner& runner) {
  {
    const std::lock_guard lock(started_mutex);
    started.insert(&runner);
  }
  py::gil_scoped_release release;
  runner.start();
}

void stop_at_exit() {
  std::set<Runner*> running;
  {
    const std::lock_guard lock(started_mutex);
    running = started;
  }
  py::gil_scoped_release release;
  for (Runner* runner : running) {
    if (runner->finished()) continue;
    runner->stop();
    constexpr double kDrainMs = 30'000;
    if (!runner->wait_for(kDrainMs)) {
      std::fprintf(stderr,
                   "micromodels: a run still had packets in flight 30 s after the interpreter "
                   "began to exit; leaving them (stop() and wait() before exit to drain)\n");
    }
  }
}

// A Runner's destructor joins its threads, and Python stages on them may wait for the GIL.
struct ReleaseAndDelete {
  void operator()(Runner* runner) const {
    {
      const std::lock_guard lock(started_mutex);
      started.erase(runner);
    }
    py::gil_scoped_release release;
    delete runner;
  }
};

// Waits with the GIL released, looking for Ctrl-C between waits: then stops the sources, lets
// what is in flight finish, and raises KeyboardInterrupt.
bool wait_for(Runner& runner, double timeout_ms) {
  const bool forever = !std::isfinite(timeout_ms);
  const auto start = std::chrono::steady_clock::now();
  while (true) {
    const double spent =
        std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();
    const double left = forever ? 100.0 : timeout_ms - spent;
    bool finished = false;
    {
      py::gil_scoped_release release;
      finished = runner.wait_for(std::min(std::max(left, 0.0), 100.0));
    }
    if (finished) return true;
    if (PyErr_CheckSignals() != 0) {
      py::error_already_set interrupted;
      {
        py::gil_scoped_release release;
        runner.stop();
        runner.wait();
      }
      throw interrupted;
    }
    if (left <= 0) return false;
  }
}

using RunnerPtr = std::unique_ptr<Runner, ReleaseAndDelete>;

// A pipeline read from YAML, with the plugins its `plugins:` names loaded, as the tool does.
Pipeline with_plugins(Pipeline pipeline) {
  for (const PluginPath& plugin : pipeline.plugins()) {
    load_plugin(plugin.path, Registry::global(), plugin.where);
  }
  return pipeline;
}

// Where the pipeline runs, as `micromodels run` and `worker` read it: `broker` (or the file's
// `broker:`) "memory" in this process; a Redis URL across processes, as the run (feeds the
// sources, collects the sinks, serves what `serve` says) or, with `stages`, as a worker.
RunnerPtr make_runner(const Pipeline& pipeline, const std::string& broker,
                      const std::vector<std::string>& stages, const std::string& serve) {
  const std::string& where = broker.empty() ? pipeline.broker() : broker;
  if (serve != "missing" && serve != "all" && serve != "none") {
    throw ConfigError({}, "serve",
                      "serve='" + serve + "': use 'missing' (the default), 'all' or 'none'");
  }
  if (where == "memory") {
    if (!stages.empty()) {
      throw ConfigError({}, "stages",
                        "stages= makes this process a worker of a run across processes: give "
                        "it a Redis broker (broker='redis://host:port', or broker: in the file)");
    }
    return RunnerPtr(new Runner(pipeline));
  }
#if MICROMODELS_PYTHON_REDIS
  RedisOptions options{
      .role = stages.empty() ? RedisOptions::Role::run : RedisOptions::Role::worker,
      .url = where,
      .stages = stages,
      .serve = serve == "all"    ? RedisOptions::Serve::all
               : serve == "none" ? RedisOptions::Serve::none
                                 : RedisOptions::Serve::missing};
  return RunnerPtr(new Runner(pipeline, std::make_unique<RedisTransport>(std::move(options))));
#else
  throw ConfigError({}, "broker",
                    "broker '" + where +
                        "': this module was built without Redis support (configure with "
                        "-DMICROMODELS_BUILD_REDIS=ON and libhiredis-dev), or use broker='memory'");
#endif
}

}  // namespace

}  // namespace micromodels::python

PYBIND11_MODULE(micromodels, module) {
  using namespace micromodels;
  using micromodels::python::wait_for;
  module.doc() =
      "Run micro-model pipelines from Python: Pipeline, Runner, run(); and the types a Python "
      "stage's process() receives and writes (Packet, Rect, Point).";
  python::bind_packet(module);
  python::bind_count(module);
  Registry& registry = Registry::global();
  if (registry.find("python") == nullptr) python::register_python_stage(registry);
#if MICROMODELS_PYTHON_VISION
  if (registry.find("video.source") == nullptr) vision::register_stages(registry);
#endif

  py::module_::import("atexit").attr("register")(py::cpp_function(&python::stop_at_exit));
  // A plugin (`plugins:`) links against the engine's symbols (micromodels::Stage's type info,
  // the registry), which this module holds; Python loads an extension with RTLD_LOCAL, which
  // hides them from libraries loaded after it, so the module makes its own symbols global.
  if (Dl_info self{}; dladdr(reinterpret_cast<void*>(&python::stop_at_exit), &self) != 0 &&
                      self.dli_fname != nullptr) {
    dlopen(self.dli_fname, RTLD_NOW | RTLD_GLOBAL | RTLD_NOLOAD);
  }

  py::register_exception<ConfigError>(module, "ConfigError", PyExc_ValueError);
  py::register_exception<ParamError>(module, "ParamError", PyExc_ValueError);
#if MICROMODELS_PYTHON_REDIS
  py::register_exception<BrokerError>(module, "BrokerError", PyExc_ConnectionError);
#endif

  py::class_<Pipeline>(module, "Pipeline", "A pipeline description, from YAML.")
      .def_static(
          "from_yaml_file",
          [](const std::string& path) {
            return python::with_plugins(Pipeline::from_yaml_file(path));
          },
          py::arg("path"), "Reads the file and loads the plugins its `plugins:` names.")
      .def_static(
          "from_yaml_string",
          [](std::string_view yaml, std::string file_name) {
            return python::with_plugins(Pipeline::from_yaml_string(yaml, std::move(file_name)));
          },
          py::arg("yaml"), py::arg("file_name") = "<string>")
      .def(
          "validate", [](const Pipeline& p) { p.validate(Registry::global()); },
          "Checks types, params, inputs and fields; raises ConfigError naming file:line:column.")
      .def(
          "set_param",
          [](Pipeline& p, std::string_view assignment) {
            p.set_param(assignment, "set_param");  // an error about the value names it so
          },
          py::arg("assignment"))
      .def(
          "set_consumers",
          [](Pipeline& p, std::string_view stage, int consumers) {
            p.set_consumers(stage, consumers, "set_consumers");
          },
          py::arg("stage"), py::arg("consumers"))
      .def_property_readonly("name", &Pipeline::name)
      .def_property_readonly("stages",
                             [](const Pipeline& p) {
                               py::list names;
                               for (const StageConfig& s : p.stages()) names.append(s.name);
                               return names;
                             })
      .def("to_text", [](const Pipeline& p) { return p.to_text(Registry::global()); });

  py::class_<Progress>(module, "Progress")
      .def_readonly("done", &Progress::done)
      .def_readonly("expected", &Progress::expected);

  py::class_<StageMetrics>(module, "StageMetrics")
      .def_readonly("name", &StageMetrics::name)
      .def_readonly("type", &StageMetrics::type)
      .def_readonly("processed", &StageMetrics::processed)
      .def_readonly("failed", &StageMetrics::failed)
      .def_readonly("dropped", &StageMetrics::dropped)
      .def_readonly("dropped_age", &StageMetrics::dropped_age)
      .def_readonly("dropped_newest", &StageMetrics::dropped_newest)
      .def_readonly("dropped_unserved", &StageMetrics::dropped_unserved)
      .def_readonly("dead_lettered", &StageMetrics::dead_lettered)
      .def_readonly("emitted", &StageMetrics::emitted)
      .def_readonly("events", &StageMetrics::events)
      .def_readonly("consumers", &StageMetrics::consumers)
      .def_readonly("busy_share", &StageMetrics::busy_share);

  py::class_<MetricsSnapshot>(module, "MetricsSnapshot")
      .def_readonly("pipeline", &MetricsSnapshot::pipeline)
      .def_readonly("elapsed_s", &MetricsSnapshot::elapsed_s)
      .def_readonly("packets_in", &MetricsSnapshot::packets_in)
      .def_readonly("packets_out", &MetricsSnapshot::packets_out)
      .def_readonly("in_flight", &MetricsSnapshot::in_flight)
      .def_readonly("workers", &MetricsSnapshot::workers)
      .def_readonly("stages", &MetricsSnapshot::stages)
      .def_readonly("transport", &MetricsSnapshot::transport)
      .def(
          "stage", [](const MetricsSnapshot& m, const std::string& name) { return m.stage(name); },
          py::return_value_policy::reference_internal)
      .def("to_table", &MetricsSnapshot::to_table)
      .def("to_json", &MetricsSnapshot::to_json)
      .def("to_prometheus", &MetricsSnapshot::to_prometheus);

  py::class_<Runner, python::RunnerPtr>(
      module, "Runner",
      "A pipeline running in this process: start, wait, stop, scale, swap. On the file's broker "
      "(or `broker`): in this process on 'memory'; on Redis, the run, or with `stages` a worker.")
      .def(py::init(&python::make_runner), py::arg("pipeline"), py::arg("broker") = "",
           py::arg("stages") = std::vector<std::string>{}, py::arg("serve") = "missing")
      .def("start", &python::start)
      .def("wait_for", &wait_for, py::arg("timeout_ms"),
           "True once finished; Ctrl-C stops the run, lets it drain and raises KeyboardInterrupt.")
      .def("wait", [](Runner& r) { wait_for(r, std::numeric_limits<double>::infinity()); })
      .def("stop", &Runner::stop, py::call_guard<py::gil_scoped_release>())
      .def("scale", &Runner::scale, py::arg("stage"), py::arg("consumers"),
           py::call_guard<py::gil_scoped_release>())
      .def(
          "swap",
          [](Runner& r, const std::string& stage, const py::dict& params, const std::string& type) {
            // Values as the command line writes them: "9", "0.5", "true", "text".
            std::map<std::string, std::string> text;
            for (const auto& [name, value] : params) {
              text[py::str(name).cast<std::string>()] =
                  py::isinstance<py::bool_>(value) ? (value.cast<bool>() ? "true" : "false")
                                                   : py::str(value).cast<std::string>();
            }
            py::gil_scoped_release release;
            r.swap(stage, text, type);
          },
          py::arg("stage"), py::arg("params") = py::dict(), py::arg("type") = "")
      .def("metrics", &Runner::metrics, py::call_guard<py::gil_scoped_release>())
      .def("progress", &Runner::progress, py::call_guard<py::gil_scoped_release>())
      .def("finished", &Runner::finished)
      .def(
          "report",
          [](const Runner& r) { return r.transport() != nullptr ? r.transport()->report() : ""; },
          "A run across processes: bytes per hop, the stages other processes serve and their "
          "counts, dead letters (all processes). Empty in one process.",
          py::call_guard<py::gil_scoped_release>());

  module.def(
      "run",
      [](const Pipeline& pipeline, const std::string& broker, const std::string& serve) {
        python::RunnerPtr runner = python::make_runner(pipeline, broker, {}, serve);
        python::start(*runner);
        wait_for(*runner, std::numeric_limits<double>::infinity());
        return runner->metrics();
      },
      py::arg("pipeline"), py::arg("broker") = "", py::arg("serve") = "missing",
      "Runs a pipeline to its end, on the file's broker (or `broker`), and returns its metrics.");
  module.def(
      "types", [] { return Registry::global().names(); },
      "The stage types a pipeline can use here, as `micromodels types` lists them.");
}
