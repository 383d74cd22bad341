// Where the fetched media and models live, and clear errors when they are missing.
#pragma once

#include <filesystem>
#include <string_view>

namespace micromodels::vision {

/// The cache that scripts/fetch_media.sh fills: $MICROMODELS_CACHE when set, else
/// <repo>/.cache/micromodels (the repository this library was built from).
[[nodiscard]] std::filesystem::path cache_dir();
/// <cache>/models and <cache>/media.
[[nodiscard]] std::filesystem::path models_dir();
[[nodiscard]] std::filesystem::path media_dir();

/// Throws std::runtime_error naming `path` and the setup command unless `path` is a readable
/// regular file. `what` says what the file is for ("BlazeFace model").
void require_file(const std::filesystem::path& path, std::string_view what);

}  // namespace micromodels::vision
