// The hosts of a scale-out benchmark on one machine: each in its own network namespace, joined
// through a bridge by links of a set rate and delay, or all on this machine's loopback.
#pragma once

#include <functional>
#include <string>
#include <vector>

namespace micromodels::bench {

/// Namespaces `mmscale<PID>-HOST` and a switch namespace `mmscale<PID>-sw` holding the bridge;
/// host i (from 0) has the address 10.200.0.(i+1)/24 on its `eth0`, a veth link to the bridge
/// shaped on both ends with `tc` (netem: half the delay and the rate each end; tbf, rate only,
/// where the kernel has no netem). The destructor kills what still runs in them and deletes
/// them; so does a failed constructor. Needs root and iproute2 (`ip`, `tc`).
///
///   Testbed bed({"redis", "run", "w1"}, true);
///   Child server(bed.command("redis", {"redis-server", "--bind", bed.address("redis")}));
class Testbed {
 public:
  /// `isolated` false: every host is this machine's loopback. Throws std::runtime_error naming
  /// the command that failed, its output and what to do.
  Testbed(std::vector<std::string> hosts, bool isolated);
  ~Testbed();
  Testbed(const Testbed&) = delete;
  Testbed& operator=(const Testbed&) = delete;

  [[nodiscard]] bool isolated() const noexcept { return isolated_; }
  /// The host's IPv4 address: 10.200.0.N, or 127.0.0.1 on loopback.
  [[nodiscard]] std::string address(const std::string& host) const;
  /// `args` prefixed so that they run inside the host's namespace (`ip netns exec NS`, which
  /// keeps the process id).
  [[nodiscard]] std::vector<std::string> command(const std::string& host,
                                                 std::vector<std::string> args) const;
  /// Calls `work` on a thread inside the host's namespace: the sockets it opens stay there.
  void in(const std::string& host, const std::function<void()>& work) const;
  /// The links: "veth through a bridge, 1gbit, 0.5 ms each way (netem)", or "loopback".
  [[nodiscard]] const std::string& link() const noexcept { return link_; }
  /// The namespaces now on this machine whose names start with `prefix` (`ip netns list`).
  [[nodiscard]] static std::vector<std::string> namespaces(const std::string& prefix);
  /// Deletes the namespaces of earlier benchmarks whose process is gone (killed with SIGKILL).
  static void remove_leftovers();

 private:
  void set_up();
  void tear_down() noexcept;
  std::string ns(const std::string& host) const { return prefix_ + host; }

  std::vector<std::string> hosts_;
  bool isolated_;
  std::string prefix_;
  std::string link_;
};

}  // namespace micromodels::bench
