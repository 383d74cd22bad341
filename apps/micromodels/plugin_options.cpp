// --plugin PATH: stage types from a shared library, on `run`, `worker`, `inspect` and `types`.
#include "micromodels/plugin.hpp"

#include "commands.hpp"

namespace micromodels::cli {

void add_plugin_option(CLI::App& command, std::vector<std::string>& plugins) {
  command
      .add_option("--plugin", plugins,
                  "Load stage types from a plugin (a .so built with MICROMODELS_PLUGIN; "
                  "repeatable)")
      ->allow_extra_args(false);
}

void load_plugins(const std::vector<std::string>& plugins) {
  for (const std::string& plugin : plugins) load_plugin(plugin, Registry::global());
}

}  // namespace micromodels::cli
