// `micromodels bench dashboard`: what an open dashboard costs a run, and how soon the page shows
// a change. The measuring needs a browser, so bench/dashboard_bench.mjs does it, with Node.js,
// puppeteer-core (from the cache scripts/fetch_media.sh fills) and Debian's chromium, against
// this very tool; this starts it and passes its figures on.
#include <spawn.h>
#include <sys/wait.h>

#include <cstdlib>
#include <filesystem>
#include <iostream>
#include <string>
#include <vector>

#include "bench.hpp"

extern char** environ;

namespace micromodels::bench {

namespace {

namespace fs = std::filesystem;

std::string find_on_path(const std::string& program) {
  const char* path = std::getenv("PATH");
  std::string dirs = path == nullptr ? "" : path;
  std::size_t start = 0;
  while (start <= dirs.size()) {
    const std::size_t end = std::min(dirs.find(':', start), dirs.size());
    const fs::path candidate = fs::path(dirs.substr(start, end - start)) / program;
    if (!candidate.parent_path().empty() && fs::exists(candidate)) return candidate.string();
    start = end + 1;
  }
  return {};
}

}  // namespace

int run_dashboard_bench(const BenchOptions& options) {
  const fs::path source = MICROMODELS_SOURCE_DIR;
  const char* cache_env = std::getenv("MICROMODELS_CACHE");
  const fs::path cache = cache_env != nullptr && *cache_env != '\0'
                             ? fs::path(cache_env)
                             : source / ".cache" / "micromodels";
  const std::string node = find_on_path("node");
  std::string chromium = find_on_path("chromium");
  if (chromium.empty()) chromium = find_on_path("chromium-browser");
  const fs::path puppeteer = cache / MICROMODELS_PUPPETEER;
  const fs::path script = source / "bench" / "dashboard_bench.mjs";
  const std::vector<std::pair<std::string, std::string>> needed = {
      {node, "node (Node.js) not found on PATH; scripts/deps.sh installs it"},
      {chromium, "chromium not found on PATH; scripts/deps.sh installs it"},
      {puppeteer.string(), "puppeteer-core not found at " + puppeteer.string() +
                               "; scripts/fetch_media.sh installs it (set MICROMODELS_CACHE "
                               "to the cache it filled)"},
      {script.string(), "the benchmark's script " + script.string() + " is missing"}};
  for (const auto& [path, message] : needed) {
    if (path.empty() || !fs::exists(path)) {
      std::cerr << "bench dashboard: " << message << '\n';
      return 1;
    }
  }
  std::vector<std::string> args = {node,      script.string(), fs::read_symlink("/proc/self/exe"),
                                    puppeteer, chromium};
  if (options.quick) args.emplace_back("--quick");
  if (!options.json_path.empty()) {
    args.emplace_back("--json");
    args.push_back(options.json_path);
  }
  std::vector<char*> argv;
  for (std::string& arg : args) argv.push_back(arg.data());
  argv.push_back(nullptr);
  pid_t pid = 0;
  if (posix_spawn(&pid, node.c_str(), nullptr, nullptr, argv.data(), environ) != 0) {
    std::cerr << "bench dashboard: cannot start " << node << '\n';
    return 1;
  }
  int status = 0;
  while (waitpid(pid, &status, 0) < 0) {
  }
  return WIFEXITED(status) ? WEXITSTATUS(status) : 1;
}

}  // namespace micromodels::bench
