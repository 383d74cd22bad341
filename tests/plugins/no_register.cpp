// A shared library with the ABI function but no micromodels_register(): loading it must fail
// with "not a micromodels plugin".
#include "micromodels/plugin.hpp"

MICROMODELS_PLUGIN_EXPORT int micromodels_plugin_abi() { return micromodels::kPluginAbi; }
