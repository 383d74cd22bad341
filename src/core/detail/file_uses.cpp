#include "file_uses.hpp"

#include <filesystem>
#include <map>
#include <system_error>

#include <sys/stat.h>

#include "config_checks.hpp"

namespace micromodels::detail {

namespace {

// The file's one name: absolute, with `.`, `..` and the links of its existing part resolved.
std::string one_name(std::string path) {
  while (path.size() > 1 && path.back() == '/') path.pop_back();  // a folder, as "out/"
  std::error_code error;
  const std::filesystem::path absolute = std::filesystem::absolute(path, error);
  if (error) return path;
  const std::filesystem::path canonical = std::filesystem::weakly_canonical(absolute, error);
  return error ? absolute.lexically_normal().string() : canonical.string();
}

// What tells the file apart from others: for one that exists, its device and inode, which a
// hard link or another mount of it shares under a name of its own; else its one name.
std::string identity(const std::string& path) {
  struct stat status {};
  if (::stat(path.c_str(), &status) == 0) {
    return "\n" + std::to_string(status.st_dev) + ":" + std::to_string(status.st_ino);
  }
  return one_name(path);
}

}  // namespace

void check_file_uses(const std::vector<FileUse>& uses) {
  std::map<std::string, const FileUse*> seen;
  for (const FileUse& use : uses) {
    if (use.path.empty()) continue;
    const auto [found, first] = seen.emplace(identity(use.path), &use);
    if (first) continue;
    const FileUse& other = *found->second;
    const std::string theirs = other.subject + " (" + other.key + ")";
    if (use.written && other.written) {
      fail(use.at, use.subject, use.key,
           "'" + use.path + "' is written by " + theirs + " too; give each output a file of its own");
    }
    if (use.written) {
      fail(use.at, use.subject, use.key,
           "'" + use.path + "' is the input of " + theirs +
               ": writing it would destroy it while it is read; write to another file");
    }
    if (other.written) {
      fail(use.at, use.subject, use.key,
           "'" + use.path + "' is the output of " + theirs +
               ": it would be read while it is written; read another file");
    }
  }
}

}  // namespace micromodels::detail
