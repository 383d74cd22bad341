# find_package(OpenCV COMPONENTS core imgproc ...) from OpenCV's per-module Debian packages
# (libopencv-core-dev, libopencv-imgproc-dev, ...), which ship the headers and libraries but not
# OpenCVConfig.cmake: that comes only with libopencv-dev, which depends on every module, contrib
# included (viz pulls VTK), and its config checks all their files: some 120 packages more on a
# fresh system. The project puts this folder on CMAKE_MODULE_PATH, where a find module takes
# precedence over a package's config. Declares what OpenCV's config declares for the components
# asked for: the imported targets opencv_<module>, OpenCV_INCLUDE_DIRS, OpenCV_LIBS, OpenCV_FOUND.
include(FindPackageHandleStandardArgs)

find_path(OpenCV_INCLUDE_DIR opencv2/core.hpp PATH_SUFFIXES opencv4
          DOC "The folder that holds opencv2/ (Debian: libopencv-core-dev)")
mark_as_advanced(OpenCV_INCLUDE_DIR)

# The modules this finds; each one's headers include core's.
set(_opencv_modules core imgproc imgcodecs videoio dnn)

set(OpenCV_LIBS "")
set(_opencv_missing "")
foreach(module IN LISTS OpenCV_FIND_COMPONENTS)
  if(NOT module IN_LIST _opencv_modules)
    string(REPLACE ";" ", " known "${_opencv_modules}")
    message(FATAL_ERROR "cmake/FindOpenCV.cmake: no module '${module}'; it finds ${known}: "
                        "add the new one there")
  endif()
  find_library(OpenCV_${module}_LIBRARY opencv_${module}
               DOC "libopencv_${module}.so (Debian: libopencv-${module}-dev)")
  find_file(OpenCV_${module}_HEADER opencv2/${module}.hpp HINTS ${OpenCV_INCLUDE_DIR}
            NO_DEFAULT_PATH)
  mark_as_advanced(OpenCV_${module}_LIBRARY OpenCV_${module}_HEADER)
  if(NOT OpenCV_${module}_LIBRARY OR NOT OpenCV_${module}_HEADER)
    set(OpenCV_${module}_FOUND FALSE)
    list(APPEND _opencv_missing libopencv-${module}-dev)
    continue()
  endif()
  set(OpenCV_${module}_FOUND TRUE)
  list(APPEND OpenCV_LIBS opencv_${module})
  if(NOT TARGET opencv_${module})
    add_library(opencv_${module} SHARED IMPORTED)
    set_target_properties(opencv_${module} PROPERTIES
      IMPORTED_LOCATION "${OpenCV_${module}_LIBRARY}"
      INTERFACE_INCLUDE_DIRECTORIES "${OpenCV_INCLUDE_DIR}")
    if(NOT module STREQUAL core)
      set_property(TARGET opencv_${module} PROPERTY INTERFACE_LINK_LIBRARIES opencv_core)
    endif()
  endif()
endforeach()

set(OpenCV_INCLUDE_DIRS ${OpenCV_INCLUDE_DIR})
if(NOT OpenCV_INCLUDE_DIR)
  list(PREPEND _opencv_missing libopencv-core-dev)
endif()
list(REMOVE_DUPLICATES _opencv_missing)
find_package_handle_standard_args(OpenCV REQUIRED_VARS OpenCV_INCLUDE_DIR HANDLE_COMPONENTS
  REASON_FAILURE_MESSAGE "install with: apt-get install ${_opencv_missing}")
