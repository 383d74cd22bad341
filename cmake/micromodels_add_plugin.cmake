# micromodels_add_plugin(NAME SOURCES file.cpp...): a plugin, the shared library libNAME.so that
# `micromodels run --plugin` and a pipeline's `plugins:` load, built against micromodels' headers
# (micromodels::plugin). Its sources define MICROMODELS_PLUGIN(registry) { ... } once.
function(micromodels_add_plugin name)
  cmake_parse_arguments(PARSE_ARGV 1 plugin "" "" "SOURCES")
  if(NOT plugin_SOURCES OR plugin_UNPARSED_ARGUMENTS)
    message(FATAL_ERROR "micromodels_add_plugin(${name} SOURCES file.cpp...): give its sources "
                        "after SOURCES (got '${ARGN}')")
  endif()
  add_library(${name} MODULE ${plugin_SOURCES})
  target_link_libraries(${name} PRIVATE micromodels::plugin)
endfunction()
