#include "micromodels/plugin.hpp"

#include <exception>
#include <mutex>
#include <set>
#include <string>
#include <utility>

#include <dlfcn.h>

namespace micromodels {
namespace {

using AbiFunction = int (*)();
using RegisterFunction = void (*)(Registry&);

// The files loaded so far, with the registry each went into: loading one twice is a no-op.
std::mutex loaded_mutex;
std::set<std::pair<std::string, const Registry*>> loaded;

template <typename Function>
Function find_symbol(void* library, const char* name) {
  return reinterpret_cast<Function>(::dlsym(library, name));
}

}  // namespace

void load_plugin(const std::filesystem::path& path, Registry& registry,
                 const SourceLocation& where) {
  const SourceLocation at = where.file.empty() ? SourceLocation{path.string()} : where;
  // "libx.so: ..." for --plugin; "pipeline.yaml:3:5: plugin 'libx.so': ..." for `plugins:`.
  const std::string subject = where.file.empty() ? "" : "plugin '" + path.string() + "': ";
  auto fail = [&](const std::string& message) {
    throw ConfigError(at, "plugins", subject + message);
  };

  std::error_code error;
  if (!std::filesystem::is_regular_file(path, error)) {
    fail(std::filesystem::exists(path, error)
             ? "not a regular file; give the path of the plugin's .so file"
             : "no such file; build the plugin first, or check the path (relative paths start "
               "from " +
                   (where.file.empty() ? std::filesystem::current_path(error).string()
                                       : "the pipeline file's folder") +
                   ")");
  }
  // Absolute: dlopen would search the library path for a bare name, and open the program for "".
  std::string canonical = std::filesystem::canonical(path, error).string();
  if (canonical.empty()) canonical = std::filesystem::absolute(path, error).string();
  const std::lock_guard lock(loaded_mutex);
  if (loaded.count({canonical, &registry}) != 0) return;

  // Never closed: the stage types' code must outlive every stage built from them.
  void* library = ::dlopen(canonical.c_str(), RTLD_NOW | RTLD_LOCAL);
  if (library == nullptr) {
    const char* error_text = ::dlerror();
    const std::string reason = error_text != nullptr ? error_text : "unknown reason";
    fail("cannot load it: " + reason +
         (reason.find("undefined symbol") != std::string::npos
              ? " (built against another micromodels version, or loaded by a program that does "
                "not export the engine; rebuild it against the installed headers)"
              : ""));
  }
  const auto abi = find_symbol<AbiFunction>(library, "micromodels_plugin_abi");
  const auto add_types = find_symbol<RegisterFunction>(library, "micromodels_register");
  if (abi == nullptr || add_types == nullptr) {
    fail(std::string("not a micromodels plugin: it has no ") +
         (abi == nullptr ? "micromodels_plugin_abi()" : "micromodels_register()") +
         " function; define its stage types in MICROMODELS_PLUGIN(registry) { ... } "
         "(micromodels/plugin.hpp)");
  }
  if (const int built_for = abi(); built_for != kPluginAbi) {
    fail("built for plugin ABI " + std::to_string(built_for) + ", this micromodels has ABI " +
         std::to_string(kPluginAbi) + "; rebuild the plugin against this version's headers");
  }

  // Into a registry of its own first: a plugin that fails halfway or takes a name already
  // registered adds nothing.
  Registry own;
  try {
    add_types(own);
  } catch (const std::exception& e) {
    fail(std::string("its registration failed: ") + e.what());
  }
  for (const std::string& name : own.names()) {
    if (registry.find(name) != nullptr) {
      fail("registers the stage type '" + name +
           "', which already exists (built in, or from another plugin); rename the type in the "
           "plugin");
    }
  }
  for (const std::string& name : own.names()) registry.add(*own.find(name));
  loaded.insert({canonical, &registry});
}

}  // namespace micromodels
