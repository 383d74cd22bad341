#include "vision/models/model_files.hpp"

#include <cstdlib>
#include <fstream>
#include <stdexcept>
#include <string>

namespace micromodels::vision {

std::filesystem::path cache_dir() {
  if (const char* env = std::getenv("MICROMODELS_CACHE"); env != nullptr && *env != '\0') {
    return env;
  }
  // Set by CMake to <repo>/.cache/micromodels; the default of scripts/fetch_media.sh.
  return MICROMODELS_DEFAULT_CACHE;
}

std::filesystem::path models_dir() { return cache_dir() / "models"; }
std::filesystem::path media_dir() { return cache_dir() / "media"; }

void require_file(const std::filesystem::path& path, std::string_view what) {
  std::error_code ec;
  const bool regular = std::filesystem::is_regular_file(path, ec);  // follows symlinks
  if (!regular || !std::ifstream(path, std::ios::binary).good()) {
    throw std::runtime_error(std::string(what) + " file '" + path.string() +
                             "' is missing or unreadable; run scripts/fetch_media.sh to fetch "
                             "the models and media (into $MICROMODELS_CACHE, default "
                             "<repo>/.cache/micromodels)");
  }
}

}  // namespace micromodels::vision
