// Holding processes to a share of a core with the cgroup cpu controller.
#pragma once

#include <string>
#include <vector>

#include <sys/types.h>

namespace micromodels::bench {

/// Control groups under `<cpu hierarchy>/micromodels-scaleout-<PID>/`, each capped at a share of
/// a core: cgroup v2's `cpu.max` where the unified hierarchy has the cpu controller, else v1's
/// `cpu.cfs_quota_us`. Each also gets the highest weight, so that on a busy machine its
/// processes get their quota (the cap keeps them from taking more). The destructor moves what is
/// left back to the root group and removes the groups. Needs root.
///
///   CpuGroups groups;
///   groups.add("w1", 0.25);         // a quarter of a core
///   groups.move("w1", worker_pid);  // every thread of the process
class CpuGroups {
 public:
  /// Throws std::runtime_error saying what is missing (root, a cpu controller) and what to do.
  CpuGroups();
  ~CpuGroups();
  CpuGroups(const CpuGroups&) = delete;
  CpuGroups& operator=(const CpuGroups&) = delete;

  /// A group `name` capped at `cores` of a core; 0: no cap, only the weight.
  void add(const std::string& name, double cores);
  /// Moves process `pid` (all its threads) into group `name`.
  void move(const std::string& name, pid_t pid) const;
  /// The group's enforcement periods (100 ms) so far, and those in which it hit its cap.
  struct Throttling {
    double periods = 0;
    double throttled = 0;
  };
  [[nodiscard]] Throttling throttling(const std::string& name) const;
  /// "cgroup v2 cpu.max" or "cgroup v1 cpu.cfs_quota_us".
  [[nodiscard]] std::string controller() const;
  /// Removes the groups of earlier benchmarks whose process is gone.
  static void remove_leftovers();

 private:
  std::string root_;  // the cpu hierarchy's root: /sys/fs/cgroup or /sys/fs/cgroup/cpu
  bool v2_ = false;
  std::string parent_;  // root_/micromodels-scaleout-PID
  std::vector<std::string> groups_;
};

}  // namespace micromodels::bench
