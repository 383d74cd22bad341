# Writes a C++ source that holds files as byte arrays, so that a binary serves them without
# reading the disk (the control endpoint's dashboard). Run at build time:
#   cmake -DOUTPUT=out.cpp -DHEADER=name.hpp -DFUNCTION=name -DFILES="a.html;b.js" -P embed_files.cmake
# The source defines `std::span<const EmbeddedFile> FUNCTION()` in micromodels::detail, one entry
# per file: its name with a leading '/', and its bytes.
if(NOT OUTPUT OR NOT HEADER OR NOT FUNCTION OR NOT FILES)
  message(FATAL_ERROR "embed_files.cmake needs OUTPUT, HEADER, FUNCTION and FILES")
endif()

set(arrays "")
set(entries "")
set(index 0)
foreach(file IN LISTS FILES)
  get_filename_component(name "${file}" NAME)
  file(READ "${file}" hex HEX)
  string(LENGTH "${hex}" digits)
  math(EXPR size "${digits} / 2")
  # Sixteen bytes a line.
  string(REGEX REPLACE "([0-9a-f][0-9a-f])" "0x\\1," bytes "${hex}")
  string(REGEX REPLACE "((0x..,){16})" "\\1\n    " bytes "${bytes}")
  string(APPEND arrays "// ${name}\nconstexpr unsigned char file${index}[${size} + 1] = {\n    ${bytes}0x00};\n\n")
  string(APPEND entries "      EmbeddedFile{\"/${name}\", as_text(file${index}, ${size})},\n")
  math(EXPR index "${index} + 1")
endforeach()

set(content "// Generated at build time by cmake/embed_files.cmake: do not edit.\n")
string(APPEND content "#include \"${HEADER}\"\n\n#include <array>\n\n")
string(APPEND content "namespace micromodels::detail {\n\nnamespace {\n\n${arrays}")
string(APPEND content "std::string_view as_text(const unsigned char* bytes, std::size_t size) {\n")
string(APPEND content "  return {reinterpret_cast<const char*>(bytes), size};\n}\n\n}  // namespace\n\n")
string(APPEND content "std::span<const EmbeddedFile> ${FUNCTION}() {\n")
string(APPEND content "  static const std::array files{\n${entries}  };\n  return files;\n}\n\n")
string(APPEND content "}  // namespace micromodels::detail\n")

# Rewritten only when it changes, so that an unchanged file does not recompile.
file(CONFIGURE OUTPUT "${OUTPUT}" CONTENT "${content}" @ONLY)
