// The dashboard's files (HTML, JS, CSS), built into the binary from src/control/dashboard/.
#pragma once

#include <span>
#include <string_view>

namespace micromodels::detail {

struct EmbeddedFile {
  std::string_view path;  // "/dashboard.js"
  std::string_view body;
};

/// Every embedded file, as cmake/embed_files.cmake generated them at build time.
[[nodiscard]] std::span<const EmbeddedFile> dashboard_files();

/// The file served at `path` ("/" is the page, /index.html), or null: only these exact paths
/// are ever served, so no path can reach outside them.
[[nodiscard]] const EmbeddedFile* dashboard_file(std::string_view path);

/// The Content-Type of an embedded file, from its name.
[[nodiscard]] std::string_view content_type_of(std::string_view path);

}  // namespace micromodels::detail
