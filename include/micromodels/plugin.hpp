// Plugins: stage types in a shared library that `micromodels` loads at start (`--plugin PATH`,
// `plugins:` in a pipeline file), so that they run with everything `run` and `worker` offer.
//
//   #include <micromodels/plugin.hpp>
//   MICROMODELS_PLUGIN(registry) {
//     registry.add({.name = "my.stage",
//                   .make = [](const Params&) { return std::make_unique<My>(); }});
//   }
//
// A plugin links no micromodels library: its references to the engine resolve against the
// program that loads it (the tool exports them), so there is one engine, one registry and one
// copy of every type. `micromodels_add_plugin(name SOURCES ...)` in the CMake package builds one.
#pragma once

#include <filesystem>

#include "micromodels/pipeline.hpp"
#include "micromodels/registry.hpp"

namespace micromodels {

/// The plugin interface's version: what the engine's public types look like to a plugin. A
/// plugin built against other headers is refused with an error that asks to rebuild it.
inline constexpr int kPluginAbi = 4;  // 2: Packet::capture_ns; 3: Stage and Source count events,
                                      // StageType::more_params; 4: ParamSpec::range,
                                      // Stage::forget_stream

/// Loads the plugin at `path` into `registry`: dlopen, the ABI check, then its registration
/// function, whose types are added only when none of their names is taken. Loading the same file
/// into the same registry again does nothing. A plugin stays loaded until the process ends.
/// Throws ConfigError at `where` (or at `path` when `where` is empty) when the file does not load,
/// is no plugin, was built for another ABI, fails to register or registers a name already taken.
void load_plugin(const std::filesystem::path& path, Registry& registry,
                 const SourceLocation& where = {});

}  // namespace micromodels

#if defined(__GNUC__)
#define MICROMODELS_PLUGIN_EXPORT extern "C" __attribute__((visibility("default")))
#else
#define MICROMODELS_PLUGIN_EXPORT extern "C"
#endif

/// Defines the plugin's two entry points: `micromodels_plugin_abi()`, which returns the
/// kPluginAbi the plugin was built with, and `micromodels_register(Registry& registry)`, whose
/// body follows the macro.
#define MICROMODELS_PLUGIN(registry)                                                           \
  MICROMODELS_PLUGIN_EXPORT int micromodels_plugin_abi() { return ::micromodels::kPluginAbi; } \
  MICROMODELS_PLUGIN_EXPORT void micromodels_register(::micromodels::Registry& registry)
