# The Debian package: what `cmake --install` adds besides the libraries (the pipelines, the docs,
# the models' fetch script), and CPack's settings for `cpack -G DEB` (scripts/package.sh).
# Models and media are not in the package: `micromodels-fetch-models` fetches them after install.

install(DIRECTORY pipelines DESTINATION ${CMAKE_INSTALL_DATADIR}/micromodels)
install(FILES README.md DESTINATION ${CMAKE_INSTALL_DOCDIR})
install(DIRECTORY docs/ DESTINATION ${CMAKE_INSTALL_DOCDIR})
# The fetch script and its converter keep their layout (<dir>/scripts/...): fetch_media.sh finds
# the converter next to itself.
install(PROGRAMS scripts/fetch_media.sh scripts/convert_tfjs_to_onnx.py
        DESTINATION ${CMAKE_INSTALL_DATADIR}/micromodels/scripts)
configure_file(cmake/micromodels-fetch-models.in micromodels-fetch-models @ONLY)
install(PROGRAMS ${CMAKE_CURRENT_BINARY_DIR}/micromodels-fetch-models
        DESTINATION ${CMAKE_INSTALL_BINDIR})

set(CPACK_PACKAGE_NAME micromodels)
set(CPACK_PACKAGE_VENDOR micromodels)
set(CPACK_PACKAGE_CONTACT "micromodels maintainers <micromodels@localhost>")
set(CPACK_PACKAGE_DESCRIPTION_SUMMARY "engine for micro-model AI pipelines (eye-contact correction)")
set(CPACK_PACKAGE_DESCRIPTION
    "The micromodels command-line tool, its libraries, headers and CMake package, the Python module
and the sample pipelines. Models and media are fetched after install by micromodels-fetch-models.")
set(CPACK_PACKAGE_VERSION ${PROJECT_VERSION})
set(CPACK_STRIP_FILES ON)
set(CPACK_DEBIAN_FILE_NAME DEB-DEFAULT)  # micromodels_<version>_<arch>.deb
set(CPACK_DEBIAN_PACKAGE_SECTION science)
# The libraries the tool and the Python module link (OpenCV, dlib, yaml-cpp, hiredis, Python...),
# found by dpkg-shlibdeps; numpy is imported by the module, not linked.
set(CPACK_DEBIAN_PACKAGE_SHLIBDEPS ON)
set(CPACK_DEBIAN_PACKAGE_DEPENDS "python3, python3-numpy")
# micromodels-fetch-models needs curl, Debian's onnx and dlib's model; find_package(micromodels)
# needs the headers of what the static libraries link. Suggested, not recommended: a user who only
# runs pipelines needs neither, and apt installs recommendations by default.
set(CPACK_DEBIAN_PACKAGE_SUGGESTS
    "curl, ca-certificates, python3-onnx, libdlib-data, ffmpeg, cmake, pkg-config, libyaml-cpp-dev, nlohmann-json3-dev, libspdlog-dev, libcpp-httplib-dev, libhiredis-dev, libopencv-dev, libdlib-dev, libblas-dev, liblapack-dev")
include(CPack)
