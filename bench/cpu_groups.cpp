#include "cpu_groups.hpp"

#include <cerrno>
#include <cmath>
#include <csignal>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <sstream>
#include <stdexcept>

#include <sys/stat.h>
#include <unistd.h>

namespace micromodels::bench {

namespace {

namespace fs = std::filesystem;

constexpr const char* kPrefix = "micromodels-scaleout-";
constexpr long kPeriodUs = 100000;

void write_file(const std::string& path, const std::string& value) {
  std::ofstream file(path);
  file << value;
  file.flush();
  if (!file) {
    throw std::runtime_error("cannot write '" + value + "' to " + path + ": " +
                             std::strerror(errno));
  }
}

std::string read_file(const std::string& path) {
  std::ifstream file(path);
  std::stringstream text;
  text << file.rdbuf();
  return text.str();
}

bool has_word(const std::string& text, const std::string& word) {
  std::istringstream words(text);
  for (std::string w; words >> w;) {
    if (w == word) return true;
  }
  return false;
}

// The cpu hierarchy: the unified one when it has the cpu controller, else v1's.
std::string cpu_root(bool& v2) {
  v2 = has_word(read_file("/sys/fs/cgroup/cgroup.controllers"), "cpu");
  if (v2) return "/sys/fs/cgroup";
  for (const char* path : {"/sys/fs/cgroup/cpu", "/sys/fs/cgroup/cpu,cpuacct"}) {
    if (fs::exists(fs::path(path) / "cpu.cfs_quota_us")) return path;
  }
  return {};
}

// Moves the processes left in `group` to `root` and removes it.
void remove_group(const std::string& root, const std::string& group) noexcept {
  std::istringstream pids(read_file(group + "/cgroup.procs"));
  for (std::string pid; pids >> pid;) {
    try {
      write_file(root + "/cgroup.procs", pid);
    } catch (const std::exception&) {
      // gone meanwhile
    }
  }
  if (::rmdir(group.c_str()) != 0 && errno != ENOENT) {
    std::cerr << "bench scaleout: cannot remove cgroup " << group << ": " << std::strerror(errno)
              << " (remove it with: rmdir " << group << ")\n";
  }
}

void remove_tree(const std::string& root, const std::string& parent) noexcept {
  std::error_code ignored;
  for (const auto& entry : fs::directory_iterator(parent, ignored)) {
    if (entry.is_directory()) remove_group(root, entry.path().string());
  }
  remove_group(root, parent);
}

}  // namespace

CpuGroups::CpuGroups() {
  if (::geteuid() != 0) {
    throw std::runtime_error("CPU quotas need root, to make cgroups (this process runs as uid " +
                             std::to_string(::geteuid()) + ")");
  }
  root_ = cpu_root(v2_);
  if (root_.empty()) {
    throw std::runtime_error(
        "no cgroup cpu controller: neither /sys/fs/cgroup/cgroup.controllers lists cpu nor is "
        "there a v1 /sys/fs/cgroup/cpu hierarchy (mount one, or enable the cpu controller)");
  }
  parent_ = root_ + "/" + kPrefix + std::to_string(::getpid());
  if (::mkdir(parent_.c_str(), 0755) != 0) {
    throw std::runtime_error("cannot make cgroup " + parent_ + ": " + std::strerror(errno));
  }
  try {
    if (v2_) {
      if (!has_word(read_file(root_ + "/cgroup.subtree_control"), "cpu")) {
        write_file(root_ + "/cgroup.subtree_control", "+cpu");
      }
      write_file(parent_ + "/cgroup.subtree_control", "+cpu");
    }
  } catch (...) {
    remove_tree(root_, parent_);
    throw;
  }
}

CpuGroups::~CpuGroups() { remove_tree(root_, parent_); }

void CpuGroups::add(const std::string& name, double cores) {
  const std::string path = parent_ + "/" + name;
  if (::mkdir(path.c_str(), 0755) != 0) {
    throw std::runtime_error("cannot make cgroup " + path + ": " + std::strerror(errno));
  }
  groups_.push_back(name);
  const long quota = std::lround(cores * kPeriodUs);
  if (v2_) {
    write_file(path + "/cpu.weight", "10000");
    write_file(path + "/cpu.max", (cores > 0 ? std::to_string(quota) : std::string("max")) + " " +
                                      std::to_string(kPeriodUs));
  } else {
    write_file(path + "/cpu.shares", "262144");
    write_file(path + "/cpu.cfs_period_us", std::to_string(kPeriodUs));
    write_file(path + "/cpu.cfs_quota_us", cores > 0 ? std::to_string(quota) : "-1");
  }
}

void CpuGroups::move(const std::string& name, pid_t pid) const {
  write_file(parent_ + "/" + name + "/cgroup.procs", std::to_string(pid));
}

CpuGroups::Throttling CpuGroups::throttling(const std::string& name) const {
  std::istringstream stat(read_file(parent_ + "/" + name + "/cpu.stat"));  // v1 and v2 alike
  Throttling t;
  for (std::string key; stat >> key;) {
    double value = 0;
    stat >> value;
    if (key == "nr_periods") t.periods = value;
    if (key == "nr_throttled") t.throttled = value;
  }
  return t;
}

std::string CpuGroups::controller() const {
  return v2_ ? "cgroup v2 cpu.max" : "cgroup v1 cpu.cfs_quota_us";
}

void CpuGroups::remove_leftovers() {
  bool v2 = false;
  const std::string root = cpu_root(v2);
  if (root.empty()) return;
  std::error_code ignored;
  for (const auto& entry : fs::directory_iterator(root, ignored)) {
    const std::string name = entry.path().filename().string();
    if (!name.starts_with(kPrefix)) continue;
    const auto pid = static_cast<pid_t>(std::atoi(name.c_str() + std::strlen(kPrefix)));
    if (pid > 0 && ::kill(pid, 0) != 0 && errno == ESRCH) remove_tree(root, entry.path().string());
  }
}

}  // namespace micromodels::bench
