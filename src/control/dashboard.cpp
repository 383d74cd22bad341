#include "dashboard.hpp"

namespace micromodels::detail {

const EmbeddedFile* dashboard_file(std::string_view path) {
  if (path == "/") path = "/index.html";
  for (const EmbeddedFile& file : dashboard_files()) {
    if (file.path == path) return &file;
  }
  return nullptr;
}

std::string_view content_type_of(std::string_view path) {
  if (path.ends_with(".html")) return "text/html; charset=utf-8";
  if (path.ends_with(".js")) return "text/javascript; charset=utf-8";
  if (path.ends_with(".css")) return "text/css; charset=utf-8";
  return "application/octet-stream";
}

}  // namespace micromodels::detail
