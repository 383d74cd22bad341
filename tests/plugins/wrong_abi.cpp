// A plugin built for another version of the plugin interface: refused before it registers.
#include <stdexcept>

#include "micromodels/plugin.hpp"

MICROMODELS_PLUGIN_EXPORT int micromodels_plugin_abi() { return micromodels::kPluginAbi + 1; }
MICROMODELS_PLUGIN_EXPORT void micromodels_register(micromodels::Registry& /*registry*/) {
  throw std::logic_error("a plugin of another ABI must not be registered");
}
