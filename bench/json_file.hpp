// Writing a benchmark's figures to its --json file.
#pragma once

#include <fstream>
#include <iostream>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

namespace micromodels::bench {

/// Writes `figures` to `path` (nothing when `path` is empty) and says so on stdout; `who` names
/// the benchmark in the error. Returns 0, or 1 when the file could not be written.
inline int write_json_file(const nlohmann::ordered_json& figures, const std::string& path,
                           std::string_view who) {
  if (path.empty()) return 0;
  std::ofstream file(path);
  file << figures.dump(2) << '\n';
  if (!file) {
    std::cerr << who << ": cannot write " << path << '\n';
    return 1;
  }
  std::cout << "wrote " << path << '\n';
  return 0;
}

}  // namespace micromodels::bench
