// Where the vision tests find the fetched media and models, and what they do when it is missing:
// skip with the setup command, or fail when MICROMODELS_REQUIRE_MEDIA is set (the test script
// sets it, since it fetches first).
#pragma once

#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>

#include "vision/models/model_files.hpp"

#define REQUIRE_CACHE_FILE(path)                                                 \
  do {                                                                           \
    if (!std::filesystem::exists(path)) {                                        \
      if (std::getenv("MICROMODELS_REQUIRE_MEDIA") != nullptr) {                 \
        FAIL() << "missing " << (path) << " (MICROMODELS_REQUIRE_MEDIA is set)"; \
      }                                                                          \
      GTEST_SKIP() << "missing " << (path) << "; run: scripts/fetch_media.sh";   \
    }                                                                            \
  } while (0)

namespace micromodels::vision::testing {

inline std::filesystem::path model(const char* name) { return models_dir() / name; }
inline std::filesystem::path media(const char* name) { return media_dir() / name; }

}  // namespace micromodels::vision::testing
