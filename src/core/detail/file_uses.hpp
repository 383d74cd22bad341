// The local files a pipeline's stages read and write (StageInfo::files_read, files_written):
// one stage's output may not be another's input, nor another's output.
#pragma once

#include <string>
#include <vector>

#include "micromodels/pipeline.hpp"

namespace micromodels::detail {

struct FileUse {
  std::string path{};  // as the param gives it
  bool written = false;
  SourceLocation at{};  // of the param (or the --set that gave it)
  std::string subject{};  // "stage 'sink'"
  std::string key{};  // "params.path"
};

/// Throws ConfigError at the later of two uses of one file (paths compared after resolving `.`,
/// `..` and symbolic links; an existing file by its device and inode, so a hard link to it is
/// the same file) when either writes it.
void check_file_uses(const std::vector<FileUse>& uses);

}  // namespace micromodels::detail
